import random
import time

import pytest

from app.pair_queue import PairQueue, QueueConfig
from policy.sampling import SamplingConfig
from storage import queries
from storage.db import open_db

FAST = SamplingConfig(max_new_tokens=8)


@pytest.fixture
def db_path(tmp_path):
    path = tmp_path / "q.db"
    db = open_db(path)
    queries.ensure_base_version(db, "tiny")
    queries.add_prompts(db, [{"text": f"Question number {i}?"} for i in range(10)], source="t")
    return path


def wait_for(condition, seconds=60):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_queue_fills_ahead_and_serves_from_stock(db_path, registry):
    queue = PairQueue(db_path, registry, QueueConfig(ready=3, batch=2, sampling=FAST),
                      random.Random(0)).start()
    try:
        db = open_db(db_path)
        wait_for(lambda: queries.ready_pair_count(db, 0) >= 3)
        pair = queue.next_pair("alice")
        assert pair["version_id"] == 0 and pair["a"] != pair["b"]
        assert db.execute("SELECT count(*) FROM shows").fetchone()[0] == 1
        wait_for(lambda: queries.ready_pair_count(db, 0) >= 3)  # topped up after the claim
        row = db["pairs"].get(pair["pair_id"])
        assert row["seed"] is not None and '"temperature": 0.8' in row["sampling"]
    finally:
        queue.stop()


def test_unshown_pairs_survive_a_restart(db_path, registry):
    first = PairQueue(db_path, registry, QueueConfig(ready=2, sampling=FAST)).start()
    db = open_db(db_path)
    wait_for(lambda: queries.ready_pair_count(db, 0) >= 2)
    first.stop()
    stocked = {r["id"] for r in db.query("SELECT id FROM pairs")}
    second = PairQueue(db_path, registry, QueueConfig(ready=0, sampling=FAST))  # no background
    served = {second.next_pair("alice")["pair_id"], second.next_pair("bob")["pair_id"]}
    assert served == stocked


def test_empty_stock_generates_on_demand_and_never_repeats(db_path, registry):
    queue = PairQueue(db_path, registry, QueueConfig(ready=0, sampling=FAST))
    seen = [queue.next_pair("alice")["pair_id"] for _ in range(4)]
    assert len(set(seen)) == 4


def test_no_prompts_is_a_clear_error(tmp_path, registry):
    db = open_db(tmp_path / "empty.db")
    queries.ensure_base_version(db, "tiny")
    queue = PairQueue(tmp_path / "empty.db", registry, QueueConfig(ready=0, sampling=FAST))
    with pytest.raises(LookupError, match="no prompts"):
        queue.next_pair("alice")
