"""The version leaderboard: Bradley-Terry fit, bootstrap intervals and head-to-head records."""
import math

import numpy as np
import pytest

from storage.ratings import (ELO_BASE, ELO_PER_LOGIT, Outcome, RatingsConfig, fit_bradley_terry,
                             head_to_head, leaderboard)

TRUE = {0: 0.0, 1: 0.5, 2: 1.0, 3: -0.5}  # log-strengths; version 0 is the base


def simulate(n: int, seed: int = 0, tie_rate: float = 0.0) -> list[Outcome]:
    """Games between random pairs, won with Bradley-Terry odds, some called ties instead."""
    rng = np.random.default_rng(seed)
    versions = list(TRUE)
    out = []
    for _ in range(n):
        a, b = rng.choice(versions, size=2, replace=False)
        if rng.random() < tie_rate:
            out.append(Outcome(int(a), int(b), "tie"))
            continue
        p_a = 1 / (1 + math.exp(TRUE[b] - TRUE[a]))
        out.append(Outcome(int(a), int(b), "a" if rng.random() < p_a else "b"))
    return out


def flip(o: Outcome) -> Outcome:
    return Outcome(o.version_b, o.version_a, {"a": "b", "b": "a"}.get(o.result, o.result))


def test_recovers_known_strengths():
    fitted = fit_bradley_terry(simulate(4000))
    assert fitted[0] == 0.0
    for v, s in TRUE.items():
        assert fitted[v] == pytest.approx(s, abs=0.12)


def test_intervals_contain_truth_and_shrink_with_votes():
    cfg = RatingsConfig(bootstrap=200)
    wide = {r["version"]: r for r in leaderboard(simulate(400, seed=1), cfg)}
    narrow = {r["version"]: r for r in leaderboard(simulate(4000, seed=1), cfg)}
    for v in (1, 2, 3):
        truth = ELO_BASE + ELO_PER_LOGIT * TRUE[v]
        assert narrow[v]["ci_low"] < truth < narrow[v]["ci_high"]
        assert narrow[v]["ci_low"] < narrow[v]["rating"] < narrow[v]["ci_high"]
        narrow_width = narrow[v]["ci_high"] - narrow[v]["ci_low"]
        assert narrow_width < 0.6 * (wide[v]["ci_high"] - wide[v]["ci_low"])
    assert narrow[0]["rating"] == narrow[0]["ci_low"] == narrow[0]["ci_high"] == ELO_BASE


def test_leaderboard_is_sorted_best_first_with_counts():
    outcomes = simulate(2000, tie_rate=0.2)
    rows = leaderboard(outcomes, RatingsConfig(bootstrap=20))
    assert [r["version"] for r in rows] == [2, 1, 0, 3]
    for r in rows:
        assert r["votes"] == sum(r["version"] in (o.version_a, o.version_b) for o in outcomes)
        assert r["wins"] + r["losses"] + r["ties"] == r["votes"]
    assert sum(r["wins"] for r in rows) == sum(r["losses"] for r in rows)


def test_swapping_sides_gives_the_same_ratings():
    outcomes = simulate(600, tie_rate=0.2)
    flipped = [flip(o) for o in outcomes]
    assert fit_bradley_terry(flipped) == pytest.approx(fit_bradley_terry(outcomes))
    assert head_to_head(flipped, 1, 2) == head_to_head(outcomes, 1, 2)


def test_ties_and_both_bad_count_as_half_a_win():
    as_ties = [Outcome(0, 1, "tie"), Outcome(1, 0, "both_bad"), Outcome(0, 1, "a")]
    as_split = [Outcome(0, 1, "a"), Outcome(0, 1, "b"), Outcome(0, 1, "a")]
    assert fit_bradley_terry(as_ties) == pytest.approx(fit_bradley_terry(as_split))
    assert fit_bradley_terry([Outcome(0, 1, "tie")] * 50)[1] == pytest.approx(0.0, abs=1e-9)
    assert head_to_head(as_ties, 0, 1) == {"wins": 1, "losses": 0, "ties": 2, "games": 3,
                                           "win_rate": pytest.approx(2 / 3)}


def test_win_rate_vs_base_on_a_hand_example():
    outcomes = [Outcome(1, 0, "a"), Outcome(0, 1, "b"), Outcome(0, 1, "a"), Outcome(1, 0, "tie"),
                Outcome(1, 2, "b"), Outcome(2, 1, "a")]  # games between 1 and 2 don't count
    rows = {r["version"]: r for r in leaderboard(outcomes, RatingsConfig(bootstrap=0))}
    assert rows[1]["games_vs_base"] == 4
    assert rows[1]["win_rate_vs_base"] == pytest.approx((2 + 0.5) / 4)
    assert rows[1]["ci_low"] is None
    assert rows[2]["win_rate_vs_base"] is None and rows[2]["games_vs_base"] == 0
    assert rows[0]["win_rate_vs_base"] is None


def test_unknown_result_is_rejected_clearly():
    with pytest.raises(ValueError, match=r"unknown result 'A'.*one of a, b, tie, both_bad"):
        leaderboard([Outcome(0, 1, "A")])
    with pytest.raises(ValueError, match="l2 must be > 0"):
        fit_bradley_terry([Outcome(0, 1, "a")], l2=0.0)
    with pytest.raises(ValueError, match="with itself"):
        fit_bradley_terry([Outcome(1, 1, "a")])


def test_empty_input_gives_empty_or_unrated_rows():
    assert leaderboard([]) == []
    assert fit_bradley_terry([]) == {}
    rows = leaderboard([], versions=[0, 1])
    assert [(r["version"], r["rating"], r["votes"], r["win_rate_vs_base"]) for r in rows] == \
        [(0, None, 0, None), (1, None, 0, None)]


def test_unbeaten_and_disconnected_versions_stay_finite():
    outcomes = [Outcome(1, 0, "a")] * 5 + [Outcome(2, 3, "a")] * 3  # 2 and 3 never meet 0 or 1
    fitted = fit_bradley_terry(outcomes)
    assert all(math.isfinite(s) for s in fitted.values())
    assert fitted[1] > 0 and fitted[2] > fitted[3]
    rows = leaderboard(outcomes, RatingsConfig(bootstrap=50, min_votes=1))
    assert all(math.isfinite(r[k]) for r in rows for k in ("rating", "ci_low", "ci_high"))


def test_a_rating_from_too_few_votes_says_so_instead_of_a_false_interval():
    one = leaderboard([Outcome(1, 0, "a")], RatingsConfig(bootstrap=50))
    rows = {r["version"]: r for r in one}
    assert rows[1]["rating"] > ELO_BASE and rows[1]["ci_low"] is None and rows[1]["ci_high"] is None
    assert rows[1]["interval"] == "too few votes for an interval (1 of 10)"
    assert rows[0]["interval"] == "the anchor: 1000 by definition"
    many = {r["version"]: r for r in leaderboard([Outcome(1, 0, "a"), Outcome(1, 0, "b")] * 6,
                                                 RatingsConfig(bootstrap=50))}
    low, high = many[1]["ci_low"], many[1]["ci_high"]
    assert low < many[1]["rating"] < high and many[1]["interval"] == f"{low:.0f}–{high:.0f}"
    assert leaderboard([], versions=[0, 1])[1]["interval"] == "no votes yet"
