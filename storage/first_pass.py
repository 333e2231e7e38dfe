"""First-pass verdicts: a judge's guess at each new pair, kept apart from the votes, and how
often it agrees with the people who judge the pair.

A vote on a pair served without regard to the judges and without a suggestion (the second pass
off, or an audit draw) is a blind audit of the judge: its agreement with them (with an interval)
and its calibration (when it says 80%, is it right 80% of the time?) say how far its verdicts
can stand in for people's. Votes on pairs routed to people for being hard, or cast with a
suggestion in view, are not: they say how often people accepted a suggestion instead.
"""
import math

import sqlite_utils

from .queries import ON_PAIR, SUREST, immediate, judgements, now, second_pass
from .ratings import calibration_error, win_rate_interval


def _verdict(p: float | None) -> tuple[str | None, float | None]:
    """The preferred answer and how sure, from the probability that people prefer answer 0;
    no verdict at even odds (or none given)."""
    if p is None or math.isnan(p) or p == 0.5:
        return None, None
    return ("0" if p > 0.5 else "1"), round(max(p, 1 - p), 4)


def add_verdicts(db: sqlite_utils.Database, judge: str, verdicts: dict[int, float | None], sure: bool = True) -> int:
    """Store `judge`'s verdicts: pair id -> the probability that people prefer `completion_0`
    (None: it abstained). A judge that is not `sure` names the preferred answer (1 or 0) but not
    how sure it is: its confidence is stored empty. A pair it has judged before keeps its first
    verdict."""
    rows = []
    for pair_id, p in verdicts.items():
        verdict, confidence = _verdict(p)
        rows.append({"pair_id": pair_id, "judge": judge, "created_at": now(), "verdict": verdict,
                     "confidence": confidence if sure else None})
    with immediate(db):
        before = db["first_pass"].count
        db["first_pass"].insert_all(rows, ignore=True)
        return db["first_pass"].count - before


def sure_labels(db: sqlite_utils.Database) -> list[dict]:
    """The pairs the judges label alone: a verdict at least as sure as the second pass's route
    confidence, on a pair nobody has voted on (people's word wins) that is not a gold pair; the
    surest judge's (the newest on a tie) where several judged it. With the pair's answers."""
    return list(db.query(
        f"""SELECT p.id AS pair_id, p.prompt_id, p.version_id, p.completion_0, p.completion_1,
                   pr.text AS prompt, f.verdict, f.confidence, f.judge
            FROM pairs p JOIN prompts pr ON pr.id = p.prompt_id
            JOIN first_pass f ON f.id = (SELECT f.id FROM first_pass f WHERE {ON_PAIR} AND f.verdict IS NOT NULL
                                        ORDER BY f.confidence DESC, f.id DESC LIMIT 1)
            WHERE {SUREST} >= :sure AND NOT EXISTS (SELECT 1 FROM votes v WHERE v.pair_id = p.id)
              AND p.id NOT IN (SELECT pair_id FROM gold_pairs)
            ORDER BY p.id""", {"sure": second_pass(db).confidence}))


def audit(db: sqlite_utils.Database, judged: list[dict] | None = None) -> list[dict]:
    """Per judge: pairs judged (of those still stored), abstentions, and over the decisive votes
    on them, how often it agreed (95% interval; each vote counts, so with an overlap above one a
    pair's correlated votes make it somewhat narrow) and, for a judge that says how sure it is,
    how well its confidence was calibrated.
    In review mode, per judge also: votes cast with its suggestion shown and the share that
    accepted it (a tie or both-bad accepts nothing). In route mode: the pairs it labelled alone
    (`sure_labels`).
    `judged`: `queries.judgements(db)`, when the caller has it."""
    people, reviews = {}, {}
    for j in judged if judged is not None else judgements(db):
        if j["gold"] is not None:  # gold pairs are the admins' own answers
            continue
        if j["suggestion_id"] is not None:
            reviews.setdefault(j["suggestion_id"], []).append(j["verdict"])
        elif j["verdict"] in ("0", "1") and j["served"] in (None, "audit"):
            people.setdefault(j["pair_id"], []).append(j["verdict"])
    labelled = [r["judge"] for r in sure_labels(db)]
    figures = []
    for judge, in db.execute("SELECT DISTINCT judge FROM first_pass ORDER BY judge").fetchall():
        rows = list(db.query(f"SELECT f.id, f.pair_id, f.verdict, f.confidence FROM first_pass f "
                             f"JOIN pairs p ON {ON_PAIR} WHERE f.judge = ?", [judge]))
        confidences, hits = [], []
        for row in rows:
            for verdict in people.get(row["pair_id"], []) if row["verdict"] else []:
                confidences.append(row["confidence"])
                hits.append(verdict == row["verdict"])
        agree = win_rate_interval(sum(hits), len(hits) - sum(hits), 0)
        stated = [(c, hit) for c, hit in zip(confidences, hits) if c is not None]
        reviewed = [(verdict, row["verdict"]) for row in rows for verdict in reviews.get(row["id"], [])]
        accepted = sum(verdict == suggested for verdict, suggested in reviewed)
        figures.append({"judge": judge, "pairs": len(rows), "abstained": sum(r["verdict"] is None for r in rows),
                        "audited_votes": len(hits), "agreement": agree.value if hits else None,
                        "agreement_low": agree.low if hits else None, "agreement_high": agree.high if hits else None,
                        "mean_confidence": round(sum(c for c, _ in stated) / len(stated), 4) if stated else None,
                        "calibration_error": calibration_error([c for c, _ in stated], [h for _, h in stated]),
                        "reviewed_votes": len(reviewed), "accepted": accepted / len(reviewed) if reviewed else None,
                        "labelled_alone": labelled.count(judge)})
    return figures
