"""Reward model: a linear read-out of the base model's middle layers, fitted to the annotators'
choices and scores, that says how sure it is of each comparison.

A round brings about a hundred judgements. Fine-tuning a transformer with a score head on so few
(TRL's RewardTrainer with LoRA, what this module did before) memorised them: on held-out prompts
of SmolLM2 it ranked 0.39-0.72 of the pairs right. A probe that stays linear in frozen features
cannot memorise, and what carries an annotator's taste (length, register, lists, how it
addresses the reader) is already in the base model's hidden states: the mean over an answer's
tokens about halfway up the network, with the final norm applied (optionally beside the mean of
its input embeddings, which says plainly which words it uses). The head is fitted with

- the Bradley-Terry loss on each pair (the chosen answer's reward above the rejected one's),
- plus, where the annotator gave 1-10 scores, the squared error of the reward against the
  standardised score; scores say how much better, and they are the only signal in pairs whose
  two sides look almost alike,
- plus an L2 penalty: with 576 features and ~100 pairs the fit is otherwise underdetermined.

Each comparison comes with a probability that the first answer is the preferred one: the
next steps (a first pass on every pair, choosing what people label, best-of-N) stand on it.
The head's weights get a Laplace posterior (the inverse Hessian of the loss at its optimum), so
a pair that differs along directions no training pair varied in is less certain; a temperature
and a spread, fitted on the training pairs scored out of fold (folds grouped by prompt, so no
prompt is on both sides), turn the reward gap and its posterior variance into a probability
(see `probability`): of the comparisons it calls 80% sure, about 80% come out right. The same
out-of-fold scores give the round an accuracy on every judged pair, not only the few held out.

A linear read-out extrapolates freely on answers unlike any the annotators judged, so rewards
are kept within the range of the answers it was fitted on. No answer scores above the best of
them: going further than anything judged earns nothing more, and RL's KL penalty then pulls the
policy back (without this cap a second RLOO round on a taste for short answers wrote 8-word
answers, a fifth of them empty). An empty or looping answer scores no higher than the worst of
them, less one: RLOO on a taste for short sentences learnt to write empty answers the probe
rewarded.

Features are computed once, so the fits (one per fold, then one on every pair) take seconds
(L-BFGS), and the backbone stops at the layer read: the saved folder holds only the layers
below it, and scoring runs half the network. Training and scoring template and cut every
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
from transformers import AutoModel

from policy import models
from storage import ratings

from . import common
from .degeneration import degenerate
from .progress import RoundProgress

HEAD = "reward_head.safetensors"


@dataclass
class RewardModelConfig:
    """Chosen on SmolLM2-135M and the bench's design tastes (bench/reward_bench.py,
    docs/reward-model.md): reading layer 14 with this penalty ranked held-out pairs as well as
    choosing the layer and penalty per round by cross-validation did, and more steadily."""
    depth: float = 0.45         # read the answer after this share of the layers: 14 of SmolLM2's 30
    score_weight: float = 0.5   # share of the loss on matching 1-10 scores, where there are any
    l2: float = 1.0             # on standardised features
    folds: int = 5              # cross-validation folds, grouped by prompt: calibration and accuracy
    # Rewards in units of the spread of the judged answers' rewards, whatever the taste: RLOO's
    # KL coefficient and learning rate then ask the same of every taste.
    unit_rewards: bool = True
    # Also read the mean of the answer's input embeddings (see `answer_features`). It ranks pairs
    # better (design tastes 0.82 against 0.80 held-out accuracy, 12 taste-draws; engaging 0.86-0.87
    # against 0.76-0.77), but RLOO exploits it: on engaging a round wrote 24% looping answers
    # against 5% without it (win-rate 0.72 against 0.76, KL 22 against 12). Off until an RL round
    # can use it without looping (docs/reward-model.md).
    words: bool = False
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
                    max_length: int, batch_size: int = 8, progress: Callable[[int, int], None] | None = None,
                    words: bool = False) -> tuple[torch.Tensor, list[bool]]:
    """The final-normed hidden state averaged over each answer's tokens (float32), and which
    conversations had text cut. The answer alone is averaged: the prompt is the same on both
    sides of a pair, and would only dilute what differs. With `words`, the mean of the answer's
    input embeddings follows it: which words it uses, before any layer mixes them."""
    encoded = [encode(tokenizer, p, c, max_length) for p, c in zip(prompts, completions, strict=True)]
    features = []
    for i in range(0, len(encoded), batch_size):
        chunk = encoded[i:i + batch_size]
        batch = tokenizer.pad({"input_ids": [ids for ids, _, _ in chunk]}, padding_side="right",
                              return_tensors="pt").to(backbone.device)
        hidden = backbone(**batch, use_cache=False).last_hidden_state.float()
        if words:
            hidden = torch.cat([hidden, backbone.get_input_embeddings()(batch["input_ids"]).float()], -1)
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


@dataclass
class LinearReward:
    """A linear reward on one layer's features, its posterior, its calibration and its bounds."""
    weight: torch.Tensor      # on raw features
    bias: float
    covariance: torch.Tensor  # Laplace posterior of `weight`
    floor: float              # what an empty or looping answer scores at most
    ceiling: float            # what any answer scores at most
    temperature: float = 1.0  # scales the reward gap into a logit, fitted out of fold
    spread: float = 0.0       # how much the posterior's variance widens the logit, fitted out of fold

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
        return probability(*self.logits(a, b, broken_a, broken_b), self.temperature, self.spread)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"weight": self.weight.contiguous(), "covariance": self.covariance.contiguous(),
                **{k: torch.tensor(float(getattr(self, k))) for k in ("bias", "floor", "ceiling", "temperature", "spread")}}

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor]) -> "LinearReward":
        return cls(t["weight"].float(), t["bias"].item(), t["covariance"].float(), t["floor"].item(),
                   t["ceiling"].item(), t["temperature"].item(), t["spread"].item())


