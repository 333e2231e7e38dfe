"""Proximal policy optimisation against a reward function: RLHF as in Ziegler et al. (2019) and
Ouyang et al. (2022), with the choices of "The N+ Implementation Details of RLHF with PPO".

TRL 1.13 removed its PPOTrainer, so the algorithm is written out here, top to bottom. Each
iteration samples one completion per prompt from the policy, scores it, and turns the score into
per-token rewards: a KL penalty against the reference at every token plus the score at the last
one. A value head on the policy's last hidden state is the critic; GAE turns rewards and values
into advantages; several epochs of clipped updates over minibatches follow.

The critic is a linear probe on those hidden states, as the reward model is on its own: its
loss does not reach the policy's adapter. A shared trunk let the value loss move the policy on
tokens no reward asked about (docs/rounds.md has the measurements).

The reference is the policy the round starts from (a frozen copy of the live adapter, or the base
model before the first adapter), so the penalty keeps the round near the version the annotators
judged. The value head is not saved: it estimates returns under this round's reward model, and
the next round trains a new reward model, so a fresh critic is fitted each round.
"""
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from trl.trainer.utils import use_adapter

from policy.sampling import SamplingConfig, sample_batch

from . import common


@dataclass
class PPOConfig:
    """Defaults sized for SmolLM2-135M on two CPU cores: 16 rollouts of 8 prompts per round."""
    lr: float = 1e-4             # a LoRA needs far more than the 1e-6 of full fine-tuning
    batch_size: int = 8          # prompts per rollout
    mini_batch_size: int = 4     # completions per optimiser step
    ppo_epochs: int = 4          # passes over each rollout: more reuse, bounded by the clipping
    iterations: int = 16         # rollouts per round
    max_new_tokens: int = 64
    temperature: float = 0.7     # also divides the logits when scoring, so log-probs match sampling
    gamma: float = 1.0           # the score arrives once, at the end; nothing to discount
    lam: float = 0.95
    cliprange: float = 0.2
    cliprange_value: float = 0.2
    vf_coef: float = 0.1         # the critic's share of the gradient norm that max_grad_norm clips
    init_kl_coef: float = 0.05
    target_kl: float = 6.0       # nats per completion
    kl_horizon: int = 10000      # Ziegler's: adapts over ~this many completions, slowly within a CPU round
    whiten_rewards: bool = False  # rescale per-token rewards per batch, for reward models with a large scale
    max_grad_norm: float = 1.0
    seed: int = 0
    lora: common.LoraSettings = field(default_factory=common.LoraSettings)


class AdaptiveKLController:
    """Ziegler et al.'s proportional controller: the KL coefficient moves the observed KL towards
    the target, by at most 20% of n_steps / horizon per update, so one noisy batch moves it little."""

    def __init__(self, init: float, target: float, horizon: int):
        self.value, self.target, self.horizon = init, target, horizon

    def update(self, current_kl: float, n_steps: int) -> float:
        error = min(max(current_kl / self.target - 1, -0.2), 0.2)
        self.value *= 1 + error * n_steps / self.horizon
        return self.value


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum()


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """Unit variance over the real tokens only: padding would otherwise drag the statistics."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask) * mask.sum() / (mask.sum() - 1)
    whitened = (x - mean) * torch.rsqrt(var + 1e-8)
    return (whitened if shift_mean else whitened + mean) * mask


def token_rewards(scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor,
                  mask: torch.Tensor, kl_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards and the per-token KL estimate: the penalty is paid at every token, so
    credit for drifting from the reference lands where the drift happened; the score lands on the
    last real token, the one that completed the answer it judges."""
    kl = (logprobs - ref_logprobs) * mask
    rewards = -kl_coef * kl
    last = mask.sum(dim=1).long() - 1
    rewards[torch.arange(len(scores)), last] += scores
    return rewards, kl


