"""Numbered schema migrations. Add a new function at the end; never edit an applied one."""
from sqlite_utils.migrations import Migrations

migrations = Migrations("prefloop")

CHOICES = ("a", "b", "tie", "both_bad")


def _append_only(db, table: str, message: str) -> None:
    """Triggers that refuse every update and delete: judgements are kept exactly as given."""
    for name, event in (("append_only", "UPDATE"), ("never_deleted", "DELETE")):
        db.execute(f"""
            CREATE TRIGGER {table}_{name} BEFORE {event} ON {table}
            BEGIN SELECT RAISE(ABORT, '{message}'); END""")


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
    _append_only(db, "votes", "votes are append-only")


ROUND_STATUSES = ("running", "done", "failed")


@migrations()
def m002_rounds(db):
    """Training rounds and the figures measured on each version.

    A round records the votes it trained on and the live version it started from; its
    phase and status change as it runs, so it is the one mutable log in the schema.
    """
    statuses = ", ".join(f"'{s}'" for s in ROUND_STATUSES)
    db.execute(f"""
        CREATE TABLE rounds (
            id INTEGER PRIMARY KEY,
            algo TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ({statuses})),
            phase TEXT,
            config TEXT,
            from_version_id INTEGER NOT NULL REFERENCES policy_versions(id),
            version_id INTEGER REFERENCES policy_versions(id),
            vote_ids TEXT,
            last_vote_id INTEGER,
            pid INTEGER,
            log_path TEXT,
            error TEXT,
            started_at TEXT NOT NULL,
            finished_at TEXT
        )""")
    db["policy_versions"].add_column("round_id", int)
    db["metrics"].create(
        {"id": int, "round_id": int, "version_id": int, "name": str, "value": float,
         "created_at": str},
        pk="id", foreign_keys=[("round_id", "rounds", "id"), ("version_id", "policy_versions", "id")],
        not_null={"name", "created_at"},
    )
    db["metrics"].create_index(["version_id"])


EVAL_JUDGES = ("human", "reward_model")


@migrations()
def m003_evaluations(db):
    """Side-by-side comparisons, evaluation votes on them, and the demo gallery.

    Evaluation votes live in their own table so they can never leak into the training
    export, which reads `votes` only; like votes they are append-only.
    """
    db["comparisons"].create(
        {"id": int, "prompt": str, "version_a": int, "version_b": int, "completion_a": str,
         "completion_b": str, "sampling": str, "seed": int, "blind": int, "created_by": str,
         "created_at": str},
        pk="id",
        foreign_keys=[("version_a", "policy_versions", "id"), ("version_b", "policy_versions", "id")],
        not_null={"prompt", "version_a", "version_b", "completion_a", "completion_b", "created_at"},
    )
    choices = ", ".join(f"'{c}'" for c in CHOICES)
    judges = ", ".join(f"'{j}'" for j in EVAL_JUDGES)
    db.execute(f"""
        CREATE TABLE eval_votes (
            id INTEGER PRIMARY KEY,
            comparison_id INTEGER NOT NULL REFERENCES comparisons(id),
            judge TEXT NOT NULL CHECK (judge IN ({judges})),
            annotator TEXT NOT NULL,
            result TEXT NOT NULL CHECK (result IN ({choices})),
            score_a REAL,
            score_b REAL,
            round_id INTEGER REFERENCES rounds(id),
            created_at TEXT NOT NULL,
            UNIQUE (comparison_id, annotator)
        )""")
    _append_only(db, "eval_votes", "evaluation votes are append-only")
    db["gallery"].create(
        {"id": int, "comparison_id": int, "note": str, "pinned_by": str, "pinned_at": str,
         "unpinned_at": str},
        pk="id", foreign_keys=[("comparison_id", "comparisons", "id")],
        not_null={"comparison_id", "pinned_at"},
    )


@migrations()
def m004_round_decisions(db):
    """Why a round's version was or was not promoted, in words with its figures.

    The gate's figures are metrics like any other; the sentence is kept beside the round
    so every view of it (the CLI, the Admin tab, the report) says the same thing.
    """
    db["rounds"].add_column("decision", str)


@migrations()
def m005_claim_indexes(db):
    """The pair queue asks, on every request, for an annotator's open claim and for who was
    active lately; without these indexes each question reads every show ever made."""
    db["shows"].create_index(["annotator", "id"])
    db["shows"].create_index(["shown_at"])


ROLES = ("annotator", "admin")


