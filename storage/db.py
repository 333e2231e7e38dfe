"""Opening the database: WAL so the app, trainer and CLI can share it; foreign keys on."""
import sqlite3
import threading
from pathlib import Path

import sqlite_utils

from .migrations import migrations

_local = threading.local()


def open_db(path: str | Path) -> sqlite_utils.Database:
    """A new connection with the schema migrated to the latest version."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=30, check_same_thread=False)
    db = sqlite_utils.Database(conn)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA foreign_keys=ON")
    db.execute("PRAGMA busy_timeout=30000")
    migrations.apply(db)
    return db


def thread_db(path: str | Path) -> sqlite_utils.Database:
    """This thread's connection to `path`; sqlite3 connections must not be shared across threads."""
    conns = getattr(_local, "conns", None)
    if conns is None:
        conns = _local.conns = {}
    key = str(Path(path).resolve())
    if key not in conns:
        conns[key] = open_db(path)
    return conns[key]
