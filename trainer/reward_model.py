"""Reward model: a linear read-out of the base model's middle layers, fitted to the annotators'
choices and scores, that says how sure it is of each comparison.

A round brings about a hundred judgements. Fine-tuning a transformer with a score head on so few
(TRL's RewardTrainer with LoRA, what this module did before) memorised them: on held-out prompts
of SmolLM2 it ranked 0.39-0.72 of the pairs right. A probe that stays linear in frozen features
cannot memorise, and what carries an annotator's taste (length, register, lists, how it
addresses the reader) is already in the base model's hidden states: the mean over an answer's
tokens part way up the network, with the final norm applied. The head is fitted with

- the Bradley-Terry loss on each pair (the chosen answer's reward above the rejected one's),
- plus, where the annotator gave 1-10 scores, the squared error of the reward against the
  standardised score; scores say how much better, and they are the only signal in pairs whose
  two sides look almost alike,
- plus an L2 penalty: with 576 features and ~100 pairs the fit is otherwise underdetermined.

Which layer to read and how hard to penalise depend on the taste (a taste for lists is plainest
in other layers than a taste for short sentences), and nobody knows a team's taste in advance.
So each round chooses them by cross-validation on its own training pairs, folds grouped by
prompt so that no prompt is on both sides of a fold, scoring the out-of-fold pairs with the
log-loss of their calibrated probabilities (docs/reward-model.md has the measurements).

Each comparison comes with a probability that the first answer is the preferred one. The head's
weights get a Laplace posterior (the inverse Hessian of the loss at its optimum), so a pair that
differs along directions no training pair varied in is less certain; one temperature, fitted on
the out-of-fold pairs, scales logits and spread together (MacKay's probit approximation) so that
of the comparisons it calls 80% sure, about 80% come out right.

A linear read-out extrapolates freely on answers unlike any the annotators judged, so rewards
are kept within the range of the answers it was fitted on. No answer scores above the best of
them: going further than anything judged earns nothing more, and RL's KL penalty then pulls the
policy back (without this cap a second RLOO round on a taste for short answers wrote 8-word
answers, a fifth of them empty). An empty or looping answer scores no higher than the worst of
them, less one: RLOO on a taste for short sentences learnt to write empty answers the probe
rewarded.

Features are read once, for every candidate layer in one pass, so choosing and fitting take
seconds, and the backbone stops at the layer chosen: the saved folder holds only the layers
below it, and scoring runs part of the network. Training and scoring template and cut every
conversation with the same function, `encode`.
"""
import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModel

from policy import models
from storage.ratings import win_rate_interval

from . import common
from .degeneration import degenerate
from .progress import RoundProgress

HEAD = "reward_head.safetensors"


