"""Agreement between annotators and each annotator's quality figures, from the votes alone.

Agreement is Krippendorff's alpha (nominal) over pairs judged by two or more annotators, the
verdict being which stored answer won, a tie, or both bad: 1 is perfect agreement, 0 what
chance gives, below 0 systematic disagreement. Unlike raw percent agreement it allows for how
often each verdict is given, and unlike Fleiss' kappa it takes pairs judged by different numbers
of annotators.
"""
import statistics
from collections import Counter, defaultdict
from dataclasses import asdict

import krippendorff
import numpy as np
import sqlite_utils

from . import first_pass, queries
from .migrations import VERDICTS


def alpha(units: dict[object, list[str]]) -> float | None:
    """Krippendorff's alpha on {unit: [verdict, ...]}; units with one verdict carry no agreement.
    None where it is undefined: no unit judged twice, or a single verdict given throughout."""
    units = [values for values in units.values() if len(values) >= 2]
    if not units or len({v for values in units for v in values}) < 2:
        return None
    # krippendorff wants coders x units, NaN where a coder did not judge a unit; the coder's
    # identity does not enter nominal alpha, so each unit's verdicts fill the first rows.
    data = np.full((max(map(len, units)), len(units)), np.nan)
    for column, values in enumerate(units):
        data[:len(values), column] = [VERDICTS.index(v) for v in values]
    return float(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"))


def gold_accuracy(judged: list[dict]) -> dict[str, tuple[int, int]]:
    """{annotator: (right, gold votes)} over votes on gold pairs."""
    tally = defaultdict(lambda: [0, 0])
    for j in judged:
        if j["gold"] is not None:
            tally[j["annotator"]][0] += j["verdict"] == j["gold"]
            tally[j["annotator"]][1] += 1
    return {a: (right, total) for a, (right, total) in tally.items()}


def majority(pair_votes: list[dict]) -> str | None:
    """The verdict most of a pair's annotators gave, if one verdict leads (None on an even split)."""
    counts = Counter(j["verdict"] for j in pair_votes).most_common(2)
    if not counts or (len(counts) == 2 and counts[0][1] == counts[1][1]):
        return None
    return counts[0][0]


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 3) if whole else None


def annotator_rows(judged: list[dict], skips: dict[str, int]) -> list[dict]:
    """One row of figures per annotator (see `quality`)."""
    by_pair, by_annotator = defaultdict(list), defaultdict(list)
    for j in judged:
        by_pair[j["pair_id"]].append(j)
        by_annotator[j["annotator"]].append(j)
    gold = gold_accuracy(judged)
    rows = []
    for name in sorted(set(by_annotator) | set(skips)):
        votes = by_annotator[name]
        majorities = [(majority([o for o in by_pair[j["pair_id"]] if o is not j]), j["verdict"])
                      for j in votes if j["gold"] is None and len(by_pair[j["pair_id"]]) >= 2]
        compared = [(m, v) for m, v in majorities if m is not None]
        decisive = [j for j in votes if j["choice"] in ("a", "b")]
        seconds = [j["seconds_on_task"] for j in votes if j["seconds_on_task"] is not None]
        right, gold_votes = gold.get(name, (0, 0))
        rows.append({
            "annotator": name, "judgements": len(votes), "skips": skips.get(name, 0),
            "median_seconds": round(statistics.median(seconds), 1) if seconds else None,
            "overlapped": len(compared),
            "majority_agreement": _share(sum(m == v for m, v in compared), len(compared)),
            "gold_votes": gold_votes, "gold_accuracy": _share(right, gold_votes),
            "tie_or_both_bad": _share(sum(j["choice"] in ("tie", "both_bad") for j in votes), len(votes)),
            "left_picks": _share(sum(j["choice"] == "a" for j in decisive), len(decisive)),
        })
    return rows


def _alpha_by(judged: list[dict], key: str) -> dict[str, dict]:
    groups = defaultdict(list)
    for j in judged:
        groups[str(j[key]) if j[key] is not None else "none"].append(j)
    return {name: _agreement(group) for name, group in sorted(groups.items())}


def _agreement(judged: list[dict]) -> dict:
    """Alpha over ordinary pairs: gold pairs, judged by everyone and picked for being clear,
    would make agreement look better than it is (they have gold accuracy instead)."""
    units = defaultdict(list)
    for j in judged:
        if j["gold"] is None:
            units[j["pair_id"]].append(j["verdict"])
    overlapped = [u for u in units.values() if len(u) >= 2]
    value = alpha(units)
    return {"alpha": round(value, 3) if value is not None else None, "overlapped_pairs": len(overlapped),
            "judgements": sum(map(len, overlapped))}


