"""Comparisons, blind evaluation votes and the gallery, and that none of it reaches training."""
import pytest

from storage import evaluations, exports, queries, rounds
from storage.ratings import Outcome
from storage.queries import VoteError

from .conftest import add_pair, show


def comparison(db, version_b=0, blind=True):
    queries.ensure_base_version(db, "tiny")
    return evaluations.add_comparison(
        db, prompt="Name a colour.", version_a=0, version_b=version_b, completion_a="Blue.",
        completion_b="Red, probably.", sampling={"temperature": 0.8}, seed=7, blind=blind,
        created_by="alice")


def test_blind_votes_are_stored_once_and_never_exported_for_training(db):
    pair_id = add_pair(db)
    show(db)
    queries.record_vote(db, "alice", pair_id, "a")
    cid = comparison(db)
    first = evaluations.record_eval_vote(db, cid, "alice", "b")
    assert evaluations.record_eval_vote(db, cid, "alice", "b") == first  # double click
    with pytest.raises(VoteError, match="already judged"):
        evaluations.record_eval_vote(db, cid, "alice", "a")
    assert db["eval_votes"].count == 1
    rows = exports.trl_rows(db)
    assert [r["vote_id"] for r in rows] == [1]
    assert all("Red, probably." not in r["chosen"][0]["content"] for r in rows)


def test_bad_eval_votes_get_a_clear_error(db):
    cid = comparison(db)
    with pytest.raises(VoteError, match="unknown comparison"):
        evaluations.record_eval_vote(db, 999, "alice", "a")
    with pytest.raises(VoteError, match="must be one of"):
        evaluations.record_eval_vote(db, cid, "alice", "maybe")
    with pytest.raises(VoteError, match="not shown to you"):  # bob never saw alice's comparison
        evaluations.record_eval_vote(db, cid, "bob", "a")
    assert db["eval_votes"].count == 0


def test_outcomes_keep_human_and_model_judges_apart(db, tmp_path):
    queries.ensure_base_version(db, "tiny")
    v1 = rounds.add_version(db, parent_id=0, adapter_path=str(tmp_path), algo="dpo")
    evaluations.record_eval_vote(db, comparison(db, version_b=v1), "alice", "b")
    evaluations.add_model_judgements(db, round_id=None, sampling={}, seed=0, judgements=[
        {"prompt": "p", "version_a": v1, "version_b": 0, "completion_a": "x", "completion_b": "y",
         "score_a": 1.0, "score_b": 0.5, "result": "a"},
        {"prompt": "q", "version_a": v1, "version_b": 0, "completion_a": "x", "completion_b": "y",
         "score_a": 0.1, "score_b": 0.5, "result": "b"}])
    assert evaluations.outcomes(db, "human") == [Outcome(0, v1, "b")]
    assert evaluations.outcomes(db, "reward_model") == [Outcome(v1, 0, "a"), Outcome(v1, 0, "b")]
    # a comparison of a version with itself is no evidence about either
    evaluations.record_eval_vote(db, comparison(db, version_b=0), "alice", "a")
    assert len(evaluations.outcomes(db, "human")) == 1


def test_gallery_pins_survive_and_export_as_markdown(db):
    cid = comparison(db)
    with pytest.raises(VoteError, match="before pinning"):  # the gallery would name the versions
        evaluations.pin(db, cid, "too early", by="alice")
    evaluations.record_eval_vote(db, cid, "alice", "b")
    gid = evaluations.pin(db, cid, "  Tuned answer is shorter  ", by="alice")
    [pinned] = evaluations.gallery(db)
    assert pinned["note"] == "Tuned answer is shorter" and pinned["prompt"] == "Name a colour."
    text = evaluations.gallery_markdown(db)
    assert "## Tuned answer is shorter" in text and "Red, probably." in text
    evaluations.unpin(db, gid)
    assert evaluations.gallery(db) == []
    with pytest.raises(VoteError, match="unknown comparison"):
        evaluations.pin(db, 12345, "x", by="alice")
