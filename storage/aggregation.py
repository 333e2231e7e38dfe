"""How judgements become training rows, a round setting.

- `every`: each decisive vote is its own row, as if every annotator were right.
- `majority`: one row per pair, for the verdict most of its annotators gave; a pair whose top
  verdicts tie (an even split) says nothing and is left out, as is a pair whose majority found
  neither answer better, and a pair of the live version that has not yet had its k judgements
  (it waits for the next round).
- `weighted`: the majority's row, weighted by the share of the pair's annotators who gave it:
  a 2-of-3 verdict counts two thirds as much as a unanimous one in the reward model's fit. (DPO
  has no per-row weight in TRL; it trains on the majority's rows alone.)

Under every rule, votes on gold pairs never become rows (they measure annotators), annotators
below `min_gold_accuracy` can be left out, each corrected answer is a row of its own: the
correction chosen over the answer it replaced, and imported preference pairs are included,
excluded or weighted as `imported` says. So are the judges' labels (`judge_labels`,
see `first_pass.sure_labels`). The summary says
how many judgements each step left out and how many rows came from each source, and is
recorded with the round.
"""
import json
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import sqlite_utils

from . import first_pass, queries
from .agreement import gold_accuracy, majority

RULES = ("every", "majority", "weighted")


@dataclass
class Aggregation:
    """A round's `data` settings: `--set data.rule=majority`, `data.imported=weight:0.5`."""
    rule: str = "every"
    # Annotators whose gold accuracy is below this (on at least `min_gold_votes` gold votes)
    # are left out; 0 keeps everyone.
    min_gold_accuracy: float = 0.0
    min_gold_votes: int = 3
    # Imported preference sets (`python -m storage import-preferences`): include, exclude, or
    # weight:W to count each of their rows W times as much as a judgement made here.
    imported: str = "include"
    # At most this many imported pairs a round, drawn at random (the same draw every round): a
    # public set of 100k pairs would otherwise swamp the team's own judgements and the CPU.
    imported_max: int = 1000
    # Imported reference answers (`python -m storage import-demonstrations`) made into pairs each
    # round, the reference chosen over the live policy's own answer to its prompt; 0: none.
    demonstration_pairs: int = 0
    # The judges' sure labels on pairs nobody voted on: include, exclude, or weight:W. Off by
    # default: whether they help has not been measured here yet.
    judge_labels: str = "exclude"

    def imported_weight(self) -> float | None:
        """The weight of an imported row; None leaves them out."""
        return _weight("data.imported", self.imported)

    def judge_weight(self) -> float | None:
        """The weight of a row from a judge's label; None leaves them out."""
        return _weight("data.judge_labels", self.judge_labels)


def _weight(name: str, setting: str) -> float | None:
    """include: 1, exclude: None, weight:W: W."""
    if setting in ("include", "exclude"):
        return 1.0 if setting == "include" else None
    kind, _, value = setting.partition(":")
    try:
        weight = float(value)
    except ValueError:
        weight = -1.0
    if kind != "weight" or not 0 < weight <= 10:
        raise ValueError(f"{name} must be include, exclude or weight:W (0 < W <= 10), not {setting!r}")
    return weight


@dataclass
class TrainingRows:
    rows: list[dict]
    vote_ids: list[int]  # the judgements the rows came from (not the outvoted ones)
    summary: dict = field(default_factory=dict)
    last_vote_id: int | None = None  # the newest judgement considered, used or not


def _row(j: dict, chosen: str, rejected: str, **extra) -> dict:
    return {"prompt": j["prompt"], "chosen": chosen, "rejected": rejected, "margin": 0.0,
            "score_chosen": None, "score_rejected": None, "weight": 1.0, "kind": "vote",
            "vote_id": j["vote_id"], "pair_id": j["pair_id"], "prompt_id": j["prompt_id"],
            "version_id": j["version_id"], "annotator": j["annotator"], "source": None} | extra


def vote_row(j: dict) -> dict:
    """A decisive vote as chosen and rejected text; the margin is the 1-10 score difference where
    both sides were scored, else 0."""
    win = j["verdict"]
    lose = "1" if win == "0" else "0"
    scored = j["score_0"] is not None and j["score_1"] is not None
    return _row(j, j[f"completion_{win}"], j[f"completion_{lose}"],
                margin=float(abs(j["score_0"] - j["score_1"])) if scored else 0.0,
                score_chosen=j[f"score_{win}"] if scored else None,
                score_rejected=j[f"score_{lose}"] if scored else None)


def imported_row(r: dict, weight: float) -> dict:
    """An imported pair as a training row: its prompt is a conversation (a list of messages)."""
    scored = r["score_chosen"] is not None and r["score_rejected"] is not None
    return {"prompt": json.loads(r["prompt"]), "chosen": r["chosen"], "rejected": r["rejected"],
            "margin": float(abs(r["score_chosen"] - r["score_rejected"])) if scored else 0.0,
            "score_chosen": r["score_chosen"] if scored else None,
            "score_rejected": r["score_rejected"] if scored else None, "weight": weight,
            "kind": "imported", "vote_id": None, "pair_id": None, "prompt_id": None, "version_id": None,
            "annotator": None, "source": r["source"]}


def judge_rows(db: sqlite_utils.Database, weight: float) -> list[dict]:
    """The judges' labels as rows (`first_pass.sure_labels`)."""
    return [_row({**r, "vote_id": None, "annotator": None}, r[f"completion_{r['verdict']}"],
                 r[f"completion_{1 - int(r['verdict'])}"], weight=weight, kind="judge", source=r["judge"])
            for r in first_pass.sure_labels(db)]


