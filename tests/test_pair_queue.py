import random
import threading
import time

import pytest

from app.pair_queue import PairQueue, QueueConfig
from policy.sampling import Cancelled, SamplingConfig
from storage import queries
from storage.db import open_db

from .conftest import wait_for

FAST = SamplingConfig(max_new_tokens=8)


@pytest.fixture
def db_path(tmp_path):
    path = tmp_path / "q.db"
    db = open_db(path)
    queries.ensure_base_version(db, "tiny")
    queries.add_prompts(db, [{"text": f"Question number {i}?"} for i in range(10)], source="t")
    return path


def test_queue_fills_ahead_and_serves_from_stock(db_path, registry):
    queue = PairQueue(db_path, registry, QueueConfig(min_ready=3, batch=2, sampling=FAST),
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


def test_stock_follows_the_annotators_active_lately(db_path, registry):
    queue = PairQueue(db_path, registry, QueueConfig(min_ready=1, per_annotator=2, max_ready=7,
                                                     sampling=FAST))
    db = open_db(db_path)
    assert queue.target_stock(db) == 1
    for name in ("alice", "bob", "carol"):
        queue.next_pair(name)
    assert queue.target_stock(db) == 6
    queue.next_pair("dave")
    assert queue.target_stock(db) == 7  # the cap


def test_annotators_waiting_on_an_empty_stock_share_one_batch(db_path, registry, monkeypatch):
    calls = []
    sample = registry.sample_pairs
    monkeypatch.setattr(registry, "sample_pairs", lambda v, prompts, *a: calls.append(len(prompts)) or sample(v, prompts, *a))
    queue = PairQueue(db_path, registry, QueueConfig(min_ready=0, per_annotator=0, batch=4,
                                                     sampling=FAST), random.Random(0)).start()
    served = []
    threads = [threading.Thread(target=lambda n=n: served.append(queue.next_pair(n)["pair_id"]))
               for n in ("alice", "bob", "carol", "dave")]
    try:
        with registry._lock:  # the model is busy while all four arrive
            for t in threads:
                t.start()
            time.sleep(0.5)
        for t in threads:
            t.join(timeout=60)
    finally:
        queue.stop()
    assert len(set(served)) == 4
    # The refill had begun a batch for the first to arrive; everyone else shared the next one.
    assert len(calls) <= 2, calls


def test_a_reloaded_page_shows_the_same_pair_the_same_way_round(db_path, registry):
    queue = PairQueue(db_path, registry, QueueConfig(sampling=FAST), random.Random(0))
    first = queue.next_pair("alice")
    assert queue.next_pair("alice") == first
    queries.skip_pair(open_db(db_path), "alice", first["pair_id"])
    assert queue.next_pair("alice")["pair_id"] != first["pair_id"]


def walk_away(db, annotator: str) -> None:
    """Make this annotator's claims older than the queue's claim time."""
    db.execute("UPDATE shows SET shown_at = '2000-01-01T00:00:00.000+00:00' WHERE annotator = ?", [annotator])
    db.conn.commit()


def test_an_abandoned_claim_goes_back_to_the_stock(db_path, registry):
    queue = PairQueue(db_path, registry, QueueConfig(sampling=FAST), random.Random(0))
    db = open_db(db_path)
    walked_away = queue.next_pair("alice")["pair_id"]
    assert queries.ready_pair_count(db, 0) == 0
    walk_away(db, "alice")
    assert queries.ready_pair_count(db, 0) == 1
    assert queue.next_pair("bob")["pair_id"] == walked_away
    queries.record_vote(db, "bob", walked_away, "a")
    with pytest.raises(queries.VoteError, match="someone else judged it"):
        queries.record_vote(db, "alice", walked_away, "b")
    assert db.execute("SELECT annotator FROM votes").fetchall() == [("bob",)]


def test_coming_back_to_an_abandoned_claim_renews_it(db_path, registry):
    queue = PairQueue(db_path, registry, QueueConfig(sampling=FAST), random.Random(0))
    db = open_db(db_path)
    first = queue.next_pair("alice")
    walk_away(db, "alice")
    assert queue.next_pair("alice") == first  # the reload, after lunch
    assert queue.next_pair("bob")["pair_id"] != first["pair_id"]


def test_a_waiting_annotator_gets_the_refills_error_instead_of_waiting_forever(tmp_path, registry):
    db = open_db(tmp_path / "empty.db")
    queries.ensure_base_version(db, "tiny")
    queue = PairQueue(tmp_path / "empty.db", registry, QueueConfig(idle_seconds=0.1, sampling=FAST)).start()
    try:
        with pytest.raises(LookupError, match="no prompts to annotate"):
            queue.next_pair("alice")
    finally:
        queue.stop()


def test_a_batch_for_a_retired_version_is_abandoned_and_keeps_nothing(db_path, registry):
    queue = PairQueue(db_path, registry, QueueConfig(sampling=FAST), random.Random(0))
    retired = threading.Event()
    retired.set()
    with pytest.raises(Cancelled):
        queue.generate(0, 4, retired)
    assert open_db(db_path).execute("SELECT count(*) FROM pairs").fetchone()[0] == 0


def test_unshown_pairs_survive_a_restart(db_path, registry):
    first = PairQueue(db_path, registry, QueueConfig(min_ready=2, batch=2, sampling=FAST)).start()
    db = open_db(db_path)
    wait_for(lambda: queries.ready_pair_count(db, 0) >= 2)
    first.stop()
    stocked = {r["id"] for r in db.query("SELECT id FROM pairs")}
    second = PairQueue(db_path, registry, QueueConfig(sampling=FAST))  # no background
    served = {second.next_pair("alice")["pair_id"], second.next_pair("bob")["pair_id"]}
    assert served == stocked


def test_empty_stock_generates_on_demand_and_never_repeats(db_path, registry):
    queue = PairQueue(db_path, registry, QueueConfig(sampling=FAST))
    db = open_db(db_path)
    seen = []
    for _ in range(4):
        seen.append(queue.next_pair("alice")["pair_id"])
        queries.record_vote(db, "alice", seen[-1], "tie")
    assert len(set(seen)) == 4


def test_no_prompts_is_a_clear_error(tmp_path, registry):
    db = open_db(tmp_path / "empty.db")
    queries.ensure_base_version(db, "tiny")
    queue = PairQueue(tmp_path / "empty.db", registry, QueueConfig(sampling=FAST))
    with pytest.raises(LookupError, match="no prompts"):
        queue.next_pair("alice")
