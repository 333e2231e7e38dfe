"""How judgements become training rows: every vote, majority, agreement-weighted; gold votes
and low-accuracy annotators left out. (tests/test_round.py checks that a round records it.)"""
import pytest

from storage import exports, queries
from storage.aggregation import Aggregation, training_rows

from .conftest import add_pair, judge, show


def three_annotators(db, verdicts: dict[str, list[str]]):
    """Pairs p0.. judged by each annotator in turn with an overlap of 3."""
    for i in range(len(next(iter(verdicts.values())))):
        add_pair(db, prompt=f"p{i}", completions=(f"first {i}", f"second {i}"))
    queries.set_assignment(db, k=3)
    for name, theirs in verdicts.items():
        for v in theirs:
            judge(db, name, v)


def test_every_vote_is_a_row_by_default(db):
    three_annotators(db, {"alice": ["0", "0", "tie"], "bob": ["0", "1", "tie"], "carol": ["1", "1", "0"]})
    made = training_rows(db)
    assert len(made.rows) == 7 and made.summary["dropped"] == {"no_preference": 2}


def test_majority_keeps_the_majority_verdict_and_drops_even_splits(db):
    three_annotators(db, {"alice": ["0", "0", "tie", "0"], "bob": ["0", "1", "tie", "1"],
                          "carol": ["1", "1", "0", "both_bad"]})
    made = training_rows(db, Aggregation("majority"))
    assert [(r["chosen"], r["rejected"]) for r in made.rows] == [("first 0", "second 0"), ("second 1", "first 1")]
    assert made.summary["dropped"] == {"outvoted": 2, "no_preference": 3, "split_pairs": 1, "split": 3}
    assert len(made.vote_ids) == 4  # the judgements behind the two rows; the outvoted trained nothing
    assert all(r["weight"] == 1.0 for r in made.rows)
    weighted = training_rows(db, Aggregation("weighted"))
    assert [r["weight"] for r in weighted.rows] == [pytest.approx(2 / 3)] * 2


def test_gold_votes_never_become_training_rows(db):
    three_annotators(db, {"alice": ["0", "1"], "bob": ["0", "1"]})
    gold_pair = db.execute("SELECT min(id) FROM pairs").fetchone()[0]
    queries.mark_gold(db, gold_pair, "0", by="lead")
    for agg in (Aggregation(), Aggregation("majority")):
        made = training_rows(db, agg)
        assert all(r["pair_id"] != gold_pair for r in made.rows)
        assert made.summary["dropped"]["gold"] == 2
    other = db.execute("SELECT max(id) FROM pairs").fetchone()[0]
    assert [r["pair_id"] for r in exports.trl_rows(db)] == [other, other]  # both votes on the other pair


def test_annotators_below_the_gold_accuracy_threshold_are_left_out(db):
    gold = [add_pair(db, prompt=f"g{i}") for i in range(3)]
    for pair in gold:
        show(db, "lead")
        queries.record_vote(db, "lead", pair, "a")
        order = db.execute("SELECT shown_order FROM shows WHERE pair_id = ?", [pair]).fetchone()[0]
        queries.mark_gold(db, pair, order[0], by="lead")  # the lead's choice is the gold verdict
    queries.set_assignment(db, k=2)
    for name, right in (("alice", True), ("bob", False)):
        for pair in gold:  # the gold pairs are shown like any other
            db["shows"].insert({"pair_id": pair, "annotator": name, "shown_order": "01",
                                "shown_at": queries.now()})
            expected = db.execute("SELECT expected FROM gold_pairs WHERE pair_id = ?", [pair]).fetchone()[0]
            queries.record_vote(db, name, pair, "a" if (expected == "0") == right else "b")
    add_pair(db, prompt="ordinary")
    judge(db, "alice", "0")
    judge(db, "bob", "1")
    kept = training_rows(db, Aggregation(min_gold_accuracy=0.7))
    assert [r["annotator"] for r in kept.rows] == ["alice"]
    assert kept.summary["excluded_annotators"] == ["bob"] and kept.summary["dropped"]["low_gold_accuracy"] == 1
    assert len(training_rows(db).rows) == 2  # no threshold: both


def test_pairs_still_collecting_judgements_wait_for_the_next_round(db):
    three_annotators(db, {"alice": ["0", "1"], "bob": ["0"], "carol": ["0"]})  # pair 2: one of three
    made = training_rows(db, Aggregation("majority"))
    assert [r["chosen"] for r in made.rows] == ["first 0"]
    assert made.summary["dropped"]["incomplete"] == 1
    assert len(training_rows(db).rows) == 4  # every vote counts at once under `every`


def test_rows_come_in_time_order_and_the_newest_judgement_considered_is_kept(db):
    three_annotators(db, {"alice": ["0", "1"]})
    first, second = (r["id"] for r in db.query("SELECT id FROM pairs ORDER BY id"))
    show(db, "bob")
    queries.record_vote(db, "bob", first, "a", correction="A fixed first answer.")  # a late correction
    queries.mark_gold(db, second, "1", by="lead")
    made = training_rows(db)
    assert [r["vote_id"] for r in made.rows] == sorted(r["vote_id"] for r in made.rows)
    assert made.last_vote_id == max(v["id"] for v in db["votes"].rows)  # a gold vote, trained on or not
