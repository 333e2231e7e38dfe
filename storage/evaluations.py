"""Named queries for side-by-side comparisons, evaluation votes and the demo gallery.

A comparison is what a viewer (or the reward model) was shown: one prompt, two versions'
answers, left and right. Its votes go to `eval_votes`, never to `votes`, so evaluation can
not leak into training data.
"""
import json

import sqlite_utils

from .exports import is_heldout
from .migrations import CHOICES
from .inputs import checked_text, whole_number
from .queries import VoteError, all_prompts, immediate, now
from .ratings import Outcome


def add_comparison(db: sqlite_utils.Database, *, prompt: str, version_a: int, version_b: int,
                   completion_a: str, completion_b: str, sampling: dict, seed: int, blind: bool,
                   created_by: str) -> int:
    with immediate(db):
        return db["comparisons"].insert({
            "prompt": prompt, "version_a": version_a, "version_b": version_b,
            "completion_a": completion_a, "completion_b": completion_b,
            "sampling": json.dumps(sampling), "seed": seed, "blind": int(blind),
            "created_by": created_by, "created_at": now()}).last_pk


def get_comparison(db: sqlite_utils.Database, comparison_id) -> dict:
    comparison_id = whole_number("the comparison id", comparison_id, low=1)
    rows = list(db.query("SELECT * FROM comparisons WHERE id = ?", [comparison_id]))
    if not rows:
        raise VoteError(f"unknown comparison {comparison_id!r}; generate one first")
    return rows[0]


def record_eval_vote(db: sqlite_utils.Database, comparison_id, annotator: str, result: str) -> int:
    """Store a viewer's verdict on a comparison; the same verdict sent twice is stored once."""
    if result not in CHOICES:
        raise VoteError(f"the verdict must be one of {', '.join(CHOICES)}, not {result!r}")
    comparison = get_comparison(db, comparison_id)
    if not comparison["blind"]:
        raise VoteError("only blind comparisons take votes: a viewer who knows the versions is biased")
    if comparison["created_by"] != annotator:
        raise VoteError(f"comparison {comparison['id']} was not shown to you; generate your own")
    with immediate(db):
        previous = list(db.query("SELECT id, result FROM eval_votes WHERE comparison_id = ? "
                                 "AND annotator = ?", [comparison["id"], annotator]))
        if previous:
            if previous[0]["result"] == result:
                return previous[0]["id"]
            raise VoteError(f"you already judged comparison {comparison['id']}; your first vote stands")
        return db["eval_votes"].insert({
            "comparison_id": comparison["id"], "judge": "human", "annotator": annotator,
            "result": result, "created_at": now()}).last_pk


def add_model_judgements(db: sqlite_utils.Database, round_id: int, judgements: list[dict],
                         sampling: dict, seed: int) -> int:
    """The reward model's verdicts from a round's evaluation, as comparisons it judged."""
    with immediate(db):
        for j in judgements:
            comparison_id = db["comparisons"].insert({
                "prompt": j["prompt"], "version_a": j["version_a"], "version_b": j["version_b"],
                "completion_a": j["completion_a"], "completion_b": j["completion_b"],
                "sampling": json.dumps(sampling), "seed": seed, "blind": 1,
                "created_by": f"round {round_id}", "created_at": now()}).last_pk
            db["eval_votes"].insert({
                "comparison_id": comparison_id, "judge": "reward_model",
                "annotator": f"reward model of round {round_id}", "result": j["result"],
                "score_a": j["score_a"], "score_b": j["score_b"], "round_id": round_id,
                "created_at": now()})
    return len(judgements)


def outcomes(db: sqlite_utils.Database, judge: str) -> list[Outcome]:
    """Every verdict of one kind of judge ("human" or "reward_model") for the leaderboard."""
    return [Outcome(r["version_a"], r["version_b"], r["result"]) for r in db.query(
        """SELECT c.version_a, c.version_b, e.result FROM eval_votes e
           JOIN comparisons c ON c.id = e.comparison_id
           WHERE e.judge = ? AND c.version_a != c.version_b ORDER BY e.id""", [judge])]


def heldout_prompts(db: sqlite_utils.Database, limit: int = 50) -> list[str]:
    """Prompts no round trains on: fair ground for before/after comparisons."""
    return [r["text"] for r in all_prompts(db) if is_heldout(r["id"])][:limit]


# --- gallery ---------------------------------------------------------------------------------

MAX_NOTE_CHARS = 500


def pin(db: sqlite_utils.Database, comparison_id, note: str, by: str) -> int:
    """Keep a comparison in the gallery; a blind one only after its vote, since pins name versions."""
    comparison = get_comparison(db, comparison_id)
    voted = db.execute("SELECT 1 FROM eval_votes WHERE comparison_id = ?", [comparison["id"]]).fetchone()
    if comparison["blind"] and not voted:
        raise VoteError("vote on a blind comparison before pinning it: the gallery shows its versions")
    with immediate(db):
        return db["gallery"].insert({"comparison_id": comparison["id"],
                                     "note": checked_text("the note", note, MAX_NOTE_CHARS),
                                     "pinned_by": by, "pinned_at": now()}).last_pk


def unpin(db: sqlite_utils.Database, gallery_id: int) -> None:
    with immediate(db):
        db.execute("UPDATE gallery SET unpinned_at = ? WHERE id = ? AND unpinned_at IS NULL",
                   [now(), gallery_id])


def gallery(db: sqlite_utils.Database) -> list[dict]:
    return list(db.query(
        """SELECT g.id, g.note, g.pinned_by, g.pinned_at, c.prompt, c.version_a, c.version_b,
                  c.completion_a, c.completion_b, c.seed
           FROM gallery g JOIN comparisons c ON c.id = g.comparison_id
           WHERE g.unpinned_at IS NULL ORDER BY g.id"""))


def _inert(text: str) -> str:
    """Untrusted text for a Markdown file that any renderer shows as text: no tag (every `<` is
    an entity, shown as `&lt;` inside code), and no link or image (every `[` is escaped), since
    some renderers keep `javascript:` links and every one fetches images."""
    return text.replace("<", "&lt;").replace("[", "\\[")


def _quoted(text: str) -> str:
    """Quoted, so that an unclosed code fence or list in it ends with the quote instead of
    swallowing the rest of the document."""
    return "\n".join("> " + line for line in _inert(text).splitlines()) or ">"


def gallery_markdown(db: sqlite_utils.Database) -> str:
    """The pinned examples as one Markdown document, to paste into a slide or a report."""
    parts = ["# prefloop: before and after\n"]
    for g in gallery(db):
        note = _inert(" ".join((g["note"] or f"Example {g['id']}").split()))
        parts.append(f"## {note}\n\n**Prompt:**\n\n{_quoted(g['prompt'])}\n\n"
                     f"**Version {g['version_a']}:**\n\n{_quoted(g['completion_a'])}\n\n"
                     f"**Version {g['version_b']}:**\n\n{_quoted(g['completion_b'])}\n")
    return "\n".join(parts)
