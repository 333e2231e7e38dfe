"""Accounts (salted scrypt hashes and roles) and login sessions, as named queries.

The running app reads both on every request, so an account added, changed or disabled from
the Admin tab or the CLI counts at once, and sessions outlive a restart of the app.
"""
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Callable
from pathlib import Path

import sqlite_utils

from .inputs import InputError
from .migrations import ROLES
from .queries import immediate, now, since

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
HASH = re.compile(r"scrypt\$[0-9a-f]{32}\$[0-9a-f]{128}")  # as hash_password writes them
SESSION_SECONDS = 30 * 24 * 3600  # a login lasts at most 30 days


class AccountError(InputError):
    """A refused account change; its message is written for the admin, and nothing changed."""


def hash_password(password: str, salt: bytes | None = None) -> str:
    """scrypt (memory-hard, in the standard library): a copied database gives passwords up slowly."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)
    return f"scrypt${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    _, salt, _ = stored.split("$")
    return hmac.compare_digest(hash_password(password, bytes.fromhex(salt)), stored)


# --- accounts ----------------------------------------------------------------------------

def get_account(db: sqlite_utils.Database, name: str) -> dict | None:
    rows = list(db.query("SELECT * FROM accounts WHERE name = ?", [name]))
    return rows[0] if rows else None


def account_count(db: sqlite_utils.Database) -> int:
    return db.execute("SELECT count(*) FROM accounts").fetchone()[0]


def list_accounts(db: sqlite_utils.Database) -> list[dict]:
    """Every account without its hash, for the Admin tab."""
    return list(db.query("SELECT name, role, disabled_at, created_at, updated_at FROM accounts "
                         "ORDER BY name"))


def _event(db, name: str, event: str, by: str) -> None:
    db["account_events"].insert({"name": name, "event": event, "by": by, "created_at": now()})


def _insert(db, name: str, hashed: str, role: str, event: str, by: str) -> None:
    db["accounts"].insert({"name": name, "password": hashed, "role": role,
                           "created_at": now(), "updated_at": now()})
    _event(db, name, event, by)


def _check_not_last_admin(db, name: str) -> None:
    admins = [r[0] for r in db.execute(
        "SELECT name FROM accounts WHERE role = 'admin' AND disabled_at IS NULL")]
    if admins == [name]:
        raise AccountError(f"{name} is the last admin; make another account an admin first")


def save_account(db: sqlite_utils.Database, name: str, password: str | None, role: str,
                 by: str) -> str:
    """Add an account, or change an existing one's role and (if given) password; a new password
    ends the account's sessions. Returns "added" or "updated"."""
    if not NAME.fullmatch(name or ""):
        raise AccountError("a name is 1-64 letters, digits and _ . @ -, starting with a letter or digit")
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}")
    if password is not None and not isinstance(password, str):
        raise AccountError("a password must be text")
    hashed = hash_password(password) if password else None  # scrypt's 0.1 s outside the write lock
    with immediate(db):
        existing = get_account(db, name)
        if existing is None and not password:
            raise AccountError(f"{name} is a new account: give it a password")
        if existing and existing["role"] == "admin" and role != "admin":
            _check_not_last_admin(db, name)
        hashed = hashed or existing["password"]
        if existing is None:
            _insert(db, name, hashed, role, f"added as {role}", by)
            return "added"
        db.execute("UPDATE accounts SET password = ?, role = ?, updated_at = ? WHERE name = ?",
                   [hashed, role, now(), name])
        if password:
            end_sessions(db, name)
            _event(db, name, "password changed", by)
        if role != existing["role"]:
            _event(db, name, f"role {existing['role']} -> {role}", by)
        return "updated"


def set_disabled(db: sqlite_utils.Database, name: str, disabled: bool, by: str) -> None:
    """Disable an account (its sessions end: it loses access on its next request) or enable it."""
    with immediate(db):
        account = get_account(db, name)
        if account is None:
            raise AccountError(f"there is no account {name!r}")
        if disabled and account["role"] == "admin":
            _check_not_last_admin(db, name)
        db.execute("UPDATE accounts SET disabled_at = ?, updated_at = ? WHERE name = ?",
                   [now() if disabled else None, now(), name])
        if disabled:
            end_sessions(db, name)
        _event(db, name, "disabled" if disabled else "enabled", by)


