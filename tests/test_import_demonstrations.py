"""Reference answers import from SFT and Alpaca layouts, export for SFT with their provenance,
and become preference pairs against the live policy's own answers."""
import json

import pytest

from storage import exports, imports, queries
from trainer.data import demonstration_pairs

from .test_import_preferences import write_jsonl


def demos(db) -> list[tuple]:
    return [(json.loads(r["prompt"]), r["answer"], r["source"], r["row"])
            for r in db.query("SELECT * FROM imported_demonstrations ORDER BY id")]


def test_each_layout_imports_to_the_expected_rows(db, tmp_path):
    path = write_jsonl(tmp_path / "sft.jsonl", [
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]},
        {"prompt": "2+2?", "completion": "4"},
        {"prompt": [{"role": "user", "content": "3+3?"}], "completion": [{"role": "assistant", "content": "6"}]},
        {"instruction": "Translate to French.", "input": "Good morning", "output": "Bonjour"},
        {"instruction": "Name a colour.", "input": "", "output": "Blue"},
    ])
    assert imports.import_demonstration_file(db, path, source="refs") == (5, 0)
    assert imports.import_demonstration_file(db, path, source="refs") == (0, 5)  # not twice
    assert demos(db) == [
        ([{"role": "user", "content": "Hi"}], "Hello!", "refs", 1),
        ([{"role": "user", "content": "2+2?"}], "4", "refs", 2),
        ([{"role": "user", "content": "3+3?"}], "6", "refs", 3),
        ([{"role": "user", "content": "Translate to French.\n\nGood morning"}], "Bonjour", "refs", 4),
        ([{"role": "user", "content": "Name a colour."}], "Blue", "refs", 5)]


def test_a_bad_row_imports_nothing(db, tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [
        {"prompt": "Fine.", "completion": "Yes."},
        {"text": "Just text, nobody asked."},
        {"messages": [{"role": "user", "content": "No answer"}]},
    ])
    with pytest.raises(imports.ImportFileError) as refused:
        imports.import_demonstration_file(db, path)
    assert "line 2: a `text`-only row has no prompt" in str(refused.value)
    assert "line 3: messages must end with the assistant's answer" in str(refused.value)
    assert db["imported_demonstrations"].count == 0


def test_the_sft_export_holds_them_with_where_they_came_from(db, tmp_path):
    imports.import_demonstration_file(db, write_jsonl(tmp_path / "refs.jsonl", [
        {"instruction": "Name a colour.", "output": "Blue"}]))
    exports.export_sft(db, tmp_path / "out")
    [row] = [json.loads(line) for line in (tmp_path / "out" / "demonstrations.jsonl").read_text().splitlines()]
    assert row["messages"] == [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue"}]
    assert (row["source"], row["file"], row["row"], row["author"]) == ("refs", "refs.jsonl", 1, None)


def test_reference_answers_are_chosen_over_the_policys_own(db, tmp_path, registry):
    queries.ensure_base_version(db, "tiny")
    imports.import_demonstration_file(db, write_jsonl(tmp_path / "refs.jsonl", [
        {"prompt": "Suggest a snack.", "completion": "Sliced apple with peanut butter."},
        {"prompt": "Suggest a drink.", "completion": "A glass of cold water."},
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                      {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Goodbye"}]},
    ]))
    rows = demonstration_pairs(db, registry, 0, n=5, seed=1)
    # The multi-turn one is left out: the policy answers single prompts.
    assert sorted(r["chosen"][0]["content"] for r in rows) == ["A glass of cold water.", "Sliced apple with peanut butter."]
    assert all(r["kind"] == "demonstration" and r["prompt"][0]["role"] == "user" for r in rows)
    assert all(r["rejected"][0]["content"] not in ("", r["chosen"][0]["content"]) for r in rows)  # the tiny model's own
