"""The preference export TRL trainers read: conversational prompt / chosen / rejected / margin.

Written twice, as JSONL for people and as a `datasets` folder for the trainer, each with the
vote, pair and version ids so a round can record exactly which judgements it used.
"""
import hashlib
import json
from pathlib import Path

import sqlite_utils

from . import queries


# Share of prompts held out of every round's training, for measuring it.
HELDOUT_FRACTION = 0.2


def is_heldout(prompt_id: int, fraction: float = HELDOUT_FRACTION) -> bool:
    """A prompt's side of the train / held-out split, the same in every round and in the app.

    Hashing the prompt id keeps a held-out prompt held out for good, so successive rounds
    (and the Compare tab's held-out list) are measured on prompts no round trained on.
    """
    digest = hashlib.sha256(f"prefloop-split-{prompt_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < fraction


def trl_rows(db: sqlite_utils.Database) -> list[dict]:
    """Decisive votes in TRL's conversational preference format (ties and both-bad left out)."""
    return [{**row,
             "prompt": [{"role": "user", "content": row["prompt"]}],
             "chosen": [{"role": "assistant", "content": row["chosen"]}],
             "rejected": [{"role": "assistant", "content": row["rejected"]}]}
            for row in queries.preference_rows(db)]


def export_trl(db: sqlite_utils.Database, out: str | Path) -> int:
    """Write out/preferences.jsonl and out/dataset; returns the number of rows."""
    from datasets import Dataset
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = trl_rows(db)
    with (out / "preferences.jsonl").open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    Dataset.from_list(rows).save_to_disk(str(out / "dataset"))
    return len(rows)
