"""Accounts change in the running app at once: added, password changed, disabled, demoted."""
import json

import httpx
import pytest

from app.__main__ import main as app_cli
from storage import accounts
from storage.db import open_db

from .conftest import api_client



def adduser(live_app, *args):
    assert app_cli(["--data-dir", str(live_app.data_dir), "adduser", *args]) == 0


def test_an_account_added_from_the_cli_logs_in_without_a_restart(live_app):
    with pytest.raises(ValueError, match="Could not login"):
        api_client(live_app, "erin")
    adduser(live_app, "erin", "--password", "erin-pw")
    pair_id, *_ = api_client(live_app, "erin").predict(api_name="/next_pair")
    assert pair_id > 0


def test_a_new_password_works_the_old_one_fails_and_old_sessions_end(live_app):
    adduser(live_app, "fred", "--password", "fred-pw")
    before = api_client(live_app, "fred")
    before.predict(api_name="/next_pair")
    adduser(live_app, "fred", "--password", "fred-new-pw")
    with pytest.raises(httpx.HTTPStatusError, match="401 Unauthorized"):
        before.predict(api_name="/next_pair")
    with pytest.raises(ValueError, match="Could not login"):
        api_client(live_app, "fred")
    api_client(live_app, "fred", "fred-new-pw").predict(api_name="/next_pair")


def test_a_disabled_account_loses_access_on_its_next_request(live_app):
    root = api_client(live_app, "root")
    assert "added" in root.predict("gail", "gail-pw", "annotator", api_name="/save_account")
    gail = api_client(live_app, "gail")
    pair_id, *_ = gail.predict(api_name="/next_pair")
    assert root.predict("gail", True, api_name="/set_disabled") == "gail is disabled."
    with pytest.raises(httpx.HTTPStatusError, match="401 Unauthorized"):
        gail.predict(pair_id, "a", None, None, "", api_name="/vote")
    with pytest.raises(ValueError, match="Could not login"):
        api_client(live_app, "gail")
    db = open_db(live_app.db_path)
    assert db.execute("SELECT count(*) FROM votes WHERE annotator = 'gail'").fetchone()[0] == 0
    root.predict("gail", False, api_name="/set_disabled")
    api_client(live_app, "gail").predict(pair_id, "a", None, None, "", api_name="/vote")
    assert db.execute("SELECT count(*) FROM votes WHERE annotator = 'gail'").fetchone()[0] == 1


def test_a_demoted_admin_loses_admin_actions_on_the_next_request(live_app):
    root = api_client(live_app, "root")
    root.predict("hana", "hana-pw", "admin", api_name="/save_account")
    hana = api_client(live_app, "hana")
    assert "added" in hana.predict("ivan", "ivan-pw", "annotator", api_name="/save_account")
    root.predict("hana", "", "annotator", api_name="/save_account")  # empty password: kept
    with pytest.raises(Exception, match="only admin accounts"):
        hana.predict("ivan", True, api_name="/set_disabled")
    api_client(live_app, "hana").predict(api_name="/next_pair")  # still an annotator, same password


def test_annotators_cannot_manage_accounts(live_app):
    alice = api_client(live_app, "alice")
    with pytest.raises(Exception, match="only admin accounts"):
        alice.predict("mallory", "pw", "admin", api_name="/save_account")
    with pytest.raises(Exception, match="only admin accounts"):
        alice.predict("bob", True, api_name="/set_disabled")
    assert accounts.get_account(open_db(live_app.db_path), "mallory") is None


def test_the_last_admin_cannot_be_disabled_or_demoted(db):
    accounts.save_account(db, "root", "pw", "admin", by="test")
    with pytest.raises(accounts.AccountError, match="last admin"):
        accounts.set_disabled(db, "root", True, by="root")
    with pytest.raises(accounts.AccountError, match="last admin"):
        accounts.save_account(db, "root", None, "annotator", by="root")
    accounts.save_account(db, "other", "pw", "admin", by="root")
    accounts.set_disabled(db, "root", True, by="other")
    assert accounts.get_account(db, "root")["disabled_at"]


@pytest.mark.parametrize("name", ["", "a b", "<img src=x>", "x" * 65, "-dash"])
def test_names_are_plain(db, name):
    with pytest.raises(accounts.AccountError, match="a name is 1-64"):
        accounts.save_account(db, name, "pw", "annotator", by="test")
    assert accounts.account_count(db) == 0


def test_a_users_json_imports_what_the_database_lacks_and_every_change_is_on_record(db, tmp_path):
    accounts.save_account(db, "alice", "new-pw", "annotator", by="test")
    old = {"alice": {"password": accounts.hash_password("old-pw"), "role": "annotator"},
           "root": {"password": accounts.hash_password("root-pw"), "role": "admin"}}
    (tmp_path / "users.json").write_text(json.dumps(old))
    assert accounts.import_users_file(db, tmp_path / "users.json", by="cli") == 1
    assert accounts.check_password("new-pw", accounts.get_account(db, "alice")["password"])
    assert accounts.check_password("root-pw", accounts.get_account(db, "root")["password"])
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(accounts.AccountError, match="not a users file"):
        accounts.import_users_file(db, tmp_path / "bad.json", by="cli")
    events = [(e["name"], e["event"]) for e in db["account_events"].rows]
    assert events == [("alice", "added as annotator"), ("root", "imported from users.json as admin")]


def test_an_admin_adds_and_disables_an_account_from_the_admin_tab(live_app, log_in_browser):
    from playwright.sync_api import expect

    page = log_in_browser(live_app.port, "root")
    page.get_by_role("tab", name="Admin").click(timeout=30_000)
    page.get_by_text("Accounts", exact=True).first.click()
    page.get_by_label("Name").fill("kate")
    page.get_by_label("New password (empty keeps the old one)").fill("kate-pw")
    page.get_by_role("button", name="Save account").click()
    expect(page.get_by_text("kate: added as annotator.")).to_be_visible(timeout=30_000)
    api_client(live_app, "kate").predict(api_name="/next_pair")  # logs in at once
    page.get_by_role("button", name="Disable", exact=True).click()
    expect(page.get_by_text("kate is disabled.")).to_be_visible(timeout=30_000)
    with pytest.raises(ValueError, match="Could not login"):
        api_client(live_app, "kate")
