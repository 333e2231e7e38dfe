"""Existing preference sets import in the layouts teams have, keep their provenance, never pass
for a person's judgement, and reach a round only as configured."""
import json

import pytest

from storage import agreement, imports, queries
from storage.aggregation import Aggregation, training_rows
from storage.inputs import InputError
from storage.exports import is_heldout
from trainer.data import snapshot

from .conftest import add_pair, judge

HH = "\n\nHuman: What is a cat?\n\nAssistant: A small animal.\n\nHuman: Is it friendly?\n\nAssistant: "


def write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def imported(db) -> list[tuple]:
    return [(json.loads(r["prompt"]), r["chosen"], r["rejected"], r["score_chosen"], r["score_rejected"],
             r["category"], r["source"], r["file"], r["row"])
            for r in db.query("SELECT * FROM imported_preferences ORDER BY id")]


def test_each_layout_imports_to_the_expected_rows(db, tmp_path):
    user = [{"role": "user", "content": "2+2?"}]
    path = write_jsonl(tmp_path / "mixed.jsonl", [
        {"prompt": "Name a fruit.", "chosen": "A pear.", "rejected": "Rocks.", "category": "food"},  # explicit
        {"prompt": user, "chosen": [{"role": "assistant", "content": "4"}],
         "rejected": [{"role": "assistant", "content": "5"}], "score_chosen": 9, "score_rejected": 2},
        {"chosen": user + [{"role": "assistant", "content": "Four."}],                       # implicit
         "rejected": user + [{"role": "assistant", "content": "Five."}]},
        {"chosen": "The sky is blue.", "rejected": "The sky is green."},                     # implicit text
        {"chosen": HH + "Usually, yes.", "rejected": HH + "Never."},                         # HH-RLHF
        {"prompt": '["Hi", "And 2+2?"]', "response_a": '["Hello!", "5"]',                    # arena
         "response_b": '["Hello!", "4"]', "winner": "model_b"},
        {"prompt": "Tie?", "response_a": "x", "response_b": "y", "winner": "tie"},           # no preference
    ])
    result = imports.import_preference_file(db, path, source="mixed-set")
    assert (result.added, result.skipped, result.already) == (6, {"a tie": 1}, 0)
    assert imports.import_preference_file(db, path, source="mixed-set").already == 6  # not twice
    rows = imported(db)
    assert rows[0] == ([{"role": "user", "content": "Name a fruit."}], "A pear.", "Rocks.", None, None,
                       "food", "mixed-set", "mixed.jsonl", 1)
    assert rows[1][:5] == (user, "4", "5", 9, 2)
    assert rows[2][:3] == (user, "Four.", "Five.")
    assert rows[3][:3] == ([{"role": "user", "content": "The sky is"}], "blue.", "green.")
    assert rows[5][:3] == ([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                            {"role": "user", "content": "And 2+2?"}], "4", "5")
    assert [r[8] for r in rows] == [1, 2, 3, 4, 5, 6]


def test_hh_transcripts_split_prompt_and_answers_and_keep_the_conversation_whole(db, tmp_path):
    path = write_jsonl(tmp_path / "hh.jsonl", [{"chosen": HH + "Usually, yes.", "rejected": HH + "Never."}])
    imports.import_preference_file(db, path)
    [(prompt, chosen, rejected, *_)] = imported(db)
    assert prompt == [{"role": "user", "content": "What is a cat?"},
                      {"role": "assistant", "content": "A small animal."},
                      {"role": "user", "content": "Is it friendly?"}]
    assert (chosen, rejected) == ("Usually, yes.", "Never.")


def test_two_answers_with_a_winner_under_other_column_names_from_csv_and_parquet(db, tmp_path):
    csv = tmp_path / "arena.csv"
    csv.write_text("Question,Answer1,Answer2,Preference,score_a,score_b\n"
                   "Best pet?,A cat.,A rock.,1,8,2\nBest drink?,Mud.,Water.,2,,\n")
    columns = "prompt=Question,response_a=Answer1,response_b=Answer2,winner=Preference"
    assert imports.import_preference_file(db, csv, columns=columns).added == 2
    assert [r[1:5] for r in imported(db)] == [("A cat.", "A rock.", 8, 2), ("Water.", "Mud.", None, None)]
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"prompt": ["Q?"], "response_a": ["no"], "response_b": ["yes"],
                             "winner_model_a": [0], "winner_model_b": [1], "winner_tie": [0]}),
                   tmp_path / "kaggle.parquet")
    assert imports.import_preference_file(db, tmp_path / "kaggle.parquet").added == 1
    assert imported(db)[-1][1:3] == ("yes", "no")
    with pytest.raises(InputError, match="--columns takes"):
        imports.import_preference_file(db, csv, columns="question=Q")