def compute_gae(values: torch.Tensor, rewards: torch.Tensor, mask: torch.Tensor, gamma: float,
                lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates and the returns the critic regresses on. `mask` is a
    prefix of each row, so the value after the last real token is zero: the episode has ended."""
    values, rewards = values * mask, rewards * mask
    advantages = torch.zeros_like(values)
    running = torch.zeros_like(values[:, 0])
    for t in reversed(range(values.shape[1])):
        next_value = values[:, t + 1] if t + 1 < values.shape[1] else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * running
        advantages[:, t] = running
    return advantages * mask, (advantages + values) * mask


def policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                mask: torch.Tensor, cliprange: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The clipped surrogate: the pessimistic of the plain and the clipped objective, so a step
    gains nothing by moving a token's probability ratio beyond [1 - eps, 1 + eps] in the direction
    its advantage favours. Returns the loss and the fraction of tokens where the clip bound."""
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1 - cliprange, 1 + cliprange)
    return masked_mean(torch.max(unclipped, clipped), mask), masked_mean((clipped > unclipped).float(), mask)


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
               mask: torch.Tensor, cliprange_value: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared error to the returns, clipped like the policy so the critic cannot lurch on one
    batch. Returns the loss and the fraction of tokens where the clip bound."""
    clipped_values = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    unclipped_loss, clipped_loss = (values - returns) ** 2, (clipped_values - returns) ** 2
    return (0.5 * masked_mean(torch.max(unclipped_loss, clipped_loss), mask),
            masked_mean((clipped_loss > unclipped_loss).float(), mask))


def forward(model, sequences: torch.Tensor, attention_mask: torch.Tensor, start: int,
            temperature: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Log-probabilities and entropies of the completion tokens, and the hidden states that
    predicted them, detached: the critic's input, through which no value loss reaches the policy.
    Positions count from each row's first real token, as in `generate`, so left padding does not
    shift what the policy computes."""
    positions = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
    out = model(input_ids=sequences, attention_mask=attention_mask, position_ids=positions,
                output_hidden_states=True, logits_to_keep=sequences.shape[1] - start + 1)
    all_logprobs = torch.log_softmax(out.logits[:, :-1].float() / temperature, dim=-1)
    logprobs = all_logprobs.gather(-1, sequences[:, start:, None]).squeeze(-1)
    detached = all_logprobs.detach()
    entropy = -(detached.exp() * detached).sum(dim=-1)
    return logprobs, entropy, out.hidden_states[-1][:, start - 1:-1].detach().float()


@dataclass
class Rollout:
    sequences: torch.Tensor      # prompt and completion tokens, prompts left-padded
    attention_mask: torch.Tensor
    start: int                   # where the completions begin
    mask: torch.Tensor           # completion tokens up to and including the first end-of-sequence
    logprobs: torch.Tensor
    ref_logprobs: torch.Tensor
    values: torch.Tensor
    entropy: torch.Tensor
    scores: torch.Tensor


@torch.no_grad()
def rollout(model, value_head: nn.Linear, tokenizer, prompts: list[str], reward_fn, cfg: PPOConfig,
            ref_adapter: str | None, seed: int) -> Rollout:
    """Sample one completion per prompt and record everything the updates compare against."""
    # Sample from exactly the distribution the losses score: no top-p or top-k truncation.
    sampling = SamplingConfig(temperature=cfg.temperature, top_p=1.0, top_k=0, max_new_tokens=cfg.max_new_tokens)
    texts, sequences, prompt_and_answer_mask, start = sample_batch(model, tokenizer, prompts, sampling, seed)
    sequences = sequences.clone()  # generated under inference mode, which autograd cannot reuse
    completion = sequences[:, start:]
    ended = ((completion == tokenizer.eos_token_id) | (completion == tokenizer.pad_token_id)).int()
    # Unlike the answer text, the actions include the end-of-sequence token: stopping is a choice.
    mask = (ended.cumsum(dim=1) - ended == 0).float()
    attention_mask = torch.cat([prompt_and_answer_mask[:, :start].clone(), mask.long()], dim=1)
    logprobs, entropy, hidden = forward(model, sequences, attention_mask, start, cfg.temperature)
    with use_adapter(model, ref_adapter):
        ref_logprobs = forward(model, sequences, attention_mask, start, cfg.temperature)[0]
    scores = reward_fn(prompts, texts).to(sequences.device, torch.float32)
    return Rollout(sequences, attention_mask, start, mask, logprobs * mask, ref_logprobs * mask,
                   value_head(hidden).squeeze(-1) * mask, entropy, scores)


