"""The exports TRL trainers read: preferences (conversational prompt / chosen / rejected / margin)
and corrected answers (conversational `messages`, for supervised fine-tuning).

Written twice, as JSONL for people and as a `datasets` folder for the trainer, each with the
vote, pair and version ids so a round can record exactly which judgements it used.
"""
import hashlib
import json
from pathlib import Path

import sqlite_utils

from . import queries
from .aggregation import Aggregation, training_rows


# Share of prompts held out of every round's training, for measuring it.
HELDOUT_FRACTION = 0.2


def is_heldout(prompt_id: int, fraction: float = HELDOUT_FRACTION) -> bool:
    """A prompt's side of the train / held-out split, the same in every round and in the app.

    Hashing the prompt id keeps a held-out prompt held out for good, so successive rounds
    (and the Compare tab's held-out list) are measured on prompts no round trained on.
    """
    digest = hashlib.sha256(f"prefloop-split-{prompt_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < fraction


def conversational(row: dict) -> dict:
    """A preference row in TRL's conversational format (an imported row's prompt already is)."""
    prompt = row["prompt"]
    return {**row,
            "prompt": prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}],
            "chosen": [{"role": "assistant", "content": row["chosen"]}],
            "rejected": [{"role": "assistant", "content": row["rejected"]}]}


def trl_rows(db: sqlite_utils.Database, agg: Aggregation = Aggregation()) -> list[dict]:
    """Training rows (see `storage.aggregation`) in TRL's conversational preference format."""
    return [conversational(row) for row in training_rows(db, agg).rows]


def sft_rows(db: sqlite_utils.Database) -> list[dict]:
    """Corrected answers, then imported reference answers, in TRL's conversational SFT format (a
    `messages` list), each with where it came from: an author and source pair, or a source set,
    file and row. Those on gold pairs too, since a demonstration is never a verdict."""
    corrected = [{"messages": [{"role": "user", "content": d["prompt"]},
                               {"role": "assistant", "content": d["text"]}],
                  "author": d["annotator"], "pair_id": d["pair_id"], "vote_id": d["vote_id"],
                  "prompt_id": d["prompt_id"], "source": None, "file": None, "row": None,
                  "created_at": d["created_at"]}
                 for d in queries.demonstrations(db)]
    imported = [{"messages": json.loads(d["prompt"]) + [{"role": "assistant", "content": d["answer"]}],
                 "author": None, "pair_id": None, "vote_id": None, "prompt_id": None, "source": d["source"],
                 "file": d["file"], "row": d["row"], "created_at": d["created_at"]}
                for d in db.query("SELECT * FROM imported_demonstrations ORDER BY id")]
    return corrected + imported


def _write(rows: list[dict], out: Path, name: str) -> int:
    from datasets import Dataset
    out.mkdir(parents=True, exist_ok=True)
    with (out / f"{name}.jsonl").open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    Dataset.from_list(rows).save_to_disk(str(out / "dataset"))
    return len(rows)


def export_trl(db: sqlite_utils.Database, out: str | Path, agg: Aggregation = Aggregation()) -> int:
    """Write out/preferences.jsonl and out/dataset; returns the number of rows."""
    return _write(trl_rows(db, agg), Path(out), "preferences")


def export_sft(db: sqlite_utils.Database, out: str | Path) -> int:
    """Write out/demonstrations.jsonl and out/dataset, for TRL's SFTTrainer."""
    return _write(sft_rows(db), Path(out), "demonstrations")
