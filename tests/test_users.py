import pytest

from app import users


def test_password_hash_round_trip():
    stored = users.hash_password("s3cret")
    assert "s3cret" not in stored
    assert users.check_password("s3cret", stored) and not users.check_password("wrong", stored)


def test_users_file_accounts_and_roles(tmp_path):
    path = tmp_path / "users.json"
    users.add_user(path, "alice", "pw1")
    users.add_user(path, "root", "pw2", role="admin")
    accounts = users.load_users(path)
    auth = users.authenticator(accounts)
    assert auth("alice", "pw1") and not auth("alice", "pw2") and not auth("nobody", "pw1")
    assert accounts["root"]["role"] == "admin" and users.DEMO_USER not in accounts
    with pytest.raises(ValueError):
        users.add_user(path, "eve", "pw", role="superuser")


def test_demo_account_only_without_a_file(tmp_path):
    auth = users.authenticator(users.load_users(tmp_path / "missing.json"))
    assert auth(users.DEMO_USER, users.DEMO_PASSWORD)
