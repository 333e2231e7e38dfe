"""Reward model: a linear read-out of the base model's middle layers, fitted to the annotators'
choices and scores.

A round brings about a hundred judgements. Fine-tuning a transformer with a score head on so few
(TRL's RewardTrainer with LoRA, what this module did before) memorised them: on held-out prompts
of SmolLM2 it ranked 0.39-0.72 of the pairs right. A probe that stays linear in frozen features
cannot memorise, and the features that carry an annotator's taste (how long an answer is, how it
addresses the reader, how long its sentences are) are already in the base model's hidden states:
the mean over an answer's tokens about halfway up the network, with the final norm applied,
ranked 0.76-0.86 of the same pairs. So the reward model reads that mean and fits a linear head to it:

- the Bradley-Terry loss on each pair (the chosen answer's reward above the rejected one's),
- plus, where the annotator gave 1-10 scores, the squared error of the reward against the
  standardised score; scores say how much better, and they are the only signal in pairs whose
  two sides look almost alike,
- plus an L2 penalty: with 576 features and ~100 pairs the fit is otherwise underdetermined.

A linear read-out extrapolates freely on answers unlike any the annotators judged, so rewards
are kept within the range of the answers it was fitted on. No answer scores above the best of
them: going further than anything judged earns nothing more, and RL's KL penalty then pulls the
policy back (without this cap a second RLOO round on a taste for short answers wrote 8-word
answers, a fifth of them empty). An empty or looping answer scores no higher than the worst of
them, less one: RLOO on a taste for short sentences learnt to write empty answers the probe
rewarded.

Features are computed once, so the fit takes seconds (L-BFGS), and the backbone stops at the
layer read: the saved folder holds only the layers below it, and scoring runs half the network.
Training and scoring template and cut every conversation with the same function, `encode`.
"""
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel

from policy import models
from storage.ratings import win_rate_interval

from . import common
from .degeneration import degenerate
from .progress import RoundProgress

HEAD = "reward_head.safetensors"


@dataclass
class RewardModelConfig:
    """Chosen on SmolLM2-135M: three scripted tastes judging two answers to each of 102 prompts;
    the layer, loss mix and penalty picked on other training prompts' pairs, then measured once
    on held-out prompts."""
    depth: float = 0.45         # read the answer after this share of the layers: 14 of SmolLM2's 30
    score_weight: float = 0.5   # share of the loss on matching 1-10 scores, where there are any
    l2: float = 1.0             # on standardised features; 0.3 to 1.0 measured alike
    max_length: int = 512       # tokens per templated prompt + answer; longer prompts lose their end
    batch_size: int = 8         # answers per forward pass while reading features


def _shorten(tokenizer, messages: list[dict], tokens: int) -> list[dict]:
    """The messages with roughly `tokens` tokens cut from the end of the last one's text.

    Cutting at a token's character offset keeps a strict prefix of the text, so repeated
    cuts always shrink it (decoding a cut token list can grow it again with a broken character).
    """
    text = messages[-1]["content"]
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    keep = max(len(offsets) - tokens, 0)
    end = offsets[keep][0] if keep < len(offsets) else len(text)
    return messages[:-1] + [{**messages[-1], "content": text[:end]}]


def _template(tokenizer, messages: list[dict], **kwargs) -> list[int]:
    return tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, **kwargs)["input_ids"]


def encode(tokenizer, prompt: list[dict], completion: list[dict], max_length: int) -> tuple[list[int], int, bool]:
    """Token ids of the templated conversation cut to `max_length`, where the answer starts in
    them, and whether anything was cut.

    The prompt's last message loses its end first, since the answer is what is being judged;
    only an answer too long on its own is cut as well.
    """
    truncated = False
    while len(ids := _template(tokenizer, prompt + completion)) > max_length:
        truncated, excess = True, len(ids) - max_length
        if prompt[-1]["content"]:
            prompt = _shorten(tokenizer, prompt, excess)
        elif completion[-1]["content"]:
            completion = _shorten(tokenizer, completion, excess)
        else:
            raise ValueError(f"max_length {max_length} cannot hold the chat template itself")
    start = len(_template(tokenizer, prompt, add_generation_prompt=True))
    return ids, min(start, len(ids) - 1), truncated


@torch.inference_mode()
def answer_features(backbone, tokenizer, prompts: list[list[dict]], completions: list[list[dict]],
                    max_length: int, batch_size: int = 8,
                    progress: Callable[[int, int], None] | None = None) -> tuple[torch.Tensor, list[bool]]:
    """The final-normed hidden state averaged over each answer's tokens (float32), and which
    conversations had text cut. The answer alone is averaged: the prompt is the same on both
    sides of a pair, and would only dilute what differs."""
    encoded = [encode(tokenizer, p, c, max_length) for p, c in zip(prompts, completions, strict=True)]
    features = []
    for i in range(0, len(encoded), batch_size):
        chunk = encoded[i:i + batch_size]
        batch = tokenizer.pad({"input_ids": [ids for ids, _, _ in chunk]}, padding_side="right",
                              return_tensors="pt").to(backbone.device)
        hidden = backbone(**batch, use_cache=False).last_hidden_state.float()
        positions = torch.arange(hidden.shape[1], device=hidden.device)
        starts = torch.tensor([start for _, start, _ in chunk], device=hidden.device)
        answer = (positions[None, :] >= starts[:, None]) & batch["attention_mask"].bool()
        features.append((hidden * answer[..., None]).sum(1) / answer.sum(1, keepdim=True))
        if progress:
            progress(min(i + batch_size, len(encoded)), len(encoded))
    return (torch.cat(features).cpu() if features else torch.empty(0)), [cut for _, _, cut in encoded]


