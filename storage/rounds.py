"""Named queries for training rounds, the versions they register, their metrics and promotion.

Every change of the live policy is a new row in `promotions`, whether it promotes a fresh
candidate or rolls back to an old version, so the history of what annotators saw is kept.
"""
import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import sqlite_utils

from .aggregation import describe
from .queries import immediate, live_version_id, now


ALGOS = ("dpo", "ppo", "rloo", "sft", "rs-sft", "online-dpo", "rs-sft-dpo")
# One round of 128 scripted judgements (bench/loop_efficacy.py): RLOO reached 0.79-0.94 against
# the base on each of its three tastes, DPO 0.59-0.79.
DEFAULT_ALGO = "rloo"


class PromotionError(ValueError):
    """A refused promotion; its message is written for the ML engineer."""


class RoundBusy(RuntimeError):
    """Another round holds this data directory."""


@contextlib.contextmanager
def round_lock(data_dir: Path, wait: float = 2.0) -> Iterator[None]:
    """One round at a time per data directory, across processes. The kernel drops the lock
    when its process dies however it dies, so holding it is the truest sign a round is alive.
    A round waits a moment for it, so that `round_running`'s brief probe never turns one away."""
    data_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait
    with open(data_dir / "round.lock", "w") as lock:
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise RoundBusy("another round is running on this data directory") from None
                time.sleep(0.05)
        yield


def round_running(data_dir: Path) -> bool:
    try:
        with round_lock(data_dir, wait=0):
            return False
    except RoundBusy:
        return True


def fail_stale_rounds(db: sqlite_utils.Database) -> int:
    """Mark rounds left running by a dead process (kill -9, power cut) failed; returns how many.
    Call it only when `round_running` is false or while holding `round_lock`: then no round is alive."""
    with immediate(db):
        return db.execute("UPDATE rounds SET status = 'failed', finished_at = ?, error = ? "
                          "WHERE status = 'running'",
                          [now(), "the round's process ended without finishing"]).rowcount


def start_round(db: sqlite_utils.Database, algo: str, config: dict, pid: int,
                log_path: str | None = None) -> int:
    with immediate(db):
        return db["rounds"].insert({
            "algo": algo, "status": "running", "phase": "starting", "config": json.dumps(config),
            "from_version_id": live_version_id(db), "pid": pid, "log_path": log_path,
            "started_at": now()}).last_pk


def record_progress(db: sqlite_utils.Database, round_id: int, phase: str, step: int,
                    total: int | None = None, figures: dict[str, float] | None = None) -> None:
    """One report of a running round, appended to its progress and written as its line in
    `rounds.phase` (what the CLI, the benchmarks and the status line read), in one transaction,
    so that the two never disagree. A phase reports step 0 the moment it begins."""
    line = f"{phase} {step}/{total}" if total else phase
    with immediate(db):
        db["round_progress"].insert({"round_id": round_id, "phase": phase, "step": step, "total": total,
                                     "figures": json.dumps(figures) if figures else None, "at": now()})
        db["rounds"].update(round_id, {"phase": line})


def _seconds(later: str, earlier: str) -> float:
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


def round_progress(db: sqlite_utils.Database, round_id: int, at: str | None = None) -> list[dict]:
    """Each phase of a round in the order it began: steps done of how many, seconds spent, the
    estimated seconds left, and the figures logged on the way (the points of its curves).

    A phase ends when the next one begins; the last one runs until `at` (now) while the round
    runs. The estimate assumes each step still to come takes as long as the steps reported
    since the phase's first one took on average. It counts from that first step, not from the
    phase's start: set-up (loading a model, DPO's reference log-probs) is no step, and counted as
    one it made a SmolLM2 DPO round's first estimate 10 minutes for what took 3. Until a
    second step is reported there is no estimate.
    """
    rows = list(db.query("SELECT phase, step, total, figures, at FROM round_progress "
                         "WHERE round_id = ? ORDER BY id", [round_id]))
    running = get_round(db, round_id)["status"] == "running"
    at = at or now()
    phases: dict[str, dict] = {}
    for row in rows:
        phase = phases.setdefault(row["phase"], {"phase": row["phase"], "started": row["at"], "points": []})
        phase.update(step=row["step"], total=row["total"] or phase.get("total"), last=row["at"])
        if row["step"] and "first" not in phase:
            phase["first"] = (row["step"], row["at"])
        if row["figures"]:
            phase["points"].append({"step": row["step"], **json.loads(row["figures"])})
    ordered = list(phases.values())
    out = []
    for i, p in enumerate(ordered):
        current = running and i == len(ordered) - 1
        end = at if current else ordered[i + 1]["started"] if i + 1 < len(ordered) else p["last"]
        left = None
        if not current:
            left = 0.0
        elif p["total"] and "first" in p and p["step"] > p["first"][0]:
            per_step = _seconds(p["last"], p["first"][1]) / (p["step"] - p["first"][0])
            left = max(0.0, per_step * (p["total"] - p["step"]) - _seconds(at, p["last"]))
        out.append({"phase": p["phase"], "step": p["step"], "total": p["total"], "done": not current,
                    "seconds": _seconds(end, p["started"]), "seconds_left": left, "points": p["points"]})
    return out


