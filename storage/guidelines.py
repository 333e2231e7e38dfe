"""Annotation guidelines: Markdown written by admins, one row per version."""
import sqlite_utils

from .inputs import InputError, checked_text
from .queries import immediate, now

MAX_GUIDELINE_CHARS = 20_000


def current_guideline(db: sqlite_utils.Database) -> dict | None:
    """The version in force: the latest saved."""
    rows = list(db.query("SELECT * FROM guidelines ORDER BY id DESC LIMIT 1"))
    return rows[0] if rows else None


def save_guideline(db: sqlite_utils.Database, text, author: str) -> int:
    """A new version, or the current one's id when the text is unchanged."""
    text = checked_text("the guidelines", text, MAX_GUIDELINE_CHARS)
    if not text:
        raise InputError("the guidelines are empty")
    with immediate(db):
        current = current_guideline(db)
        if current and current["text"] == text:
            return current["id"]
        return db["guidelines"].insert({"text": text, "author": author, "created_at": now()}).last_pk