def import_users_file(db: sqlite_utils.Database, path: Path, by: str) -> int:
    """Accounts from a users.json of earlier versions ({name: {"password", "role"}}) that the
    database does not have yet; returns how many were added."""
    try:
        users = json.loads(Path(path).read_text(encoding="utf-8-sig"))
        rows = [(name, u["password"], u.get("role", "annotator")) for name, u in users.items()]
    except (OSError, ValueError, AttributeError, KeyError, TypeError) as e:
        raise AccountError(f"{path}: not a users file ({e})") from None
    added = 0
    with immediate(db):
        for name, hashed, role in rows:
            if not (NAME.fullmatch(name) and role in ROLES and isinstance(hashed, str)
                    and HASH.fullmatch(hashed)):
                raise AccountError(f"{path}: account {name[:64]!r} is not valid; nothing imported")
            if get_account(db, name) is None:
                _insert(db, name, hashed, role, f"imported from {Path(path).name} as {role}", by)
                added += 1
    return added


# --- sessions ----------------------------------------------------------------------------

def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(db: sqlite_utils.Database, token: str, name: str) -> None:
    """One autocommitted insert: Gradio records a login on its event loop, so this must not
    hold a transaction open."""
    db.execute("INSERT INTO sessions (token_sha256, name, created_at) VALUES (?, ?, ?)",
               [_digest(token), name, now()])
    db.conn.commit()


def session_user(db: sqlite_utils.Database, token: str) -> str | None:
    """Who a session's cookie belongs to: only while the session is open, younger than
    SESSION_SECONDS, and its account exists and is not disabled."""
    row = db.execute(
        """SELECT s.name FROM sessions s JOIN accounts a ON a.name = s.name
           WHERE s.token_sha256 = ? AND s.ended_at IS NULL AND s.created_at > ?
             AND a.disabled_at IS NULL""", [_digest(token), since(SESSION_SECONDS)]).fetchone()
    return row[0] if row else None


def session_name(db: sqlite_utils.Database, digest: str) -> str | None:
    """The account a stored session was for, whatever its state now."""
    row = db.execute("SELECT name FROM sessions WHERE token_sha256 = ?", [digest]).fetchone()
    return row[0] if row else None


def live_sessions(db: sqlite_utils.Database) -> list[str]:
    """The digests of sessions still open and unexpired (a logout of all one's sessions walks them)."""
    return [r[0] for r in db.execute(
        "SELECT token_sha256 FROM sessions WHERE ended_at IS NULL AND created_at > ?", [since(SESSION_SECONDS)])]


def end_session(db: sqlite_utils.Database, token: str | None = None, *, digest: str | None = None) -> None:
    with immediate(db):
        db.execute("UPDATE sessions SET ended_at = ? WHERE token_sha256 = ? AND ended_at IS NULL",
                   [now(), digest or _digest(token)])


def end_sessions(db: sqlite_utils.Database, name: str) -> None:
    with immediate(db):
        db.execute("UPDATE sessions SET ended_at = ? WHERE name = ? AND ended_at IS NULL", [now(), name])


# --- wrong passwords ---------------------------------------------------------------------

def login_failures(db: sqlite_utils.Database, name: str, at: float) -> tuple[int, float]:
    """Wrong passwords in a row for a login name, and when its lockout ends, as of `at`
    (seconds since the epoch); (0, 0.0) for a name with none on record."""
    row = db.execute("SELECT failures, locked_until FROM login_failures WHERE name = ? AND expires_at > ?",
                     [name, at]).fetchone()
    return (row[0], row[1]) if row else (0, 0.0)


def record_login_failure(db: sqlite_utils.Database, name: str, at: float,
                         lockout: Callable[[int], float], keep_seconds: float) -> int:
    """One more wrong password for `name` at `at`; `lockout(n)` is how many seconds n in a row
    lock the name (0: not locked). The row is kept until its lockout ends or `keep_seconds`
    after this failure, whichever is later, and the same write deletes every expired row, so
    the table holds only the names that failed lately. Returns the count."""
    with immediate(db):
        db.execute("DELETE FROM login_failures WHERE expires_at <= ?", [at])
        n = login_failures(db, name, at)[0] + 1
        seconds = lockout(n)
        locked_until = at + seconds if seconds > 0 else 0.0
        db.execute("INSERT OR REPLACE INTO login_failures (name, failures, locked_until, expires_at) "
                   "VALUES (?, ?, ?, ?)", [name, n, locked_until, max(locked_until, at + keep_seconds)])
    return n


def clear_login_failures(db: sqlite_utils.Database, name: str) -> None:
    """A successful login forgets the name's wrong passwords (writing only if it had any)."""
    if db.execute("SELECT 1 FROM login_failures WHERE name = ?", [name]).fetchone():
        with immediate(db):
            db.execute("DELETE FROM login_failures WHERE name = ?", [name])
