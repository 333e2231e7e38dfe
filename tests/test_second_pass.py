"""The human second pass after the judges' first pass: route (a sure judge labels a pair, people
get the unsure ones first), review (people confirm or overturn a suggestion), and the blind
audit share that measures the judges in both."""
import random

import pytest

from storage import agreement, first_pass, inputs, queries
from storage.__main__ import main as storage_cli
from storage.db import open_db

from .conftest import add_pair, api_client, start_app


class Draws(random.Random):
    """Draws that are all `value`: 0.99 never falls within an audit share, 0.0 always does
    (the gold rate is 0 here, so no draw brings a gold pair)."""
    def __init__(self, value: float):
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def stocked(tmp_path, sureness: list[float | None]) -> tuple:
    """A database with one pair per entry, judged by the reward model that sure of answer 0
    (None: not judged)."""
    db = open_db(tmp_path / "prefloop.db")
    ids = [add_pair(db, prompt=f"Question {i}?", completions=(f"Answer {i} one", f"Answer {i} two"))
           for i in range(len(sureness))]
    first_pass.add_verdicts(db, "reward-model:round-1", {i: p for i, p in zip(ids, sureness) if p is not None})
    return db, ids


def vote_on_stored(db, annotator: str, shown: dict, verdict: str) -> int:
    """Vote so that the stored answer `verdict` wins, whichever side it was shown on."""
    order = db.execute("SELECT shown_order FROM shows WHERE pair_id = ? AND annotator = ?",
                       [shown["pair_id"], annotator]).fetchone()[0]
    return queries.record_vote(db, annotator, shown["pair_id"], "a" if order[0] == verdict else "b")


def test_route_gives_people_the_least_sure_pairs_first_and_keeps_the_sure_ones_for_the_judge(tmp_path):
    db, ids = stocked(tmp_path, [0.95, 0.6, None, 0.85, 0.7])  # two sure of at least 0.8
    assert queries.ready_pair_count(db, 0) == 5
    queries.set_second_pass(db, "route", audit_share=0.05, confidence=0.8)
    assert queries.ready_pair_count(db, 0) == 3  # the queue makes pairs for people, not for the judge

    rng = Draws(0.99)  # no audit
    served = [queries.show_next_pair(db, f"annotator-{n}", 0, rng) for n in range(3)]
    assert [s["pair_id"] for s in served] == [ids[1], ids[4], ids[2]]  # 0.6, then 0.7, then the unjudged one
    assert all(s["suggestion"] is None for s in served)
    # With no unsure pair left for them, people are given a sure one rather than made to wait.
    fourth = queries.show_next_pair(db, "annotator-0", 0, rng)
    assert fourth["pair_id"] in (ids[0], ids[3])
    assert [r["served"] for r in db.query("SELECT served FROM shows ORDER BY id")] == \
        ["uncertain"] * 3 + ["confident"]


def test_with_the_second_pass_off_pairs_are_served_as_before(tmp_path):
    """The same pairs in the same order, drawing from the queue's random numbers exactly what was
    drawn before there was a second pass: a gold draw and a side for each pair."""
    db, ids = stocked(tmp_path, [0.99, None, 0.6])
    rng, before = random.Random(4), random.Random(4)
    shown = [queries.show_next_pair(db, "alice", 0, rng) for _ in ids]
    sides = [(before.random(), before.choice(["01", "10"]))[1] for _ in ids]
    assert [s["pair_id"] for s in shown] == ids and rng.getstate() == before.getstate()
    assert [r["shown_order"] for r in db.query("SELECT shown_order FROM shows ORDER BY id")] == sides
    assert all(s["suggestion"] is None for s in shown)
    assert {r["served"] for r in db.query("SELECT served FROM shows")} == {None}


def test_audits_are_drawn_at_random_and_shown_blind_in_either_mode(tmp_path):
    db, ids = stocked(tmp_path, [0.95] * 40)
    queries.set_second_pass(db, "review", audit_share=0.5)
    shown = [queries.show_next_pair(db, "alice", 0, random.Random(i)) for i in range(40)]
    audits = [s for s, row in zip(shown, db.query("SELECT served FROM shows ORDER BY id")) if row["served"] == "audit"]
    assert 10 <= len(audits) <= 30 and all(s["suggestion"] is None for s in audits)
    assert sorted(s["pair_id"] for s in audits) != [s["pair_id"] for s in audits]  # not oldest first
    reviewed = [s for s in shown if s not in audits]
    assert all(s["suggestion"] is not None for s in reviewed)