@dataclass
class RewardModelConfig:
    """Chosen on SmolLM2-135M and the bench's design tastes (bench/reward_bench.py): each round
    picks its layer and penalty from these by cross-validation on its own pairs."""
    depths: tuple[float, ...] = (0.3, 0.45, 0.6)  # shares of the layers to read after: 9, 14 or 18 of 30
    l2s: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0)  # penalties on standardised features
    score_weight: float = 0.5   # share of the loss on matching 1-10 scores, where there are any
    folds: int = 5              # cross-validation folds, grouped by prompt
    # Rewards in units of the spread of the judged answers' rewards, whatever the taste: RLOO's
    # KL coefficient and learning rate then ask the same of every taste (see docs/reward-model.md).
    unit_rewards: bool = True
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
                    max_length: int, batch_size: int = 8, layers: list[int] | None = None,
                    progress: Callable[[int, int], None] | None = None) -> tuple[torch.Tensor, list[bool]]:
    """For each conversation and each of `layers` (default: the backbone's last), the output of
    that layer with the final norm applied, averaged over the answer's tokens (answers x layers x
    features, float32); and which conversations had text cut. The answer alone is averaged: the
    prompt is the same on both sides of a pair, and would only dilute what differs."""
    layers = layers or [len(backbone.layers)]
    encoded = [encode(tokenizer, p, c, max_length) for p, c in zip(prompts, completions, strict=True)]
    outputs: dict[int, torch.Tensor] = {}
    hooks = [backbone.layers[n - 1].register_forward_hook(
        lambda _module, _inputs, out, n=n: outputs.__setitem__(n, out[0] if isinstance(out, tuple) else out))
        for n in layers]
    features = []
    try:
        for i in range(0, len(encoded), batch_size):
            chunk = encoded[i:i + batch_size]
            batch = tokenizer.pad({"input_ids": [ids for ids, _, _ in chunk]}, padding_side="right",
                                  return_tensors="pt").to(backbone.device)
            backbone(**batch, use_cache=False)
            positions = torch.arange(batch["input_ids"].shape[1], device=backbone.device)
            starts = torch.tensor([start for _, start, _ in chunk], device=backbone.device)
            answer = ((positions[None, :] >= starts[:, None]) & batch["attention_mask"].bool())[..., None]
            features.append(torch.stack([(backbone.norm(outputs[n]).float() * answer).sum(1) / answer.sum(1)
                                         for n in layers], dim=1).cpu())
            if progress:
                progress(min(i + batch_size, len(encoded)), len(encoded))
    finally:
        for hook in hooks:
            hook.remove()
    return (torch.cat(features) if features else torch.empty(0, len(layers), 0)), [cut for _, _, cut in encoded]


def layer_count(path: Path) -> int:
    return AutoConfig.from_pretrained(path).num_hidden_layers


def load_backbone(path: Path, layers: int | None = None):
    """The model's decoder without its language-model head, cut to its first `layers` layers
    (a saved reward model's backbone is already cut)."""
    backbone = AutoModel.from_pretrained(path, dtype=models.dtype())
    cut(backbone, layers or backbone.config.num_hidden_layers)
    return backbone.to(models.device()).eval()


def cut(backbone, layers: int) -> None:
    if layers < backbone.config.num_hidden_layers:
        backbone.layers = backbone.layers[:layers]
        backbone.config.num_hidden_layers = layers
        if getattr(backbone.config, "layer_types", None):
            backbone.config.layer_types = backbone.config.layer_types[:layers]


@dataclass
class LinearReward:
    """A linear reward on one layer's features, its posterior, its calibration and its bounds."""
    weight: torch.Tensor      # on raw features
    bias: float
    covariance: torch.Tensor  # Laplace posterior of `weight`
    floor: float              # what an empty or looping answer scores at most
    ceiling: float            # what any answer scores at most
    temperature: float = 1.0  # scales logits and their spread, fitted out of fold

    def rewards(self, features: torch.Tensor, broken: torch.Tensor) -> torch.Tensor:
        rewards = (features @ self.weight + self.bias).clamp(max=self.ceiling)
        return torch.where(broken, rewards.clamp(max=self.floor), rewards)

    def logits(self, a: torch.Tensor, b: torch.Tensor, broken_a: torch.Tensor, broken_b: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """The reward gap of each pair, and its posterior variance."""
        gap = self.rewards(a, broken_a) - self.rewards(b, broken_b)
        d = a - b
        return gap, ((d @ self.covariance) * d).sum(-1)

    def preference(self, a, b, broken_a, broken_b) -> torch.Tensor:
        """The probability that answer a is the preferred one of each pair."""
        return probability(*self.logits(a, b, broken_a, broken_b), self.temperature)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"weight": self.weight.contiguous(), "covariance": self.covariance.contiguous(),
                **{k: torch.tensor(float(getattr(self, k))) for k in ("bias", "floor", "ceiling", "temperature")}}

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor]) -> "LinearReward":
        return cls(t["weight"].float(), t["bias"].item(), t["covariance"].float(), t["floor"].item(),
                   t["ceiling"].item(), t["temperature"].item())


def probability(gap: torch.Tensor, variance: torch.Tensor, temperature: float) -> torch.Tensor:
    """sigmoid(t * gap) averaged over the posterior, by MacKay's probit approximation."""
    return torch.sigmoid(temperature * gap / torch.sqrt(1 + math.pi * temperature ** 2 * variance / 8))


