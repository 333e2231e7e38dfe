"""Logging in: Gradio's `auth=` and its session table, both backed by the database.

Accounts live in SQLite (`storage.accounts`), so an account added, changed or disabled counts
on its next request without a restart. Gradio keeps logged-in cookies in `app.tokens`, a dict
that a restart empties; `Sessions` puts the same mapping in the database, and the cookie's
name is kept there too, so a restart logs nobody out.

With no account at all, the app makes a demo admin account (printed at start-up) so that a
first `make run` works; it is disabled as soon as a real admin account exists.
"""
import asyncio
import math
import secrets
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import sqlite_utils
from fastapi import HTTPException, status

from storage import accounts, queries
from storage.db import thread_db

DEMO_USER, DEMO_PASSWORD = "demo", "demo"


def ensure_accounts(db: sqlite_utils.Database, users_file: Path) -> str | None:
    """Accounts on a first start: an older version's users.json imported, else the demo account.
    Returns what to tell whoever started the app, if anything."""
    if accounts.account_count(db):
        retire_demo(db, by="prefloop")  # a real admin may have come by `import-users`
        return None
    if users_file.exists():
        n = accounts.import_users_file(db, users_file, by="prefloop")
        return f"Imported {n} account(s) from {users_file} into the database; edit them from the Admin tab."
    accounts.save_account(db, DEMO_USER, DEMO_PASSWORD, "admin", by="prefloop")
    return (f"No accounts yet: log in as '{DEMO_USER}' / '{DEMO_PASSWORD}'. Add real ones with "
            "`python -m app adduser NAME` or from the Admin tab; the demo account is disabled "
            "once a real admin exists.")


def has_demo_password(db: sqlite_utils.Database) -> bool:
    demo = accounts.get_account(db, DEMO_USER)
    return bool(demo) and accounts.check_password(DEMO_PASSWORD, demo["password"])


def retire_demo(db: sqlite_utils.Database, by: str) -> None:
    """The demo admin's well-known password must not outlive the first real admin."""
    others = [a for a in accounts.list_accounts(db)
              if a["role"] == "admin" and not a["disabled_at"] and a["name"] != DEMO_USER]
    if others and current_role(db, DEMO_USER) and has_demo_password(db):
        accounts.set_disabled(db, DEMO_USER, True, by=by)


def add_account(db: sqlite_utils.Database, name: str, password: str | None, role: str, by: str) -> str:
    """Save an account; a real admin retires the demo account while it still has the demo password."""
    result = accounts.save_account(db, name, password, role, by)
    retire_demo(db, by)
    return result


def set_disabled(db: sqlite_utils.Database, name: str, disabled: bool, by: str) -> None:
    """Disable or enable an account; the demo account comes back only with a new password."""
    if name == DEMO_USER and not disabled and has_demo_password(db):
        raise accounts.AccountError("give the demo account a new password before enabling it")
    accounts.set_disabled(db, name, disabled, by)


def current_role(db: sqlite_utils.Database, name: str | None) -> str | None:
    """The account's role now, or None for no (or a disabled) account."""
    account = accounts.get_account(db, name) if name else None
    return account["role"] if account and not account["disabled_at"] else None


@dataclass
class LoginLimits:
    """Guessing is slowed per account: after `failures` wrong passwords in a row the account
    refuses logins for `lockout_seconds`, doubled for each further failure up to the maximum."""
    failures: int = 5
    lockout_seconds: float = 30.0
    max_lockout_seconds: float = 900.0


