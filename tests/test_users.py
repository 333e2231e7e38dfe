import asyncio

import pytest
from fastapi import HTTPException

from app import users


def login(auth):
    return lambda name, password: asyncio.run(auth(name, password))


def test_password_hash_round_trip():
    stored = users.hash_password("s3cret")
    assert "s3cret" not in stored
    assert users.check_password("s3cret", stored) and not users.check_password("wrong", stored)


def test_users_file_accounts_and_roles(tmp_path):
    path = tmp_path / "users.json"
    users.add_user(path, "alice", "pw1")
    users.add_user(path, "root", "pw2", role="admin")
    accounts = users.load_users(path)
    auth = login(users.authenticator(accounts))
    assert auth("alice", "pw1") and not auth("alice", "pw2") and not auth("nobody", "pw1")
    assert accounts["root"]["role"] == "admin" and users.DEMO_USER not in accounts
    with pytest.raises(ValueError):
        users.add_user(path, "eve", "pw", role="superuser")


def test_demo_account_only_without_a_file(tmp_path):
    auth = login(users.authenticator(users.load_users(tmp_path / "missing.json")))
    assert auth(users.DEMO_USER, users.DEMO_PASSWORD)


def test_repeated_wrong_passwords_lock_the_account_for_a_while(tmp_path):
    path = tmp_path / "users.json"
    users.add_user(path, "alice", "right")
    users.add_user(path, "bob", "pw")
    now = [0.0]
    auth = login(users.authenticator(users.load_users(path), users.LoginLimits(failures=3, lockout_seconds=30),
                                     clock=lambda: now[0]))
    assert not any(auth("alice", "guess") for _ in range(3))
    with pytest.raises(HTTPException, match="try again in 30 s") as refused:
        auth("alice", "right")
    assert refused.value.status_code == 429
    assert auth("bob", "pw")  # other accounts are not affected
    now[0] = 31.0
    assert not auth("alice", "guess")  # one more failure doubles the wait
    with pytest.raises(HTTPException, match="try again in 60 s"):
        auth("alice", "right")
    now[0] = 100.0
    assert auth("alice", "right") and auth("alice", "right")  # a success clears the count


def test_parallel_guesses_and_unknown_names_are_limited_alike(tmp_path):
    path = tmp_path / "users.json"
    users.add_user(path, "alice", "right")
    auth = users.authenticator(users.load_users(path), users.LoginLimits(failures=3))

    async def burst(name):
        return await asyncio.gather(*(auth(name, "guess") for _ in range(10)), return_exceptions=True)
    for name in ("alice", "nobody"):
        results = asyncio.run(burst(name))
        assert results.count(False) == 3, results  # three were checked, the rest refused at once
        assert all(isinstance(r, HTTPException) and r.status_code == 429 for r in results if r is not False)
