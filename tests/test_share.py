"""The shareable export loads with `datasets`, and its card says what is in it."""
import json

from datasets import load_from_disk

from storage import guidelines, imports, queries
from storage.__main__ import main
from storage.db import open_db
from storage.exports import is_heldout

from .conftest import add_pair, judge


def test_the_hf_export_loads_and_its_card_lists_the_counts(tmp_path):
    db = open_db(tmp_path / "prefloop.db")
    guidelines.save_guideline(db, "Prefer short answers.", author="lead")
    for i in range(12):
        add_pair(db, prompt=f"Question {i}?", completions=(f"Short {i}.", f"A much longer answer {i}."))
    for name in ("zoe", "yann"):
        for _ in range(6):
            judge(db, name, "0")
    (tmp_path / "set.jsonl").write_text(json.dumps({"prompt": "Hi?", "chosen": "Hello.", "rejected": "Go."}) + "\n")
    imports.import_preference_file(db, tmp_path / "set.jsonl", source="warm-up")
    held = sum(is_heldout(p["id"]) for p in queries.all_prompts(db))

    assert main(["--db", str(tmp_path / "prefloop.db"), "export", "--format", "hf", "--out", str(tmp_path / "hf")]) == 0
    loaded = load_from_disk(str(tmp_path / "hf" / "dataset"))
    assert (len(loaded["train"]), len(loaded["test"])) == (13 - held, held)
    assert set(loaded["train"]["annotator"]) == {"annotator-1", "annotator-2", None}  # nobody's name
    assert loaded["train"][0]["prompt"] == [{"role": "user", "content": "Hi?"}]  # the imported row first
    card = (tmp_path / "hf" / "README.md").read_text()
    assert f"train: {13 - held}, test: {held}" in card and "| 12 / 0 / 1 |" in card
    assert "pseudonymised" in card and "zoe" not in card and "| guideline versions in force | 1 |" in card
    assert (tmp_path / "hf" / "data" / "train.parquet").stat().st_size > 0

    assert main(["--db", str(tmp_path / "prefloop.db"), "export", "--format", "hf", "--real-names",
                 "--out", str(tmp_path / "named")]) == 0
    assert "zoe" in load_from_disk(str(tmp_path / "named" / "dataset"))["train"]["annotator"]


def test_the_datasette_metadata_describes_real_tables_and_its_queries_run(db):
    from .conftest import REPO
    meta = json.loads((REPO / "assets" / "datasette-metadata.json").read_text())["databases"]["prefloop-view"]
    queries.set_assignment(db, k=2)
    for i in range(2):
        add_pair(db, prompt=f"p{i}")
    for name, verdicts in (("ann", ["0", "1"]), ("bob", ["0", "0"])):
        for v in verdicts:
            judge(db, name, v)
    queries.mark_gold(db, 1, "0", by="lead")
    assert set(meta["tables"]) <= set(db.table_names())
    results = {name: list(db.query(q["sql"])) for name, q in meta["queries"].items()}
    assert {r["annotator"]: r["judgements"] for r in results["judgements_per_annotator"]} == {"ann": 2, "bob": 2}
    assert [(r["pair_id"], r["distinct_verdicts"]) for r in results["agreement_by_pair"]] == [(2, 2)]
    assert {r["annotator"]: r["accuracy"] for r in results["gold_accuracy"]} == {"ann": 1.0, "bob": 1.0}


def test_an_export_with_one_empty_split_loads_and_names_nobody(tmp_path):
    db = open_db(tmp_path / "prefloop.db")
    queries.ensure_base_version(db, "tiny")
    assert main(["--db", str(tmp_path / "prefloop.db"), "export", "--format", "hf", "--out", str(tmp_path / "none")]) == 1
    (tmp_path / "set.jsonl").write_text(json.dumps({"prompt": "Hi?", "chosen": "Hello.", "rejected": "Go."}) + "\n")
    imports.import_preference_file(db, tmp_path / "set.jsonl")  # imported rows are all train
    assert main(["--db", str(tmp_path / "prefloop.db"), "export", "--format", "hf", "--out", str(tmp_path / "hf")]) == 0
    loaded = load_from_disk(str(tmp_path / "hf" / "dataset"))
    assert list(loaded) == ["train"] and len(loaded["train"]) == 1
    assert "split: test" not in (tmp_path / "hf" / "README.md").read_text()


def test_the_browsing_copy_has_the_judgements_and_no_accounts(tmp_path):
    from storage import accounts
    db = open_db(tmp_path / "prefloop.db")
    accounts.save_account(db, "root", "root-pw", "admin", by="setup")
    accounts.record_login_failure(db, "my-password-typed-as-a-name", 0.0, lambda n: 0.0, 3600.0)
    add_pair(db)
    judge(db, "ann", "0")
    assert main(["--db", str(tmp_path / "prefloop.db"), "browse-copy", str(tmp_path / "view.db")]) == 0
    view = open_db(tmp_path / "view.db")
    assert view["votes"].count == 1
    assert not {"accounts", "sessions", "account_events", "login_failures"} & set(view.table_names())
    assert main(["--db", str(tmp_path / "prefloop.db"), "browse-copy", str(tmp_path / "view.db")]) == 1
