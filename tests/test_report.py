"""`python -m trainer report` writes every figure and a summary someone can read outside the app."""
from storage import evaluations, queries, rounds
from storage.aggregation import training_rows
from storage.db import open_db
from trainer.__main__ import main

from .conftest import add_pair, show


def test_report_writes_figures_and_a_summary_with_the_leaderboard(tmp_path):
    db = open_db(tmp_path / "prefloop.db")
    pair_id = add_pair(db)
    show(db)
    queries.record_vote(db, "alice", pair_id, "a", 8, 3)
    round_id = rounds.start_round(db, "dpo", {}, pid=1)
    made = training_rows(db)
    rounds.set_round_votes(db, round_id, made.vote_ids, made.summary)
    v1 = rounds.add_version(db, parent_id=0, adapter_path=str(tmp_path), algo="dpo", round_id=round_id)
    rounds.add_metrics(db, {"rm_accuracy": 0.8, "rm_win_rate_vs_base": 0.7, "kl_to_ref": 2.0,
                            "rm_score": 0.3}, round_id=round_id, version_id=v1)
    rounds.finish_round(db, round_id, v1)
    rounds.set_round_decision(db, round_id, "kept as a candidate: its lower end does not clear 0.5")
    for i, result in enumerate(["b", "b", "a", "tie"]):
        cid = evaluations.add_comparison(db, prompt=f"p{i}", version_a=0, version_b=v1, completion_a="x",
                                         completion_b="y", sampling={}, seed=i, blind=True,
                                         created_by="bob")
        evaluations.record_eval_vote(db, cid, "bob", result)
    evaluations.pin(db, cid, "A tie worth showing", by="bob")

    assert main(["--data-dir", str(tmp_path), "report", "--out", str(tmp_path / "report")]) == 0
    out = tmp_path / "report"
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert len(pngs) == 6 and all((out / p).stat().st_size > 5000 for p in pngs)
    summary = (out / "summary.md").read_text()
    assert "version 0 is live" in summary
    assert "| 1 | " in summary and "0.62" in summary  # v1 beat the base 2.5 of 4 times
    assert "A tie worth showing" in summary
    assert f"| {round_id} | dpo | done | {v1} | kept as a candidate: its lower end does not clear 0.5 |" in summary
    assert all(f"({p})" in summary for p in pngs)
    assert "| every: 1 rows from 1 judgements |" in summary  # how the round's rows were made
    assert "## Annotators" in summary and "all pairs: not yet measurable" in summary
    assert "| alice | 1 | 0 |" in summary
