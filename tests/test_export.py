import json

from datasets import load_from_disk

from storage import exports, queries

from .conftest import add_pair, show


def vote(db, prompt, choice, score_a=None, score_b=None, annotator="alice"):
    pair_id = add_pair(db, prompt=prompt, completions=(f"{prompt} zero", f"{prompt} one"))
    shown = show(db, annotator)
    queries.record_vote(db, annotator, pair_id, choice, score_a, score_b)
    return shown


def test_chosen_follows_what_the_annotator_saw(db, tmp_path):
    shown_a = vote(db, "p1", "a", 9, 2)
    shown_b = vote(db, "p2", "b")
    vote(db, "p3", "tie")
    vote(db, "p4", "both_bad")
    n = exports.export_trl(db, tmp_path / "out")
    assert n == 2
    rows = [json.loads(line) for line in (tmp_path / "out" / "preferences.jsonl").open()]
    assert rows[0]["prompt"] == [{"role": "user", "content": "p1"}]
    assert rows[0]["chosen"][0]["content"] == shown_a["a"]
    assert rows[0]["rejected"][0]["content"] == shown_a["b"]
    assert rows[0]["margin"] == 7.0
    assert (rows[0]["score_chosen"], rows[0]["score_rejected"]) == (9, 2)
    assert (rows[1]["score_chosen"], rows[1]["score_rejected"]) == (None, None)
    assert rows[1]["chosen"][0]["content"] == shown_b["b"] and rows[1]["margin"] == 0.0
    ds = load_from_disk(str(tmp_path / "out" / "dataset"))
    assert len(ds) == 2 and {"prompt", "chosen", "rejected", "margin", "vote_id"} <= set(ds.column_names)
    assert ds[0]["vote_id"] == rows[0]["vote_id"]


def test_export_with_no_decisive_votes(db, tmp_path):
    vote(db, "p1", "tie")
    assert exports.export_trl(db, tmp_path / "out") == 0
    assert (tmp_path / "out" / "preferences.jsonl").read_text() == ""


def test_scores_follow_chosen_and_rejected(db):
    vote(db, "p1", "b", 3, 8)  # the annotator picked the right side and scored it 8
    vote(db, "p2", "a", 6, None)  # one side unscored: no scores for the reward model to fit
    first, second = exports.trl_rows(db)
    assert (first["score_chosen"], first["score_rejected"], first["margin"]) == (8, 3, 5.0)
    assert (second["score_chosen"], second["score_rejected"], second["margin"]) == (None, None, 0.0)
