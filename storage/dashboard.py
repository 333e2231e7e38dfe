"""The figures the Leaderboard tab plots and `python -m trainer report` saves, as plain rows.

One function per figure, so the app and the report show the same numbers.
"""
import sqlite_utils

from . import evaluations, ratings

ROUND_METRICS = {
    "rm_accuracy": "reward model held-out accuracy",
    "rm_unseen_accuracy": "reward model accuracy, held-out and cross-validated pairs",
    "rm_win_rate_vs_base": "win-rate against the base (reward model)",
    "kl_to_ref": "KL to the previous live policy (nats per answer)",
    "rm_score": "mean reward-model score",
}


def metric_by_round(db: sqlite_utils.Database, names: list[str]) -> list[dict]:
    """{round, version, metric, value} for every finished round's figures of these names."""
    marks = ", ".join("?" for _ in names)
    return [{**r, "metric": ROUND_METRICS.get(r["name"], r["name"])} for r in db.query(
        f"""SELECT m.round_id AS round, m.version_id AS version, m.name, m.value FROM metrics m
            JOIN rounds r ON r.id = m.round_id
            WHERE r.status = 'done' AND m.name IN ({marks}) ORDER BY m.round_id""", names)]


def human_win_rate_by_version(db: sqlite_utils.Database) -> list[dict]:
    """Each version's blind-vote win-rate against the base, for versions with such votes."""
    outcomes = evaluations.outcomes(db, "human")
    rows = []
    for v in db.query("SELECT id, round_id FROM policy_versions WHERE id != 0 ORDER BY id"):
        h2h = ratings.head_to_head(outcomes, v["id"], 0)
        if h2h["games"]:
            rows.append({"round": v["round_id"], "version": v["id"], "metric": "win-rate against the base (human)",
                         "value": h2h["win_rate"]})
    return rows


def judgements_per_day(db: sqlite_utils.Database) -> list[dict]:
    return list(db.query("SELECT substr(created_at, 1, 10) AS day, count(*) AS judgements "
                         "FROM votes GROUP BY day ORDER BY day"))


def judgements_per_annotator(db: sqlite_utils.Database) -> list[dict]:
    return list(db.query("SELECT annotator, count(*) AS judgements FROM votes "
                         "GROUP BY annotator ORDER BY judgements DESC, annotator"))


def score_distribution(db: sqlite_utils.Database) -> list[dict]:
    """How often each 1-10 score was given, both sides counted."""
    counts = dict.fromkeys(range(1, 11), 0)
    for r in db.query("SELECT score FROM (SELECT score_a AS score FROM votes UNION ALL "
                      "SELECT score_b FROM votes) WHERE score IS NOT NULL"):
        counts[r["score"]] += 1
    return [{"score": s, "count": n} for s, n in counts.items()]


def leaderboard(db: sqlite_utils.Database, judge: str, cfg: ratings.RatingsConfig | None = None) -> list[dict]:
    """Bradley-Terry ratings of every version from one kind of judge's verdicts."""
    versions = [r["id"] for r in db.query("SELECT id FROM policy_versions ORDER BY id")]
    return ratings.leaderboard(evaluations.outcomes(db, judge), cfg or ratings.RatingsConfig(),
                               versions=versions)