def test_a_bad_row_in_the_middle_imports_nothing_and_is_named(db, tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [
        {"prompt": "Fine.", "chosen": "Yes.", "rejected": "No."},
        {"prompt": "No rejected.", "chosen": "Yes."},
        {"prompt": "Bad score.", "chosen": "Yes.", "rejected": "No.", "score_chosen": 11},
        {"prompt": "Arena.", "response_a": "a", "response_b": "b", "winner": "model_c"},
        {"prompt": "Fine too.", "chosen": "Yes.", "rejected": "No."},
    ])
    with pytest.raises(imports.ImportFileError) as refused:
        imports.import_preference_file(db, path)
    message = str(refused.value)
    assert "line 2: no answers" in message and "line 3: score_chosen" in message and "line 4: winner" in message
    assert db["imported_preferences"].count == 0


def test_imported_pairs_train_only_as_configured_and_never_pass_for_judgements(db, tmp_path):
    for i in range(3):
        add_pair(db, prompt=f"p{i}", completions=(f"first {i}", f"second {i}"))
        judge(db, "alice", "0")
    imports.import_preference_file(db, write_jsonl(tmp_path / "set.jsonl", [
        {"prompt": "Name a fruit.", "chosen": "A pear.", "rejected": "Rocks."},
        {"prompt": "2+2?", "chosen": "4", "rejected": "5"}]), source="warm-up")
    kinds = lambda agg: [(r["kind"], r["weight"]) for r in training_rows(db, agg).rows]  # noqa: E731
    assert kinds(Aggregation()) == [("imported", 1.0)] * 2 + [("vote", 1.0)] * 3
    assert kinds(Aggregation(imported="exclude")) == [("vote", 1.0)] * 3
    assert kinds(Aggregation(imported="weight:0.5")) == [("imported", 0.5)] * 2 + [("vote", 1.0)] * 3
    with pytest.raises(ValueError, match="data.imported"):
        training_rows(db, Aggregation(imported="sometimes"))
    summary = training_rows(db, Aggregation(imported="exclude")).summary
    assert summary["imported"] == "exclude" and summary["dropped"]["imported"] == 2
    snap = snapshot(db, 0.5, Aggregation())
    assert sum(r["kind"] == "imported" for r in snap.train) == 2  # never held out
    assert all(r["kind"] != "imported" for r in snap.heldout)
    assert snap.train[0]["prompt"] == [{"role": "user", "content": "Name a fruit."}]
    # Nobody's judgement: not in votes, agreement, annotator figures or progress.
    assert queries.stats(db)["votes"] == 3 and queries.stats(db)["imported_preferences"] == 2
    assert [r["annotator"] for r in agreement.quality(db)["annotators"]] == ["alice"]
    assert queries.annotator_progress(db, "alice")["total"] == 3