def test_review_shows_the_suggestion_on_its_side_and_keeps_whether_it_was_overturned(tmp_path):
    db, ids = stocked(tmp_path, [0.9, 0.2, 0.9, 0.9])  # prefers answer 0, 1, 0, 0
    queries.set_second_pass(db, "review", audit_share=0.05)
    for i, (p, verdict) in enumerate(zip([0.9, 0.2, 0.9, 0.9], ["0", "1", "1", "tie"])):  # accept, accept, overturn, neither
        shown = queries.show_next_pair(db, "alice", 0, Draws(0.99))  # no audit
        suggestion = shown["suggestion"]
        assert (suggestion["judge"], suggestion["confidence"]) == ("reward-model:round-1", pytest.approx(max(p, 1 - p)))
        assert shown[suggestion["answer"]] == f"Answer {i} {'one' if p > 0.5 else 'two'}"  # on the side it is shown
        if verdict == "tie":
            queries.record_vote(db, "alice", shown["pair_id"], "tie")
        else:
            vote_on_stored(db, "alice", shown, verdict)

    assert [v["served"] for v in db.query("SELECT served FROM votes WHERE suggestion_id IS NOT NULL")] == ["review"] * 4
    [audit] = first_pass.audit(db)
    assert (audit["reviewed_votes"], audit["accepted"]) == (4, 0.5)
    assert audit["audited_votes"] == 0  # a vote cast with the suggestion in view audits nothing
    assert "its suggestion accepted in **0.50** of 4 reviews" in agreement.summary_markdown(agreement.quality(db))
    # A reloaded page shows the same suggestion again.
    db2, _ = stocked(tmp_path / "more", [0.7])
    queries.set_second_pass(db2, "review")
    shown = queries.show_next_pair(db2, "bob", 0, Draws(0.99))
    assert shown["suggestion"] is not None and queries.open_claim(db2, "bob")["suggestion"] == shown["suggestion"]


def test_only_blind_votes_measure_the_judge(tmp_path):
    db, ids = stocked(tmp_path, [0.9] * 12)  # the judge prefers answer 0 everywhere
    queries.set_second_pass(db, "route", audit_share=0.5, confidence=0.95)  # nothing is sure enough to route
    rng = random.Random(11)
    for n in range(12):  # people prefer answer 1 everywhere
        vote_on_stored(db, f"annotator-{n}", queries.show_next_pair(db, f"annotator-{n}", 0, rng), "1")
    served = [r["served"] for r in db.query("SELECT served FROM votes")]
    [audit] = first_pass.audit(db)
    assert audit["audited_votes"] == served.count("audit") > 0 and audit["agreement"] == 0.0
    assert set(served) == {"audit", "uncertain"}


@pytest.mark.parametrize("change, message", [
    ({"mode": "sometimes"}, "the second pass must be one of off, route, review"),
    ({"audit_share": 0.9}, "the audit share must be from 0.05 to 0.5"),
    ({"audit_share": "lots"}, "the audit share must be a number"),
    ({"confidence": 0.3}, "the confidence that routes a pair must be from 0.5 to 1.0")])
def test_bad_settings_are_refused_with_a_clear_message_and_change_nothing(tmp_path, change, message):
    db = open_db(tmp_path / "prefloop.db")
    with pytest.raises(inputs.InputError, match=message):
        queries.set_second_pass(db, **{"mode": "route", **change})
    assert queries.second_pass(db) == queries.SecondPass()


def test_storage_assign_sets_the_second_pass(tmp_path, capsys):
    db_path = tmp_path / "prefloop.db"
    assert storage_cli(["--db", str(db_path), "assign", "--second-pass", "route", "--audit-share", "0.2"]) == 0
    assert "second pass route (audit share 0.2, route confidence 0.8)" in capsys.readouterr().out
    assert storage_cli(["--db", str(db_path), "assign", "--route-confidence", "2"]) == 1
    assert "must be from 0.5 to 1.0" in capsys.readouterr().err
    assert storage_cli(["--db", str(db_path), "assign", "--second-pass", "review", "--overlap", "99"]) == 1
    assert "overlap" in capsys.readouterr().err  # and the mode stays as it was: all or nothing
    assert queries.second_pass(open_db(db_path)) == queries.SecondPass("route", 0.2, 0.8)


