"""A round's data: the training rows its aggregation rule makes of the judgements so far (see
`storage.aggregation`), split into train and held-out by prompt (see `storage.exports.is_heldout`),
and pairs made from imported reference answers."""
import json
import random
from dataclasses import dataclass

import sqlite_utils

from policy.sampling import SamplingConfig
from storage import exports, queries
from storage.aggregation import Aggregation, training_rows
from storage.exports import is_heldout

from .sft import example


def splitter(db: sqlite_utils.Database, heldout_fraction: float):
    """`side(prompt_id, prompt messages)`: "train", "heldout" or, for an imported row whose
    question is one of our held-out prompts, "drop": rounds are measured on those, so nothing
    may have trained on them."""
    heldout_norms = {queries.normalise(p["text"]) for p in queries.all_prompts(db)
                     if is_heldout(p["id"], heldout_fraction)}

    def side(prompt_id: int | None, prompt: list[dict]) -> str:
        if prompt_id is not None:
            return "heldout" if is_heldout(prompt_id, heldout_fraction) else "train"
        return "drop" if queries.normalise(prompt[-1]["content"]) in heldout_norms else "train"
    return side


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
    prompts = queries.all_prompts(db)
    side = splitter(db, heldout_fraction)
    sides = [side(r["prompt_id"], r["prompt"]) for r in rows]
    # A judge's label never stands in for people on a held-out prompt: rounds are measured there.
    sides = ["judge_drop" if r["kind"] == "judge" and s == "heldout" else s for r, s in zip(rows, sides)]
    train = [r for r, s in zip(rows, sides) if s == "train"]
    heldout = [r for r, s in zip(rows, sides) if s == "heldout"]
    if "drop" in sides:
        made.summary["dropped"]["imported_heldout_prompt"] = sides.count("drop")
        made.summary["imported_rows"] -= sides.count("drop")
    if "judge_drop" in sides:
        made.summary["dropped"]["judge_heldout_prompt"] = sides.count("judge_drop")
        made.summary["judge_rows"] -= sides.count("judge_drop")
    made.summary["rows"] = len(train) + len(heldout)
    return Snapshot(
        train=train, heldout=heldout, vote_ids=made.vote_ids,
        train_prompts=[p["text"] for p in prompts if not is_heldout(p["id"], heldout_fraction)],
        heldout_prompts=[p["text"] for p in prompts if is_heldout(p["id"], heldout_fraction)],
        summary=made.summary, last_vote_id=made.last_vote_id)


def demonstration_pairs(db: sqlite_utils.Database, registry, version: int, n: int, seed: int,
                        sampling: SamplingConfig = SamplingConfig(), batch: int = 16) -> list[dict]:
    """Up to n imported reference answers to single-turn prompts, each chosen over the policy
    version's own answer to the same prompt: the standard way to make preference pairs from an
    SFT set. An answer the same as the reference teaches nothing, and one cut off at the length
    limit would teach that shorter is better: both are left out."""
    demos = [d for d in db.query("SELECT * FROM imported_demonstrations ORDER BY id")
             if len(json.loads(d["prompt"])) == 1]
    picked = random.Random(seed).sample(demos, min(n, len(demos)))
    rows = []
    for i in range(0, len(picked), batch):
        chunk = picked[i:i + batch]
        answers = registry.complete(version, [json.loads(d["prompt"])[0]["content"] for d in chunk],
                                    sampling, seed + i)
        rows += [exports.conversational({
            "prompt": json.loads(d["prompt"]), "chosen": d["answer"], "rejected": own.text, "margin": 0.0,
            "score_chosen": None, "score_rejected": None, "weight": 1.0, "kind": "demonstration",
            "vote_id": None, "pair_id": None, "prompt_id": None, "version_id": version, "annotator": None,
            "source": d["source"]}) for d, [own] in zip(chunk, answers)
            if not own.cut_off and own.text.strip() not in ("", d["answer"])]
    return rows


def demonstrations(db: sqlite_utils.Database, heldout_fraction: float, excluded: list[str],
                   max_imported: int, seed: int) -> list[dict]:
    """SFT rows (see `sft.example`), none to a held-out prompt: every corrected answer but those of
    annotators the round's aggregation left out, then up to `max_imported` imported reference
    answers drawn at random."""
    side = splitter(db, heldout_fraction)
    rows = [r for r in exports.sft_rows(db) if side(r["prompt_id"], r["messages"][:-1]) == "train"]
    corrected = [r for r in rows if r["author"] is not None and r["author"] not in excluded]
    imported = [r for r in rows if r["author"] is None]
    imported = random.Random(seed).sample(imported, min(max_imported, len(imported)))
    return [example(r["messages"][:-1], r["messages"][-1]["content"]) for r in corrected + imported]
