"""Guidelines: admins save versions, annotators read the one in force, every vote records it."""
import pytest

from storage import guidelines, queries
from storage.db import open_db
from storage.inputs import InputError

from .conftest import add_pair, api_client, show


def test_each_vote_records_the_guidelines_in_force(db):
    first, second = add_pair(db, prompt="One?"), add_pair(db, prompt="Two?")
    show(db, "alice")
    before = queries.record_vote(db, "alice", first, "a")
    v1 = guidelines.save_guideline(db, "Prefer **correct** answers.", author="root")
    assert guidelines.save_guideline(db, "  Prefer **correct** answers. ", author="root") == v1  # unchanged
    show(db, "alice")
    after = queries.record_vote(db, "alice", second, "b")
    v2 = guidelines.save_guideline(db, "Prefer correct, then short, answers.", author="root")
    assert v2 > v1 and guidelines.current_guideline(db)["id"] == v2
    assert [db["votes"].get(v)["guideline_id"] for v in (before, after)] == [None, v1]
    assert queries.record_vote(db, "alice", second, "b") == after  # a repeated vote is the same vote


@pytest.mark.parametrize("text, message", [("   ", "empty"), (7, "must be text"),
                                           ("x" * 20_001, "longer than 20000")])
def test_bad_guidelines_are_refused(db, text, message):
    with pytest.raises(InputError, match=message):
        guidelines.save_guideline(db, text, author="root")
    assert guidelines.current_guideline(db) is None


def test_an_admin_saves_guidelines_and_annotators_vote_under_them(live_app):
    root, alice = api_client(live_app, "root"), api_client(live_app, "alice")
    with pytest.raises(Exception, match="only admin accounts"):
        alice.predict("Anything goes.", api_name="/save_guidelines")
    version = root.predict("Judge **helpfulness** first.", api_name="/save_guidelines")
    assert list(alice.predict(api_name="/guidelines")) == [version, "Judge **helpfulness** first."]
    pair_id, *_ = alice.predict(api_name="/next_pair")
    vote_id = alice.predict(pair_id, "a", None, None, "", api_name="/vote")
    assert open_db(live_app.db_path)["votes"].get(vote_id)["guideline_id"] == version


def test_an_annotator_opens_the_guidelines_in_the_browser(live_app, log_in_browser):
    from playwright.sync_api import expect

    api_client(live_app, "root").predict("Read both answers **to the end**.", api_name="/save_guidelines")
    page = log_in_browser(live_app.port, "bob")
    page.get_by_text("Guidelines (version").click(timeout=30_000)
    expect(page.locator("#guidelines strong")).to_have_text("to the end", timeout=30_000)
    version = int(page.get_by_text("Guidelines (version").inner_text().split()[-1].rstrip(")"))
    expect(page.locator("#completion-a .untrusted")).to_be_visible(timeout=30_000)
    pair_id = int(page.get_by_label("Pair").input_value())
    page.locator("#btn-tie").click()
    expect(page.get_by_text("Saved vote #")).to_be_visible(timeout=30_000)
    [vote] = open_db(live_app.db_path)["votes"].rows_where("pair_id = ? AND annotator = 'bob'", [pair_id])
    assert vote["guideline_id"] == version


def test_only_admins_set_the_daily_goal_and_it_must_be_whole(live_app):
    root, alice = api_client(live_app, "root"), api_client(live_app, "alice")
    with pytest.raises(Exception, match="only admin accounts"):
        alice.predict(5, api_name="/set_daily_goal")
    with pytest.raises(Exception, match="the daily goal must be a whole number from 0 to 10000"):
        root.predict(2.5, api_name="/set_daily_goal")
    assert root.predict(30, api_name="/set_daily_goal") == 30
    assert queries.daily_goal(open_db(live_app.db_path)) == 30
