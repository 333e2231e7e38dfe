"""The promotion gate: a candidate is promoted only when the lower end of its win-rate's interval
against the live version clears 0.5, its KL stays within bound and at most 5% more of its answers are empty
or looping than the base model's; the reason is said in words."""
from storage.ratings import win_rate_interval
from trainer.rounds import GateConfig


def test_the_interval_is_honest_about_few_games():
    five = win_rate_interval(wins=5, losses=0, ties=0)
    assert five.value == 1.0 and five.high == 1.0 and 0.5 < five.low < 0.6  # not certainty from 5 games
    assert win_rate_interval(wins=60, losses=20, ties=0).low > 0.6
    ties = win_rate_interval(wins=0, losses=0, ties=40)
    assert ties.value == 0.5 and ties.low < 0.5 < ties.high
    assert win_rate_interval(0, 0, 0).games == 0


def test_the_interval_narrows_with_more_games_at_the_same_rate():
    widths = [r.high - r.low for r in (win_rate_interval(7 * k, 3 * k, 0) for k in (1, 4, 16))]
    assert widths[0] > widths[1] > widths[2]


def metrics(rate: float, low: float, kl: float, degenerate: float = 0.0, degenerate_base: float = 0.0) -> dict:
    return {"rm_win_rate_vs_live": rate, "rm_win_rate_vs_live_low": low,
            "rm_win_rate_vs_live_high": min(2 * rate - low, 1.0), "kl_to_ref": kl, "eval_answers": 96.0,
            "degenerate_share": degenerate, "degenerate_share_base": degenerate_base}


def test_a_lucky_win_rate_whose_interval_reaches_below_half_is_not_enough():
    passes, reason = GateConfig().decide(metrics(0.58, 0.48, 2.0))
    assert not passes
    assert "0.58" in reason and "0.48" in reason and "does not clear 0.5" in reason


def test_a_clear_win_within_the_kl_bound_passes_and_too_much_kl_does_not():
    passes, reason = GateConfig(max_kl=20).decide(metrics(0.75, 0.65, 3.0))
    assert passes and "clears 0.5" in reason and "KL 3.0" in reason
    passes, reason = GateConfig(max_kl=20).decide(metrics(0.75, 0.65, 31.0))
    assert not passes and "exceeds the bound 20" in reason


def test_a_preferred_candidate_that_loops_more_than_the_base_is_kept():
    """Measured: a third engaging round looped in 14% of its answers and still won the reward model."""
    passes, reason = GateConfig().decide(metrics(0.75, 0.65, 8.0, degenerate=0.14, degenerate_base=0.0))
    assert not passes and "14% of its answers empty or looping against the base's 0%" in reason
    passes, reason = GateConfig().decide(metrics(0.75, 0.65, 8.0, degenerate=0.06, degenerate_base=0.03))
    assert passes and "6% of its answers" in reason


def test_broken_answers_cannot_creep_up_a_few_points_a_round():
    """Measured against live, RLOO rounds on plain went from the base's 3% to 6%, then 10%: each
    step within 5 points of live. Against the base, the second step is kept."""
    m = metrics(0.62, 0.51, 8.9, degenerate=0.10, degenerate_base=0.03) | {"degenerate_share_live": 0.06}
    passes, reason = GateConfig().decide(m)
    assert not passes and "10% of its answers empty or looping against the base's 3%" in reason
