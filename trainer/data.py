"""A round's data: a snapshot of the preference export, split into train and held-out by prompt
(see `storage.exports.is_heldout`)."""
from dataclasses import dataclass

import sqlite_utils

from storage import exports, queries
from storage.exports import is_heldout


@dataclass
class Snapshot:
    train: list[dict]
    heldout: list[dict]
    vote_ids: list[int]
    train_prompts: list[str]
    heldout_prompts: list[str]


def snapshot(db: sqlite_utils.Database, heldout_fraction: float) -> Snapshot:
    """Every decisive vote so far, and every prompt, on the side of the split its prompt falls."""
    rows = exports.trl_rows(db)
    train = [r for r in rows if not is_heldout(r["prompt_id"], heldout_fraction)]
    heldout = [r for r in rows if is_heldout(r["prompt_id"], heldout_fraction)]
    prompts = queries.all_prompts(db)
    return Snapshot(
        train=train, heldout=heldout, vote_ids=[r["vote_id"] for r in rows],
        train_prompts=[p["text"] for p in prompts if not is_heldout(p["id"], heldout_fraction)],
        heldout_prompts=[p["text"] for p in prompts if is_heldout(p["id"], heldout_fraction)])