def set_round_votes(db: sqlite_utils.Database, round_id: int, vote_ids: list[int],
                    aggregation: dict | None = None, last_vote_id: int | None = None) -> None:
    """The judgements a round trained on, how they became rows (see `storage.aggregation`), and
    the newest judgement it considered, used or not: the watcher counts new judgements from it."""
    with immediate(db):
        db["rounds"].update(round_id, {"vote_ids": json.dumps(vote_ids),
                                       "last_vote_id": last_vote_id or max(vote_ids, default=None),
                                       "aggregation": json.dumps(aggregation) if aggregation else None})


def finish_round(db: sqlite_utils.Database, round_id: int, version_id: int) -> None:
    with immediate(db):
        db["rounds"].update(round_id, {"status": "done", "phase": "done", "version_id": version_id,
                                       "finished_at": now()})


def set_round_decision(db: sqlite_utils.Database, round_id: int, decision: str) -> None:
    with immediate(db):
        db["rounds"].update(round_id, {"decision": decision})


def fail_round(db: sqlite_utils.Database, round_id: int, error: str) -> None:
    with immediate(db):
        db["rounds"].update(round_id, {"status": "failed", "error": error[:2000],
                                       "finished_at": now()})


def get_round(db: sqlite_utils.Database, round_id: int) -> dict:
    return db["rounds"].get(round_id)


def list_rounds(db: sqlite_utils.Database, limit: int = 50) -> list[dict]:
    return list(db.query("SELECT * FROM rounds ORDER BY id DESC LIMIT ?", [limit]))


def votes_since_last_round(db: sqlite_utils.Database) -> int:
    """Judgements newer than every vote a finished round trained on: the watcher's trigger."""
    last = db.execute("SELECT max(last_vote_id) FROM rounds WHERE status = 'done'").fetchone()[0]
    return db.execute("SELECT count(*) FROM votes WHERE id > ?", [last or 0]).fetchone()[0]


# --- versions, metrics, promotion ------------------------------------------------------------

def add_version(db: sqlite_utils.Database, *, parent_id: int, adapter_path: str, algo: str,
                round_id: int | None = None, note: str | None = None) -> int:
    """Register a candidate: only a finished adapter folder is ever registered."""
    with immediate(db):
        base = db["policy_versions"].get(0)["base_model"]
        return db["policy_versions"].insert({
            "parent_id": parent_id, "base_model": base, "adapter_path": adapter_path,
            "algo": algo, "round_id": round_id, "note": note, "created_at": now()}).last_pk


def registered_round_ids(db: sqlite_utils.Database) -> set[int]:
    """Rounds that made a version: their adapter and reward model folders are in use."""
    rows = db.query("SELECT round_id FROM policy_versions WHERE round_id IS NOT NULL")
    return {r["round_id"] for r in rows}


def add_best_answers(db: sqlite_utils.Database, round_id: int, kept: list[dict]) -> None:
    """The answers a rejection-sampling round kept (prompt, answer, reward, median)."""
    created = now()
    db["best_answers"].insert_all({"round_id": round_id, "prompt": k["prompt"], "answer": k["answer"],
                                   "reward": k["reward"], "median": k["median"], "created_at": created}
                                  for k in kept)


def best_answers(db: sqlite_utils.Database, prompts: list[str]) -> dict[str, list[str]]:
    """Each prompt's answers kept by earlier rounds, distinct, oldest first."""
    pooled: dict[str, list[str]] = {}
    for i in range(0, len(prompts), 500):  # SQLite's limit on bound parameters
        chunk = prompts[i:i + 500]
        for r in db.query(f"SELECT prompt, answer FROM best_answers WHERE prompt IN ({','.join('?' * len(chunk))}) "
                          "ORDER BY id", chunk):
            if r["answer"] not in pooled.setdefault(r["prompt"], []):
                pooled[r["prompt"]].append(r["answer"])
    return pooled


def get_version(db: sqlite_utils.Database, version_id: int) -> dict:
    rows = list(db.query("SELECT * FROM policy_versions WHERE id = ?", [version_id]))
    if not rows:
        raise PromotionError(f"there is no policy version {version_id}")
    return rows[0]


def add_metrics(db: sqlite_utils.Database, metrics: dict[str, float], *, round_id: int | None,
                version_id: int | None) -> None:
    created = now()
    with immediate(db):
        db["metrics"].insert_all(
            {"round_id": round_id, "version_id": version_id, "name": name, "value": float(value),
             "created_at": created}
            for name, value in metrics.items() if value is not None)


