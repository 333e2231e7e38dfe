"""Choosing what people judge: of several answers, the pair whose order the reward model knows
least about goes to people, not a pair of near-copies, nor one it is already sure of."""
import torch

from tests.test_reward_model import synthetic_pairs
from trainer.reward_model import RewardModelConfig, fit_calibrated
from trainer.selection import information, most_informative


def head_fitted_on_feature_0():
    """A reward model whose judged pairs differed along feature 0 alone (the chosen side ahead)."""
    return fit_calibrated(synthetic_pairs(80, seed=0), torch.tensor([i % 5 for i in range(80)]),
                          RewardModelConfig())[0]


def answers(*rows: list[float]) -> torch.Tensor:
    return torch.tensor([row + [0.0] * (8 - len(row)) for row in rows])


def test_the_pair_people_get_differs_where_no_judged_pair_did():
    head = head_fitted_on_feature_0()
    # 0 and 1 are near-copies; 2 is far ahead of them on feature 0, which the head is sure of;
    # 3 differs from them along feature 1, which no judged pair varied in.
    features = answers([0.0], [0.01], [2.0], [0.0, 2.0])
    i, j = most_informative(head, features, torch.zeros(4, dtype=torch.bool))
    assert 3 in (i, j) and {i, j} != {2, 3}


def test_near_copies_tell_nothing_and_unlike_answers_tell_most():
    head = head_fitted_on_feature_0()
    features = answers([0.0, 1.0], [0.0, 1.0], [0.0, -1.0])
    no = torch.zeros(2, dtype=torch.bool)
    bits = information(*head.logits(features[[0, 0]], features[[1, 2]], no, no), head.temperature, head.spread)
    assert bits[0] < 1e-3 < 0.1 < bits[1]  # identical answers: nothing; 2 apart along an unseen feature: much


def test_an_empty_or_looping_answer_is_never_shown_where_the_prompt_has_whole_ones():
    head = head_fitted_on_feature_0()
    features = answers([0.0], [0.01], [0.0, 3.0])
    broken = torch.tensor([False, False, True])  # the unlike answer is a loop: it loses whatever the head says
    assert most_informative(head, features, broken) == (0, 1)
    assert most_informative(head, features[1:], broken[1:]) == (0, 1)  # no other pair: shown all the same
