"""Logging in against the accounts table: passwords, the demo account, and slowed guessing."""
import asyncio
import json

import pytest
from fastapi import HTTPException

from app import users
from storage import accounts


def login(auth):
    return lambda name, password: asyncio.run(auth(name, password))


def test_password_hash_round_trip():
    stored = accounts.hash_password("s3cret")
    assert "s3cret" not in stored
    assert accounts.check_password("s3cret", stored) and not accounts.check_password("wrong", stored)


def test_accounts_log_in_with_their_own_password_only(db, tmp_path):
    users.add_account(db, "alice", "pw1", "annotator", by="test")
    users.add_account(db, "root", "pw2", "admin", by="test")
    auth = login(users.authenticator(tmp_path / "test.db"))
    assert auth("alice", "pw1") and not auth("alice", "pw2") and not auth("nobody", "pw1")
    assert users.current_role(db, "root") == "admin" and users.current_role(db, "alice") == "annotator"


def test_the_demo_account_exists_until_a_real_admin_does(db, tmp_path):
    assert "demo" in users.ensure_accounts(db, tmp_path / "no-users.json")
    auth = login(users.authenticator(tmp_path / "test.db"))
    assert auth(users.DEMO_USER, users.DEMO_PASSWORD)
    users.add_account(db, "alice", "pw", "annotator", by="demo")
    assert auth(users.DEMO_USER, users.DEMO_PASSWORD)  # still the only admin
    users.add_account(db, "root", "pw", "admin", by="demo")
    assert not auth(users.DEMO_USER, users.DEMO_PASSWORD) and users.current_role(db, "demo") is None
    assert users.ensure_accounts(db, tmp_path / "no-users.json") is None  # never made again


def test_repeated_wrong_passwords_lock_the_account_for_a_while(db, tmp_path):
    users.add_account(db, "alice", "right", "annotator", by="test")
    users.add_account(db, "bob", "pw", "annotator", by="test")
    now = [0.0]
    auth = login(users.authenticator(tmp_path / "test.db", users.LoginLimits(failures=3, lockout_seconds=30),
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


def test_parallel_guesses_and_unknown_names_are_limited_alike(db, tmp_path):
    users.add_account(db, "alice", "right", "annotator", by="test")
    auth = users.authenticator(tmp_path / "test.db", users.LoginLimits(failures=3))

    async def burst(name):
        return await asyncio.gather(*(auth(name, "guess") for _ in range(10)), return_exceptions=True)
    for name in ("alice", "nobody"):
        results = asyncio.run(burst(name))
        assert results.count(False) == 3, results  # three were checked, the rest refused at once
        assert all(isinstance(r, HTTPException) and r.status_code == 429 for r in results if r is not False)


def test_a_flood_of_made_up_names_resets_no_count_and_is_forgotten_by_age(db, tmp_path, monkeypatch):
    users.add_account(db, "alice", "right", "annotator", by="test")
    monkeypatch.setattr(accounts, "check_password", lambda password, stored: password == "right")  # no scrypt
    now = [1000.0]
    auth = users.authenticator(tmp_path / "test.db", users.LoginLimits(failures=3, lockout_seconds=30,
                                                                       forget_seconds=3600),
                               clock=lambda: now[0])
    log_in = login(auth)
    assert not any(log_in("alice", "guess") for _ in range(3))

    async def flood():
        for i in range(10_001):
            assert not await auth(f"made-up-{i}", "guess")
    asyncio.run(flood())
    with pytest.raises(HTTPException, match="try again in 30 s"):
        log_in("alice", "right")
    now[0] += 31
    assert not log_in("alice", "guess")  # her fourth in a row: the flood reset nothing
    with pytest.raises(HTTPException, match="try again in 60 s"):
        log_in("alice", "right")
    assert not log_in("x" * 100_000, "guess")  # no account can have that name: no row either
    # Nothing per name stays in the app's memory; the rows go once old enough.
    assert all(not cell.cell_contents for cell in auth.__closure__ if isinstance(cell.cell_contents, dict))
    assert db["login_failures"].count == 10_002
    now[0] += 3601
    assert not log_in("mallory", "guess")
    assert [r["name"] for r in db["login_failures"].rows] == ["mallory"]
    assert log_in("alice", "right")


def test_a_lockout_outlives_a_restart_and_a_success_clears_it(db, tmp_path):
    users.add_account(db, "alice", "right", "annotator", by="test")
    now = [1000.0]
    limits = users.LoginLimits(failures=2, lockout_seconds=30)
    before = login(users.authenticator(tmp_path / "test.db", limits, clock=lambda: now[0]))
    assert not before("alice", "guess") and not before("alice", "guess")
    after = login(users.authenticator(tmp_path / "test.db", limits, clock=lambda: now[0]))
    with pytest.raises(HTTPException, match="try again in 30 s"):
        after("alice", "right")
    now[0] += 30
    assert after("alice", "right") and db["login_failures"].count == 0
    assert not after("alice", "guess") and after("alice", "right")  # one miss, then in again


def test_importing_a_real_admin_retires_the_demo_account_for_good(tmp_path):
    from types import SimpleNamespace

    from app.__main__ import main as app_cli
    from app.admin import Admin
    from storage.db import open_db
    db = open_db(tmp_path / "prefloop.db")
    users.ensure_accounts(db, tmp_path / "no-users.json")
    (tmp_path / "users.json").write_text(json.dumps(
        {"root": {"password": accounts.hash_password("pw"), "role": "admin"}}))
    assert app_cli(["--data-dir", str(tmp_path), "import-users", str(tmp_path / "users.json")]) == 0
    assert users.current_role(db, users.DEMO_USER) is None
    admin = Admin(tmp_path, tmp_path / "prefloop.db")
    with pytest.raises(Exception, match="new password before enabling"):
        admin.set_disabled(users.DEMO_USER, False, SimpleNamespace(username="root"))
    assert users.current_role(db, users.DEMO_USER) is None
