"""A leaderboard of policy versions from pairwise evaluation outcomes (Bradley-Terry).

Each outcome says which of two versions' answers won. Human blind votes and reward-model
judgements are different evidence, so callers build one leaderboard per source rather than
pooling them here.

Conventions, chosen once so every number on the board means the same thing:

* "tie" and "both_bad" each count as half a win for both sides (the usual tie-as-half
  convention): a judge who can't separate two versions is evidence they are close, whichever
  way both answers failed.
* Strengths are log-odds: P(i beats j) = sigmoid(s_i - s_j). The board shows them on an
  Elo-like scale, rating = 1000 + 400/ln(10) * s, so 400 points is 10:1 odds and the anchor
  (the base version) sits at exactly 1000. Intervals are relative to the anchor, which is
  why the anchor's own interval has zero width.
* A small Gaussian prior (L2 penalty) on strengths keeps an unbeaten version, or one with no
  path of games to the others, finite instead of drifting to infinity.
"""
import math
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np

RESULTS = ("a", "b", "tie", "both_bad")
ELO_BASE = 1000.0
ELO_PER_LOGIT = 400.0 / math.log(10.0)
# Prior sd of 1/sqrt(0.1) ~ 3.2 logits: unbeaten versions stay finite, while a version with
# even a few dozen games has ~100x more curvature from data than from the prior.
DEFAULT_L2 = 0.1
# Share of a game credited to version_a, per result.
_CREDIT_A = {"a": 1.0, "b": 0.0, "tie": 0.5, "both_bad": 0.5}
_KIND = {1.0: "wins", 0.0: "losses", 0.5: "ties"}


@dataclass(frozen=True)
class Outcome:
    """One judgement between an answer from version_a and one from version_b."""
    version_a: int
    version_b: int
    result: str


@dataclass
class RatingsConfig:
    bootstrap: int = 1000  # resamples for the 95% intervals; 0 leaves them out
    seed: int = 0
    anchor: int = 0  # the base version, pinned at ELO_BASE
    l2: float = DEFAULT_L2
    # Below this many games a version gets no interval: resampling one vote gives a zero-width
    # "interval", and a handful give ranges far narrower than the truth.
    min_votes: int = 10


def _check(outcomes: list[Outcome]) -> None:
    for o in outcomes:
        if o.result not in _CREDIT_A:
            raise ValueError(f"unknown result {o.result!r} in {o}; expected one of "
                             f"{', '.join(RESULTS)}")
        if o.version_a == o.version_b:
            raise ValueError(f"{o} compares version {o.version_a} with itself, "
                             "which says nothing about its rating")


def _win_matrix(counts: dict[tuple[int, int, str], int], index: dict[int, int]) -> np.ndarray:
    """wins[i, j] = games i won against j, ties counting half to each side."""
    wins = np.zeros((len(index), len(index)))
    for (a, b, result), n in counts.items():
        credit = _CREDIT_A[result] * n
        wins[index[a], index[b]] += credit
        wins[index[b], index[a]] += n - credit
    return wins


def _map_strengths(wins: np.ndarray, l2: float) -> np.ndarray:
    """Penalised maximum likelihood by damped Newton.

    With the L2 term the objective is strictly convex, so Newton converges in a handful of
    steps; halving the step when it overshoots keeps lopsided records (all wins) safe.
    """
    k = len(wins)
    games = wins + wins.T

    def loss(s: np.ndarray) -> float:
        diff = s[:, None] - s[None, :]
        return float((wins * np.logaddexp(0.0, -diff)).sum() + 0.5 * l2 * s @ s)

    s = np.zeros(k)
    current = loss(s)
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(s[None, :] - s[:, None]))  # p[i, j] = P(i beats j)
        grad = (games * p - wins).sum(axis=1) + l2 * s
        curvature = games * p * p.T
        hess = np.diag(curvature.sum(axis=1)) - curvature + l2 * np.eye(k)
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while (trial := loss(s - t * step)) > current and t > 1e-8:
            t /= 2
        s, current = s - t * step, trial
        if np.abs(t * step).max() < 1e-9:
            break
    return s


