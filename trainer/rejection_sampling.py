"""Rejection sampling (Llama 2's and 3's recipe): the live policy writes N answers to each
training prompt, the round's reward model scores them, and the best, when it beats the
prompt's median answer by a margin, becomes an SFT example. The same answers make online DPO
pairs (RLHFlow's iterative DPO): the best chosen over the worst, when they differ by the margin.

Best-of-N moves the policy only as far as its own best answers go, so how much a round can
gain is the gap between the best and the median answer; Llama 2 found it grows with N. Each
round reports that gap for N = 2, 4, ... up to its N, so N can be chosen by measurement. The answers a
round kept are stored (`storage.rounds.add_best_answers`) and compete again in later rounds,
rescored by the newer reward model: Llama 2 lost skills between rounds until it pooled them.
"""
from dataclasses import dataclass, field

import torch

from policy.sampling import SamplingConfig
from storage.exports import conversational

from .reward_model import RewardModel
from .sft import example


@dataclass
class RejectionSamplingSettings:
    n: int = 4                 # answers per prompt from the live policy
    # The best must beat the median of the prompt's N answers by this many reward units (the
    # spread of the judged answers' rewards): a prompt whose answers are all alike teaches nothing.
    margin: float = 0.5
    chunk: int = 8             # prompts per batched `generate` call (N answers each)
    pool: bool = True          # earlier rounds' kept answers compete again
    # Sampled as RLOO samples (temperature 1: the policy's own spread of answers), as long as
    # the app's answers; an answer cut off at the limit is never kept, or SFT would teach
    # stopping mid-sentence.
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(temperature=1.0, top_p=1.0))


@dataclass
class Selection:
    examples: list[dict]       # SFT rows: the kept best answers
    kept: list[dict]           # {"prompt", "answer", "reward", "median"} for storage and pooling
    pairs: list[dict]          # DPO rows: the best chosen over the worst
    metrics: dict


def gaps(rewards: torch.Tensor) -> dict[str, float]:
    """Mean over prompts of the best minus the (lower) median of the first k answers, for
    k = 2, 4, 8... up to N (rows: prompts, columns: answers in sampling order)."""
    n = rewards.shape[1]
    ks = sorted({2 ** i for i in range(1, n.bit_length()) if 2 ** i <= n} | ({n} if n > 1 else set()))
    return {f"rs_gap_n{k}": (rewards[:, :k].max(1).values - rewards[:, :k].median(1).values).mean().item()
            for k in ks}


def best_of_n(registry, version: int, prompts: list[str], rm: RewardModel, cfg: RejectionSamplingSettings,
              seed: int, pooled: dict[str, list[str]] | None = None, progress=None) -> Selection:
    """Sample, score and keep each prompt's best answer that clears its median by the margin.

    `pooled` maps a prompt to answers kept by earlier rounds: they are scored with the N new
    ones and may be kept again, but the median is the new answers' alone (what the policy
    writes now). `progress(done, total)` is called after each batch of prompts.
    """
    pooled = pooled or {}
    kept, pairs, rewards, cut = [], [], [], 0
    for i in range(0, len(prompts), cfg.chunk):
        chunk = prompts[i:i + cfg.chunk]
        answers = registry.complete(version, chunk, cfg.sampling, seed + i, copies=cfg.n)
        texts = [[a.text for a in own] + pooled.get(prompt, []) for prompt, own in zip(chunk, answers)]
        scores = rm.score([p for p, t in zip(chunk, texts) for _ in t], [a for t in texts for a in t])
        for prompt, own, candidates, score in zip(chunk, answers, texts, scores.split([len(t) for t in texts])):
            rewards.append(score[:cfg.n])
            median = score[:cfg.n].median().item()  # the lower middle one when N is even
            cut += sum(a.cut_off for a in own)
            # An answer cut off at the length limit is on neither side: its reward is for a fragment.
            whole = [j for j in range(len(candidates)) if j >= cfg.n or not own[j].cut_off]
            if not whole:
                continue
            best = max(whole, key=lambda j: score[j].item())
            if score[best].item() - median >= cfg.margin:
                kept.append({"prompt": prompt, "answer": candidates[best], "reward": score[best].item(),
                             "median": median, "pooled": best >= cfg.n})
            worst = min((j for j in whole if j < cfg.n), key=lambda j: score[j].item(), default=best)
            if candidates[worst] != candidates[best] and score[best].item() - score[worst].item() >= cfg.margin:
                pairs.append(conversational({"prompt": prompt, "chosen": candidates[best],
                                             "rejected": candidates[worst]}))
        if progress:
            progress(min(i + cfg.chunk, len(prompts)), len(prompts))
    table = torch.stack(rewards) if rewards else torch.zeros(0, cfg.n)
    metrics = gaps(table) | {"rs_prompts": float(len(prompts)), "rs_kept": float(len(kept)),
                             "rs_kept_pooled": float(sum(k["pooled"] for k in kept)),
                             "rs_pairs": float(len(pairs)), "rs_cut_off_share": cut / max(table.numel(), 1)}
    examples = [example([{"role": "user", "content": k["prompt"]}], k["answer"]) for k in kept]
    return Selection(examples, kept, pairs, metrics)