def test_the_page_and_the_api_show_a_suggestion_only_in_review_and_never_on_an_audit(tmp_path, log_in_browser):
    from playwright.sync_api import expect

    (tmp_path / "data").mkdir()
    db, ids = stocked(tmp_path / "data", [0.9, 0.9, 0.9, 0.9])
    cfg, demo, queue = start_app(tmp_path / "data", ready=0)
    try:
        assert api_client(cfg, "alice").predict(api_name="/next_pair_details")["suggestion"] is None  # off
        queries.set_second_pass(db, "review", audit_share=0.05)
        queue.rng = Draws(0.99)  # no audit
        page = log_in_browser(cfg.port, "bob")
        expect(page.locator("#btn-a")).to_be_enabled(timeout=30_000)
        expect(page.locator("#suggestion")).to_contain_text("The reward model prefers", timeout=30_000)
        text = page.locator("#suggestion").inner_text()
        assert "90% sure" in text
        side = "a" if "prefers A" in text else "b"
        page.locator("#btn-b" if side == "a" else "#btn-a").click()  # overturn it
        expect(page.locator("#saved")).to_contain_text("Saved vote", timeout=30_000)
        [vote] = db.query("SELECT choice, suggestion_id, served FROM votes WHERE annotator = 'bob'")
        assert vote["served"] == "review" and vote["suggestion_id"] is not None and vote["choice"] != side
        expect(page.locator("#btn-a")).to_be_enabled(timeout=30_000)

        queue.rng = Draws(0.0)  # every pair an audit
        details = api_client(cfg, "carol").predict(api_name="/next_pair_details")
        assert details["suggestion"] is None
        assert db.execute("SELECT served FROM shows WHERE annotator = 'carol'").fetchone()[0] == "audit"
    finally:
        queue.stop()
        demo.close()


def test_rounds_train_on_the_judges_sure_labels_only_when_asked_and_never_on_held_out_prompts(tmp_path):
    from storage.aggregation import Aggregation, describe
    from storage.exports import HELDOUT_FRACTION, is_heldout
    from trainer.data import snapshot

    sureness = [0.95, 0.9, 0.6, 0.1] * 10  # sure of answer 0, sure, unsure, sure of answer 1
    db, ids = stocked(tmp_path, sureness)
    voted = ids[:4]  # people's word wins on these
    for n, pair_id in enumerate(voted):
        shown = None
        while shown is None or shown["pair_id"] != pair_id:  # serve them in order, oldest first
            shown = queries.show_next_pair(db, f"annotator-{n}", 0, Draws(0.99))
        vote_on_stored(db, f"annotator-{n}", shown, "1")
    prompt_of = {r["id"]: r["prompt_id"] for r in db.query("SELECT id, prompt_id FROM pairs")}
    sure_unvoted = [(i, p) for i, p in zip(ids, sureness) if i not in voted and max(p, 1 - p) >= 0.8]
    on_train = [(i, p) for i, p in sure_unvoted if not is_heldout(prompt_of[i], HELDOUT_FRACTION)]
    assert 0 < len(on_train) < len(sure_unvoted)  # some sure labels fall on held-out prompts

    assert snapshot(db, HELDOUT_FRACTION, Aggregation()).summary["judge_rows"] == 0  # excluded by default
    snap = snapshot(db, HELDOUT_FRACTION, Aggregation(judge_labels="weight:0.5"))
    judged = [r for r in snap.train + snap.heldout if r["kind"] == "judge"]
    assert sorted(r["pair_id"] for r in judged) == [i for i, _ in on_train]
    for row in judged:
        p = dict(on_train)[row["pair_id"]]
        assert row["chosen"][0]["content"].endswith("one" if p > 0.5 else "two")
        assert (row["weight"], row["source"], row["vote_id"]) == (0.5, "reward-model:round-1", None)
    summary = snap.summary
    assert (summary["judge_rows"], summary["vote_rows"]) == (len(on_train), 4)
    assert summary["dropped"]["judge_heldout_prompt"] == len(sure_unvoted) - len(on_train)
    assert f"{len(on_train)} labelled by a judge (weight:0.5)" in describe(summary)
    assert summary["rows"] == len(snap.train) + len(snap.heldout)

    # Two judges equally sure but of different answers: the newer verdict is the label.
    first_pass.add_verdicts(db, "reward-model:round-2", {i: 1 - p for i, p in on_train[:2]})
    relabelled = {r["pair_id"]: r for r in snapshot(db, HELDOUT_FRACTION, Aggregation(judge_labels="include")).train
                  if r["kind"] == "judge"}
    assert all(relabelled[i]["source"] == "reward-model:round-2" for i, _ in on_train[:2])
    assert all(relabelled[i]["chosen"][0]["content"].endswith("two" if p > 0.5 else "one") for i, p in on_train[:2])
    with pytest.raises(ValueError, match="data.judge_labels must be include, exclude or weight:W"):
        snapshot(db, HELDOUT_FRACTION, Aggregation(judge_labels="all"))
