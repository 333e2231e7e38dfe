"""Choosing what people judge: of several answers the live policy wrote to a prompt, the two
whose order the reward model knows least about.

A pair is worth a person's time where the reward model is unsure *because it has not seen
pairs like it*, not where the two answers are merely alike: people call such pairs a tie, or
split on them, and either way the head learns little. BALD (Houlsby et al. 2011, "Bayesian
active learning for classification and preference learning") scores exactly that: the entropy
of the predicted verdict less its expected entropy under the head's posterior, which is what
one verdict would tell about the head. In the probit form, with the head's calibrated logit and
posterior variance (see `reward_model.probability`: sigmoid(t*gap / sqrt(1 + c*var)) is
Phi(m / sqrt(1 + s2)) with m = sqrt(pi/8)*t*gap and s2 = c*var):

    I = h(Phi(m / sqrt(1 + s2))) - C / sqrt(s2 + C^2) * exp(-m^2 / (2 (s2 + C^2))),  C^2 = pi ln 2 / 2

in bits. A pair of identical answers has no variance and scores 0. The gap is the head's own,
before the reward model's cap and floor: a cap says RL earns nothing beyond the best judged
answer, not that the head is sure two answers there are equal, and that is where people's
word is most wanted. An empty or looping answer loses whatever the head says (the floor), so
only the pairs with the fewest such answers are considered.
"""
import itertools
import math

import torch

from .reward_model import LinearReward

C2 = math.pi * math.log(2) / 2


def _entropy(p: torch.Tensor) -> torch.Tensor:
    p = p.clamp(1e-7, 1 - 1e-7)
    return -(p * p.log2() + (1 - p) * (1 - p).log2())


def information(gap: torch.Tensor, variance: torch.Tensor, temperature: float, spread: float) -> torch.Tensor:
    """BALD: bits a verdict on each pair would tell about the head (see the module docstring)."""
    m = math.sqrt(math.pi / 8) * temperature * gap
    s2 = spread * variance
    predicted = torch.special.ndtr(m / torch.sqrt(1 + s2))
    expected = math.sqrt(C2) / torch.sqrt(s2 + C2) * torch.exp(-m.square() / (2 * (s2 + C2)))
    return (_entropy(predicted) - expected).clamp_min(0)


def most_informative(head: LinearReward, features: torch.Tensor, broken: torch.Tensor,
                     candidates: list[tuple[int, int]] | None = None) -> tuple[int, int]:
    """Of these pairs of one prompt's answers (every pair by default), the two a verdict on
    would tell the head most about; `features` and `broken` are the answers' as
    `RewardModel.read` gives them."""
    candidates = candidates or list(itertools.combinations(range(len(features)), 2))
    broken_in = [int(broken[i]) + int(broken[j]) for i, j in candidates]
    candidates = [c for c, b in zip(candidates, broken_in) if b == min(broken_in)]
    i, j = torch.tensor(candidates).T
    d = features[i] - features[j]
    variance = ((d @ head.covariance) * d).sum(-1)
    return candidates[int(information(d @ head.weight, variance, head.temperature, head.spread).argmax())]