def load_backbone(path: Path, depth: float = 1.0):
    """The model's decoder without its language-model head, cut to the first `depth` share of
    its layers (a saved reward model's backbone is already cut)."""
    backbone = AutoModel.from_pretrained(path, dtype=models.dtype())
    layers = max(1, round(depth * backbone.config.num_hidden_layers))
    if layers < backbone.config.num_hidden_layers:
        backbone.layers = backbone.layers[:layers]
        backbone.config.num_hidden_layers = layers
        if getattr(backbone.config, "layer_types", None):
            backbone.config.layer_types = backbone.config.layer_types[:layers]
    return backbone.to(models.device()).eval()


class RewardModel:
    """A trained reward model, scoring answers exactly as its training pairs were read."""

    def __init__(self, backbone, head: nn.Linear, floor: float, ceiling: float, tokenizer, max_length: int):
        self.backbone, self.head, self.floor, self.ceiling = backbone, head, floor, ceiling
        self.tokenizer, self.max_length = tokenizer, max_length

    @classmethod
    def load(cls, path: Path) -> "RewardModel":
        weights = load_file(Path(path) / HEAD)
        floor, ceiling = weights.pop("floor").item(), weights.pop("ceiling").item()
        head = nn.Linear(weights["weight"].shape[1], 1)
        head.load_state_dict(weights)
        tokenizer = common.load_tokenizer(path, padding_side="right")
        return cls(load_backbone(path), head, floor, ceiling, tokenizer, tokenizer.model_max_length)

    def save(self, path: Path) -> None:
        self.backbone.save_pretrained(path)
        self.tokenizer.model_max_length = self.max_length  # saved with it: scoring cuts where training did
        self.tokenizer.save_pretrained(path)
        weights = {k: v.contiguous() for k, v in self.head.state_dict().items()}
        bounds = {"floor": torch.tensor(self.floor), "ceiling": torch.tensor(self.ceiling)}
        save_file(weights | bounds, Path(path) / HEAD)

    @torch.inference_mode()
    def score_messages(self, prompts: list[list[dict]], completions: list[list[dict]],
                       batch_size: int = 8) -> torch.Tensor:
        features, _ = answer_features(self.backbone, self.tokenizer, prompts, completions,
                                      self.max_length, batch_size)
        if not len(features):
            return torch.empty(0)
        broken = torch.tensor([degenerate(c[-1]["content"]) for c in completions])
        rewards = self.head(features)[:, 0].clamp(max=self.ceiling)
        return torch.where(broken, rewards.clamp(max=self.floor), rewards)

    def score(self, prompts: list[str], completions: list[str], batch_size: int = 8) -> torch.Tensor:
        """One reward per answer to a single-turn prompt, the form the policy's samples take."""
        return self.score_messages([[{"role": "user", "content": p}] for p in prompts],
                                   [[{"role": "assistant", "content": c}] for c in completions], batch_size)

    def reward_func(self, prompts: list[list[dict]], completions: list[list[dict]], **_) -> list[float]:
        """The signature RLOOTrainer calls a reward function with (conversational prompts)."""
        return self.score_messages(prompts, completions).tolist()


MAX_ITER = 500  # L-BFGS iterations; on SmolLM2 features it stopped after 10 loss evaluations