@migrations()
def m006_accounts_and_sessions(db):
    """Accounts and login sessions in the database, where the running app sees every change at
    once, and a `settings` table of values kept per data directory.

    An account is changed in place (a new password, a role, disabled) and each change is also
    appended to `account_events`, so who changed what stays on record. A session row holds
    the SHA-256 of its cookie's token, never the token, so a copy of the database logs
    nobody in.
    """
    roles = ", ".join(f"'{r}'" for r in ROLES)
    db.execute(f"""
        CREATE TABLE accounts (
            name TEXT PRIMARY KEY,
            password TEXT NOT NULL,
            role TEXT NOT NULL CHECK (role IN ({roles})),
            disabled_at TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""")
    db["account_events"].create(
        {"id": int, "name": str, "event": str, "by": str, "created_at": str},
        pk="id", not_null={"name", "event", "created_at"},
    )
    _append_only(db, "account_events", "account events are append-only")
    db["sessions"].create(
        {"token_sha256": str, "name": str, "created_at": str, "ended_at": str},
        pk="token_sha256", not_null={"name", "created_at"},
    )
    db["sessions"].create_index(["name"])
    db["settings"].create({"key": str, "value": str}, pk="key")


@migrations()
def m007_guidelines(db):
    """Annotation guidelines, versioned: each save is a new row, never an edit, and every vote
    records the version in force when it was cast, so judgements made under different
    instructions can be told apart."""
    db["guidelines"].create(
        {"id": int, "text": str, "author": str, "created_at": str},
        pk="id", not_null={"text", "author", "created_at"},
    )
    _append_only(db, "guidelines", "guidelines are append-only: save a new version")
    db.execute("ALTER TABLE votes ADD COLUMN guideline_id INTEGER REFERENCES guidelines(id)")


VERDICTS = ("0", "1", "tie", "both_bad")  # a verdict on a pair's stored answers, whatever side they were shown on


@migrations()
def m008_annotation_quality(db):
    """Gold pairs, corrected answers, answers cut off at the length limit, and how a round
    turned judgements into training rows.

    A gold pair's expected verdict and a demonstration are append-only like votes. Verdicts
    name the pair's stored answers ("0" is `completion_0`), not the side an annotator saw,
    so every annotator's vote on a pair can be compared with it. `cut_off_0`/`_1` are null for
    pairs made before this was recorded.
    """
    verdicts = ", ".join(f"'{v}'" for v in VERDICTS)
    db.execute(f"""
        CREATE TABLE gold_pairs (
            id INTEGER PRIMARY KEY,
            pair_id INTEGER NOT NULL UNIQUE REFERENCES pairs(id),
            expected TEXT NOT NULL CHECK (expected IN ({verdicts})),
            marked_by TEXT NOT NULL,
            created_at TEXT NOT NULL
        )""")
    _append_only(db, "gold_pairs", "gold pairs are append-only")
    db.execute("""
        CREATE TABLE demonstrations (
            id INTEGER PRIMARY KEY,
            prompt_id INTEGER NOT NULL REFERENCES prompts(id),
            pair_id INTEGER NOT NULL REFERENCES pairs(id),
            vote_id INTEGER NOT NULL UNIQUE REFERENCES votes(id),
            replaced TEXT NOT NULL CHECK (replaced IN ('0', '1')),
            text TEXT NOT NULL,
            author TEXT NOT NULL,
            created_at TEXT NOT NULL
        )""")
    _append_only(db, "demonstrations", "corrected answers are append-only")
    db["pairs"].add_column("cut_off_0", int)
    db["pairs"].add_column("cut_off_1", int)
    db["rounds"].add_column("aggregation", str)


@migrations()
def m009_imported_data(db):
    """Preference pairs and demonstrations imported from existing sets (TRL, HH-RLHF, arena and
    Alpaca exports), apart from votes and annotators' corrected answers: they are nobody's
    judgement here, so agreement, annotator figures, progress and the leaderboard never see
    them, and a round includes, excludes or weights them by its setting. A prompt is the
    conversation before the answer, as a JSON list of messages; each row keeps where it came
    from (source name, file, row). Append-only like votes."""
    provenance = "category TEXT, source TEXT NOT NULL, file TEXT NOT NULL, row INTEGER NOT NULL, created_at TEXT NOT NULL"
    db.execute(f"""
        CREATE TABLE imported_preferences (
            id INTEGER PRIMARY KEY,
            prompt TEXT NOT NULL,
            chosen TEXT NOT NULL,
            rejected TEXT NOT NULL,
            score_chosen INTEGER CHECK (score_chosen BETWEEN 1 AND 10),
            score_rejected INTEGER CHECK (score_rejected BETWEEN 1 AND 10),
            {provenance}
        )""")
    _append_only(db, "imported_preferences", "imported preferences are append-only")
    db.execute(f"""
        CREATE TABLE imported_demonstrations (
            id INTEGER PRIMARY KEY,
            prompt TEXT NOT NULL,
            answer TEXT NOT NULL,
            {provenance}
        )""")
    _append_only(db, "imported_demonstrations", "imported demonstrations are append-only")