def test_layouts_from_real_sets(db, tmp_path):
    """Rows shaped like Dahoas/rm-static (an HH prompt ending in "Assistant:"), lmsys arena
    conversations, and an arena battle whose answers part before their last turn."""
    conversation = lambda answer: [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": answer}]  # noqa: E731
    path = write_jsonl(tmp_path / "real.jsonl", [
        {"prompt": "\n\nHuman: What is 2+2?\n\nAssistant:", "chosen": " 4", "rejected": " Assistant: 5"},
        {"conversation_a": conversation("Hello!"), "conversation_b": conversation("Go away."), "winner": "model_a"},
        {"prompt": '["Hi", "And now?"]', "response_a": '["Hello!", "Fine."]', "response_b": '["Hey.", "Good."]',
         "winner": "model_a"},
    ])
    result = imports.import_preference_file(db, path)
    assert result.added == 2 and result.skipped == {
        "the answers differ before their last turn: a whole conversation was judged, not one answer": 1}
    rows = imported(db)
    assert rows[0][:3] == ([{"role": "user", "content": "What is 2+2?"}], "4", "Assistant: 5")  # a flaw judged
    assert result.labels_removed == 0
    assert rows[1][:3] == ([{"role": "user", "content": "Hi"}], "Hello!", "Go away.")


def test_unclear_rows_are_errors_not_guesses(db, tmp_path):
    path = write_jsonl(tmp_path / "unclear.jsonl", [
        {"Question": "Q", "response_a": "[null]", "response_b": "x", "winner": "model_b"},
        {"Question": "Q", "response_a": "a", "response_b": "b", "winner": 0},
        {"Question": "asked", "prompt": "a system text", "response_a": "a", "response_b": "b", "winner": "a"},
    ])
    with pytest.raises(imports.ImportFileError) as refused:
        imports.import_preference_file(db, path, columns="prompt=Question")
    assert "line 1: a list of turns holds something that is not text" in str(refused.value)
    assert "line 2: winner 0 is not one of" in str(refused.value)
    assert "line 3" not in str(refused.value)  # the mapped column won over the unmapped `prompt`
    path.write_text(json.dumps({"Question": "asked", "prompt": "a system text", "response_a": "a",
                                "response_b": "b", "winner": "a"}) + "\n")
    imports.import_preference_file(db, path, columns="prompt=Question")
    assert imported(db)[0][0] == [{"role": "user", "content": "asked"}]


def test_imported_pairs_on_held_out_prompts_never_train_and_a_cap_keeps_them_few(db, tmp_path):
    queries.ensure_base_version(db, "tiny")
    queries.add_prompts(db, [{"text": f"Question {i}?"} for i in range(20)], source="t")
    held = [p["text"] for p in queries.all_prompts(db) if is_heldout(p["id"], 0.5)]
    assert held  # with half held out, some of twenty are
    imports.import_preference_file(db, write_jsonl(tmp_path / "set.jsonl", [
        {"prompt": text, "chosen": "Yes.", "rejected": "No."} for text in [held[0], "Something else?"]]))
    snap = snapshot(db, 0.5, Aggregation())
    assert [r["prompt"][0]["content"] for r in snap.train if r["kind"] == "imported"] == ["Something else?"]
    assert snap.summary["dropped"]["imported_heldout_prompt"] == 1
    capped = training_rows(db, Aggregation(imported_max=1))
    assert sum(r["kind"] == "imported" for r in capped.rows) == 1
    assert capped.summary["dropped"]["imported_over_max"] == 1


def test_hh_role_labels_in_flat_columns_are_removed_and_counted(db, tmp_path, capsys):
    """The common Question / Answer1 / Answer2 / Preference layout of HH samples keeps "Human: "
    and "Assistant: " in its cells: a round on them would teach answers to begin "Assistant:"."""
    import csv
    from storage.__main__ import main
    path = tmp_path / "hh.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["Question", "Answer1", "Answer2", "Preference"])
        writer.writerow(["Human: How do I boil an egg?\n\nAssistant:", "Assistant: Simmer it for nine minutes.",
                         "Assistant: Eggs are oval.", "Answer1"])
        writer.writerow(["Human: Name a colour.", "Assistant:\nBlue.", "Red, said the Assistant: no.", "Answer2"])
        writer.writerow(["Why do Humans: sleep?", "Assistant: Rest.", "Humans: sleep to rest.", "Answer1"])
        writer.writerow(["Human: Hi.\n\nAssistant: Hello!\n\nHuman: Bye.\n\nAssistant:", "Assistant: Goodbye.",
                         "Assistant: Stay.", "Answer1"])
        writer.writerow(["Human: Name a number." + "\n" * 5000 + "x", "Assistant: 4", "Assistant: 5", "Answer2"])
    columns = "prompt=Question,response_a=Answer1,response_b=Answer2,winner=Preference"
    assert main(["--db", str(tmp_path / "test.db"), "import-preferences", str(path), "--columns", columns]) == 0
    assert "removed the HH role label (Human: or Assistant:) from 11 texts" in capsys.readouterr().out
    from storage.db import open_db
    rows = imported(open_db(tmp_path / "test.db"))
    assert [r[:3] for r in rows] == [
        ([{"role": "user", "content": "How do I boil an egg?"}], "Simmer it for nine minutes.", "Eggs are oval."),
        ([{"role": "user", "content": "Name a colour."}], "Red, said the Assistant: no.", "Blue."),
        ([{"role": "user", "content": "Why do Humans: sleep?"}], "Assistant: Rest.", "Humans: sleep to rest."),
        ([{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello!"},
          {"role": "user", "content": "Bye."}], "Goodbye.", "Stay."),
        ([{"role": "user", "content": "Name a number." + "\n" * 5000 + "x"}], "5", "4")]
