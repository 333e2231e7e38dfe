"""Near-copies of prompts are reported and skipped on import; distinct look-alikes are kept."""
import json
import sys

from storage import imports, queries
from storage.db import open_db
from storage.near_duplicates import DEFAULT_THRESHOLD, PromptIndex

from .conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
from near_duplicates import labelled, precision_recall, shipped_dropped  # noqa: E402


def test_reworded_copies_are_caught_and_look_alikes_kept_on_the_labelled_set():
    precision, recall = precision_recall(labelled(), DEFAULT_THRESHOLD)
    assert precision >= 0.9 and recall >= 0.9, (precision, recall)


def test_the_shipped_prompts_hold_no_near_copies():
    assert shipped_dropped(DEFAULT_THRESHOLD) == 0


def test_an_import_reports_and_skips_near_copies_of_known_and_earlier_prompts(db, tmp_path):
    queries.add_prompts(db, [{"text": "Write a haiku about a cat sleeping in a sunbeam."}], source="t")
    path = tmp_path / "more.jsonl"
    path.write_text("\n".join(json.dumps({"prompt": p}) for p in [
        "Write me a haiku about a cat that is sleeping in a sunbeam.",  # a copy of a known prompt
        "Write a haiku about a dog sleeping in the snow.",               # a look-alike: new
        "Explain in simple terms how a rainbow forms.",
        "Explain how a rainbow forms, in simple terms.",                 # a copy of the line above
    ]) + "\n")
    dry = imports.import_prompt_file(db, path, dry_run=True)
    assert dry.added == 2 and len(dry.near_copies) == 2 and db["prompts"].count == 1
    result = imports.import_prompt_file(db, path)
    assert [(c.text[:12], c.similar_to[:12]) for c in result.near_copies] == [
        ("Write me a h", "Write a haik"), ("Explain how ", "Explain in s")]
    assert all(c.similarity >= DEFAULT_THRESHOLD for c in result.near_copies)
    assert [r["text"] for r in db.query("SELECT text FROM prompts ORDER BY id")] == [
        "Write a haiku about a cat sleeping in a sunbeam.", "Write a haiku about a dog sleeping in the snow.",
        "Explain in simple terms how a rainbow forms."]


def test_the_threshold_is_a_setting(db, tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prompt": "Write a limerick about a forgetful robot."}) + "\n"
                    + json.dumps({"prompt": "Could you write a limerick about a forgetful robot?"}) + "\n")
    assert imports.import_prompt_file(open_db(tmp_path / "default.db"), path).added == 1  # the default drops it
    assert imports.import_prompt_file(db, path, near_threshold=1.0).added == 2  # only same-word copies
    assert PromptIndex(0.3).copy_of("anything") is None  # an empty index knows no prompt


def test_the_cli_dry_run_lists_what_it_would_drop(tmp_path, capsys):
    from storage.__main__ import main
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prompt": "Give me three tips for falling asleep faster."}) + "\n"
                    + json.dumps({"prompt": "Give me 3 tips for falling asleep faster."}) + "\n")
    db_path = tmp_path / "cli.db"
    assert main(["--db", str(db_path), "import", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "near-copy" in out and "Give me 3 tips" in out and "would import 1 prompts" in out
    assert main(["--db", str(db_path), "import", str(path), "--near-dup-threshold", "0"]) == 1
    assert "above 0" in capsys.readouterr().err