def _counts(outcomes: list[Outcome]) -> Counter:
    return Counter((o.version_a, o.version_b, o.result) for o in outcomes)


def _all_versions(outcomes: list[Outcome], versions: list[int] | None) -> list[int]:
    seen = set(versions or [])
    for o in outcomes:
        seen.update((o.version_a, o.version_b))
    return sorted(seen)


def fit_bradley_terry(outcomes: list[Outcome], versions: list[int] | None = None,
                      l2: float = DEFAULT_L2, anchor: int = 0) -> dict[int, float]:
    """Log-odds strength per version, shifted so the anchor is 0.

    `versions` adds versions with no games (they sit at the prior mean). If the anchor is not
    among the versions, strengths are left centred by the prior alone.
    """
    if l2 <= 0:
        raise ValueError(f"l2 must be > 0, got {l2}: without the prior, strengths are only "
                         "defined up to a shift and unbeaten versions run off to infinity")
    _check(outcomes)
    order = _all_versions(outcomes, versions)
    if not order:
        return {}
    index = {v: i for i, v in enumerate(order)}
    s = _map_strengths(_win_matrix(_counts(outcomes), index), l2)
    if anchor in index:
        s = s - s[index[anchor]]
    return {v: float(s[i]) for v, i in index.items()}


def _tally(outcomes: list[Outcome]) -> dict[tuple[int, int], Counter]:
    """Wins, losses and ties of v against other, keyed (v, other), from both orientations."""
    table: dict[tuple[int, int], Counter] = defaultdict(Counter)
    for o in outcomes:
        credit = _CREDIT_A[o.result]
        table[o.version_a, o.version_b][_KIND[credit]] += 1
        table[o.version_b, o.version_a][_KIND[1.0 - credit]] += 1
    return table


def _summary(record: Counter) -> dict:
    games = record["wins"] + record["losses"] + record["ties"]
    return {"wins": record["wins"], "losses": record["losses"], "ties": record["ties"],
            "games": games,
            "win_rate": (record["wins"] + 0.5 * record["ties"]) / games if games else None}


def head_to_head(outcomes: list[Outcome], version: int, other: int) -> dict:
    """Record of `version` against `other`, whichever side each was shown on.

    "ties" counts both "tie" and "both_bad"; win_rate credits them half (None without games).
    """
    _check(outcomes)
    return _summary(_tally(outcomes).get((version, other), Counter()))


@dataclass(frozen=True)
class WinRate:
    """A win-rate with ties counted half, and its confidence interval."""
    value: float
    low: float
    high: float
    games: int


def win_rate_interval(wins: int, losses: int, ties: int, confidence: float = 0.95) -> WinRate:
    """A win-rate with ties counted half, and its Agresti-Coull interval extended to ties.

    z^2/2 pseudo-wins and as many pseudo-losses are added, then the normal interval is taken
    with the games' own variance. Without ties this is exactly Agresti-Coull, so a handful of
    games that all went one way does not read as certainty (5 wins in 5: 0.51-1). A tie varies
    less than a coin flip, so where most games are ties, as when two policies often write the
    same answer, the interval is as narrow as the evidence allows rather than a coin's width.
    """
    n = wins + losses + ties
    if n == 0:
        return WinRate(0.5, 0.0, 1.0, 0)
    z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
    pseudo = z * z / 2
    games = n + 2 * pseudo
    mean = (wins + pseudo + 0.5 * ties) / games
    variance = (wins + pseudo + 0.25 * ties) / games - mean * mean
    half = z * math.sqrt(variance / games)
    return WinRate((wins + 0.5 * ties) / n, max(mean - half, 0.0), min(mean + half, 1.0), n)


