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
    queries.set_assignment(db, k=3)
    team = ["alice", "bob", "carol", "dave", "erin", "fred"]
    for name in team:
        judge(db, name, "0")
    assert queries.ready_pair_count(db, 0) == 0
    assert show(db, "gail") is None  # both pairs have their 3 judgements
    by_pair = {p: [r[0] for r in db.execute("SELECT annotator FROM votes WHERE pair_id = ?", [p])] for p in pairs}
    assert all(len(names) == len(set(names)) == 3 for names in by_pair.values()), by_pair


def test_a_pair_is_never_shown_twice_to_one_annotator(db):
    first = add_pair(db, prompt="p0")
    queries.set_assignment(db, k=3)
    judge(db, "alice", "0")
    assert show(db, "alice") is None  # the pair still needs two judgements, but not alice's
    assert show(db, "bob")["pair_id"] == first
    add_pair(db, prompt="p1")
    assert show(db, "alice")["pair_id"] != first


def test_claims_hold_places_so_no_more_than_k_annotators_race_for_a_pair(db):
    first, second = add_pair(db, prompt="p0"), add_pair(db, prompt="p1")
    queries.set_assignment(db, k=2)
    assert show(db, "alice")["pair_id"] == first
    assert show(db, "bob")["pair_id"] == first
    assert show(db, "carol")["pair_id"] == second  # the first pair's two places are taken


def test_live_claims_keep_their_places_against_a_lapsed_claimer(db):
    pair = add_pair(db)
    queries.set_assignment(db, k=2)
    show(db, "alice")
    db.execute("UPDATE shows SET shown_at = '2000-01-01T00:00:00.000+00:00' WHERE annotator = 'alice'")  # walked away
    show(db, "bob")
    show(db, "carol")  # alice's place went back to the stock and carol took it
    with pytest.raises(queries.VoteError, match="holds it now"):
        queries.record_vote(db, "alice", pair, "a")  # back from lunch: both places are taken
    queries.record_vote(db, "bob", pair, "b")
    queries.record_vote(db, "carol", pair, "b")
    assert sorted(v["annotator"] for v in db["votes"].rows) == ["bob", "carol"]


def test_a_lapsed_claimer_votes_while_the_pair_has_room(db):
    pair = add_pair(db)
    queries.set_assignment(db, k=2)
    show(db, "alice")
    db.execute("UPDATE shows SET shown_at = '2000-01-01T00:00:00.000+00:00' WHERE annotator = 'alice'")
    show(db, "bob")
    queries.record_vote(db, "alice", pair, "a")  # bob holds one place, the other was still free
    queries.record_vote(db, "bob", pair, "a")
    assert db["votes"].count == 2 and show(db, "carol") is None


def test_a_vote_beyond_the_overlap_from_a_lapsed_claim_is_refused(db):
    pair = add_pair(db)
    queries.set_assignment(db, k=2)
    show(db, "alice")
    db.execute("UPDATE shows SET shown_at = '2000-01-01T00:00:00.000+00:00' WHERE annotator = 'alice'")  # walked away
    judge(db, "bob", "0")
    judge(db, "carol", "1")
    with pytest.raises(queries.VoteError, match="someone else judged it"):
        queries.record_vote(db, "alice", pair, "a")
    assert db["votes"].count == 2


def test_skips_do_not_count_as_judgements_until_k_annotators_skip(db):
    pair = add_pair(db)
    queries.set_assignment(db, k=2)
    queries.skip_pair(db, "alice", show(db, "alice")["pair_id"])
    assert show(db, "bob")["pair_id"] == pair  # one skip: still needs its judgements
    queries.skip_pair(db, "bob", pair)
    assert queries.ready_pair_count(db, 0) == 0 and show(db, "carol") is None


def test_overlap_and_gold_rate_are_checked(db):
    for bad in (0, 11, 2.5, "two", True):
        with pytest.raises(InputError):
            queries.set_assignment(db, k=bad)
    for bad in (-0.1, 0.9, float("nan"), "x"):
        with pytest.raises(InputError):
            queries.set_assignment(db, rate=bad)
    assert queries.overlap(db) == 1 and queries.gold_rate(db) == 0


def judged_through_the_queue(tmp_path, registry, names: list[str], turns: int, **queue_cfg):
    """With an overlap of 3 and a running queue, each of `names` in turn asks for a pair and
    judges it, `turns` times; returns the database and the (name, pair id) judged before 60 s."""
    db_path = tmp_path / "q.db"
    db = open_db(db_path)
    queries.ensure_base_version(db, "tiny")
    queries.add_prompts(db, [{"text": f"Prompt {i}"} for i in range(8)], source="t")
    queries.set_assignment(db, k=3)
    queue = PairQueue(db_path, registry, QueueConfig(batch=2, sampling=SamplingConfig(max_new_tokens=4),
                                                     **queue_cfg), random.Random(0)).start()
    judged = []

    def work():
        for _ in range(turns):
            for name in names:
                pair = queue.next_pair(name)
                queries.record_vote(open_db(db_path), name, pair["pair_id"], "a")
                judged.append((name, pair["pair_id"]))
    try:
        team = threading.Thread(target=work, daemon=True)
        team.start()
        team.join(timeout=60)
    finally:
        queue.stop()
    return db, judged


def test_the_queue_makes_new_pairs_for_an_annotator_who_has_seen_all_the_stock(tmp_path, registry):
    db, judged = judged_through_the_queue(tmp_path, registry, ["alice"], 4, min_ready=2, max_ready=8)
    seen = [pair for _, pair in judged]
    assert len(set(seen)) == 4, f"alice waited for a pair she had not seen; she got {seen}"
    assert show(db, "bob")["pair_id"] == seen[0]  # her pairs wait for two more annotators each


def test_with_fewer_annotators_than_the_overlap_nobody_waits_beyond_max_ready(tmp_path, registry):
    """Two annotators, overlap 3: no pair is ever finished, yet neither is ever without a pair,
    even once more unfinished pairs exist than `max_ready`."""
    _, judged = judged_through_the_queue(tmp_path, registry, ["alice", "bob"], 5, min_ready=1, max_ready=2)
    assert len(judged) == 10, f"stalled after {len(judged)} judgements"