def authenticator(db_path: Path, limits: LoginLimits | None = None, clock: Callable[[], float] = time.monotonic):
    """The callable Gradio's `auth=` takes: a coroutine, so that Gradio awaits it, with the
    account lookup and scrypt check in a worker thread, so fifty people logging in at once
    never stall the event loop that serves everyone already logged in.

    Attempts still being checked count as failures until they succeed, so a burst of parallel
    guesses is limited like a slow one; names with no (or a disabled) account are limited and
    timed alike, so neither a lockout nor a delay tells which accounts exist.
    """
    limits = limits or LoginLimits()
    failed: dict[str, int] = {}   # wrong passwords in a row, per name
    checking: dict[str, int] = {}  # attempts being checked now, per name
    locked_until: dict[str, float] = {}
    unknown = accounts.hash_password(secrets.token_hex(8))

    def refuse(username: str, seconds: float) -> HTTPException:
        return HTTPException(status.HTTP_429_TOO_MANY_REQUESTS,
                             f"Too many wrong passwords for {username}: try again in {math.ceil(seconds)} s.")

    def verify(username: str, password: str) -> bool:
        account = accounts.get_account(thread_db(db_path), username)
        usable = account is not None and not account["disabled_at"]
        ok = accounts.check_password(password, account["password"] if usable else unknown)
        return ok and usable

    async def auth(username: str, password: str) -> bool:
        wait = locked_until.get(username, 0.0) - clock()
        if wait > 0:
            raise refuse(username, wait)
        if checking.get(username, 0) and failed.get(username, 0) + checking[username] >= limits.failures:
            raise refuse(username, limits.lockout_seconds)
        if len(failed) > 10_000:  # bound the memory a stream of made-up names can take
            failed.clear()
        checking[username] = checking.get(username, 0) + 1
        try:
            ok = await asyncio.to_thread(verify, username, password)
        finally:
            checking[username] -= 1
            if not checking[username]:
                del checking[username]
        if ok:
            failed.pop(username, None)
            return True
        failed[username] = n = failed.get(username, 0) + 1
        if n >= limits.failures:
            lockout = limits.lockout_seconds * 2 ** (n - limits.failures)
            locked_until[username] = clock() + min(lockout, limits.max_lockout_seconds)
        return False
    return auth


class _Stored(str):
    """A stored session's digest, as `Sessions` iteration yields it. Only this type is looked
    up by digest: a cookie's value is a plain string, so a digest copied out of the database
    and sent as a cookie logs nobody in."""


class Sessions(MutableMapping):
    """Gradio's `app.tokens` (cookie token -> account name) in the database's `sessions` table.

    A cookie's token answers only for an open, unexpired session of an enabled account, which
    is how a disabled account loses access on its next request. Only token digests are stored,
    so iteration (Gradio's "log out everywhere") yields the live sessions' digests, which the
    other methods accept as such.
    """

    def __init__(self, db_path: Path):
        self.db_path = db_path

    def __getitem__(self, token) -> str:
        db = thread_db(self.db_path)
        if isinstance(token, _Stored):
            name = accounts.session_name(db, token)
        else:
            name = accounts.session_user(db, token) if isinstance(token, str) and token else None
        if name is None:
            raise KeyError(token)
        return name

    def __setitem__(self, token: str, name: str) -> None:
        accounts.start_session(thread_db(self.db_path), token, name)

    def __delitem__(self, token) -> None:
        if isinstance(token, _Stored):
            accounts.end_session(thread_db(self.db_path), digest=token)
        elif isinstance(token, str) and token:
            accounts.end_session(thread_db(self.db_path), token)

    def __iter__(self):
        return iter([_Stored(d) for d in accounts.live_sessions(thread_db(self.db_path))])

    def __len__(self) -> int:
        return len(accounts.live_sessions(thread_db(self.db_path)))


def keep_sessions(app, db_path: Path) -> None:
    """Put a launched Gradio app's sessions in the database under a cookie name kept there too."""
    db = thread_db(db_path)
    if queries.setting(db, "cookie_id") is None:
        queries.put_setting(db, "cookie_id", secrets.token_urlsafe(32))
    app.cookie_id = queries.setting(db, "cookie_id")
    app.tokens = Sessions(db_path)


def logged_in(request: gr.Request | None) -> str:
    """The account behind a request; every endpoint acts as that person, never as a name sent."""
    name = getattr(request, "username", None)
    if not name:
        raise gr.Error("log in first")
    return name
