"""Every read and write the app, trainer and CLI make, as named functions over one connection."""
import contextlib
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import sqlite_utils

from .inputs import InputError, checked_text, whole_number
from .migrations import CHOICES

MAX_RATIONALE_CHARS = 5000
MAX_PROMPT_CHARS = 4000  # about 1000 tokens: longer prompts would crowd out the answers
CLAIM_SECONDS = 600.0  # an annotator reads two answers in a minute or two; ten is walking away


class VoteError(InputError):
    """A refused vote; its message is written for the annotator, and nothing was stored."""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def put_setting(db: sqlite_utils.Database, key: str, value: str) -> None:
    with immediate(db):
        db["settings"].upsert({"key": key, "value": value}, pk="key")


def setting(db: sqlite_utils.Database, key: str, default: str | None = None) -> str | None:
    """A value kept per data directory (an admin's choice, the session cookie's name)."""
    row = db.execute("SELECT value FROM settings WHERE key = ?", [key]).fetchone()
    return row[0] if row else default


def normalise(text: str) -> str:
    """The key for near-duplicate prompts: case and runs of whitespace do not make a new prompt."""
    return " ".join(text.split()).casefold()


@contextlib.contextmanager
def immediate(db: sqlite_utils.Database) -> Iterator[None]:
    """A write transaction that takes the lock up front, so two connections never claim one pair.

    Inside another `immediate` it joins the outer transaction, so a few named queries can be
    made one all-or-nothing change.
    """
    if db.conn.in_transaction:
        yield
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.rollback()
        raise
    db.commit()


# --- prompts -----------------------------------------------------------------------------

@dataclass
class PromptImport:
    added: int = 0
    exact_duplicates: int = 0
    near_duplicates: int = 0


def add_prompts(db: sqlite_utils.Database, prompts: Iterable[dict], source: str) -> PromptImport:
    """Insert prompts ({"text", "category"?}), dropping ones already known, all in one transaction."""
    result = PromptImport()
    seen_text, seen_norm = set(), set()
    for row in db.query("SELECT text, norm FROM prompts"):
        seen_text.add(row["text"])
        seen_norm.add(row["norm"])
    rows, created = [], now()
    for prompt in prompts:
        text, norm = prompt["text"], normalise(prompt["text"])
        if text in seen_text:
            result.exact_duplicates += 1
        elif norm in seen_norm:
            result.near_duplicates += 1
        else:
            rows.append({"text": text, "norm": norm, "category": prompt.get("category"),
                         "source": source, "created_at": created})
        seen_text.add(text)
        seen_norm.add(norm)
    with immediate(db):
        db["prompts"].insert_all(rows)
    result.added = len(rows)
    return result


def prompt_count(db: sqlite_utils.Database) -> int:
    return db["prompts"].count


def all_prompts(db: sqlite_utils.Database) -> list[dict]:
    """Every prompt's id and text, in id order: rounds and the Compare tab split them by id."""
    return list(db.query("SELECT id, text FROM prompts ORDER BY id"))


def prompts_needing_pairs(db: sqlite_utils.Database, version_id: int, n: int) -> list[dict]:
    """The n prompts with the fewest pairs from this version, ties broken at random."""
    return list(db.query(
        """SELECT pr.id, pr.text FROM prompts pr
           LEFT JOIN pairs p ON p.prompt_id = pr.id AND p.version_id = :v
           GROUP BY pr.id ORDER BY count(p.id), random() LIMIT :n""",
        {"v": version_id, "n": n}))


# --- policy versions ---------------------------------------------------------------------

def ensure_base_version(db: sqlite_utils.Database, base_model: str) -> None:
    """Version 0 is the base model; a database belongs to one base model for its whole life."""
    rows = list(db.query("SELECT base_model FROM policy_versions WHERE id = 0"))
    if rows and rows[0]["base_model"] != base_model:
        raise ValueError(f"this database was made with base model {rows[0]['base_model']!r}, "
                         f"not {base_model!r}; use another --db (or data directory) for it")
    if not rows:
        with immediate(db):
            db["policy_versions"].insert({"id": 0, "base_model": base_model, "note": "base model",
                                          "created_at": now()})
            db["promotions"].insert({"version_id": 0, "by": "setup", "created_at": now()})


