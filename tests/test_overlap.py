"""Overlap: each pair goes to k different annotators, then leaves the stock."""
import random
import threading

import pytest

from app.pair_queue import PairQueue, QueueConfig
from policy.sampling import SamplingConfig
from storage import queries
from storage.db import open_db
from storage.inputs import InputError

from .conftest import add_pair, judge, show


def test_with_an_overlap_of_3_each_pair_reaches_3_distinct_annotators_then_leaves_the_stock(db):
    pairs = [add_pair(db, prompt=f"p{i}") for i in range(2)]
    queries.set_overlap(db, 3)
    team = ["alice", "bob", "carol", "dave", "erin", "fred"]
    for name in team:
        judge(db, name, "0")
    assert queries.ready_pair_count(db, 0) == 0
    assert show(db, "gail") is None  # both pairs have their 3 judgements
    by_pair = {p: [r[0] for r in db.execute("SELECT annotator FROM votes WHERE pair_id = ?", [p])] for p in pairs}
    assert all(len(names) == len(set(names)) == 3 for names in by_pair.values()), by_pair


def test_a_pair_is_never_shown_twice_to_one_annotator(db):
    first = add_pair(db, prompt="p0")
    queries.set_overlap(db, 3)
    judge(db, "alice", "0")
    assert show(db, "alice") is None  # the pair still needs two judgements, but not alice's
    assert queries.ready_pair_count(db, 0) == 1
    add_pair(db, prompt="p1")
    assert show(db, "alice")["pair_id"] != first


def test_claims_hold_places_so_no_more_than_k_annotators_race_for_a_pair(db):
    first, second = add_pair(db, prompt="p0"), add_pair(db, prompt="p1")
    queries.set_overlap(db, 2)
    assert show(db, "alice")["pair_id"] == first
    assert show(db, "bob")["pair_id"] == first
    assert show(db, "carol")["pair_id"] == second  # the first pair's two places are taken


def test_a_vote_beyond_the_overlap_from_a_lapsed_claim_is_refused(db):
    pair = add_pair(db)
    queries.set_overlap(db, 2)
    show(db, "alice")
    db.execute("UPDATE shows SET shown_at = '2000-01-01' WHERE annotator = 'alice'")  # walked away
    judge(db, "bob", "0")
    judge(db, "carol", "1")
    with pytest.raises(queries.VoteError, match="someone else judged it"):
        queries.record_vote(db, "alice", pair, "a")
    assert db["votes"].count == 2


def test_skips_do_not_count_as_judgements_until_k_annotators_skip(db):
    pair = add_pair(db)
    queries.set_overlap(db, 2)
    queries.skip_pair(db, "alice", show(db, "alice")["pair_id"])
    assert show(db, "bob")["pair_id"] == pair  # one skip: still needs its judgements
    queries.skip_pair(db, "bob", pair)
    assert queries.ready_pair_count(db, 0) == 0 and show(db, "carol") is None


def test_overlap_and_gold_rate_are_checked(db):
    for bad in (0, 11, 2.5, "two", True):
        with pytest.raises(InputError):
            queries.set_overlap(db, bad)
    for bad in (-0.1, 0.9, float("nan"), "x"):
        with pytest.raises(InputError):
            queries.set_gold_rate(db, bad)
    assert queries.overlap(db) == 1 and queries.gold_rate(db) == 0


def test_the_queue_makes_new_pairs_for_an_annotator_who_has_seen_all_the_stock(tmp_path, registry):
    db_path = tmp_path / "q.db"
    db = open_db(db_path)
    queries.ensure_base_version(db, "tiny")
    queries.add_prompts(db, [{"text": f"Prompt {i}"} for i in range(6)], source="t")
    queries.set_overlap(db, 3)
    queue = PairQueue(db_path, registry, QueueConfig(min_ready=2, max_ready=8, batch=2,
                                                     sampling=SamplingConfig(max_new_tokens=4)),
                      random.Random(0)).start()
    try:
        seen = []

        def judge_four():  # more pairs than the stock holds, all judged by alice alone
            for _ in range(4):
                pair = queue.next_pair("alice")
                queries.record_vote(open_db(db_path), "alice", pair["pair_id"], "a")
                seen.append(pair["pair_id"])
        alice = threading.Thread(target=judge_four, daemon=True)
        alice.start()
        alice.join(timeout=60)
        assert len(set(seen)) == 4, f"alice waited for a pair she had not seen; she got {seen}"
        assert queries.ready_pair_count(db, 0) >= 4  # her pairs wait for two more annotators each
    finally:
        queue.stop()
