"""Judging a candidate policy against the versions it would replace, on held-out prompts.

Every version answers the same prompts with the same sampling settings and seed; the
round's reward model scores the answers. KL is measured on the candidate's own samples
against the live policy, the reference every algorithm regularises towards.
"""
from dataclasses import dataclass, field

import torch

from policy.registry import PolicyRegistry
from policy.sampling import SamplingConfig

from .reward_model import RewardModel

CANDIDATE = -1  # the registry's key for the unregistered candidate


@dataclass
class EvalConfig:
    prompts: int = 16
    batch_size: int = 8
    seed: int = 0
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(max_new_tokens=96))


@dataclass
class Answers:
    version: int
    texts: list[str]
    lengths: list[int]
    kl: list[float]  # per answer (nats, summed over its tokens) against the reference; empty when not measured


@dataclass
class Judgement:
    prompt: str
    version_a: int
    version_b: int
    completion_a: str
    completion_b: str
    score_a: float
    score_b: float

    @property
    def result(self) -> str:
        return "a" if self.score_a > self.score_b else "b" if self.score_b > self.score_a else "tie"

    def row(self, candidate_id: int) -> dict:
        """As stored, with the candidate's registered version id in place of CANDIDATE."""
        def version(v: int) -> int:
            return candidate_id if v == CANDIDATE else v
        return {"prompt": self.prompt, "version_a": version(self.version_a),
                "version_b": version(self.version_b), "completion_a": self.completion_a,
                "completion_b": self.completion_b, "score_a": self.score_a,
                "score_b": self.score_b, "result": self.result}


def answer(registry: PolicyRegistry, version: int, prompts: list[str], cfg: EvalConfig,
           reference: int | None = None) -> Answers:
    """Batched answers; with a reference, the summed log-ratio of each answer (a KL sample)."""
    out = Answers(version, [], [], [])
    for i in range(0, len(prompts), cfg.batch_size):
        batch = prompts[i:i + cfg.batch_size]
        texts, seqs, mask, start = registry.sample_batch(version, batch, cfg.sampling, cfg.seed + i)
        out.texts += texts
        out.lengths += mask[:, start:].sum(dim=1).tolist()
        if reference is not None:
            # Schulman's k3 estimator per token, (e^r - 1) - r with r = log ref/policy: never
            # negative, unlike the plain log-ratio, whose sample mean often is on 16 answers.
            r = (registry.token_logprobs(reference, seqs, mask, start)
                 - registry.token_logprobs(version, seqs, mask, start))
            out.kl += ((torch.expm1(r) - r) * mask[:, start:]).sum(dim=1).tolist()
    return out


def judge(rm: RewardModel, prompts: list[str], a: Answers, b: Answers) -> list[Judgement]:
    scores_a, scores_b = rm.score(prompts, a.texts), rm.score(prompts, b.texts)
    return [Judgement(p, a.version, b.version, ta, tb, float(sa), float(sb))
            for p, ta, tb, sa, sb in zip(prompts, a.texts, b.texts, scores_a, scores_b)]


def win_rate(judgements: list[Judgement]) -> float:
    """Share of prompts where side a scored higher, ties counting half."""
    wins = sum({"a": 1.0, "tie": 0.5, "b": 0.0}[j.result] for j in judgements)
    return wins / max(len(judgements), 1)


def evaluate(registry: PolicyRegistry, rm: RewardModel, prompts: list[str], live: int,
             cfg: EvalConfig) -> tuple[dict[str, float], list[Judgement]]:
    """The candidate (loaded in the registry as CANDIDATE) against the live version and the base."""
    prompts = prompts[:cfg.prompts]
    candidate = answer(registry, CANDIDATE, prompts, cfg, reference=live)
    opponents = {live: answer(registry, live, prompts, cfg)}
    if live != 0:
        opponents[0] = answer(registry, 0, prompts, cfg)
    judgements = {v: judge(rm, prompts, candidate, ans) for v, ans in opponents.items()}
    cand_scores = [j.score_a for j in judgements[live]]
    metrics = {
        "rm_score": float(torch.tensor(cand_scores).mean()),
        "rm_score_live": float(torch.tensor([j.score_b for j in judgements[live]]).mean()),
        "rm_win_rate_vs_live": win_rate(judgements[live]),
        "rm_win_rate_vs_base": win_rate(judgements[0] if live != 0 else judgements[live]),
        "kl_to_ref": float(torch.tensor(candidate.kl).mean()),
        "mean_length": float(torch.tensor(candidate.lengths, dtype=torch.float).mean()),
        "mean_length_live": float(torch.tensor(opponents[live].lengths, dtype=torch.float).mean()),
        "eval_prompts": float(len(prompts)),
    }
    return metrics, [j for js in judgements.values() for j in js]