def _by_majority(votes: list[dict], weighted: bool, collecting: set[int],
                 dropped: Counter) -> tuple[list[dict], list[int]]:
    pairs = defaultdict(list)
    for j in votes:
        if j["pair_id"] in collecting:
            dropped["incomplete"] += 1
        else:
            pairs[j["pair_id"]].append(j)
    rows, used = [], []
    for pair_votes in pairs.values():
        verdict = majority(pair_votes)
        if verdict is None:
            dropped["split_pairs"] += 1
            dropped["split"] += len(pair_votes)
            continue
        n = sum(j["verdict"] == verdict for j in pair_votes)
        if verdict not in ("0", "1"):
            dropped["no_preference"] += len(pair_votes)
            continue
        dropped["outvoted"] += len(pair_votes) - n
        first = vote_row(next(j for j in pair_votes if j["verdict"] == verdict))
        rows.append(first | {"weight": n / len(pair_votes) if weighted else 1.0})
        used += [j["vote_id"] for j in pair_votes if j["verdict"] == verdict]
    return rows, used


def training_rows(db: sqlite_utils.Database, agg: Aggregation = Aggregation()) -> TrainingRows:
    if agg.rule not in RULES:
        raise ValueError(f"the aggregation rule must be one of {', '.join(RULES)}, not {agg.rule!r}")
    judged = queries.judgements(db)
    dropped = Counter()
    accuracy = gold_accuracy(judged)
    excluded = sorted(a for a, (right, total) in accuracy.items()
                      if total >= agg.min_gold_votes
                      and right / total < agg.min_gold_accuracy)
    votes = []
    for j in judged:
        if j["gold"] is not None:
            dropped["gold"] += 1
        elif j["annotator"] in excluded:
            dropped["low_gold_accuracy"] += 1
        else:
            votes.append(j)
    if agg.rule == "every":
        decisive = [j for j in votes if j["verdict"] in ("0", "1")]
        dropped["no_preference"] = len(votes) - len(decisive)
        rows, used = [vote_row(j) for j in decisive], [j["vote_id"] for j in decisive]
    else:
        rows, used = _by_majority(votes, agg.rule == "weighted", queries.collecting_pair_ids(db), dropped)
    vote_rows = len(rows)
    corrections = [d for d in queries.demonstrations(db) if d["gold"] is None and d["annotator"] not in excluded]
    rows += [_row(d, d["text"], d["replaced_text"], kind="correction") for d in corrections]
    weight = agg.imported_weight()
    imported = list(db.query("SELECT * FROM imported_preferences ORDER BY id"))
    if weight is None:
        dropped["imported"] = len(imported)
    else:
        if len(imported) > agg.imported_max:
            dropped["imported_over_max"] = len(imported) - agg.imported_max
            imported = sorted(random.Random(0).sample(imported, agg.imported_max), key=lambda r: r["id"])
        rows += [imported_row(r, weight) for r in imported]
    judge_weight = agg.judge_weight()
    judged_rows = [] if judge_weight is None else judge_rows(db, judge_weight)
    rows += judged_rows
    # Imported rows and the judges' first, then in time order: DPO keeps the newest rows when it must cut.
    rows.sort(key=lambda r: -1 if r["vote_id"] is None else r["vote_id"])
    used = sorted(set(used) | {d["vote_id"] for d in corrections})
    summary = {"rule": agg.rule, "min_gold_accuracy": agg.min_gold_accuracy, "judgements": len(judged),
               "imported": agg.imported, "imported_rows": 0 if weight is None else len(imported),
               "judge_labels": agg.judge_labels, "judge_rows": len(judged_rows),
               "rows": len(rows), "vote_rows": vote_rows, "corrections": len(corrections), "excluded_annotators": excluded,
               "dropped": dict(dropped)}
    return TrainingRows(rows, used, summary, max((j["vote_id"] for j in judged), default=None))


LEFT_OUT = {"gold": "on gold pairs", "low_gold_accuracy": "below the gold accuracy",
            "incomplete": "on pairs still collecting judgements", "imported": "imported pairs",
            "imported_over_max": "imported pairs over data.imported_max",
            "imported_heldout_prompt": "imported pairs on held-out prompts",
            "judge_heldout_prompt": "judge labels on held-out prompts",
            "no_preference": "tie or both bad", "split": "in even splits", "outvoted": "outvoted"}


def describe(summary: dict | None) -> str:
    """A round's aggregation in one line, e.g. "majority: 40 rows from 90 judgements (2 corrected
    answers); left out 6 on gold pairs, 4 in even splits (2 pairs)"."""
    if not summary:
        return ""
    dropped, n = summary["dropped"], summary["dropped"].get("split_pairs", 0)
    parts = [f"{dropped[k]} {words}" + (f" ({n} pair{'s' * (n != 1)})" if k == "split" else "")
             for k, words in LEFT_OUT.items() if dropped.get(k)]
    line = f"{summary['rule']}: {summary['rows']} rows from {summary['judgements']} judgements"
    if summary["corrections"]:
        line += f" ({summary['corrections']} corrected answers)"
    if summary.get("imported_rows"):
        line += f", {summary['imported_rows']} imported ({summary['imported']})"
    if summary.get("judge_rows"):
        line += f", {summary['judge_rows']} labelled by a judge ({summary['judge_labels']})"
    if summary.get("demonstration_pairs"):
        line += f", {summary['demonstration_pairs']} from reference answers"
    if summary["excluded_annotators"]:
        line += f"; left out annotators {', '.join(summary['excluded_annotators'])}"
    return line + ("; left out " + ", ".join(parts) if parts else "")
