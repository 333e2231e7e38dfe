import sqlite3

import pytest
import sqlite_utils

from storage.db import open_db
from storage.migrations import migrations

from .conftest import add_pair, show
from storage import queries


def test_fresh_database_has_every_table_and_wal(tmp_path):
    db = open_db(tmp_path / "a.db")
    assert {"prompts", "policy_versions", "promotions", "pairs", "shows", "votes"} <= set(db.table_names())
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_reopening_applies_nothing_twice(tmp_path):
    open_db(tmp_path / "a.db")
    db = open_db(tmp_path / "a.db")
    assert migrations.pending(db) == []
    assert [m.name for m in migrations.applied(db)] == ["m001_initial", "m002_rounds", "m003_evaluations",
                                                        "m004_round_decisions", "m005_claim_indexes",
                                                        "m006_accounts_and_sessions", "m007_guidelines",
                                                        "m008_annotation_quality", "m009_imported_data",
                                                        "m010_round_progress", "m011_login_failures",
                                                        "m012_best_answers", "m013_first_pass",
                                                        "m014_second_pass"]


def test_votes_cannot_be_updated_or_deleted(db):
    pair_id = add_pair(db)
    show(db)
    queries.record_vote(db, "alice", pair_id, "a")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("UPDATE votes SET choice = 'b'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("DELETE FROM votes")
    assert [r["choice"] for r in db["votes"].rows] == ["a"]


def test_foreign_keys_are_enforced(db):
    with pytest.raises(sqlite3.IntegrityError):
        db["pairs"].insert({"prompt_id": 999, "version_id": 999, "completion_0": "x",
                            "completion_1": "y", "created_at": "now"})


def test_a_database_from_before_round_decisions_keeps_its_rounds_and_gains_the_column(tmp_path):
    old = sqlite_utils.Database(tmp_path / "old.db")
    migrations.apply(old, stop_before="m004_round_decisions")
    queries.ensure_base_version(old, "tiny")
    old["rounds"].insert({"algo": "dpo", "status": "done", "from_version_id": 0, "started_at": "then"})
    old.close()
    db = open_db(tmp_path / "old.db")
    assert [(r["algo"], r["status"], r["decision"]) for r in db["rounds"].rows] == [("dpo", "done", None)]
