"""Numbered schema migrations. Add a new function at the end; never edit an applied one."""
from sqlite_utils.migrations import Migrations

migrations = Migrations("prefloop")

CHOICES = ("a", "b", "tie", "both_bad")


@migrations()
def m001_initial(db):
    """Prompts, policy versions and their promotions, generated pairs, shows and votes.

    Votes and promotions are append-only: a judgement is never updated, and the live
    policy is whichever version was promoted last, so rollback is one more row.
    """
    db["prompts"].create(
        {"id": int, "text": str, "norm": str, "category": str, "source": str, "created_at": str},
        pk="id", not_null={"text", "norm", "created_at"},
    )
    db["prompts"].create_index(["norm"], unique=True)
    db["policy_versions"].create(
        {"id": int, "parent_id": int, "base_model": str, "adapter_path": str,
         "algo": str, "note": str, "created_at": str},
        pk="id", foreign_keys=[("parent_id", "policy_versions", "id")],
        not_null={"base_model", "created_at"},
    )
    db["promotions"].create(
        {"id": int, "version_id": int, "by": str, "created_at": str},
        pk="id", foreign_keys=[("version_id", "policy_versions", "id")],
        not_null={"version_id", "created_at"},
    )
    db["pairs"].create(
        {"id": int, "prompt_id": int, "version_id": int, "completion_0": str, "completion_1": str,
         "sampling": str, "seed": int, "prompt_truncated": int, "gen_seconds": float,
         "created_at": str},
        pk="id",
        foreign_keys=[("prompt_id", "prompts", "id"), ("version_id", "policy_versions", "id")],
        not_null={"prompt_id", "version_id", "completion_0", "completion_1", "created_at"},
    )
    db["pairs"].create_index(["version_id"])
    db["shows"].create(
        {"id": int, "pair_id": int, "annotator": str, "shown_order": str, "shown_at": str,
         "skipped_at": str},
        pk="id", foreign_keys=[("pair_id", "pairs", "id")],
        not_null={"pair_id", "annotator", "shown_order", "shown_at"},
    )
    db["shows"].create_index(["pair_id", "annotator"], unique=True)
    choices = ", ".join(f"'{c}'" for c in CHOICES)
    db.execute(f"""
        CREATE TABLE votes (
            id INTEGER PRIMARY KEY,
            pair_id INTEGER NOT NULL REFERENCES pairs(id),
            annotator TEXT NOT NULL,
            choice TEXT NOT NULL CHECK (choice IN ({choices})),
            score_a INTEGER CHECK (score_a BETWEEN 1 AND 10),
            score_b INTEGER CHECK (score_b BETWEEN 1 AND 10),
            rationale TEXT,
            shown_order TEXT NOT NULL CHECK (shown_order IN ('01', '10')),
            seconds_on_task REAL,
            created_at TEXT NOT NULL,
            UNIQUE (pair_id, annotator)
        )""")
    db.execute("""
        CREATE TRIGGER votes_append_only BEFORE UPDATE ON votes
        BEGIN SELECT RAISE(ABORT, 'votes are append-only'); END""")
    db.execute("""
        CREATE TRIGGER votes_never_deleted BEFORE DELETE ON votes
        BEGIN SELECT RAISE(ABORT, 'votes are append-only'); END""")