def live_version_id(db: sqlite_utils.Database) -> int:
    """The most recently promoted version; promotions are a log, so rollback is a new row."""
    rows = list(db.query("SELECT version_id FROM promotions ORDER BY id DESC LIMIT 1"))
    if not rows:
        raise LookupError("no policy version is live yet")
    return rows[0]["version_id"]


# --- pairs and shows ---------------------------------------------------------------------

def add_pair(db: sqlite_utils.Database, *, prompt_id: int, version_id: int,
             completions: tuple[str, str], sampling: dict, seed: int,
             prompt_truncated: bool, gen_seconds: float) -> int:
    with immediate(db):
        return db["pairs"].insert({
            "prompt_id": prompt_id, "version_id": version_id,
            "completion_0": completions[0], "completion_1": completions[1],
            "sampling": sampling, "seed": seed, "prompt_truncated": int(prompt_truncated),
            "gen_seconds": round(gen_seconds, 3), "created_at": now(),
        }).last_pk


# A pair is in stock while nobody has judged or skipped it and nobody holds a claim on it: a
# claim (a show) lapses after `claim_seconds`, so a pair whose annotator walked away goes back.
IN_STOCK = """NOT EXISTS (SELECT 1 FROM votes v WHERE v.pair_id = p.id)
    AND NOT EXISTS (SELECT 1 FROM shows s WHERE s.pair_id = p.id
                    AND (s.skipped_at IS NOT NULL OR s.shown_at > :cutoff))"""


def since(seconds: float) -> str:
    """The time `seconds` ago, written as `now()` writes times, so the two compare as text."""
    return (datetime.now(timezone.utc) - timedelta(seconds=seconds)).isoformat(timespec="milliseconds")


def ready_pair_count(db: sqlite_utils.Database, version_id: int, claim_seconds: float = CLAIM_SECONDS) -> int:
    """Pairs of this version waiting for an annotator: the queue's stock."""
    return db.execute(f"SELECT count(*) FROM pairs p WHERE p.version_id = :v AND {IN_STOCK}",
                      {"v": version_id, "cutoff": since(claim_seconds)}).fetchone()[0]


def active_annotators(db: sqlite_utils.Database, minutes: float) -> int:
    """Annotators who were shown a pair in the last `minutes`: the queue's demand."""
    return db.execute("SELECT count(DISTINCT annotator) FROM shows WHERE shown_at > ?",
                      [since(minutes * 60)]).fetchone()[0]


def _shown(pair: dict, order: str) -> dict:
    return {"pair_id": pair["id"], "prompt": pair["prompt"], "version_id": pair["version_id"],
            "a": pair[f"completion_{order[0]}"], "b": pair[f"completion_{order[1]}"]}


def open_claim(db: sqlite_utils.Database, annotator: str, claim_seconds: float = CLAIM_SECONDS) -> dict | None:
    """The pair the annotator was shown last and has neither judged nor skipped, as they saw it,
    unless someone else has claimed it since: what a reloaded page shows again. Showing it
    renews the claim, so nobody else is given it while it is on this annotator's screen."""
    with immediate(db):
        rows = list(db.query(
            """SELECT p.id, pr.text AS prompt, p.completion_0, p.completion_1, p.version_id,
                      s.id AS show_id, s.shown_order, s.shown_at
               FROM shows s JOIN pairs p ON p.id = s.pair_id JOIN prompts pr ON pr.id = p.prompt_id
               WHERE s.annotator = :me AND s.skipped_at IS NULL
               AND NOT EXISTS (SELECT 1 FROM votes v WHERE v.pair_id = p.id)
               AND NOT EXISTS (SELECT 1 FROM shows o WHERE o.pair_id = p.id AND o.id > s.id)
               ORDER BY s.id DESC LIMIT 1""", {"me": annotator}))
        if not rows:
            return None
        if rows[0]["shown_at"] <= since(claim_seconds):
            db.execute("UPDATE shows SET shown_at = ? WHERE id = ?", [now(), rows[0]["show_id"]])
    return _shown(rows[0], rows[0]["shown_order"])