class RewardModel:
    """A trained reward model, scoring answers exactly as its training pairs were read."""

    def __init__(self, backbone, head: LinearReward, tokenizer, max_length: int):
        self.backbone, self.head, self.tokenizer, self.max_length = backbone, head, tokenizer, max_length

    @property
    def floor(self) -> float:
        return self.head.floor

    @property
    def ceiling(self) -> float:
        return self.head.ceiling

    @classmethod
    def load(cls, path: Path) -> "RewardModel":
        tokenizer = common.load_tokenizer(path, padding_side="right")
        return cls(load_backbone(path), LinearReward.from_tensors(load_file(Path(path) / HEAD)), tokenizer,
                   tokenizer.model_max_length)

    def save(self, path: Path) -> None:
        self.backbone.save_pretrained(path)
        self.tokenizer.model_max_length = self.max_length  # saved with it: scoring cuts where training did
        self.tokenizer.save_pretrained(path)
        save_file(self.head.tensors(), Path(path) / HEAD)

    def read(self, prompts: list[list[dict]], completions: list[list[dict]], batch_size: int = 8
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each answer's features and whether it is empty or looping."""
        features, _ = answer_features(self.backbone, self.tokenizer, prompts, completions, self.max_length, batch_size)
        broken = torch.tensor([degenerate(c[-1]["content"]) for c in completions], dtype=torch.bool)
        return features[:, -1] if len(features) else torch.empty(0, len(self.head.weight)), broken

    @torch.inference_mode()
    def score_messages(self, prompts: list[list[dict]], completions: list[list[dict]],
                       batch_size: int = 8) -> torch.Tensor:
        return self.head.rewards(*self.read(prompts, completions, batch_size))

    def score(self, prompts: list[str], completions: list[str], batch_size: int = 8) -> torch.Tensor:
        """One reward per answer to a single-turn prompt, the form the policy's samples take."""
        return self.score_messages(*_single_turn(prompts, completions), batch_size)

    @torch.inference_mode()
    def preference(self, prompts: list[str], a: list[str], b: list[str], batch_size: int = 8) -> torch.Tensor:
        """How likely the annotators are to prefer answer a to answer b, for each prompt."""
        fa, ba = self.read(*_single_turn(prompts, a), batch_size)
        fb, bb = self.read(*_single_turn(prompts, b), batch_size)
        return self.head.preference(fa, fb, ba, bb)

    def reward_func(self, prompts: list[list[dict]], completions: list[list[dict]], **_) -> list[float]:
        """The signature RLOOTrainer calls a reward function with (conversational prompts)."""
        return self.score_messages(prompts, completions).tolist()


def _single_turn(prompts: list[str], completions: list[str]) -> tuple[list[list[dict]], list[list[dict]]]:
    return ([[{"role": "user", "content": p}] for p in prompts],
            [[{"role": "assistant", "content": c}] for c in completions])


MAX_ITER = 500  # L-BFGS iterations; on SmolLM2 features it stopped after 10 loss evaluations


def fit_head(chosen: torch.Tensor, rejected: torch.Tensor, scores: torch.Tensor, l2: float, score_weight: float,
             weights: torch.Tensor | None = None, broken: torch.Tensor | None = None, unit: bool = True,
             progress: Callable[[int, dict], None] | None = None) -> LinearReward:
    """A linear reward on the features: chosen above rejected, each pair counting by its weight
    (the share of its annotators who agreed, under agreement-weighted aggregation), and near the
    standardised scores where `scores` (pairs x [chosen, rejected], NaN where unscored) has them;
    with its Laplace posterior, and bounded by the answers it was fitted on (`broken`: which of
    chosen + rejected are empty or looping). With `unit`, rewards are in units of the judged
    answers' spread. `progress(evaluations, figures)` follows the fit."""
    n = len(chosen)
    weights = torch.ones(n) if weights is None else weights / weights.mean()
    features = torch.cat([chosen, rejected])
    mean, std = features.mean(0), features.std(0).clamp_min(1e-6)
    diff = (chosen - rejected) / std
    scored = ~scores.isnan().any(1)
    x = torch.cat([(chosen[scored] - mean) / std, (rejected[scored] - mean) / std])
    y = torch.cat([scores[scored, 0], scores[scored, 1]])
    y = (y - y.mean()) / (y.std() if len(y) > 1 and y.std() > 0 else 1.0)
    score_weight = score_weight if len(y) else 0.0
    w = torch.zeros(features.shape[1], requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b], max_iter=MAX_ITER, line_search_fn="strong_wolfe")
    evaluations = 0

    def loss() -> torch.Tensor:
        nonlocal evaluations
        optimizer.zero_grad()
        value = (1 - score_weight) * (weights * nn.functional.softplus(-diff @ w)).mean() + l2 * w.square().sum()
        if len(y):
            value = value + score_weight * (x @ w + b - y).square().mean()
        value.backward()
        evaluations += 1
        if progress:
            progress(evaluations, {"loss": value.item(), "train accuracy": (diff @ w > 0).float().mean().item()})
        return value

    optimizer.step(loss)
    w, b = w.detach(), b.detach()
    # The loss is a mean over n pairs: n times its Hessian is the posterior's precision.
    p = torch.sigmoid(diff @ w).double()
    hessian = (1 - score_weight) * (diff.double().T * (weights * p * (1 - p))) @ diff.double() / n \
        + 2 * l2 * torch.eye(len(w), dtype=torch.float64)
    if len(y):
        hessian += 2 * score_weight * x.double().T @ x.double() / len(y)
    covariance = (torch.linalg.inv(n * hessian) / std[:, None] / std[None, :]).float()
    weight, bias = w / std, b - (mean / std) @ w  # the head reads raw features
    fitted = features @ weight + bias  # the range of the judged answers: see the module docstring
    if broken is not None and (~broken).any():
        fitted = fitted[~broken]
    if unit and len(fitted) > 1 and fitted.std() > 0:  # judged answers' rewards: mean 0, spread 1
        centre, spread = fitted.mean(), fitted.std()
        weight, bias, covariance, fitted = weight / spread, (bias - centre) / spread, covariance / spread ** 2, \
            (fitted - centre) / spread
    return LinearReward(weight, bias.item(), covariance, fitted.min().item() - 1.0, fitted.max().item())


