"""Accounts for Gradio's login: a JSON users file of salted scrypt hashes and roles.

With no users file the app runs with one demo account, printed at start-up, so a first
`make run` works; `python -m app adduser` writes the file for real use.
"""
import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

import gradio as gr

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


def authenticator(users: dict[str, dict]):
    """The callable Gradio's `auth=` takes."""
    def auth(username: str, password: str) -> bool:
        user = users.get(username)
        return bool(user) and check_password(password, user["password"])
    return auth


def logged_in(request: gr.Request | None) -> str:
    """The account behind a request; every endpoint acts as that person, never as a name sent."""
    name = getattr(request, "username", None)
    if not name:
        raise gr.Error("log in first")
    return name
