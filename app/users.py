"""Logging in: Gradio's `auth=` and its session table, both backed by the database.

Accounts live in SQLite (`storage.accounts`), so an account added, changed or disabled counts
on its next request without a restart. Gradio keeps logged-in cookies in `app.tokens`, a dict
that a restart empties; `Sessions` puts the same mapping in the database, and the cookie's
name is kept there too, so a restart logs nobody out. Wrong passwords are counted per name in
the database as well (rows that expire by age), so a lockout outlives a restart too. Before a
login, Gradio's page describes no API (`hide_api_before_login`).

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
    refuses logins for `lockout_seconds`, doubled for each further failure up to the maximum.
    A name's count is forgotten `forget_seconds` after its last wrong password (or when its
    lockout ends, if later), or at its next successful login."""
    failures: int = 5
    lockout_seconds: float = 30.0
    max_lockout_seconds: float = 900.0
    forget_seconds: float = 24 * 3600.0


def authenticator(db_path: Path, limits: LoginLimits | None = None, clock: Callable[[], float] = time.time):
    """The callable Gradio's `auth=` takes: a coroutine, so that Gradio awaits it, with the
    account lookup and scrypt check in a worker thread, so fifty people logging in at once
    never stall the event loop that serves everyone already logged in.

    Attempts still being checked count as failures until they succeed, so a burst of parallel
    guesses is limited like a slow one; names with no (or a disabled) account are limited and
    timed alike, so neither a lockout nor a delay tells which accounts exist. The counts and
    lockouts are kept in the database (`storage.accounts.record_login_failure`), where they
    outlive a restart and expire by age, so a flood of made-up names neither fills memory nor
    resets anyone's count. A name no account can have is refused without a check or a row.
    """
    limits = limits or LoginLimits()
    checking: dict[str, int] = {}  # attempts being checked now, per name; empty when none are
    unknown = accounts.hash_password(secrets.token_hex(8))

    def refuse(username: str, seconds: float) -> HTTPException:
        return HTTPException(status.HTTP_429_TOO_MANY_REQUESTS,
                             f"Too many wrong passwords for {username}: try again in {math.ceil(seconds)} s.")

    def lockout(n: int) -> float:
        if n < limits.failures:
            return 0.0
        doublings = min(n - limits.failures, 64)  # a count that long only ever meets the maximum
        return min(limits.lockout_seconds * 2 ** doublings, limits.max_lockout_seconds)

    def verify(username: str, password: str) -> bool:
        db = thread_db(db_path)
        account = accounts.get_account(db, username)
        usable = account is not None and not account["disabled_at"]
        ok = accounts.check_password(password, account["password"] if usable else unknown) and usable
        if not ok:
            accounts.record_login_failure(db, username, clock(), lockout, limits.forget_seconds)
        else:
            accounts.clear_login_failures(db, username)
        return ok

    async def auth(username: str, password: str) -> bool:
        if not accounts.NAME.fullmatch(username):
            return False
        # A primary-key read, on the event loop as Gradio's own session lookups are.
        failed, locked_until = accounts.login_failures(thread_db(db_path), username, clock())
        wait = locked_until - clock()
        if wait > 0:
            raise refuse(username, wait)
        if checking.get(username, 0) and failed + checking[username] >= limits.failures:
            raise refuse(username, limits.lockout_seconds)
        checking[username] = checking.get(username, 0) + 1
        try:
            return await asyncio.to_thread(verify, username, password)
        finally:
            checking[username] -= 1
            if not checking[username]:
                del checking[username]
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


def _page_for_strangers(request) -> dict:
    """A context processor for the template of Gradio's page: the page served to a visitor who
    has not logged in (the login form) carries an empty API description, where Gradio puts
    every named endpoint's parameters, docstring and code snippets. Logged-in visitors, and
    apps without logins, get the template's context as Gradio made it. It asks the app's
    tokens, whichever they are, so the page hides the API from the first request on, before
    `keep_sessions` has put `Sessions` in place."""
    app = request.app
    if getattr(app, "auth", None) is None:
        return {}
    token = (request.cookies.get(f"access-token-{app.cookie_id}")
             or request.cookies.get(f"access-token-unsecure-{app.cookie_id}"))  # as Gradio reads it
    if token and app.tokens.get(token):
        return {}
    return {"gradio_api_info": {"named_endpoints": {}, "unnamed_endpoints": {}}}


def hide_api_before_login() -> None:
    """Gradio's page template (one for every app in the process) passes through
    `_page_for_strangers`; Gradio's /config, /gradio_api/info and openapi.json already answer
    401 before login."""
    from gradio.routes import templates
    if _page_for_strangers not in templates.context_processors:
        templates.context_processors.append(_page_for_strangers)


def logged_in(request: gr.Request | None) -> str:
    """The account behind a request; every endpoint acts as that person, never as a name sent."""
    name = getattr(request, "username", None)
    if not name:
        raise gr.Error("log in first")
    return name
