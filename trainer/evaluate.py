"""Judging a candidate policy against the versions it would replace, on held-out prompts.

Every version answers the same prompts with the app's own sampling settings and the same
seeds, so where two policies agree they write the same words and only real differences
count. The round's reward model scores the answers; each win-rate carries a confidence
interval, since the promotion gate must not mistake a lucky draw for a better policy. KL is
measured on the candidate's own samples against the live policy, the reference every
algorithm regularises towards.

A registered version never changes, so its answers to a given evaluation set are kept on
disk: a round generates only the candidate's answers, not the live version's and the base's.
"""
import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from policy.registry import PolicyRegistry
from policy.sampling import SamplingConfig
from storage.ratings import WinRate, win_rate_interval

from .degeneration import degeneration
from .reward_model import RewardModel

CANDIDATE = -1  # the registry's key for the unregistered candidate


@dataclass
class EvalConfig:
    """Sized so the gate's interval is about +-0.1 wide: 2 answers to each of up to 48 prompts."""
    prompts: int = 48
    samples: int = 2            # answers per prompt, each batch with its own seed
    batch_size: int = 16
    seed: int = 0
    confidence: float = 0.95    # of every win-rate interval
    sampling: SamplingConfig = field(default_factory=SamplingConfig)  # the app's, answer length included

    def questions(self, prompts: list[str]) -> list[str]:
        """The evaluation set: each prompt `samples` times, the copies in different batches."""
        return prompts[:self.prompts] * self.samples


@dataclass
class Answers:
    version: int
    texts: list[str]
    lengths: list[int]
    kl: list[float] = field(default_factory=list)  # per answer (nats, summed over tokens) against the reference


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


class AnswerCache:
    """Registered versions' answers to one evaluation set, one JSON file per version.

    The key covers everything that decides the answers: the questions, the sampling settings,
    the seed, the batching and the precision the registry samples in.
    """

    def __init__(self, folder: Path, questions: list[str], cfg: EvalConfig, dtype: torch.dtype):
        recipe = json.dumps([questions, cfg.sampling.record(), cfg.seed, cfg.batch_size, str(dtype)])
        self.folder, self.key = folder, hashlib.sha256(recipe.encode()).hexdigest()[:16]

    def _path(self, version: int) -> Path:
        return self.folder / f"v{version}-{self.key}.json"

    def get(self, version: int) -> Answers | None:
        path = self._path(version)
        return Answers(**json.loads(path.read_text())) if path.exists() else None

    def put(self, version: int, answers: Answers) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self._path(version).with_suffix(".tmp")
        tmp.write_text(json.dumps({**asdict(answers), "version": version, "kl": []}))
        tmp.replace(self._path(version))


def answer(registry: PolicyRegistry, version: int, questions: list[str], cfg: EvalConfig,
           reference: int | None = None, answered: Callable[[int], None] | None = None) -> Answers:
    """Batched answers; with a reference, the summed log-ratio of each answer (a KL sample).
    `answered(n)` is called as each batch of n is done."""
    out = Answers(version, [], [])
    for i in range(0, len(questions), cfg.batch_size):
        batch = questions[i:i + cfg.batch_size]
        texts, seqs, mask, start = registry.sample_batch(version, batch, cfg.sampling, cfg.seed + i)
        out.texts += texts
        out.lengths += mask[:, start:].sum(dim=1).tolist()
        if reference is not None:
            # Schulman's k3 estimator per token, (e^r - 1) - r with r = log ref/policy: never
            # negative, unlike the plain log-ratio, whose sample mean often is on few answers.
            r = (registry.token_logprobs(reference, seqs, mask, start)
                 - registry.token_logprobs(version, seqs, mask, start))
            out.kl += ((torch.expm1(r) - r) * mask[:, start:]).sum(dim=1).tolist()
        if answered:
            answered(len(batch))
    return out


def judge(questions: list[str], a: Answers, b: Answers, scores: dict[int, torch.Tensor]) -> list[Judgement]:
    """The reward model's verdict on each question, from each version's scores."""
    return [Judgement(p, a.version, b.version, ta, tb, float(sa), float(sb)) for p, ta, tb, sa, sb
            in zip(questions, a.texts, b.texts, scores[a.version], scores[b.version])]


def win_rate(judgements: list[Judgement], confidence: float = 0.95) -> WinRate:
    """Side a's win-rate over side b, ties counting half, with its interval."""
    results = [j.result for j in judgements]
    return win_rate_interval(results.count("a"), results.count("b"), results.count("tie"), confidence)


def win_rate_metrics(name: str, rate: WinRate) -> dict[str, float]:
    return {name: rate.value, f"{name}_low": rate.low, f"{name}_high": rate.high}


def _mean(values) -> float:
    return float(torch.tensor(values, dtype=torch.float).mean()) if len(values) else 0.0


@dataclass
class Evaluation:
    metrics: dict[str, float]
    judgements: list[Judgement]
    candidate: Answers
    cache: AnswerCache | None

    def keep_candidate_as(self, version_id: int) -> None:
        """Once registered, the candidate is the next round's live version: keep its answers."""
        if self.cache:
            self.cache.put(version_id, self.candidate)


def evaluate(registry: PolicyRegistry, rm: RewardModel, prompts: list[str], live: int,
             cfg: EvalConfig, cache_dir: Path | None = None,
             progress: Callable[[int, int], None] | None = None) -> Evaluation:
    """The candidate (loaded in the registry as CANDIDATE) against the live version and the base.
    `progress(done, total)` counts the answers written: the candidate's, and the opponents'
    not already cached; generating them is nearly all of an evaluation's time."""
    questions = cfg.questions(prompts)
    cache = AnswerCache(cache_dir, questions, cfg, registry.model.dtype) if cache_dir else None
    opponents = {version: cache.get(version) if cache else None for version in dict.fromkeys((live, 0))}
    total, done = len(questions) * (1 + sum(a is None for a in opponents.values())), 0

    def answered(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress(done, total)
    candidate = answer(registry, CANDIDATE, questions, cfg, reference=live, answered=answered)
    for version, cached in opponents.items():
        if cached is None:
            opponents[version] = answer(registry, version, questions, cfg, answered=answered)
            if cache:
                cache.put(version, opponents[version])
    scores = {a.version: rm.score(questions, a.texts) for a in (candidate, *opponents.values())}
    judgements = {v: judge(questions, candidate, ans, scores) for v, ans in opponents.items()}
    metrics = {
        "rm_score": _mean([j.score_a for j in judgements[live]]),
        "rm_score_live": _mean([j.score_b for j in judgements[live]]),
        **win_rate_metrics("rm_win_rate_vs_live", win_rate(judgements[live], cfg.confidence)),
        **win_rate_metrics("rm_win_rate_vs_base", win_rate(judgements[0], cfg.confidence)),
        "kl_to_ref": _mean(candidate.kl),
        "mean_length": _mean(candidate.lengths),
        "mean_length_live": _mean(opponents[live].lengths),
        **degeneration(candidate.texts),
        "degenerate_share_base": degeneration(opponents[0].texts)["degenerate_share"],
        "eval_answers": float(len(questions)),
    }
    return Evaluation(metrics, [j for js in judgements.values() for j in js], candidate, cache)
