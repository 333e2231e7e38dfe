"""The admin endpoints: only admins act; promotion hot-swaps the running app; rollback undoes it;
a launched round runs as its own process and reports back through the database."""
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.admin import Admin, status_line
from storage import queries, rounds
from storage.db import open_db

from .conftest import api_client, random_adapter, wait_for



def test_annotators_cannot_promote_roll_back_or_launch(live_app):
    bob = api_client(live_app, "bob")
    for args, api in (((0,), "/promote"), ((), "/rollback"), (("dpo",), "/launch_round")):
        with pytest.raises(Exception, match="only admin accounts"):
            bob.predict(*args, api_name=api)
    assert len(rounds.promotions(open_db(live_app.db_path))) == 1


def test_promotion_reaches_the_running_app_and_rollback_returns(live_app, tmp_path):
    db = open_db(live_app.db_path)
    v1 = rounds.add_version(db, parent_id=0, adapter_path=str(random_adapter(tmp_path / "v1")), algo="dpo")
    root, alice = api_client(live_app, "root"), api_client(live_app, "alice")
    assert root.predict(v1, api_name="/promote") == v1
    wait_for(lambda: queries.ready_pair_count(db, 0) == 0)  # dropped once v1 has stock
    pair_id, *_ = alice.predict(api_name="/next_pair")
    assert db["pairs"].get(pair_id)["version_id"] == v1  # the live version answers, no restart
    alice.predict(pair_id, "tie", None, None, "", api_name="/vote")
    assert root.predict(api_name="/rollback") == 0
    wait_for(lambda: queries.ready_pair_count(db, 0) > 0)
    pair_id, *_ = alice.predict(api_name="/next_pair")
    assert db["pairs"].get(pair_id)["version_id"] == 0
    with pytest.raises(Exception, match="no policy version 999"):
        root.predict(999, api_name="/promote")


def test_a_launched_round_runs_apart_and_its_failure_is_reported(live_app):
    """Two launches at once (a double click, two admins): one starts, the other is told at once."""
    db = open_db(live_app.db_path)
    live = queries.live_version_id(db)
    root = api_client(live_app, "root")

    def launch(_):
        try:
            return root.predict("dpo", api_name="/launch_round")
        except Exception as e:
            return str(e)
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(launch, range(2)))
    [pid] = [a for a in answers if isinstance(a, int)]
    [busy] = [a for a in answers if isinstance(a, str)]
    assert pid > 0 and "already starting or running" in busy
    deadline = time.monotonic() + 120
    while not (db["rounds"].count and rounds.list_rounds(db, 1)[0]["status"] == "failed"):
        assert time.monotonic() < deadline, "the round never reported back"
        time.sleep(0.5)
    # this app's few votes are not enough: the round says so and changes nothing
    assert "collect more judgements" in rounds.list_rounds(db, 1)[0]["error"]
    assert queries.live_version_id(db) == live


def test_the_status_line_shows_a_killed_round_failed_and_a_live_one_running(db, tmp_path):
    queries.ensure_base_version(db, "tiny")
    admin = Admin(tmp_path, tmp_path / "test.db")
    round_id = rounds.start_round(db, "dpo", {}, pid=111)
    with rounds.round_lock(tmp_path):  # the round's process holds the lock while it lives
        assert "running" in status_line(admin.latest_round(), alive=True)
    assert rounds.get_round(db, round_id)["status"] == "running"
    line = status_line(admin.latest_round(), alive=False)  # the lock is gone: the process was killed
    assert "failed" in line and rounds.get_round(db, round_id)["status"] == "failed"


def test_a_round_that_ended_before_its_gate_decided_does_not_say_deciding_forever(db, tmp_path):
    queries.ensure_base_version(db, "tiny")
    admin = Admin(tmp_path, tmp_path / "test.db")
    round_id = rounds.start_round(db, "dpo", {}, pid=111)
    version = rounds.add_version(db, parent_id=0, adapter_path="x", algo="dpo", round_id=round_id)
    rounds.finish_round(db, round_id, version)  # registered; the gate has not decided yet
    assert "deciding whether to promote it" in status_line(admin.latest_round(), alive=True)
    line = status_line(admin.latest_round(), alive=False)
    assert "ended before the gate decided" in line and f"version {version} is a candidate" in line
    rounds.set_round_decision(db, round_id, "kept as a candidate: win-rate 0.28")
    assert "**Version 1 was not promoted**: kept as a candidate: win-rate 0.28" in status_line(
        admin.latest_round(), alive=False)