def prompt_folds(rows: list[dict], k: int, seed: int = 0) -> list[int]:
    """A fold for each row, every row of one prompt in the same fold: pairs of one prompt share
    its wording, and split across folds they would let a fold's model recognise its test pairs."""
    prompts = sorted({json.dumps(r["prompt"]) for r in rows})
    random.Random(seed).shuffle(prompts)
    fold = {p: i % k for i, p in enumerate(prompts)}
    return [fold[json.dumps(r["prompt"])] for r in rows]


def fit_temperature(gap: torch.Tensor, variance: torch.Tensor) -> float:
    """The temperature that makes the probabilities of chosen-over-rejected most likely."""
    grid = torch.logspace(-2, 2, 161)
    losses = [-torch.log(probability(gap, variance, t.item()).clamp_min(1e-9)).mean() for t in grid]
    return grid[int(torch.stack(losses).argmin())].item()


@dataclass
class Pairs:
    """Training pairs as the fit reads them: features (pairs x layers x features) of each side."""
    chosen: torch.Tensor
    rejected: torch.Tensor
    broken_chosen: torch.Tensor
    broken_rejected: torch.Tensor
    scores: torch.Tensor
    weights: torch.Tensor

    def take(self, index: torch.Tensor) -> "Pairs":
        return Pairs(*(t[index] for t in (self.chosen, self.rejected, self.broken_chosen, self.broken_rejected,
                                          self.scores, self.weights)))

    def fit(self, layer: int, l2: float, cfg: "RewardModelConfig") -> LinearReward:
        return fit_head(self.chosen[:, layer], self.rejected[:, layer], self.scores, l2, cfg.score_weight,
                        self.weights, torch.cat([self.broken_chosen, self.broken_rejected]), cfg.unit_rewards)

    def logits(self, head: LinearReward, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        return head.logits(self.chosen[:, layer], self.rejected[:, layer], self.broken_chosen, self.broken_rejected)


def out_of_fold(pairs: Pairs, folds: torch.Tensor, layer: int, l2: float, cfg: "RewardModelConfig",
                step: Callable[[], None]) -> tuple[torch.Tensor, torch.Tensor]:
    """Each pair's reward gap and variance from a head fitted without its fold."""
    gap, variance = torch.zeros(len(folds)), torch.zeros(len(folds))
    for fold in folds.unique().tolist():
        test = folds == fold
        gap[test], variance[test] = pairs.take(test).logits(pairs.take(~test).fit(layer, l2, cfg), layer)
        step()
    return gap, variance


def choose_read_out(pairs: Pairs, folds: torch.Tensor, layers: int, cfg: RewardModelConfig,
                    step: Callable[[], None] = lambda: None) -> tuple[int, float, LinearReward, torch.Tensor]:
    """The layer (an index into the pairs' layers) and penalty whose out-of-fold probabilities
    have the lowest log-loss; the head fitted with them on every pair, its temperature from those
    out-of-fold pairs; and those pairs' probabilities that the chosen answer wins."""
    candidates = [(layer, l2) for layer in range(layers) for l2 in cfg.l2s]
    scored = {c: out_of_fold(pairs, folds, *c, cfg, step) for c in candidates}
    temperatures = {c: fit_temperature(*scored[c]) for c in candidates}
    layer, l2 = min(candidates, key=lambda c: log_loss(*scored[c], temperatures[c]))
    head = pairs.fit(layer, l2, cfg)
    head.temperature = temperatures[layer, l2]
    return layer, l2, head, probability(*scored[layer, l2], head.temperature)


def log_loss(gap: torch.Tensor, variance: torch.Tensor, temperature: float) -> float:
    return -torch.log(probability(gap, variance, temperature).clamp_min(1e-9)).mean().item()


def calibration_error(probabilities: torch.Tensor, bins: int = 5) -> float:
    """Expected calibration error of probabilities that the chosen answer wins: over bins of
    confidence (0.5-0.6, ..., 0.9-1.0), the gap between how sure it was and how often it was
    right, weighted by the bin's share of pairs."""
    confidence = torch.maximum(probabilities, 1 - probabilities)
    right = (probabilities > 0.5).float()
    which = ((confidence - 0.5) * 2 * bins).long().clamp(max=bins - 1)
    return sum((which == i).float().mean().item() * abs(right[which == i].mean() - confidence[which == i].mean()).item()
               for i in range(bins) if (which == i).any())


def margin_bucket(margin: float) -> str:
    """Score gaps are differences of 1-10 integers; 0 means no scores (or equal ones)."""
    return "0" if margin == 0 else "1_3" if margin < 4 else "4_plus"


def accuracy(prefix: str, count: str, hits: list[bool]) -> dict:
    """A share of pairs ranked right, with its 95% interval and count."""
    rate = win_rate_interval(sum(hits), len(hits) - sum(hits), 0)
    return {prefix: rate.value, f"{prefix}_low": rate.low, f"{prefix}_high": rate.high, count: float(len(hits))}


def heldout_accuracy(hits: list[bool], rows: list[dict]) -> dict:
    """Overall and per margin bucket: 18 held-out pairs cannot tell 0.56 from 0.81, and a model
    that only separates the pairs annotators found obvious is weaker than its overall figure."""
    buckets: dict[str, list[bool]] = {"": hits}
    for row, hit in zip(rows, hits):
        buckets.setdefault(f"_margin_{margin_bucket(row['margin'])}", []).append(hit)
    return {k: v for name, b in sorted(buckets.items()) for k, v in
            accuracy(f"rm_accuracy{name}", f"rm_heldout_pairs{name}", b).items()}


def read_pairs(backbone, tokenizer, rows: list[dict], layers: list[int], cfg: RewardModelConfig,
               progress: Callable[[int, int], None] | None = None) -> tuple[Pairs, torch.Tensor]:
    """Both answers of every row at every candidate layer, and which conversations were cut."""
    prompts = [r["prompt"] for r in rows]
    answers = [r["chosen"] for r in rows] + [r["rejected"] for r in rows]
    features, truncated = answer_features(backbone, tokenizer, prompts + prompts, answers, cfg.max_length,
                                          cfg.batch_size, layers, progress)
    broken = torch.tensor([degenerate(a[-1]["content"]) for a in answers], dtype=torch.bool)
    scores = torch.tensor([[_or_nan(r.get("score_chosen")), _or_nan(r.get("score_rejected"))]
                           for r in rows]).reshape(-1, 2)
    weights = torch.tensor([float(r.get("weight", 1.0)) for r in rows])
    n = len(rows)
    cut_rows = torch.tensor(truncated[:n]) | torch.tensor(truncated[n:]) if n else torch.zeros(0, dtype=torch.bool)
    return Pairs(features[:n], features[n:], broken[:n], broken[n:], scores, weights), cut_rows


def train_reward_model(base_path: Path, train: list[dict], heldout: list[dict], cfg: RewardModelConfig,
                       out_dir: Path, progress: RoundProgress | None = None) -> dict:
    """Choose the read-out by cross-validation, fit it on all of `train`, save the reward model to
    `out_dir`, and measure it on `heldout` and out of fold. Reading the answers and fitting are
    reported as two phases: reading takes nearly all the time."""
    total = layer_count(base_path)
    layers = sorted({max(1, round(d * total)) for d in cfg.depths})
    backbone = load_backbone(base_path, max(layers))
    tokenizer = common.load_tokenizer(base_path, padding_side="right")
    if progress:
        progress.begin("reward model: reading answers", 2 * (len(train) + len(heldout)))
    pairs, cut_rows = read_pairs(backbone, tokenizer, train + heldout, layers, cfg,
                                 (lambda done, _: progress.update(done)) if progress else None)
    held, pairs = pairs.take(torch.arange(len(train), len(train) + len(heldout))), pairs.take(torch.arange(len(train)))
    folds = torch.tensor(prompt_folds(train, cfg.folds))
    fits = [0]
    if progress:
        progress.begin("reward model: choosing and fitting", len(layers) * len(cfg.l2s) * len(folds.unique()) + 1)

    def step() -> None:
        fits[0] += 1
        if progress:
            progress.update(fits[0])
    layer, l2, head, cv_p = choose_read_out(pairs, folds, len(layers), cfg, step)
    cut(backbone, layers[layer])
    RewardModel(backbone, LinearReward.from_tensors(head.tensors()), tokenizer, cfg.max_length).save(out_dir)

    held_p = probability(*held.logits(head, layer), head.temperature)
    unseen = torch.cat([held_p, cv_p])
    if progress:  # the last step: the chosen read-out fitted on every pair, and how it ranks
        progress.update(fits[0] + 1, {"layer": layers[layer], "l2": l2,
                                      "cross-validated accuracy": (cv_p > 0.5).float().mean().item()})
    return {**heldout_accuracy((held_p > 0.5).tolist(), heldout),
            **accuracy("rm_cv_accuracy", "rm_cv_pairs", (cv_p > 0.5).tolist()),
            **accuracy("rm_unseen_accuracy", "rm_unseen_pairs", (unseen > 0.5).tolist()),
            "rm_calibration_error": calibration_error(unseen) if len(unseen) else float("nan"),
            "rm_heldout_calibration_error": calibration_error(held_p) if len(held_p) else float("nan"),
            "rm_train_pairs": float(len(train)), "rm_scored_pairs": float((~pairs.scores.isnan().any(1)).sum()),
            "rm_truncated": float(cut_rows[:len(train)].sum()), "rm_layers": float(layers[layer]),
            "rm_l2": l2, "rm_temperature": head.temperature}


def _or_nan(score: float | None) -> float:
    return float("nan") if score is None else float(score)