def show_next_pair(db: sqlite_utils.Database, annotator: str, version_id: int,
                   rng: random.Random, claim_seconds: float = CLAIM_SECONDS) -> dict | None:
    """Claim the oldest pair of the version in stock for this annotator, in a random left/right
    order.

    A pair is claimed by one annotator at a time, so no two annotators race for it and nobody
    sees a pair twice; an abandoned claim lapses after `claim_seconds`.
    """
    with immediate(db):
        rows = list(db.query(
            f"""SELECT p.id, pr.text AS prompt, p.completion_0, p.completion_1, p.version_id
               FROM pairs p JOIN prompts pr ON pr.id = p.prompt_id
               WHERE p.version_id = :v AND {IN_STOCK}
               AND NOT EXISTS (SELECT 1 FROM shows s WHERE s.pair_id = p.id AND s.annotator = :me)
               ORDER BY p.id LIMIT 1""",
            {"v": version_id, "me": annotator, "cutoff": since(claim_seconds)}))
        if not rows:
            return None
        order = rng.choice(["01", "10"])
        db["shows"].insert({"pair_id": rows[0]["id"], "annotator": annotator,
                            "shown_order": order, "shown_at": now()})
    return _shown(rows[0], order)


def skip_pair(db: sqlite_utils.Database, annotator: str, pair_id) -> None:
    pair_id = whole_number("the pair id", pair_id, low=1)
    with immediate(db):
        db.execute("UPDATE shows SET skipped_at = ? WHERE pair_id = ? AND annotator = ?"
                   " AND skipped_at IS NULL", [now(), pair_id, annotator])


# --- votes -------------------------------------------------------------------------------

def _checked_score(name: str, score) -> int | None:
    if score is None or score == "":
        return None
    return whole_number(name, score, 1, 10)


def _checked_vote(choice, score_a, score_b, rationale) -> dict:
    if choice not in CHOICES:
        raise VoteError(f"choice must be one of {', '.join(CHOICES)}, not {choice!r}")
    vote = {"choice": choice, "score_a": _checked_score("score A", score_a),
            "score_b": _checked_score("score B", score_b),
            "rationale": checked_text("the rationale", rationale, MAX_RATIONALE_CHARS) or None}
    a, b = vote["score_a"], vote["score_b"]
    if a is not None and b is not None and ((choice == "a" and a < b) or (choice == "b" and b < a)):
        raise VoteError(f"the scores ({a} for A, {b} for B) disagree with the choice {choice!r}")
    return vote


def record_vote(db: sqlite_utils.Database, annotator: str, pair_id, choice: str,
                score_a=None, score_b=None, rationale: str | None = None) -> int:
    """Store one judgement and return its id; the same vote sent twice returns the first id."""
    vote = _checked_vote(choice, score_a, score_b, rationale)
    pair_id = whole_number("the pair id", pair_id, low=1)
    with immediate(db):
        shows = list(db.query("SELECT * FROM shows WHERE pair_id = ? AND annotator = ?",
                              [pair_id, annotator]))
        if not shows:
            if not db.execute("SELECT 1 FROM pairs WHERE id = ?", [pair_id]).fetchone():
                raise VoteError(f"unknown pair {pair_id}")
            raise VoteError(f"pair {pair_id} was not shown to you; ask for the next pair")
        previous = list(db.query(
            "SELECT id, annotator, choice, score_a, score_b, rationale FROM votes WHERE pair_id = ?",
            [pair_id]))
        if previous and previous[0]["annotator"] != annotator:
            raise VoteError(f"pair {pair_id} was left unjudged too long and someone else judged it; "
                            "ask for the next pair")
        if previous:
            same = {k: previous[0][k] for k in vote} == vote
            if same:
                return previous[0]["id"]
            raise VoteError(f"pair {pair_id} is already judged; your first vote stands")
        show = shows[0]
        if show["skipped_at"]:
            raise VoteError(f"pair {pair_id} was skipped; ask for the next pair")
        seconds = (datetime.fromisoformat(now()) - datetime.fromisoformat(show["shown_at"]))
        guideline_id = db.execute("SELECT max(id) FROM guidelines").fetchone()[0]  # the version in force
        return db["votes"].insert({
            **vote, "pair_id": pair_id, "annotator": annotator, "shown_order": show["shown_order"],
            "seconds_on_task": round(seconds.total_seconds(), 3), "guideline_id": guideline_id,
            "created_at": now(),
        }).last_pk