def probability(gap: torch.Tensor, variance: torch.Tensor, temperature: float, spread: float) -> torch.Tensor:
    """sigmoid(t * gap) averaged over the posterior, in the form of MacKay's probit approximation,
    sigmoid(t * gap / sqrt(1 + c * variance)), with t and c fitted rather than taken from theory:
    the Laplace posterior of an isotropic prior over hundreds of correlated features is far wider than
    the out-of-fold errors (on SmolLM2 it alone made concise's comparisons 58-69% sure where
    76-81% came out right), but its shape still says which pairs are unlike the judged ones."""
    return torch.sigmoid(temperature * gap / torch.sqrt(1 + spread * variance))


class RewardModel:
    """A trained reward model, scoring answers exactly as its training pairs were read."""

    def __init__(self, backbone, head: LinearReward, tokenizer, max_length: int):
        self.backbone, self.head, self.tokenizer, self.max_length = backbone, head, tokenizer, max_length
        # A head twice the hidden size also reads the input embeddings (RewardModelConfig.words).
        self.words = len(head.weight) == 2 * backbone.config.hidden_size

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
        features, _ = answer_features(self.backbone, self.tokenizer, prompts, completions, self.max_length, batch_size,
                                      words=self.words)
        broken = torch.tensor([degenerate(c[-1]["content"]) for c in completions], dtype=torch.bool)
        return features if len(features) else torch.empty(0, len(self.head.weight)), broken

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
             weights: torch.Tensor | None = None, broken: torch.Tensor | None = None, unit: bool = True
             ) -> LinearReward:
    """A linear reward on the features: chosen above rejected, each pair counting by its weight
    (the share of its annotators who agreed, under agreement-weighted aggregation), and near the
    standardised scores where `scores` (pairs x [chosen, rejected], NaN where unscored) has them;
    with its Laplace posterior, and bounded by the answers it was fitted on (`broken`: which of
    chosen + rejected are empty or looping). With `unit`, rewards are in units of the judged
    answers' spread."""
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

    def loss() -> torch.Tensor:
        optimizer.zero_grad()
        value = (1 - score_weight) * (weights * nn.functional.softplus(-diff @ w)).mean() + l2 * w.square().sum()
        if len(y):
            value = value + score_weight * (x @ w + b - y).square().mean()
        value.backward()
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


TEMPERATURES = torch.logspace(-2, 2, 81)
# The out-of-fold pairs are like the training pairs, so they cannot say how much to distrust an
# unlike pair; on the design tastes any spread up to 0.3 calibrated as well as none, so at least
# that much caution about unlike pairs is kept.
SPREADS = torch.logspace(math.log10(0.3), 2, 21)


