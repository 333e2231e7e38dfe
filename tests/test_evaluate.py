"""Evaluation of a candidate: the same prompts and seed for every version, KL against the live one."""
import pytest
import torch

from policy.registry import PolicyRegistry
from policy.sampling import SamplingConfig
from trainer.degeneration import degeneration
from trainer.evaluate import CANDIDATE, EvalConfig, evaluate
from trainer.rounds import GateConfig

from .conftest import MODEL_CACHE, random_adapter

PROMPTS = ["Name a river.", "Name a mountain.", "Name a lake."]


class LengthJudge:
    """A stand-in reward model that prefers longer answers."""
    def score(self, prompts, completions):
        return torch.tensor([float(len(c)) for c in completions])


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    adapter = random_adapter(tmp_path_factory.mktemp("eval") / "adapter")
    registry = PolicyRegistry.load("tiny", MODEL_CACHE)
    registry.ensure_loaded(1, adapter)
    registry.ensure_loaded(CANDIDATE, adapter)  # the same weights as live version 1
    return registry


def config():
    return EvalConfig(prompts=3, samples=1, batch_size=2, sampling=SamplingConfig(max_new_tokens=8))


def test_a_candidate_identical_to_live_has_zero_kl_and_ties(registry):
    result = evaluate(registry, LengthJudge(), PROMPTS, live=1, cfg=config())
    metrics, judgements = result.metrics, result.judgements
    assert metrics["kl_to_ref"] == pytest.approx(0.0, abs=1e-4)
    assert metrics["rm_win_rate_vs_live"] == 0.5  # same seed, same weights: the same answers
    passes, reason = GateConfig().decide(metrics)  # a coin's worth of evidence promotes nothing
    assert not passes and "does not clear 0.5" in reason
    assert {(j.version_a, j.version_b) for j in judgements} == {(CANDIDATE, 1), (CANDIDATE, 0)}
    assert len(judgements) == 6


def test_against_the_base_kl_is_positive_and_figures_are_complete(registry):
    result = evaluate(registry, LengthJudge(), PROMPTS, live=0, cfg=config())
    metrics, judgements = result.metrics, result.judgements
    assert metrics["kl_to_ref"] > 0.01
    assert metrics["eval_answers"] == 3 and 0 <= metrics["rm_win_rate_vs_base"] <= 1
    assert len(judgements) == 3
    row = judgements[0].row(candidate_id=7)
    assert row["version_a"] == 7 and row["result"] in ("a", "b", "tie")


def test_degeneration_counts_empty_and_looping_answers():
    loop = "you can do it " * 12
    shares = degeneration(["", loop, "A fine, varied answer about rivers and lakes.", "Ok"])
    assert shares == {"empty_share": 0.5, "repetitive_share": 0.25, "degenerate_share": 0.75}
