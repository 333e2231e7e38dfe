"""Accounts for Gradio's login: a JSON users file of salted scrypt hashes and roles.

With no users file the app runs with one demo account, printed at start-up, so a first
`make run` works; `python -m app adduser` writes the file for real use.
"""
import asyncio
import hashlib
import hmac
import json
import math
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from fastapi import HTTPException, status

DEMO_USER, DEMO_PASSWORD = "demo", "demo"
ROLES = ("annotator", "admin")


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)
    return f"scrypt${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    _, salt, _ = stored.split("$")
    return hmac.compare_digest(hash_password(password, bytes.fromhex(salt)), stored)


def load_users(path: Path) -> dict[str, dict]:
    """{name: {"password": hash, "role": ...}}; the demo account when there is no file."""
    if not path.exists():
        return {DEMO_USER: {"password": hash_password(DEMO_PASSWORD), "role": "admin"}}
    return json.loads(path.read_text())


def add_user(path: Path, name: str, password: str, role: str = "annotator") -> None:
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    if not name or not password:
        raise ValueError("a user needs a name and a password")
    users = json.loads(path.read_text()) if path.exists() else {}
    users[name] = {"password": hash_password(password), "role": role}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(users, indent=2))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


@dataclass
class LoginLimits:
    """Guessing is slowed per account: after `failures` wrong passwords in a row the account
    refuses logins for `lockout_seconds`, doubled for each further failure up to the maximum."""
    failures: int = 5
    lockout_seconds: float = 30.0
    max_lockout_seconds: float = 900.0


def authenticator(users: dict[str, dict], limits: LoginLimits | None = None, clock=time.monotonic):
    """The callable Gradio's `auth=` takes: a coroutine, so that Gradio awaits it, with the scrypt
    check in a worker thread, so fifty people logging in at once never stall the event loop
    that serves everyone already logged in.

    Attempts still being checked count as failures until they succeed, so a burst of parallel
    guesses is limited like a slow one; names with no account are limited alike, so a lockout
    does not tell which accounts exist.
    """
    limits = limits or LoginLimits()
    failed: dict[str, int] = {}   # wrong passwords in a row, per name
    checking: dict[str, int] = {}  # attempts being checked now, per name
    locked_until: dict[str, float] = {}
    unknown = hash_password(secrets.token_hex(8))  # unknown names cost a check too: no timing hint

    def refuse(username: str, seconds: float) -> HTTPException:
        return HTTPException(status.HTTP_429_TOO_MANY_REQUESTS,
                             f"Too many wrong passwords for {username}: try again in {math.ceil(seconds)} s.")

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
            user = users.get(username)
            ok = await asyncio.to_thread(check_password, password, user["password"] if user else unknown)
        finally:
            checking[username] -= 1
            if not checking[username]:
                del checking[username]
        if ok and user:
            failed.pop(username, None)
            return True
        failed[username] = n = failed.get(username, 0) + 1
        if n >= limits.failures:
            lockout = limits.lockout_seconds * 2 ** (n - limits.failures)
            locked_until[username] = clock() + min(lockout, limits.max_lockout_seconds)
        return False
    return auth


def logged_in(request: gr.Request | None) -> str:
    """The account behind a request; every endpoint acts as that person, never as a name sent."""
    name = getattr(request, "username", None)
    if not name:
        raise gr.Error("log in first")
    return name