def optimise(model, value_head: nn.Linear, optimizer: torch.optim.Optimizer, batch: Rollout,
             advantages: torch.Tensor, returns: torch.Tensor, cfg: PPOConfig,
             generator: torch.Generator) -> dict:
    """Several epochs of clipped updates over shuffled minibatches of one rollout."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    stats = {"policy_loss": [], "value_loss": [], "clipfrac": [], "value_clipfrac": []}
    for _ in range(cfg.ppo_epochs):
        for idx in torch.randperm(len(batch.scores), generator=generator).split(cfg.mini_batch_size):
            logprobs, _, hidden = forward(model, batch.sequences[idx], batch.attention_mask[idx],
                                          batch.start, cfg.temperature)
            values = value_head(hidden).squeeze(-1)
            mask = batch.mask[idx]
            pg_loss, clipfrac = policy_loss(logprobs, batch.logprobs[idx], advantages[idx], mask, cfg.cliprange)
            vf_loss, vf_clipfrac = value_loss(values, batch.values[idx], returns[idx], mask, cfg.cliprange_value)
            optimizer.zero_grad()
            (pg_loss + cfg.vf_coef * vf_loss).backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            for key, value in zip(stats, (pg_loss, vf_loss, clipfrac, vf_clipfrac)):
                stats[key].append(value.item())
    return {key: sum(values) / len(values) for key, values in stats.items()}


def train_ppo(base_path: Path, live_adapter: Path | None, prompts: list[str],
              reward_fn: Callable[[list[str], list[str]], torch.Tensor], cfg: PPOConfig, out_dir: Path,
              log: Callable[[dict], None] | None = None) -> list[dict]:
    """One round of PPO from the live policy; `reward_fn(prompts, completions)` scores answers.
    The trained adapter is written to `out_dir`; returns each iteration's statistics."""
    torch.manual_seed(cfg.seed)
    device = "cuda" if common.on_cuda() else "cpu"
    tokenizer = common.load_tokenizer(base_path)
    model = common.policy_for_training(base_path, live_adapter, cfg.lora)
    if common.continues(live_adapter, cfg.lora) and not common.merges_live(live_adapter, cfg.lora):
        # the live LoRA as the reference; else adapters off is it (the base, or the merged IA3)
        model.load_adapter(str(live_adapter), adapter_name="ref", is_trainable=False)
    ref_adapter = "ref" if "ref" in model.peft_config else None
    # No dropout: the rollout's log-probs must equal the first update's, so ratios start at 1.
    model.to(device).eval()
    value_head = nn.Linear(model.config.hidden_size, 1, device=device)
    nn.init.zeros_(value_head.weight)  # every state starts at value 0: no made-up baseline
    nn.init.zeros_(value_head.bias)
    adapter = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam([{"params": adapter, "lr": cfg.lora.learning_rate(cfg.lr)},
                                  {"params": list(value_head.parameters())}], lr=cfg.lr)
    kl_ctl = AdaptiveKLController(cfg.init_kl_coef, cfg.target_kl, cfg.kl_horizon)
    generator = torch.Generator().manual_seed(cfg.seed)
    order = random.Random(cfg.seed).sample(prompts, len(prompts))

    history = []
    for it in range(cfg.iterations):
        batch_prompts = [order[(it * cfg.batch_size + j) % len(order)] for j in range(cfg.batch_size)]
        batch = rollout(model, value_head, tokenizer, batch_prompts, reward_fn, cfg, ref_adapter,
                        seed=cfg.seed + it)
        kl_coef = kl_ctl.value
        rewards, kl = token_rewards(batch.scores, batch.logprobs, batch.ref_logprobs, batch.mask, kl_coef)
        if cfg.whiten_rewards:
            rewards = whiten(rewards, batch.mask, shift_mean=False)
        advantages, returns = compute_gae(batch.values, rewards, batch.mask, cfg.gamma, cfg.lam)
        advantages = whiten(advantages, batch.mask)
        losses = optimise(model, value_head, optimizer, batch, advantages, returns, cfg, generator)
        sequence_kl = kl.sum(dim=1).mean().item()
        kl_ctl.update(sequence_kl, cfg.batch_size)
        stats = {"iteration": it + 1, "reward": batch.scores.mean().item(),
                 "reward_std": batch.scores.std().item(), "kl": sequence_kl, "kl_coef": kl_coef,
                 "entropy": masked_mean(batch.entropy, batch.mask).item(),
                 "length": batch.mask.sum(dim=1).mean().item(), **losses}
        history.append(stats)
        if log is not None:
            log(stats)
    common.save_trained_adapter(model, out_dir, live_adapter, cfg.lora)
    return history
