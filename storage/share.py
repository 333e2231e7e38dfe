"""Sharing: `python -m storage export --format hf`, the preference data as a Hugging Face dataset
someone outside the team can load and understand; and `python -m storage browse-copy`, the
database without its accounts, for Datasette.

The folder holds a `DatasetDict` (`train` and `test`, split by prompt as rounds split it), the
same splits as Parquet, and a dataset card (README.md) saying what is in it and how it was made:
counts, annotators, guideline and policy versions, the split, and how ties, gold pairs and
imported data were treated. Annotators appear as `annotator-1`, `annotator-2`... (numbered by
their first judgement) unless the names are asked for: a shared file should not say who judged what.
"""
import json
from pathlib import Path

import sqlite_utils

from .aggregation import Aggregation, describe, training_rows
from .exports import HELDOUT_FRACTION, conversational, is_heldout


def pseudonyms(db: sqlite_utils.Database) -> dict[str, str]:
    order = [r[0] for r in db.execute("SELECT annotator FROM votes GROUP BY annotator ORDER BY min(id)")]
    return {name: f"annotator-{i}" for i, name in enumerate(order, start=1)}


def _card(db, rows: dict[str, list[dict]], agg: Aggregation, summary: dict, real_names: bool) -> str:
    vote_ids = json.dumps([r["vote_id"] for split in rows.values() for r in split if r["vote_id"] is not None])
    guidelines = [r[0] for r in db.execute("SELECT DISTINCT guideline_id FROM votes JOIN json_each(?) j "
                                           "ON j.value = votes.id ORDER BY 1", [vote_ids])]
    versions = sorted({r["version_id"] for split in rows.values() for r in split if r["version_id"] is not None})
    kinds = {k: sum(r["kind"] == k for split in rows.values() for r in split)
             for k in ("vote", "correction", "imported")}
    annotators = sorted({r["annotator"] for split in rows.values() for r in split if r["annotator"]})
    yaml = ("---\nconfigs:\n- config_name: default\n  data_files:\n"
            + "".join(f"  - split: {s}\n    path: data/{s}.parquet\n" for s, r in rows.items() if r) + "---\n")
    return yaml + f"""
# Preference data from prefloop

Human judgements of two answers to one prompt, in TRL's conversational preference format
(`prompt`, `chosen`, `rejected` as message lists), for reward modelling or DPO.

| | |
|---|---|
| rows | {', '.join(f'{s}: {len(r)}' for s, r in rows.items())} (an empty split is left out of the files) |
| from votes / corrected answers / imported sets | {kinds['vote']} / {kinds['correction']} / {kinds['imported']} |
| annotators | {len(annotators)} ({'real names' if real_names else 'pseudonymised: annotator-1, annotator-2, ...'}) |
| guideline versions in force | {', '.join(map(str, [g for g in guidelines if g is not None])) or 'none'}{' (some votes before any)' if None in guidelines else ''} |
| policy versions that wrote the answers | {', '.join(map(str, versions)) or 'none'} (0 is the base model) |

**How judgements became rows:** {describe(summary)}. Rule `{agg.rule}`: `every` makes each decisive
vote a row; `majority` one row per pair for the verdict most annotators gave (even splits left out);
`weighted` the majority's row with a `weight`, the share that agreed. Ties and both-bad verdicts
carry no preference and are not rows. Votes on gold pairs (pairs with a known answer, used to
measure annotators) are never rows. A corrected answer is a row of its own (`kind` `correction`),
chosen over the answer it replaced.

**Imported data:** `{agg.imported}`. Rows of `kind` `imported` come from existing preference sets
(their `source` says which), not from this team's annotators.

**Split:** by prompt: a prompt is in `test` when a hash of its id falls in the lowest
{HELDOUT_FRACTION:.0%}, the same split every training round holds out. Imported rows are all in
`train`.

**Columns:** `margin` is the 1-10 score difference where both answers were scored, else 0;
`score_chosen` / `score_rejected` the scores themselves; ids (`vote_id`, `pair_id`, `prompt_id`,
`version_id`) refer to the prefloop database the set came from.
"""


def export_hf(db: sqlite_utils.Database, out: str | Path, agg: Aggregation = Aggregation(),
              real_names: bool = False) -> dict[str, int]:
    """Write the dataset folder, Parquet files and card; returns the rows per split."""
    from datasets import Dataset, DatasetDict
    out = Path(out)
    made = training_rows(db, agg)
    if not made.rows:
        raise ValueError("there is nothing to export yet: no judgement or imported pair makes a row")
    names = pseudonyms(db)
    named = (lambda name: name) if real_names else (lambda name: names.get(name, name))
    summary = made.summary | {"excluded_annotators": [named(a) for a in made.summary["excluded_annotators"]]}
    rows = {"train": [], "test": []}
    for row in made.rows:
        row = conversational(row | {"annotator": named(row["annotator"]) if row["annotator"] else None})
        rows["test" if row["prompt_id"] is not None and is_heldout(row["prompt_id"]) else "train"].append(row)
    # One table split in two, so both splits have the same column types.
    table = Dataset.from_list([r for split in rows.values() for r in split])
    bounds = {"train": range(0, len(rows["train"])), "test": range(len(rows["train"]), len(table))}
    splits = DatasetDict({s: table.select(bounds[s]) for s in rows if rows[s]})
    splits.save_to_disk(str(out / "dataset"))
    (out / "data").mkdir(parents=True, exist_ok=True)
    for split, dataset in splits.items():
        dataset.to_parquet(str(out / "data" / f"{split}.parquet"))
    (out / "README.md").write_text(_card(db, rows, agg, summary, real_names))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return {s: len(r) for s, r in rows.items()}


PRIVATE_TABLES = ("accounts", "account_events", "sessions", "login_failures")


def browsing_copy(db: sqlite_utils.Database, out: str | Path) -> Path:
    """A copy of the database without accounts and sessions (password and token hashes) or wrong
    logins (people type their password as their name), to open
    in Datasette, which shows every table to whoever opens it. SQLite's backup API copies a
    consistent snapshot, even while the app writes."""
    out = Path(out)
    if out.exists():
        raise ValueError(f"{out} exists; give a new file")
    copy = sqlite_utils.Database(out)
    db.conn.backup(copy.conn)
    for table in PRIVATE_TABLES:
        copy[table].drop(ignore=True)
    copy.vacuum()
    return out
