"""Corrected answers: stored as demonstrations, exported for SFT, and a preference row of their own."""
import json

import pytest

from storage import exports, queries
from storage.inputs import InputError
from storage.aggregation import training_rows

from .conftest import add_pair, show


def test_a_corrected_answer_is_in_the_sft_export_and_a_preference_row(db, tmp_path):
    pair = add_pair(db, prompt="Name a fruit.", completions=("A banana.", "Rocks."))
    shown = show(db)
    side = "a" if shown["a"] == "A banana." else "b"
    vote = queries.record_vote(db, "alice", pair, side, correction="A banana: sweet and easy to carry.")
    [demo] = db["demonstrations"].rows
    assert (demo["vote_id"], demo["author"], demo["pair_id"]) == (vote, "alice", pair)

    assert exports.export_sft(db, tmp_path / "sft") == 1
    [row] = [json.loads(line) for line in (tmp_path / "sft" / "demonstrations.jsonl").read_text().splitlines()]
    assert row["messages"] == [{"role": "user", "content": "Name a fruit."},
                               {"role": "assistant", "content": "A banana: sweet and easy to carry."}]
    from datasets import load_from_disk
    assert load_from_disk(str(tmp_path / "sft" / "dataset"))[0]["messages"] == row["messages"]

    rows = {r["kind"]: r for r in training_rows(db).rows}
    assert (rows["vote"]["chosen"], rows["vote"]["rejected"]) == ("A banana.", "Rocks.")
    # The correction replaces the answer it started from (the chosen one) and is preferred to it.
    assert (rows["correction"]["chosen"], rows["correction"]["rejected"]) == (
        "A banana: sweet and easy to carry.", "A banana.")


def test_a_correction_of_a_both_bad_pair_replaces_the_side_it_started_from(db):
    pair = add_pair(db, prompt="2+2?", completions=("5", "22"))
    shown = show(db)
    queries.record_vote(db, "alice", pair, "both_bad", correction="4", corrected="b")
    [row] = training_rows(db).rows  # both bad: no vote row, but the correction teaches
    assert (row["chosen"], row["rejected"]) == ("4", shown["b"])


def test_an_unedited_copy_stores_nothing_and_a_resent_vote_stores_one(db):
    pair = add_pair(db)
    shown = show(db)
    first = queries.record_vote(db, "alice", pair, "a", correction=f"  {shown['a']} ")
    assert db["demonstrations"].count == 0
    assert queries.record_vote(db, "alice", pair, "a", correction=shown["a"]) == first

    other = add_pair(db, prompt="Another.")
    show(db)
    vote = queries.record_vote(db, "alice", other, "b", correction="Better.")
    assert queries.record_vote(db, "alice", other, "b", correction="Better.") == vote
    with pytest.raises(queries.VoteError, match="first vote stands"):
        queries.record_vote(db, "alice", other, "b", correction="Different.")
    assert db["demonstrations"].count == 1


def test_bad_corrections_are_refused_and_store_nothing(db):
    pair = add_pair(db)
    show(db)
    with pytest.raises(InputError, match="longer than"):
        queries.record_vote(db, "alice", pair, "a", correction="x" * (queries.MAX_CORRECTION_CHARS + 1))
    with pytest.raises(queries.VoteError, match="replaces answer a or b"):
        queries.record_vote(db, "alice", pair, "a", correction="ok", corrected="c")
    assert db["votes"].count == 0 and db["demonstrations"].count == 0