def skip_counts(db: sqlite_utils.Database) -> dict[str, int]:
    return dict(db.execute("SELECT annotator, count(*) FROM shows WHERE skipped_at IS NOT NULL "
                           "GROUP BY annotator").fetchall())


def quality(db: sqlite_utils.Database) -> dict:
    """Agreement overall, by prompt category and by policy version, and per annotator: judgements,
    skips, median seconds on task, agreement with the verdict most of the pair's other annotators
    gave (on ordinary overlapped pairs where the others do not split evenly), gold accuracy, share of ties and both-bad, and share of decisive picks that went to
    the left answer (0.5 is no side bias)."""
    judged = queries.judgements(db)
    return {"overlap": queries.overlap(db), "gold_rate": queries.gold_rate(db),
            "agreement": _agreement(judged), "by_category": _alpha_by(judged, "category"),
            "by_version": _alpha_by(judged, "version_id"),
            "annotators": annotator_rows(judged, skip_counts(db)), "first_pass": first_pass.audit(db, judged),
            "second_pass": asdict(queries.second_pass(db))}


def _alpha_line(name: str, a: dict) -> str:
    value = "not yet measurable" if a["alpha"] is None else f"**{a['alpha']:.2f}**"
    n = a["overlapped_pairs"]
    return f"{name}: {value} ({n} pair{'s' * (n != 1)} judged by two or more)"


def summary_markdown(q: dict) -> str:
    """The assignment and agreement part of `quality` in Markdown, for the app and the report."""
    lines = [f"Each pair goes to **{q['overlap']}** annotator{'s' * (q['overlap'] > 1)}; "
             f"**{q['gold_rate']:.0%}** of pairs shown are gold.",
             "", "Krippendorff's alpha (1: full agreement, 0: what chance gives):", "",
             "- " + _alpha_line("all pairs", q["agreement"])]
    lines += ["- " + _alpha_line(f"category {name}", a) for name, a in q["by_category"].items()]
    lines += ["- " + _alpha_line(f"version {name}", a) for name, a in q["by_version"].items()]
    second = q["second_pass"]
    lines += ["", SECOND_PASS_LINES[second["mode"]].format(**second)]
    if q["first_pass"]:  # judges' guesses made before anyone saw the pair, never counted above
        lines += ["", "First pass (a judge's verdict on each new pair, checked against the annotators' blind votes):", ""]
        lines += ["- " + _first_pass_line(f, second["mode"]) for f in q["first_pass"]]
    return "\n".join(lines)


SECOND_PASS_LINES = {
    "off": "Second pass: **off** (every pair goes to people, oldest first, with no suggestion).",
    "route": "Second pass: **route**: a judge's verdict at least {confidence:.0%} sure labels its pair, and "
             "people get the pairs the judges are least sure of first; {audit_share:.0%} of pairs shown are "
             "blind audits drawn at random.",
    "review": "Second pass: **review**: people see the surest judge's suggestion and confirm or overturn it; "
              "{audit_share:.0%} of pairs shown are blind audits drawn at random, without one.",
}


def _first_pass_line(f: dict, mode: str) -> str:
    judged = f"{f['judge']}: judged {f['pairs']} pairs ({f['abstained']} abstained)"
    if mode == "route":
        judged += f", labelled {f['labelled_alone']} alone"
    if f["reviewed_votes"]:
        judged += f"; its suggestion accepted in **{f['accepted']:.2f}** of {f['reviewed_votes']} reviews"
    if not f["audited_votes"]:
        return judged + "; no decisive blind vote on them yet"
    line = (judged + f"; agrees with **{f['agreement']:.2f}** [{f['agreement_low']:.2f}-{f['agreement_high']:.2f}] "
            f"of {f['audited_votes']} decisive blind votes")
    if f["mean_confidence"] is None:
        return line + "; it does not say how sure it is"
    return line + f"; {f['mean_confidence']:.2f} sure on average, calibration error {f['calibration_error']:.2f}"


COLUMNS = ("annotator", "judgements", "skips", "median_seconds", "overlapped", "majority_agreement",
           "gold_votes", "gold_accuracy", "tie_or_both_bad", "left_picks")


def annotators_markdown(rows: list[dict]) -> str:
    """The per-annotator figures as a Markdown table (names are plain: see `accounts.NAME`)."""
    def cell(v):
        return "–" if v is None else str(v)
    return ("| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n"
            + "".join("| " + " | ".join(cell(r[c]) for c in COLUMNS) + " |\n" for r in rows))
