"""Agreement (Krippendorff's alpha) and each annotator's quality figures."""
import pytest

from storage import agreement, queries

from .conftest import add_pair, judge, show


def test_alpha_matches_a_hand_computed_table():
    # Coincidences: pair 2 gives 4 ordered disagreeing value pairs at 1/(3-1) each, pair 3 two at
    # 1/(2-1): 4 in all. Values: five "0", three "1", two "tie", n = 10.
    # alpha = 1 - (n - 1) * 4 / (n^2 - (25 + 9 + 4)) = 1 - 36/62 = 13/31.
    units = {1: ["0", "0", "0"], 2: ["1", "1", "0"], 3: ["0", "1"], 4: ["tie", "tie"], 5: ["both_bad"]}
    assert agreement.alpha(units) == pytest.approx(13 / 31)


def test_alpha_is_one_for_full_agreement_and_undefined_without_overlap():
    assert agreement.alpha({1: ["0", "0"], 2: ["1", "1"]}) == pytest.approx(1.0)
    assert agreement.alpha({1: ["0"], 2: ["1"]}) is None  # nobody judged a pair twice
    assert agreement.alpha({1: ["0", "0"], 2: ["0", "0"]}) is None  # one verdict throughout


def test_gold_accuracy_counts_right_and_wrong(db):
    gold = [add_pair(db, prompt=f"g{i}") for i in range(3)]
    for pair, expected in zip(gold, ["0", "1", "tie"]):  # the lead's own verdicts, then made gold
        show(db, "lead")
        queries.record_vote(db, "lead", pair, "a")
        queries.mark_gold(db, pair, expected, by="lead")
    queries.set_assignment(db, rate=0.5)
    # alice gives every gold pair its expected verdict; bob always says the second answer is
    # better, which is right on one of the three.
    for name in ("alice", "bob"):
        for _ in gold:
            shown = queries.show_next_pair(db, name, 0, _AlwaysGold())
            assert shown["pair_id"] in gold
            order = db.execute("SELECT shown_order FROM shows WHERE pair_id = ? AND annotator = ?",
                               [shown["pair_id"], name]).fetchone()[0]
            expected = db.execute("SELECT expected FROM gold_pairs WHERE pair_id = ?", [shown["pair_id"]]).fetchone()[0]
            verdict = expected if name == "alice" else "1"
            queries.record_vote(db, name, shown["pair_id"], {order[0]: "a", order[1]: "b"}.get(verdict, verdict))
    figures = {r["annotator"]: r for r in agreement.quality(db)["annotators"]}
    assert (figures["alice"]["gold_votes"], figures["alice"]["gold_accuracy"]) == (3, 1.0)
    assert (figures["bob"]["gold_votes"], figures["bob"]["gold_accuracy"]) == (3, pytest.approx(0.333))


class _AlwaysGold:
    """An rng whose draws always fall under the gold rate; sides still alternate."""
    def __init__(self):
        self.n = 0

    def random(self):
        return 0.0

    def choice(self, options):
        self.n += 1
        return options[self.n % 2]


def test_per_annotator_figures(db):
    for i in range(5):
        add_pair(db, prompt=f"p{i}")
    queries.set_assignment(db, k=3)
    # Pairs 1-3: alice and bob agree; carol goes against them on the first two.
    for name, verdicts in (("alice", ["0", "1", "0"]), ("bob", ["0", "1", "0"]), ("carol", ["1", "0", "0"])):
        for v in verdicts:
            judge(db, name, v)
    queries.skip_pair(db, "dave", show(db, "dave")["pair_id"])
    judge(db, "dave", "tie")
    q = agreement.quality(db)
    rows = {r["annotator"]: r for r in q["annotators"]}
    # Each is compared with the others' majority: on pairs 1-2 alice's others split (bob with
    # her, carol against), so only pair 3 counts for her; carol's others agree on all three.
    assert rows["alice"]["majority_agreement"] == 1.0 and rows["alice"]["overlapped"] == 1
    assert rows["carol"]["majority_agreement"] == pytest.approx(0.333) and rows["carol"]["overlapped"] == 3
    assert rows["dave"]["skips"] == 1 and rows["dave"]["tie_or_both_bad"] == 1.0
    assert rows["dave"]["majority_agreement"] is None  # the pair he judged had no other judgement
    alice = list(db.query("SELECT choice FROM votes WHERE annotator = 'alice'"))
    assert rows["alice"]["left_picks"] == pytest.approx(round(sum(v["choice"] == "a" for v in alice) / 3, 3))
    assert rows["alice"]["median_seconds"] >= 0
    units = {1: ["0", "0", "1"], 2: ["1", "1", "0"], 3: ["0", "0", "0"]}  # the three overlapped pairs
    assert q["agreement"]["overlapped_pairs"] == 3
    assert q["agreement"]["alpha"] == pytest.approx(round(agreement.alpha(units), 3)) and q["agreement"]["alpha"] < 1
    assert set(q["by_version"]) == {"0"}


def test_with_two_annotators_per_pair_disagreement_shows(db):
    for i in range(4):
        add_pair(db, prompt=f"p{i}")
    queries.set_assignment(db, k=2)
    for name, verdicts in (("alice", ["0", "1", "0", "1"]), ("bob", ["0", "1", "1", "0"])):
        for v in verdicts:
            judge(db, name, v)
    rows = {r["annotator"]: r for r in agreement.quality(db)["annotators"]}
    assert rows["alice"]["majority_agreement"] == rows["bob"]["majority_agreement"] == 0.5
