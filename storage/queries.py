"""Every read and write the app, trainer and CLI make, as named functions over one connection."""
import contextlib
import random
import statistics
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import sqlite_utils

from .inputs import InputError, checked_text, whole_number
from .migrations import CHOICES, VERDICTS
from .near_duplicates import NearCopy, PromptIndex

MAX_RATIONALE_CHARS = 5000
MAX_CORRECTION_CHARS = 8000  # twice what the longest answer the app samples could be
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
    case_duplicates: int = 0  # the same but for case and runs of whitespace
    near_copies: list[NearCopy] = field(default_factory=list)  # reworded copies of a known prompt


def add_prompts(db: sqlite_utils.Database, prompts: Iterable[dict], source: str,
                near_threshold: float | None = None, dry_run: bool = False) -> PromptImport:
    """Insert prompts ({"text", "category"?}), dropping ones already known (or known earlier in
    the same batch): exact copies, copies but for case and spacing, and, given `near_threshold`,
    near-copies that similar or more (see `storage.near_duplicates`; file imports check them).
    All in one transaction; `dry_run` reports what would happen and inserts nothing."""
    result = PromptImport()
    seen_text, seen_norm = set(), set()
    index = PromptIndex(near_threshold) if near_threshold is not None else None
    known = list(db.query("SELECT text, norm FROM prompts"))
    for row in known:
        seen_text.add(row["text"])
        seen_norm.add(row["norm"])
    if index:
        index.add_all(row["text"] for row in known)
    rows, created = [], now()
    for prompt in prompts:
        text, norm = prompt["text"], normalise(prompt["text"])
        if text in seen_text:
            result.exact_duplicates += 1
        elif norm in seen_norm:
            result.case_duplicates += 1
        elif index and (copy := index.copy_of(text)):
            result.near_copies.append(copy)
        else:
            rows.append({"text": text, "norm": norm, "category": prompt.get("category"),
                         "source": source, "created_at": created})
            if index:
                index.add(text)
        seen_text.add(text)
        seen_norm.add(norm)
    if not dry_run:
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
    """The n prompts with the fewest pairs from this version, ties broken at random. Prompts of
    gold pairs get none: meeting a gold pair's prompt twice would give the gold pair away."""
    return list(db.query(
        """SELECT pr.id, pr.text FROM prompts pr
           LEFT JOIN pairs p ON p.prompt_id = pr.id AND p.version_id = :v
           WHERE pr.id NOT IN (SELECT gp.prompt_id FROM gold_pairs g JOIN pairs gp ON gp.id = g.pair_id)
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
             prompt_truncated: bool, gen_seconds: float, cut_off: tuple[bool, bool] = (False, False)) -> int:
    with immediate(db):
        return db["pairs"].insert({
            "prompt_id": prompt_id, "version_id": version_id,
            "completion_0": completions[0], "completion_1": completions[1],
            "cut_off_0": int(cut_off[0]), "cut_off_1": int(cut_off[1]),
            "sampling": sampling, "seed": seed, "prompt_truncated": int(prompt_truncated),
            "gen_seconds": round(gen_seconds, 3), "created_at": now(),
        }).last_pk


# A pair is in stock while it still needs judgements: fewer than `k` annotators (the overlap an
# admin sets) have judged it or hold a claim on it, and fewer than `k` have skipped it. A claim
# (a show) lapses after `claim_seconds`, so a pair whose annotator walked away goes back. Gold
# pairs are never stock: they are mixed in at their own rate (see `show_next_pair`).
TAKEN = """(SELECT count(*) FROM votes v WHERE v.pair_id = p.id)
    + (SELECT count(*) FROM shows s WHERE s.pair_id = p.id AND s.skipped_at IS NULL
       AND s.shown_at > :cutoff AND s.annotator != :me
       AND NOT EXISTS (SELECT 1 FROM votes v WHERE v.pair_id = p.id AND v.annotator = s.annotator))"""
IN_STOCK = f"""{TAKEN} < :k
    AND (SELECT count(*) FROM shows s WHERE s.pair_id = p.id AND s.skipped_at IS NOT NULL) < :k
    AND p.id NOT IN (SELECT pair_id FROM gold_pairs)"""
# A verdict on this pair, not on an earlier one whose id it took over (SQLite reuses the ids of
# the newest rows when they are deleted, and verdicts are never deleted).
ON_PAIR = "f.pair_id = p.id AND f.created_at >= p.created_at"
# How sure the surest judge that says how sure it is was of a pair (NULL: none has judged it).
SUREST = f"(SELECT max(f.confidence) FROM first_pass f WHERE {ON_PAIR} AND f.verdict IS NOT NULL)"
UNSURE = f"coalesce({SUREST}, 0) < :sure"  # in route mode, a pair people are asked to label


@dataclass(frozen=True)
class SecondPass:
    """How people's judgements follow the judges' first pass, an admin's setting:

    - `off`: pairs are served oldest first, with nothing shown but the pair;
    - `route`: a pair a judge is at least `confidence` sure of is labelled by it, and people get
      the pairs the judges are least sure of first (a sure one only when no other is in stock);
    - `review`: people see the surest judge's suggestion and confirm or overturn it.

    In both, `audit_share` of the pairs shown are drawn at random from the stock and shown
    without a suggestion: those votes measure the judges honestly (a suggestion anchors people,
    and routed pairs are the hard ones)."""
    mode: str = "off"
    audit_share: float = 0.15
    confidence: float = 0.8


SECOND_PASS_MODES = ("off", "route", "review")
AUDIT_SHARES = (0.05, 0.5)  # fewer audits measure a judge too slowly; more defeat the purpose


def second_pass(db: sqlite_utils.Database) -> SecondPass:
    default = SecondPass()
    return SecondPass(setting(db, "second_pass", default.mode),
                      float(setting(db, "audit_share", repr(default.audit_share))),
                      float(setting(db, "route_confidence", repr(default.confidence))))


def _share(name: str, value, low: float, high: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number from {low} to {high}, not {value!r}") from None
    if not low <= value <= high:  # NaN fails this too
        raise InputError(f"{name} must be from {low} to {high}, not {value}")
    return value


def set_second_pass(db: sqlite_utils.Database, mode=None, audit_share=None, confidence=None) -> SecondPass:
    """Change the mode, the audit share or the confidence that routes a pair (None keeps one);
    all are checked before any is written. Returns what is in force."""
    if mode is not None and mode not in SECOND_PASS_MODES:
        raise InputError(f"the second pass must be one of {', '.join(SECOND_PASS_MODES)}, not {mode!r}")
    audit_share = None if audit_share is None else _share("the audit share", audit_share, *AUDIT_SHARES)
    confidence = None if confidence is None else _share("the confidence that routes a pair", confidence, 0.5, 1.0)
    with immediate(db):
        for key, value in (("second_pass", mode), ("audit_share", audit_share), ("route_confidence", confidence)):
            if value is not None:
                put_setting(db, key, value if isinstance(value, str) else repr(value))
    return second_pass(db)


def overlap(db: sqlite_utils.Database) -> int:
    """How many different annotators judge each pair: 1 by default, more to measure agreement."""
    return int(setting(db, "overlap", "1"))


def gold_rate(db: sqlite_utils.Database) -> float:
    """The share of pairs shown that are gold pairs, drawn from those the annotator has not seen."""
    return float(setting(db, "gold_rate", "0"))


MAX_OVERLAP = 10
MAX_GOLD_RATE = 0.5  # more would make gold the bulk of the work


def _checked_rate(rate) -> float:
    return _share("the gold rate", rate, 0, MAX_GOLD_RATE)


def set_assignment(db: sqlite_utils.Database, k=None, rate=None) -> tuple[int, float]:
    """Change the overlap (k annotators per pair), the gold rate or both (None keeps one); both
    are checked before either is written. Returns what is in force."""
    k = None if k is None else whole_number("the overlap", k, 1, MAX_OVERLAP)
    rate = None if rate is None else _checked_rate(rate)
    with immediate(db):
        if k is not None:
            put_setting(db, "overlap", str(k))
        if rate is not None:
            put_setting(db, "gold_rate", repr(rate))
    return overlap(db), gold_rate(db)


def since(seconds: float) -> str:
    """The time `seconds` ago, written as `now()` writes times, so the two compare as text."""
    return (datetime.now(timezone.utc) - timedelta(seconds=seconds)).isoformat(timespec="milliseconds")


def ready_pair_count(db: sqlite_utils.Database, version_id: int, claim_seconds: float = CLAIM_SECONDS) -> int:
    """Pairs of this version in stock that nobody has judged or holds: the queue's stock, which
    anyone can be given. (With an overlap above 1, pairs some have judged stay in stock too, for
    the others; they are served first, but do not count here, as they cannot serve everyone.)"""
    second = second_pass(db)
    routed = f" AND {UNSURE}" if second.mode == "route" else ""  # the judges label the others
    return db.execute(f"SELECT count(*) FROM pairs p WHERE p.version_id = :v AND {IN_STOCK} AND {TAKEN} = 0{routed}",
                      {"v": version_id, "cutoff": since(claim_seconds), "k": overlap(db),
                       "me": "", "sure": second.confidence}).fetchone()[0]


def recent_pair_seconds(db: sqlite_utils.Database, version_id: int, n: int = 16) -> float | None:
    """Median generation seconds per pair over this version's last `n` pairs (None before any):
    what the app quotes to an annotator waiting for a batch."""
    rows = [r["gen_seconds"] for r in db.query(
        "SELECT gen_seconds FROM pairs WHERE version_id = ? AND gen_seconds > 0 ORDER BY id DESC LIMIT ?",
        [version_id, n])]
    return statistics.median(rows) if rows else None


def collecting_pair_ids(db: sqlite_utils.Database) -> set[int]:
    """Judged pairs of the live version that still wait for judgements (fewer than the overlap's
    k): a majority of one of three is no majority yet."""
    return {r[0] for r in db.execute(
        """SELECT p.id FROM pairs p WHERE p.version_id = :v
           AND (SELECT count(*) FROM votes v WHERE v.pair_id = p.id) BETWEEN 1 AND :k - 1
           AND (SELECT count(*) FROM shows s WHERE s.pair_id = p.id AND s.skipped_at IS NOT NULL) < :k
           AND p.id NOT IN (SELECT pair_id FROM gold_pairs)""",
        {"v": live_version_id(db), "k": overlap(db)})}


def active_annotators(db: sqlite_utils.Database, minutes: float) -> int:
    """Annotators who were shown a pair in the last `minutes`: the queue's demand."""
    return db.execute("SELECT count(DISTINCT annotator) FROM shows WHERE shown_at > ?",
                      [since(minutes * 60)]).fetchone()[0]


PAIR_COLUMNS = """p.id, pr.text AS prompt, p.completion_0, p.completion_1, p.version_id,
    p.cut_off_0, p.cut_off_1"""


def _shown(db: sqlite_utils.Database, pair: dict, order: str, suggestion_id: int | None) -> dict:
    """The pair as the annotator sees it: answer A is the stored answer `order[0]`; with the
    judge's suggestion on the same sides, where one was shown."""
    suggestion = None
    if suggestion_id is not None:
        judge, verdict, confidence = db.execute("SELECT judge, verdict, confidence FROM first_pass WHERE id = ?",
                                                [suggestion_id]).fetchone()
        suggestion = {"answer": "a" if order[0] == verdict else "b", "confidence": confidence, "judge": judge}
    return {"pair_id": pair["id"], "prompt": pair["prompt"], "version_id": pair["version_id"],
            "a": pair[f"completion_{order[0]}"], "b": pair[f"completion_{order[1]}"],
            "a_cut_off": bool(pair[f"cut_off_{order[0]}"]), "b_cut_off": bool(pair[f"cut_off_{order[1]}"]),
            "suggestion": suggestion}


def open_claim(db: sqlite_utils.Database, annotator: str, claim_seconds: float = CLAIM_SECONDS) -> dict | None:
    """The pair the annotator was shown last and has neither judged nor skipped, as they saw it,
    while it is still theirs: their claim is live, or the pair still needs judgements. What a
    reloaded page shows again; showing it renews the claim."""
    with immediate(db):
        rows = list(db.query(
            f"""SELECT {PAIR_COLUMNS}, s.id AS show_id, s.shown_order, s.shown_at, s.suggestion_id
               FROM shows s JOIN pairs p ON p.id = s.pair_id JOIN prompts pr ON pr.id = p.prompt_id
               WHERE s.annotator = :me AND s.skipped_at IS NULL
               AND NOT EXISTS (SELECT 1 FROM votes v WHERE v.pair_id = p.id AND v.annotator = :me)
               AND (s.shown_at > :cutoff OR p.id IN (SELECT pair_id FROM gold_pairs) OR {TAKEN} < :k)
               ORDER BY s.id DESC LIMIT 1""",
            {"me": annotator, "cutoff": since(claim_seconds), "k": overlap(db)}))
        if not rows:
            return None
        if rows[0]["shown_at"] <= since(claim_seconds):
            db.execute("UPDATE shows SET shown_at = ? WHERE id = ?", [now(), rows[0]["show_id"]])
        return _shown(db, rows[0], rows[0]["shown_order"], rows[0]["suggestion_id"])


def show_next_pair(db: sqlite_utils.Database, annotator: str, version_id: int,
                   rng: random.Random, claim_seconds: float = CLAIM_SECONDS) -> dict | None:
    """Claim a pair for this annotator, in a random left/right order: at the gold rate a gold
    pair they have not seen, else a pair of the version in stock that they have not seen, as the
    second pass says (`SecondPass`): the oldest, or in route mode the least sure, or at the audit
    share any at random.

    Oldest first, so that with an overlap of k a pair gets its k judgements before newer pairs
    start; a claim holds one of the pair's k places, so no more than k annotators race for it,
    and an abandoned claim lapses after `claim_seconds`.
    """
    unseen = "NOT EXISTS (SELECT 1 FROM shows s WHERE s.pair_id = p.id AND s.annotator = :me)"
    second = second_pass(db)
    params = {"v": version_id, "me": annotator, "cutoff": since(claim_seconds), "k": overlap(db),
              "sure": second.confidence}

    def stock(where: str = "", order: str = "p.id") -> list[dict]:
        return list(db.query(
            f"""SELECT {PAIR_COLUMNS} FROM pairs p JOIN prompts pr ON pr.id = p.prompt_id
               WHERE p.version_id = :v AND {IN_STOCK} AND {unseen} {where} ORDER BY {order} LIMIT 1""", params))
    with immediate(db):
        rows, served = [], None
        if rng.random() < gold_rate(db):
            rows = list(db.query(
                f"""SELECT {PAIR_COLUMNS} FROM gold_pairs g JOIN pairs p ON p.id = g.pair_id
                   JOIN prompts pr ON pr.id = p.prompt_id WHERE {unseen}
                   ORDER BY random() LIMIT 1""", params))
        gold = bool(rows)  # shown as they are, never with a suggestion
        if not rows and second.mode != "off" and rng.random() < second.audit_share:
            rows, served = stock(order="random()"), "audit"
        if not rows and second.mode == "route":
            # Pairs others have judged first (overlap), then the judged ones least sure first, then
            # the ones no judge has read yet.
            rows, served = stock(f"AND {UNSURE}", f"{TAKEN} > 0 DESC, {SUREST} IS NULL, {SUREST}, p.id"), "uncertain"
            rows, served = (rows, served) if rows else (stock(), "confident")
        if not rows:
            rows, served = stock(), None
        if not rows:
            return None
        suggestion_id = None
        if second.mode == "review" and served is None and not gold:
            row = db.execute(f"SELECT f.id FROM first_pass f JOIN pairs p ON {ON_PAIR} WHERE p.id = ? "
                             "AND f.verdict IS NOT NULL AND f.confidence IS NOT NULL "
                             "ORDER BY f.confidence DESC, f.id DESC LIMIT 1", [rows[0]["id"]]).fetchone()
            suggestion_id, served = (row[0], "review") if row else (None, None)
        order = rng.choice(["01", "10"])
        db["shows"].insert({"pair_id": rows[0]["id"], "annotator": annotator, "shown_order": order,
                            "shown_at": now(), "served": served, "suggestion_id": suggestion_id})
        return _shown(db, rows[0], order, suggestion_id)


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


def _checked_correction(correction, corrected: str | None, choice: str) -> tuple[str | None, str]:
    """The corrected answer's text, or None, and the side ("a" or "b") it replaces: the one the
    annotator started from, else the one they chose, else A."""
    text = (checked_text("the corrected answer", correction, MAX_CORRECTION_CHARS) or "").strip()
    if corrected not in (None, "", "a", "b"):
        raise VoteError(f"the corrected answer replaces answer a or b, not {corrected!r}")
    return text or None, corrected or (choice if choice in ("a", "b") else "a")


def record_vote(db: sqlite_utils.Database, annotator: str, pair_id, choice: str,
                score_a=None, score_b=None, rationale: str | None = None,
                correction: str | None = None, corrected: str | None = None,
                claim_seconds: float = CLAIM_SECONDS) -> int:
    """Store one judgement, and the annotator's corrected answer if they wrote one, and return
    the vote's id; the same vote sent twice returns the first id.

    A vote on a pair the annotator still holds is taken. One whose claim lapsed is taken only
    if the pair still has room: fewer than the overlap's k annotators have judged it or hold it
    now (a gold pair always has room).
    """
    vote = _checked_vote(choice, score_a, score_b, rationale)
    correction, corrected = _checked_correction(correction, corrected, choice)
    pair_id = whole_number("the pair id", pair_id, low=1)
    with immediate(db):
        shows = list(db.query("SELECT * FROM shows WHERE pair_id = ? AND annotator = ?",
                              [pair_id, annotator]))
        if not shows:
            if not db.execute("SELECT 1 FROM pairs WHERE id = ?", [pair_id]).fetchone():
                raise VoteError(f"unknown pair {pair_id}")
            raise VoteError(f"pair {pair_id} was not shown to you; ask for the next pair")
        show = shows[0]
        pair = db.execute("SELECT prompt_id, completion_0, completion_1 FROM pairs WHERE id = ?", [pair_id]).fetchone()
        replaced = show["shown_order"][0 if corrected == "a" else 1]
        if correction == pair[1 + int(replaced)].strip():
            correction = None  # an unedited copy corrects nothing
        mine = db.execute(
            "SELECT v.id, v.choice, v.score_a, v.score_b, v.rationale, d.text FROM votes v "
            "LEFT JOIN demonstrations d ON d.vote_id = v.id WHERE v.pair_id = ? AND v.annotator = ?",
            [pair_id, annotator]).fetchone()
        if mine:
            if dict(zip(("choice", "score_a", "score_b", "rationale", "text"), mine[1:])) == vote | {"text": correction}:
                return mine[0]
            raise VoteError(f"pair {pair_id} is already judged; your first vote stands")
        if show["skipped_at"]:
            raise VoteError(f"pair {pair_id} was skipped; ask for the next pair")
        if show["shown_at"] <= since(claim_seconds) and not db.execute(
                f"SELECT p.id IN (SELECT pair_id FROM gold_pairs) OR {TAKEN} < :k FROM pairs p WHERE p.id = :pair",
                {"pair": pair_id, "me": annotator, "cutoff": since(claim_seconds), "k": overlap(db)}).fetchone()[0]:
            raise VoteError(f"pair {pair_id} was left unjudged too long and someone else judged it "
                            "or holds it now; ask for the next pair")
        seconds = (datetime.fromisoformat(now()) - datetime.fromisoformat(show["shown_at"]))
        guideline_id = db.execute("SELECT max(id) FROM guidelines").fetchone()[0]  # the version in force
        vote_id = db["votes"].insert({
            **vote, "pair_id": pair_id, "annotator": annotator, "shown_order": show["shown_order"],
            "served": show["served"], "suggestion_id": show["suggestion_id"],
            "seconds_on_task": round(seconds.total_seconds(), 3), "guideline_id": guideline_id,
            "created_at": now(),
        }).last_pk
        if correction:
            db["demonstrations"].insert({
                "prompt_id": pair[0], "pair_id": pair_id, "vote_id": vote_id, "replaced": replaced,
                "text": correction, "author": annotator, "created_at": now()})
        return vote_id


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


def judgements(db: sqlite_utils.Database) -> list[dict]:
    """Every vote, with its verdict on the pair's stored answers ("0" for `completion_0`, "1",
    "tie", "both_bad") whichever side each answer was shown on, its scores in that order too,
    and the gold verdict where the pair is a gold pair. What agreement and aggregation read."""
    rows = []
    for r in db.query(
            """SELECT v.id AS vote_id, v.pair_id, v.annotator, v.choice, v.score_a, v.score_b,
                      v.shown_order, v.served, v.suggestion_id, v.seconds_on_task, v.created_at, p.version_id,
                      p.completion_0, p.completion_1, pr.id AS prompt_id, pr.text AS prompt,
                      pr.category, g.expected AS gold
               FROM votes v JOIN pairs p ON p.id = v.pair_id JOIN prompts pr ON pr.id = p.prompt_id
               LEFT JOIN gold_pairs g ON g.pair_id = v.pair_id ORDER BY v.id"""):
        order = r["shown_order"]
        verdict = {"a": order[0], "b": order[1]}.get(r["choice"], r["choice"])
        score = {order[0]: r["score_a"], order[1]: r["score_b"]}
        rows.append({**r, "verdict": verdict, "score_0": score["0"], "score_1": score["1"]})
    return rows


def demonstrations(db: sqlite_utils.Database) -> list[dict]:
    """Every corrected answer with its prompt and the answer it replaced."""
    return list(db.query(
        """SELECT d.id, d.vote_id, d.pair_id, d.prompt_id, d.author AS annotator, d.text,
                  d.created_at, pr.text AS prompt, p.version_id,
                  CASE d.replaced WHEN '0' THEN p.completion_0 ELSE p.completion_1 END AS replaced_text,
                  g.expected AS gold
           FROM demonstrations d JOIN pairs p ON p.id = d.pair_id JOIN prompts pr ON pr.id = d.prompt_id
           LEFT JOIN gold_pairs g ON g.pair_id = d.pair_id ORDER BY d.id"""))


def mark_gold(db: sqlite_utils.Database, pair_id, expected: str, by: str) -> None:
    """Make a pair a gold pair with this expected verdict on its stored answers (see `judgements`).
    Its votes, earlier and later, no longer train a round; they measure the annotators."""
    pair_id = whole_number("the pair id", pair_id, low=1)
    if expected not in VERDICTS:
        raise InputError(f"the expected verdict must be one of {', '.join(VERDICTS)}, not {expected!r}")
    with immediate(db):
        if not db.execute("SELECT 1 FROM pairs WHERE id = ?", [pair_id]).fetchone():
            raise InputError(f"unknown pair {pair_id}")
        if db.execute("SELECT 1 FROM gold_pairs WHERE pair_id = ?", [pair_id]).fetchone():
            raise InputError(f"pair {pair_id} is already a gold pair")
        db["gold_pairs"].insert({"pair_id": pair_id, "expected": expected, "marked_by": by,
                                 "created_at": now()})


def get_pair(db: sqlite_utils.Database, pair_id) -> dict:
    """A pair with its prompt, stored answers, and gold verdict if it has one."""
    pair_id = whole_number("the pair id", pair_id, low=1)
    rows = list(db.query(f"""SELECT {PAIR_COLUMNS}, g.expected AS gold FROM pairs p
                            JOIN prompts pr ON pr.id = p.prompt_id LEFT JOIN gold_pairs g ON g.pair_id = p.id
                            WHERE p.id = ?""", [pair_id]))
    if not rows:
        raise InputError(f"unknown pair {pair_id}")
    return rows[0]


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
        "imported_preferences": scalar("SELECT count(*) FROM imported_preferences"),
    }