def fit_head(chosen: torch.Tensor, rejected: torch.Tensor, scores: torch.Tensor, cfg: RewardModelConfig,
             weights: torch.Tensor | None = None,
             progress: Callable[[int, dict], None] | None = None) -> nn.Linear:
    """A linear reward on the features: chosen above rejected, each pair counting by its weight
    (the share of its annotators who agreed, under agreement-weighted aggregation), and near the
    standardised scores where `scores` (pairs x [chosen, rejected], NaN where unscored) has them.
    `progress(evaluations, figures)` follows the fit: the loss and the share of training pairs
    ranked right."""
    weights = torch.ones(len(chosen)) if weights is None else weights / weights.mean()
    features = torch.cat([chosen, rejected])
    mean, std = features.mean(0), features.std(0).clamp_min(1e-6)
    diff = (chosen - rejected) / std
    scored = ~scores.isnan().any(1)
    x = torch.cat([(chosen[scored] - mean) / std, (rejected[scored] - mean) / std])
    y = torch.cat([scores[scored, 0], scores[scored, 1]])
    y = (y - y.mean()) / (y.std() if len(y) > 1 and y.std() > 0 else 1.0)
    score_weight = cfg.score_weight if len(y) else 0.0
    w = torch.zeros(features.shape[1], requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b], max_iter=MAX_ITER, line_search_fn="strong_wolfe")
    evaluations = 0

    def loss() -> torch.Tensor:
        nonlocal evaluations
        optimizer.zero_grad()
        value = (1 - score_weight) * (weights * nn.functional.softplus(-diff @ w)).mean() + cfg.l2 * w.square().sum()
        if len(y):
            value = value + score_weight * (x @ w + b - y).square().mean()
        value.backward()
        evaluations += 1
        if progress:
            progress(evaluations, {"loss": value.item(), "train accuracy": (diff @ w > 0).float().mean().item()})
        return value

    optimizer.step(loss)
    head = nn.Linear(features.shape[1], 1)
    with torch.no_grad():  # fold the standardisation in: the head reads raw features
        head.weight.copy_((w / std)[None, :])
        head.bias.copy_(b - (mean / std) @ w)
    return head


def margin_bucket(margin: float) -> str:
    """Score gaps are differences of 1-10 integers; 0 means no scores (or equal ones)."""
    return "0" if margin == 0 else "1_3" if margin < 4 else "4_plus"


def pairwise_accuracy(rm: RewardModel, rows: list[dict]) -> dict:
    """Share of pairs whose chosen answer scores higher, with its 95% interval and count, overall
    and per margin bucket: 18 held-out pairs cannot tell 0.56 from 0.81, and a model that only
    separates the pairs annotators found obvious is weaker than its overall figure."""
    prompts = [r["prompt"] for r in rows]
    correct = (rm.score_messages(prompts, [r["chosen"] for r in rows])
               > rm.score_messages(prompts, [r["rejected"] for r in rows])).tolist()
    buckets: dict[str, list[bool]] = {"": correct}
    for row, hit in zip(rows, correct):
        buckets.setdefault(f"_margin_{margin_bucket(row['margin'])}", []).append(hit)
    metrics = {}
    for name, hits in sorted(buckets.items()):
        rate = win_rate_interval(sum(hits), len(hits) - sum(hits), 0)
        metrics |= {f"rm_accuracy{name}": rate.value, f"rm_accuracy{name}_low": rate.low,
                    f"rm_accuracy{name}_high": rate.high, f"rm_heldout_pairs{name}": float(len(hits))}
    return metrics


def train_reward_model(base_path: Path, train: list[dict], heldout: list[dict], cfg: RewardModelConfig,
                       out_dir: Path, progress: RoundProgress | None = None) -> dict:
    """Fit on `train`, save the reward model to `out_dir`, measure it on `heldout`. Reading the
    answers and fitting are reported as two phases: reading takes nearly all the time."""
    backbone = load_backbone(base_path, cfg.depth)
    tokenizer = common.load_tokenizer(base_path, padding_side="right")
    prompts = [r["prompt"] for r in train]
    answers = [r["chosen"] for r in train] + [r["rejected"] for r in train]
    if progress:
        progress.begin("reward model: reading answers", len(answers))
    features, truncated = answer_features(backbone, tokenizer, prompts + prompts, answers, cfg.max_length,
                                          cfg.batch_size, (lambda done, _: progress.update(done)) if progress else None)
    # L-BFGS stops when it has converged, long before its limit: the total is known at the end.
    evaluations = [0]
    if progress:
        progress.begin("reward model: fitting")

    def fitting(done: int, figures: dict) -> None:
        evaluations[0] = done
        progress.update(done, figures)
    scores = torch.tensor([[_or_nan(r.get("score_chosen")), _or_nan(r.get("score_rejected"))]
                           for r in train]).reshape(-1, 2)
    weights = torch.tensor([float(r.get("weight", 1.0)) for r in train])
    head = fit_head(features[:len(train)], features[len(train):], scores, cfg, weights,
                    fitting if progress else None)
    with torch.no_grad():
        fitted = head(features)  # the range of the judged answers: see the module docstring
    floor, ceiling = fitted.min().item() - 1.0, fitted.max().item()
    rm = RewardModel(backbone, head, floor, ceiling, tokenizer, cfg.max_length)
    rm.save(out_dir)
    accuracy = pairwise_accuracy(rm, heldout)
    if progress:  # the last step: held-out pairs read and ranked
        progress.update(evaluations[0] + 1, {"held-out accuracy": accuracy["rm_accuracy"]},
                        total=evaluations[0] + 1)
    return {**accuracy, "rm_train_pairs": float(len(train)),
            "rm_scored_pairs": float((~scores.isnan().any(1)).sum()),
            "rm_truncated": float(sum(a or b for a, b in zip(truncated[:len(train)], truncated[len(train):]))),
            "rm_layers": float(backbone.config.num_hidden_layers)}


def _or_nan(score: float | None) -> float:
    return float("nan") if score is None else float(score)
