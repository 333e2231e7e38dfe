"""A real browser: Debian's Chromium logs in, reads a pair, votes with a shortcut key."""
import pytest

from storage import queries
from storage.db import open_db

from .conftest import add_pair, start_app

HOSTILE = '<img src=x onerror="window.__pwned=1"> <script>window.__pwned=2</script> **bold**'


@pytest.fixture(scope="module")
def app_with_hostile_pair(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    # ready=0: nothing is generated ahead, so the hostile pair is the first one served.
    db = open_db(data / "prefloop.db")
    pair_id = add_pair(db, prompt="Render this safely: " + HOSTILE,
                       completions=("Answer one " + HOSTILE, "Answer two, plain"))
    cfg, demo, queue = start_app(data, ready=0)
    yield cfg, pair_id
    queue.stop()
    demo.close()


def test_login_vote_by_keyboard_and_find_the_vote(app_with_hostile_pair, log_in_browser, tmp_path):
    from playwright.sync_api import expect

    cfg, pair_id = app_with_hostile_pair
    queries.put_setting(open_db(cfg.db_path), "daily_goal", "4")  # as the Admin tab sets it
    page = log_in_browser(cfg.port, "alice")
    expect(page.get_by_text("Answer two, plain")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("Render this safely:")).to_be_visible()
    assert page.evaluate("window.__pwned") is None
    assert page.locator("img[src='x']").count() == 0
    expect(page.locator("#completion-a, #completion-b").get_by_text(
        "<script>window.__pwned=2</script>")).to_be_visible()

    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("1")
    expect(page.get_by_text(f"on pair #{pair_id}")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("you have judged 1 pair · today 1 of your goal of 4 (25%).")).to_be_visible(timeout=30_000)
    page.screenshot(path=str(tmp_path / "annotate.png"), full_page=True)

    votes = list(open_db(cfg.db_path).query("SELECT * FROM votes WHERE pair_id = ?", [pair_id]))
    assert [(v["annotator"], v["choice"]) for v in votes] == [("alice", "a")]
    assert queries.annotator_progress(open_db(cfg.db_path), "alice")["total"] == 1
    assert (tmp_path / "annotate.png").stat().st_size > 10_000