def version_metrics(db: sqlite_utils.Database, version_id: int) -> dict[str, float]:
    return {r["name"]: r["value"] for r in db.query(
        "SELECT name, value FROM metrics WHERE version_id = ? ORDER BY id", [version_id])}


def data_line(row: dict) -> str:
    """How a round (or a version's round) turned judgements into rows, in one line; "" if unrecorded."""
    return describe(json.loads(row["aggregation"])) if row["aggregation"] else ""


def with_interval(metrics: dict[str, float], name: str, count: str | None = None) -> str | None:
    """A rate as people should read it: "0.81 [0.71-0.88] of 85". Where its 95% interval still
    holds an even split, it says "too few to tell", or, once the interval is narrow (0.1 or
    less), "no better than a coin". None where the figure was not measured."""
    if name not in metrics or f"{name}_low" not in metrics:
        return None
    low, high = metrics[f"{name}_low"], metrics[f"{name}_high"]
    text = f"{metrics[name]:.2f} [{low:.2f}-{high:.2f}]"
    if count and count in metrics:
        text += f" of {metrics[count]:.0f}"
    if low <= 0.5 <= high:
        text += ": too few to tell" if high - low > 0.1 else ": no better than a coin"
    return text


def reward_accuracy(metrics: dict[str, float]) -> str | None:
    """How well a round's reward model ranked judged pairs it had not trained on: those of the
    held-out prompts and, out of fold, the training pairs (rounds before cross-validation: the
    held-out pairs alone), with its calibration error where measured."""
    text = with_interval(metrics, "rm_unseen_accuracy", "rm_unseen_pairs")
    if text is None:
        return with_interval(metrics, "rm_accuracy", "rm_heldout_pairs")
    if "rm_calibration_error" in metrics:
        text += f", calibration error {metrics['rm_calibration_error']:.2f}"
    return text


def versions_table(db: sqlite_utils.Database) -> list[dict]:
    """Every version with its lineage, whether it is live, the figures measured on it, and its
    reward model's accuracy and win-rates in words, with their intervals."""
    live = live_version_id(db)
    rows = []
    for v in db.query("SELECT v.id, v.parent_id, v.algo, v.round_id, v.created_at, r.decision, r.aggregation "
                      "FROM policy_versions v LEFT JOIN rounds r ON r.id = v.round_id ORDER BY v.id"):
        rows.append({"version": v["id"], "parent": v["parent_id"], "algo": v["algo"] or "base",
                     "round": v["round_id"], "live": v["id"] == live,
                     "created_at": v["created_at"], "decision": v["decision"],
                     "data": data_line(v),
                     **version_metrics(db, v["id"])})
        rows[-1] |= {"reward_accuracy": reward_accuracy(rows[-1]),
                     "win_rate_vs_live": with_interval(rows[-1], "rm_win_rate_vs_live", "eval_answers"),
                     "win_rate_vs_base": with_interval(rows[-1], "rm_win_rate_vs_base", "eval_answers")}
    return rows


def promote(db: sqlite_utils.Database, version_id: int, by: str) -> None:
    """Make a version live; rolling back is promoting an earlier one."""
    version = get_version(db, version_id)
    if version_id != 0 and not (version["adapter_path"] and os.path.isdir(version["adapter_path"])):
        raise PromotionError(f"version {version_id}'s adapter folder is missing: "
                             f"{version['adapter_path']}")
    with immediate(db):
        db["promotions"].insert({"version_id": version_id, "by": by, "created_at": now()})


def promotions(db: sqlite_utils.Database) -> list[dict]:
    return list(db.query("SELECT * FROM promotions ORDER BY id"))


def drop_unshown_pairs(db: sqlite_utils.Database, keep_version: int) -> int:
    """Delete stock generated by versions that are no longer live; nobody has seen those pairs.
    Gold pairs stay, shown or not: they are mixed in whatever version is live. So do pairs a
    first-pass judge has read: its verdict may be a training label (route mode), and a deleted
    pair's id would pass to the next pair made, verdicts and all."""
    with immediate(db):
        return db.execute(
            """DELETE FROM pairs WHERE version_id != ?
               AND NOT EXISTS (SELECT 1 FROM shows s WHERE s.pair_id = pairs.id)
               AND NOT EXISTS (SELECT 1 FROM first_pass f WHERE f.pair_id = pairs.id)
               AND id NOT IN (SELECT pair_id FROM gold_pairs)""",
            [keep_version]).rowcount


def previous_live_version(db: sqlite_utils.Database) -> int:
    """The version that was live before the current one: what "roll back" returns to."""
    live = live_version_id(db)
    for row in db.query("SELECT version_id FROM promotions ORDER BY id DESC"):
        if row["version_id"] != live:
            return row["version_id"]
    raise PromotionError("there is no earlier version to roll back to")
