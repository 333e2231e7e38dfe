"""A restart of the app logs nobody out: an API client and a browser carry on with the pair
they were judging. A logout ends the session for good."""
import httpx
import pytest
from gradio_client import Client

from storage.db import open_db

from .conftest import start_app


@pytest.fixture
def restartable(tmp_path):
    """start() the app on one data directory and port; each start stops the one before."""
    running, port = [], [None]

    def start():
        if running:
            queue, demo = running.pop()
            queue.stop()
            demo.close()
        cfg, demo, queue = start_app(tmp_path / "data", ready=2, port=port[0])
        port[0] = cfg.port
        running.append((queue, demo))
        return cfg
    (tmp_path / "data").mkdir()
    yield start
    for queue, demo in running:
        queue.stop()
        demo.close()


def test_an_api_client_keeps_its_session_and_its_pair_across_a_restart(restartable):
    cfg = restartable()
    alice = Client(f"http://127.0.0.1:{cfg.port}", auth=("alice", "alice-pw"), verbose=False)
    pair = alice.predict(api_name="/next_pair")
    restartable()
    assert alice.predict(api_name="/next_pair") == pair  # no new login, the same pair
    vote_id = alice.predict(pair[0], "b", None, None, "", api_name="/vote")
    assert open_db(cfg.db_path)["votes"].get(vote_id)["annotator"] == "alice"


def test_a_logout_ends_the_session_even_for_a_copied_cookie(restartable):
    cfg = restartable()
    url = f"http://127.0.0.1:{cfg.port}"
    with httpx.Client(base_url=url) as browser:
        assert browser.post("/login", data={"username": "bob", "password": "bob-pw"}).status_code == 200
        copied = dict(browser.cookies)
        assert browser.get("/config").status_code == 200
        browser.get("/logout")
    assert httpx.get(f"{url}/config", cookies=copied).status_code == 401


def test_a_browser_stays_logged_in_on_its_pair_across_a_restart(restartable, log_in_browser):
    from playwright.sync_api import expect

    cfg = restartable()
    page = log_in_browser(cfg.port, "carol")
    expect(page.locator("#completion-a .untrusted")).to_be_visible(timeout=30_000)
    pair_id = page.get_by_label("Pair").input_value()
    restartable()
    page.reload()
    expect(page.locator("#completion-a .untrusted")).to_be_visible(timeout=30_000)
    assert page.get_by_label("username").count() == 0  # no login form: still logged in
    assert page.get_by_label("Pair").input_value() == pair_id


def test_a_digest_copied_out_of_the_database_logs_nobody_in(restartable):
    cfg = restartable()
    url = f"http://127.0.0.1:{cfg.port}"
    assert httpx.post(f"{url}/login", data={"username": "root", "password": "root-pw"}).status_code == 200
    db = open_db(cfg.db_path)
    cookie = "access-token-" + db["settings"].get("cookie_id")["value"]
    [digest] = [r["token_sha256"] for r in db["sessions"].rows_where("name = 'root'")]
    for forged in (digest, f"sha256:{digest}"):
        assert httpx.get(f"{url}/config", cookies={cookie: forged}).status_code == 401


def test_logging_out_works_with_expired_sessions_on_record(restartable):
    cfg = restartable()
    url = f"http://127.0.0.1:{cfg.port}"
    db = open_db(cfg.db_path)
    db["sessions"].insert({"token_sha256": "0" * 64, "name": "bob", "created_at": "2020-01-01T00:00:00.000+00:00"})
    with httpx.Client(base_url=url) as browser:
        assert browser.post("/login", data={"username": "alice", "password": "alice-pw"}).status_code == 200
        copied = dict(browser.cookies)
        assert browser.get("/logout").status_code in (200, 302, 307)
    assert httpx.get(f"{url}/config", cookies=copied).status_code == 401