@migrations()
def m010_round_progress(db):
    """What a running round has done so far, one row per report: the phase, steps done of how
    many, and the figures logged at that step (JSON: training loss, reward margin, KL...). Written
    as the round goes, so the Admin tab draws each phase's progress, time left and curves from
    it; `rounds.phase` keeps only the latest line. Append-only: it is the round's record."""
    db.execute("""
        CREATE TABLE round_progress (
            id INTEGER PRIMARY KEY,
            round_id INTEGER NOT NULL REFERENCES rounds(id),
            phase TEXT NOT NULL,
            step INTEGER NOT NULL,
            total INTEGER,
            figures TEXT,
            at TEXT NOT NULL
        )""")
    db.execute("CREATE INDEX round_progress_round ON round_progress (round_id, id)")
    _append_only(db, "round_progress", "round progress is append-only")


@migrations()
def m011_login_failures(db):
    """Wrong passwords in a row per login name, with the name's lockout, in the database rather
    than the app's memory: a lockout outlives a restart, and a flood of made-up names takes
    rows that expire, where a dict in memory had to be cleared, everyone's counts with it,
    to stay bounded. A row lasts until
    `expires_at` (its lockout's end, or a while after the name's last wrong password, whichever
    is later) and a success deletes it. Times are seconds since the epoch."""
    db.execute("""
        CREATE TABLE login_failures (
            name TEXT PRIMARY KEY,
            failures INTEGER NOT NULL,
            locked_until REAL NOT NULL,
            expires_at REAL NOT NULL
        )""")
    db.execute("CREATE INDEX login_failures_expiry ON login_failures (expires_at)")


@migrations()
def m012_best_answers(db):
    """The answers rejection sampling kept: the round's reward model's best of the policy's N
    answers to a training prompt, with its reward and the median of the N. A round writes them
    with its version, all or none; later rounds pool them (see `trainer.rejection_sampling`).
    Append-only: they are what a version was trained on."""
    db.execute("""
        CREATE TABLE best_answers (
            id INTEGER PRIMARY KEY,
            round_id INTEGER NOT NULL REFERENCES rounds(id),
            prompt TEXT NOT NULL,
            answer TEXT NOT NULL,
            reward REAL NOT NULL,
            median REAL NOT NULL,
            created_at TEXT NOT NULL
        )""")
    db.execute("CREATE INDEX best_answers_prompt ON best_answers (prompt)")
    _append_only(db, "best_answers", "kept answers are append-only")


@migrations()
def m013_first_pass(db):
    """First-pass verdicts: a judge's guess at a new pair (the newest round's reward model; an
    LLM judge later) and how sure it is, 0.5-1. `verdict` is the preferred stored answer, '0' or
    '1' as gold pairs name them, NULL where the judge abstained. Kept apart from votes: never
    exported nor counted in the annotators' agreement. Append-only, one verdict per judge. No
    foreign key: the unshown pairs of a retired version are deleted, their verdicts stay unread."""
    db.execute("""
        CREATE TABLE first_pass (
            id INTEGER PRIMARY KEY,
            pair_id INTEGER NOT NULL,
            judge TEXT NOT NULL,
            verdict TEXT CHECK (verdict IN ('0', '1')),
            confidence REAL CHECK (confidence BETWEEN 0.5 AND 1),
            created_at TEXT NOT NULL,
            UNIQUE (pair_id, judge)
        )""")
    _append_only(db, "first_pass", "first-pass verdicts are append-only")


@migrations()
def m014_second_pass(db):
    """How each pair was served once people judge after a first pass (the admin's second-pass
    mode; docs/annotation-quality.md): `served` NULL as always (oldest first, nothing shown),
    'audit' (a random draw shown blind: what measures a judge), 'uncertain' (route: the pair the
    judges were least sure of), 'confident' (route: a pair a judge was sure of, served when no
    other was in stock) or 'review' (shown with a judge's suggestion, `suggestion_id`, a
    first_pass row). Votes copy both from their show, as they copy `shown_order`, so a vote
    keeps what its annotator saw and whether they overturned a suggestion."""
    for table in ("shows", "votes"):
        db[table].add_column("served", str)
        db[table].add_column("suggestion_id", int)
