"""The named endpoints, driven by gradio_client against a live server on the tiny model."""
import json
import re
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from gradio_client import Client

from storage.db import open_db


@pytest.fixture(scope="module")
def alice(live_app):
    return Client(f"http://127.0.0.1:{live_app.port}", auth=("alice", "alice-pw"), verbose=False)


def test_login_is_required(live_app):
    with pytest.raises(Exception):
        Client(f"http://127.0.0.1:{live_app.port}", auth=("alice", "wrong"), verbose=False)


def test_next_pair_then_vote_lands_in_the_database(live_app, alice):
    pair_id, prompt, a, b = alice.predict(api_name="/next_pair")
    assert prompt and a and b and a != b
    vote_id = alice.predict(pair_id, "a", 8, 4, "A is on topic", api_name="/vote")
    row = open_db(live_app.db_path)["votes"].get(vote_id)
    assert (row["pair_id"], row["annotator"], row["choice"]) == (pair_id, "alice", "a")
    assert (row["score_a"], row["score_b"], row["rationale"]) == (8, 4, "A is on topic")


def test_double_click_stores_one_vote(live_app, alice):
    pair_id, *_ = alice.predict(api_name="/next_pair")
    first = alice.predict(pair_id, "tie", None, None, "", api_name="/vote")
    second = alice.predict(pair_id, "tie", None, None, "", api_name="/vote")
    assert first == second
    db = open_db(live_app.db_path)
    assert db.execute("SELECT count(*) FROM votes WHERE pair_id = ?", [pair_id]).fetchone()[0] == 1


@pytest.mark.parametrize("choice, score_a, message", [
    ("maybe", None, "choice must be one of"), ("a", 0, "score A must be"), ("a", 11, "score A must be")])
def test_bad_votes_get_a_clear_error(live_app, alice, choice, score_a, message):
    pair_id, *_ = alice.predict(api_name="/next_pair")
    with pytest.raises(Exception, match=message):
        alice.predict(pair_id, choice, score_a, None, "", api_name="/vote")
    db = open_db(live_app.db_path)
    assert db.execute("SELECT count(*) FROM votes WHERE pair_id = ?", [pair_id]).fetchone()[0] == 0


def test_another_annotators_pair_and_unknown_pairs_are_refused(live_app, alice):
    bob = Client(f"http://127.0.0.1:{live_app.port}", auth=("bob", "bob-pw"), verbose=False)
    pair_id, *_ = alice.predict(api_name="/next_pair")
    with pytest.raises(Exception, match="not shown to you"):
        bob.predict(pair_id, "a", None, None, "", api_name="/vote")
    with pytest.raises(Exception, match="unknown pair"):
        bob.predict(10**6, "a", None, None, "", api_name="/vote")
    seen_by_bob = []
    for _ in range(3):
        seen_by_bob.append(bob.predict(api_name="/next_pair")[0])
        bob.predict(seen_by_bob[-1], "tie", None, None, "", api_name="/vote")
    assert pair_id not in seen_by_bob and len(set(seen_by_bob)) == 3


def test_the_same_pair_until_voted_or_skipped(live_app, alice):
    first = alice.predict(api_name="/next_pair")
    assert alice.predict(api_name="/next_pair") == first  # a reload shows it again, same sides
    alice.predict(first[0], api_name="/skip")
    assert alice.predict(api_name="/next_pair")[0] != first[0]


def test_fifty_logins_at_once_all_get_in(live_app, alice):
    url = f"http://127.0.0.1:{live_app.port}/login"

    def log_in(i):
        return httpx.post(url, data={"username": f"crowd-{i}", "password": "crowd-pw"}, timeout=120).status_code

    with ThreadPoolExecutor(50) as pool:
        storm = pool.map(log_in, range(50))
        pair_id, *_ = alice.predict(api_name="/next_pair")
        vote_id = alice.predict(pair_id, "b", None, None, "", api_name="/vote")
        assert list(storm) == [200] * 50
    assert open_db(live_app.db_path)["votes"].get(vote_id)["pair_id"] == pair_id


def test_guessing_a_password_locks_the_account_with_a_clear_message(live_app):
    url = f"http://127.0.0.1:{live_app.port}/login"
    for _ in range(5):
        assert httpx.post(url, data={"username": "carol", "password": "guess"}).status_code == 400
    refused = httpx.post(url, data={"username": "carol", "password": "carol-pw"})
    assert refused.status_code == 429 and "try again in" in refused.json()["detail"]
    assert httpx.post(url, data={"username": "alice", "password": "alice-pw"}).status_code == 200


def embedded_api_info(page: str) -> dict:
    return json.loads(re.search(r"window\.gradio_api_info = (.*?);</script>", page).group(1))


def test_a_stranger_learns_nothing_of_the_api(live_app):
    url = f"http://127.0.0.1:{live_app.port}"
    for path in ("/", "/?__theme=dark", "/gradio_api/runs", "/gradio_api/runs/"):  # the login form
        page = httpx.get(url + path)
        assert page.status_code == 200
        assert embedded_api_info(page.text) == {"named_endpoints": {}, "unnamed_endpoints": {}}
        assert not any(name in page.text for name in ("next_pair", "launch_round", "promote", "save_account"))
    for path in ("/openapi.json", "/docs", "/redoc", "/config", "/gradio_api/info",
                 "/gradio_api/info?all_endpoints=true", "/gradio_api/openapi.json",
                 "/monitoring", "/monitoring/summary"):
        answer = httpx.get(url + path)
        assert answer.status_code in (401, 404), path
        assert "next_pair" not in answer.text and "/login" not in answer.text, path


def test_logged_in_the_page_describes_the_api_but_nobody_reads_the_traffic(live_app):
    url = f"http://127.0.0.1:{live_app.port}"
    for name in ("alice", "root"):
        with httpx.Client(base_url=url) as browser:
            assert browser.post("/login", data={"username": name, "password": f"{name}-pw"}).status_code == 200
            assert "/next_pair" in embedded_api_info(browser.get("/").text)["named_endpoints"]
            for path in ("/monitoring", "/monitoring/summary"):  # request counts per endpoint, admin ones too
                answer = browser.get(path)
                assert answer.status_code == 403 and "functions" not in answer.text, (name, path)
            assert browser.get("/openapi.json").status_code == 404
    with httpx.Client(base_url=url) as browser:  # once logged out, the old cookie shows nothing
        assert browser.post("/login", data={"username": "crowd-3", "password": "crowd-pw"}).status_code == 200
        assert "/next_pair" in embedded_api_info(browser.get("/").text)["named_endpoints"]
        kept = dict(browser.cookies.items())
        browser.get("/logout")
        browser.cookies.update(kept)
        assert embedded_api_info(browser.get("/").text) == {"named_endpoints": {}, "unnamed_endpoints": {}}