def fit_calibration(gap: torch.Tensor, variance: torch.Tensor) -> tuple[float, float]:
    """The temperature and spread (see `probability`) under which the out-of-fold pairs' chosen
    answers are likeliest to win, on a grid. The target is Platt's (n+1)/(n+2), not 1: when no
    out-of-fold pair is ranked wrong, certainty would otherwise win, and the next pair may be."""
    target = (len(gap) + 1) / (len(gap) + 2)
    logits = TEMPERATURES[:, None, None] * gap / torch.sqrt(1 + SPREADS[None, :, None] * variance)
    losses = (target * nn.functional.softplus(-logits) + (1 - target) * nn.functional.softplus(logits)).mean(-1)
    t, c = divmod(int(losses.argmin()), len(SPREADS))
    return TEMPERATURES[t].item(), SPREADS[c].item()


@dataclass
class Pairs:
    """Pairs as the fit reads them: the features of each side, which sides are empty or looping,
    the 1-10 scores (NaN where none) and each pair's weight."""
    chosen: torch.Tensor
    rejected: torch.Tensor
    broken_chosen: torch.Tensor
    broken_rejected: torch.Tensor
    scores: torch.Tensor
    weights: torch.Tensor

    def take(self, index: torch.Tensor) -> "Pairs":
        return Pairs(*(t[index] for t in (self.chosen, self.rejected, self.broken_chosen, self.broken_rejected,
                                          self.scores, self.weights)))

    def fit(self, cfg: RewardModelConfig) -> LinearReward:
        return fit_head(self.chosen, self.rejected, self.scores, cfg.l2, cfg.score_weight, self.weights,
                        torch.cat([self.broken_chosen, self.broken_rejected]), cfg.unit_rewards)

    def preference(self, head: LinearReward) -> torch.Tensor:
        """The head's probability that each chosen answer wins."""
        return head.preference(self.chosen, self.rejected, self.broken_chosen, self.broken_rejected)


def fit_calibrated(pairs: Pairs, folds: torch.Tensor, cfg: RewardModelConfig,
                   step: Callable[[], None] = lambda: None) -> tuple[LinearReward, torch.Tensor]:
    """The head fitted on every pair, calibrated on each pair as scored by a head fitted without
    its fold; and those out-of-fold probabilities that the chosen answer wins, each calibrated
    without its own fold too, so that their calibration error is measured, not fitted. Pairs
    from a single prompt cannot be cross-validated: the head keeps a temperature of 1 and the
    least spread, and there are no out-of-fold probabilities."""
    head = pairs.fit(cfg)
    head.spread = SPREADS[0].item()
    if len(folds.unique()) < 2:
        return head, torch.empty(0)
    gap, variance = torch.zeros(len(folds)), torch.zeros(len(folds))
    for fold in folds.unique().tolist():
        test = folds == fold
        held = pairs.take(test)
        gap[test], variance[test] = pairs.take(~test).fit(cfg).logits(
            held.chosen, held.rejected, held.broken_chosen, held.broken_rejected)
        step()
    head.temperature, head.spread = fit_calibration(gap, variance)
    cross_fitted = torch.zeros(len(folds))
    for fold in folds.unique().tolist():
        test = folds == fold
        cross_fitted[test] = probability(gap[test], variance[test], *fit_calibration(gap[~test], variance[~test]))
    return head, cross_fitted


def calibration_error(probabilities: torch.Tensor, bins: int = 5) -> float:
    """Expected calibration error of probabilities that the chosen answer wins (see
    `storage.ratings.calibration_error`); NaN without any pair."""
    if not len(probabilities):
        return float("nan")
    return ratings.calibration_error(torch.maximum(probabilities, 1 - probabilities).tolist(),
                                     (probabilities > 0.5).tolist(), bins)


def margin_bucket(margin: float) -> str:
    """Score gaps are differences of 1-10 integers; 0 means no scores (or equal ones)."""
    return "0" if margin == 0 else "1_3" if margin < 4 else "4_plus"


def accuracy(prefix: str, count: str, hits: list[bool]) -> dict:
    """A share of pairs ranked right, with its 95% interval and count."""
    rate = ratings.win_rate_interval(sum(hits), len(hits) - sum(hits), 0)
    return {prefix: rate.value, f"{prefix}_low": rate.low, f"{prefix}_high": rate.high, count: float(len(hits))}