def daily_goal(db: sqlite_utils.Database) -> int:
    """Judgements a day each annotator aims for, set by an admin; 0 is no goal."""
    return int(setting(db, "daily_goal", "0"))


def annotator_progress(db: sqlite_utils.Database, annotator: str) -> dict:
    """An annotator's judgements: in all, today (UTC), the daily goal an admin set (0: none), and
    how many of them trained the last finished round."""
    today = datetime.now(timezone.utc).date().isoformat()
    total, on_day = db.execute("SELECT count(*), count(CASE WHEN created_at >= ? THEN 1 END) "
                               "FROM votes WHERE annotator = ?", [today, annotator]).fetchone()
    last = db.execute("SELECT id, vote_ids FROM rounds WHERE status = 'done' ORDER BY id DESC LIMIT 1").fetchone()
    used = db.execute("SELECT count(*) FROM votes v JOIN json_each(?) j ON j.value = v.id "
                      "WHERE v.annotator = ?", [last[1] or "[]", annotator]).fetchone()[0] if last else 0
    return {"total": total, "today": on_day, "goal": daily_goal(db),
            "last_round": last[0] if last else None, "in_last_round": used}


def preference_rows(db: sqlite_utils.Database) -> list[dict]:
    """One row per decisive vote, mapped from the order shown back to chosen and rejected text.

    The margin is the 1-10 score difference where the annotator scored both sides, else 0; the
    scores themselves follow chosen and rejected (None where a side went unscored).
    """
    rows = []
    for r in db.query(
            """SELECT v.id AS vote_id, v.pair_id, v.annotator, v.choice, v.score_a, v.score_b,
                      v.shown_order, p.version_id, p.completion_0, p.completion_1,
                      pr.id AS prompt_id, pr.text AS prompt
               FROM votes v JOIN pairs p ON p.id = v.pair_id JOIN prompts pr ON pr.id = p.prompt_id
               WHERE v.choice IN ('a', 'b') ORDER BY v.id"""):
        shown = [r[f"completion_{r['shown_order'][0]}"], r[f"completion_{r['shown_order'][1]}"]]
        chosen, rejected = (shown[0], shown[1]) if r["choice"] == "a" else (shown[1], shown[0])
        scored = r["score_a"] is not None and r["score_b"] is not None
        scores = (r["score_a"], r["score_b"]) if r["choice"] == "a" else (r["score_b"], r["score_a"])
        rows.append({"prompt": r["prompt"], "chosen": chosen, "rejected": rejected,
                     "margin": float(abs(r["score_a"] - r["score_b"])) if scored else 0.0,
                     "score_chosen": scores[0] if scored else None,
                     "score_rejected": scores[1] if scored else None,
                     "vote_id": r["vote_id"], "pair_id": r["pair_id"], "prompt_id": r["prompt_id"],
                     "version_id": r["version_id"], "annotator": r["annotator"]})
    return rows


def stats(db: sqlite_utils.Database) -> dict:
    """Counts an ML engineer checks before launching a round."""
    def scalar(sql: str) -> int:
        return db.execute(sql).fetchone()[0]
    live = live_version_id(db) if scalar("SELECT count(*) FROM promotions") else None
    return {
        "prompts": prompt_count(db),
        "versions": scalar("SELECT count(*) FROM policy_versions"),
        "live_version": live,
        "pairs": scalar("SELECT count(*) FROM pairs"),
        "pairs_in_stock": ready_pair_count(db, live) if live is not None else 0,
        "votes": scalar("SELECT count(*) FROM votes"),
        "votes_by_choice": dict(db.execute(
            "SELECT choice, count(*) FROM votes GROUP BY choice ORDER BY choice").fetchall()),
        "votes_by_annotator": dict(db.execute(
            "SELECT annotator, count(*) FROM votes GROUP BY annotator ORDER BY annotator").fetchall()),
        "skipped": scalar("SELECT count(*) FROM shows WHERE skipped_at IS NOT NULL"),
    }
