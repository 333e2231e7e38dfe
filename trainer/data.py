"""A round's data: the training rows its aggregation rule makes of the judgements so far (see
`storage.aggregation`), split into train and held-out by prompt (see `storage.exports.is_heldout`)."""
from dataclasses import dataclass

import sqlite_utils

from storage import exports, queries
from storage.aggregation import Aggregation, training_rows
from storage.exports import is_heldout


@dataclass
class Snapshot:
    train: list[dict]
    heldout: list[dict]
    vote_ids: list[int]
    train_prompts: list[str]
    heldout_prompts: list[str]
    summary: dict  # the rule used and what it left out, recorded with the round
    last_vote_id: int | None  # the newest judgement considered


def snapshot(db: sqlite_utils.Database, heldout_fraction: float, agg: Aggregation) -> Snapshot:
    """Every training row so far, and every prompt, on the side of the split its prompt falls."""
    made = training_rows(db, agg)
    rows = [exports.conversational(row) for row in made.rows]
    def held_out(row: dict) -> bool:  # imported pairs always train: rounds are measured on our prompts
        return row["prompt_id"] is not None and is_heldout(row["prompt_id"], heldout_fraction)
    train = [r for r in rows if not held_out(r)]
    heldout = [r for r in rows if held_out(r)]
    prompts = queries.all_prompts(db)
    return Snapshot(
        train=train, heldout=heldout, vote_ids=made.vote_ids,
        train_prompts=[p["text"] for p in prompts if not is_heldout(p["id"], heldout_fraction)],
        heldout_prompts=[p["text"] for p in prompts if is_heldout(p["id"], heldout_fraction)],
        summary=made.summary, last_vote_id=made.last_vote_id)