def heldout_accuracy(hits: list[bool], rows: list[dict]) -> dict:
    """Overall and per margin bucket: 18 held-out pairs cannot tell 0.56 from 0.81, and a model
    that only separates the pairs annotators found obvious is weaker than its overall figure."""
    buckets: dict[str, list[bool]] = {"": hits}
    for row, hit in zip(rows, hits):
        buckets.setdefault(f"_margin_{margin_bucket(row['margin'])}", []).append(hit)
    return {k: v for name, b in sorted(buckets.items()) for k, v in
            accuracy(f"rm_accuracy{name}", f"rm_heldout_pairs{name}", b).items()}


def read_pairs(backbone, tokenizer, rows: list[dict], cfg: RewardModelConfig,
               progress: Callable[[int, int], None] | None = None) -> tuple[Pairs, torch.Tensor]:
    """Both answers of every row, and which rows had text cut."""
    prompts = [r["prompt"] for r in rows]
    answers = [r["chosen"] for r in rows] + [r["rejected"] for r in rows]
    features, truncated = answer_features(backbone, tokenizer, prompts + prompts, answers, cfg.max_length,
                                          cfg.batch_size, progress, cfg.words)
    broken = torch.tensor([degenerate(a[-1]["content"]) for a in answers], dtype=torch.bool)
    scores = torch.tensor([[_or_nan(r.get("score_chosen")), _or_nan(r.get("score_rejected"))]
                           for r in rows]).reshape(-1, 2)
    weights = torch.tensor([float(r.get("weight", 1.0)) for r in rows])
    n = len(rows)
    cut = torch.tensor(truncated[:n], dtype=torch.bool) | torch.tensor(truncated[n:], dtype=torch.bool)
    return Pairs(features[:n], features[n:], broken[:n], broken[n:], scores, weights), cut


def train_reward_model(base_path: Path, train: list[dict], heldout: list[dict], cfg: RewardModelConfig,
                       out_dir: Path, progress: RoundProgress | None = None) -> dict:
    """Fit on `train`, calibrated out of fold, save the reward model to `out_dir`, and measure it
    on `heldout` and out of fold. Reading the answers and fitting are reported as two phases:
    reading takes nearly all the time."""
    if cfg.folds < 2:
        raise ValueError(f"reward.folds is {cfg.folds}: cross-validation needs at least 2 folds")
    backbone = load_backbone(base_path, cfg.depth)
    tokenizer = common.load_tokenizer(base_path, padding_side="right")
    if progress:
        progress.begin("reward model: reading answers", 2 * (len(train) + len(heldout)))
    pairs, cut_rows = read_pairs(backbone, tokenizer, train + heldout, cfg,
                                 (lambda done, _: progress.update(done)) if progress else None)
    held, pairs = pairs.take(torch.arange(len(train), len(train) + len(heldout))), pairs.take(torch.arange(len(train)))
    folds = torch.tensor(prompt_folds(train, cfg.folds))
    fits = [0]
    if progress:
        progress.begin("reward model: fitting", (len(folds.unique()) if len(folds.unique()) > 1 else 0) + 1)

    def step() -> None:
        fits[0] += 1
        if progress:
            progress.update(fits[0])
    head, cv_p = fit_calibrated(pairs, folds, cfg, step)
    RewardModel(backbone, head, tokenizer, cfg.max_length).save(out_dir)
    held_p = held.preference(head)
    unseen = torch.cat([held_p, cv_p])
    if progress:  # the last step: the head fitted on every pair, and how it ranked pairs it had not seen
        progress.update(fits[0] + 1, {name: (p > 0.5).float().mean().item() for name, p in
                                      (("cross-validated accuracy", cv_p), ("held-out accuracy", held_p)) if len(p)})
    return {**heldout_accuracy((held_p > 0.5).tolist(), heldout),
            **accuracy("rm_cv_accuracy", "rm_cv_pairs", (cv_p > 0.5).tolist()),
            **accuracy("rm_unseen_accuracy", "rm_unseen_pairs", (unseen > 0.5).tolist()),
            "rm_calibration_error": calibration_error(unseen),
            "rm_heldout_calibration_error": calibration_error(held_p),
            "rm_train_pairs": float(len(train)), "rm_scored_pairs": float((~pairs.scores.isnan().any(1)).sum()),
            "rm_truncated": float(cut_rows[:len(train)].sum()), "rm_layers": float(backbone.config.num_hidden_layers),
            "rm_temperature": head.temperature, "rm_spread": head.spread}


def _or_nan(score: float | None) -> float:
    return float("nan") if score is None else float(score)