def calibration_error(confidences: list[float], hits: list[bool], bins: int = 5) -> float | None:
    """Expected calibration error of verdicts made with these confidences (0.5-1): over bins of
    confidence (0.5-0.6, ..., 0.9-1.0), the gap between how sure they were and how often they
    were right, weighted by the bin's share of verdicts. None without any verdict."""
    if not hits:
        return None
    binned: dict[int, list[tuple[float, bool]]] = {}
    for c, hit in zip(confidences, hits):
        binned.setdefault(min(int((c - 0.5) * 2 * bins), bins - 1), []).append((c, hit))
    return sum(abs(sum(c for c, _ in inside) - sum(h for _, h in inside)) for inside in binned.values()) / len(hits)


def _bootstrap_intervals(outcomes: list[Outcome], order: list[int], cfg: RatingsConfig
                         ) -> dict[int, tuple[float, float]]:
    """95% percentile intervals from refits on outcomes resampled with replacement.

    Drawing multinomial counts over the distinct (a, b, result) cells is the same
    distribution as resampling the outcome list, and each refit then costs a few cells
    instead of every vote.
    """
    counts = _counts(outcomes)
    cells = list(counts)
    probs = np.array([counts[c] for c in cells], dtype=float) / len(outcomes)
    index = {v: i for i, v in enumerate(order)}
    rng = np.random.default_rng(cfg.seed)
    draws = np.empty((cfg.bootstrap, len(order)))
    for b, resample in enumerate(rng.multinomial(len(outcomes), probs, size=cfg.bootstrap)):
        wins = _win_matrix({c: n for c, n in zip(cells, resample) if n}, index)
        s = _map_strengths(wins, cfg.l2)
        draws[b] = s - s[index[cfg.anchor]] if cfg.anchor in index else s
    low, high = np.percentile(ELO_BASE + ELO_PER_LOGIT * draws, [2.5, 97.5], axis=0)
    return {v: (float(low[i]), float(high[i])) for v, i in index.items()}


def _interval_text(version: int, games: int, ci: tuple[float, float] | None, cfg: RatingsConfig) -> str:
    """The 95% interval as people read it, or why there is none."""
    if not games:
        return "no votes yet"
    if version == cfg.anchor:
        return f"the anchor: {ELO_BASE:.0f} by definition"
    if ci is None:
        return (f"too few votes for an interval ({games} of {cfg.min_votes})" if games < cfg.min_votes
                else "no interval (bootstrap off)")
    return f"{ci[0]:.0f}–{ci[1]:.0f}"


def leaderboard(outcomes: list[Outcome], cfg: RatingsConfig = RatingsConfig(),
                versions: list[int] | None = None) -> list[dict]:
    """One row per version, best first; versions without votes last, with rating None.

    A version with no votes has no evidence behind any number, so it gets None rather than
    the prior's 1000, which would read as "as good as base".
    """
    strengths = fit_bradley_terry(outcomes, versions, cfg.l2, cfg.anchor)
    order = list(strengths)
    intervals = _bootstrap_intervals(outcomes, order, cfg) if outcomes and cfg.bootstrap else {}
    table = _tally(outcomes)
    rows = []
    for v in order:
        record = _summary(sum((table.get((v, other), Counter()) for other in order), Counter()))
        vs_base = _summary(table.get((v, cfg.anchor), Counter()))
        voted = record["games"] > 0
        ci = intervals.get(v) if record["games"] >= max(cfg.min_votes, 1) else None
        rows.append({
            "version": v,
            "rating": ELO_BASE + ELO_PER_LOGIT * strengths[v] if voted else None,
            "ci_low": ci[0] if ci else None,
            "ci_high": ci[1] if ci else None,
            "votes": record["games"], "wins": record["wins"],
            "losses": record["losses"], "ties": record["ties"],
            "win_rate_vs_base": vs_base["win_rate"], "games_vs_base": vs_base["games"],
            "interval": _interval_text(v, record["games"], ci, cfg),
        })
    return sorted(rows, key=lambda r: (r["rating"] is None, -(r["rating"] or 0.0)))
