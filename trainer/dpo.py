"""Direct preference optimisation: the live policy learns the annotators' choices from the pairs.

DPO needs neither a reward model nor sampling during training, which makes it the cheapest
round on a CPU. Its regulariser is the reference policy: TRL copies the live adapter into a
frozen "ref" adapter, so a round moves the policy a bounded step away from the version the
annotators judged, not from the base model.
"""
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from datasets import Dataset
from trl import DPOConfig, DPOTrainer
from trl.data_utils import common_prefix_length
from trl.trainer.utils import pad, selective_log_softmax

from . import common

COLUMNS = ("prompt", "chosen", "rejected")  # the export's id columns mean nothing to DPO
# What TRL logs -> what a round's progress shows: the loss, and how far the policy prefers the
# chosen answers to the rejected ones beyond the reference (beta-scaled log-ratios).
PROGRESS_FIGURES = {"loss": "loss", "rewards/margins": "reward margin"}


@dataclass
class DPOSettings:
    """Defaults measured on SmolLM2-135M, two CPU cores, ~128 judgements a round (see the sweep in
    docs/benchmarks.md): all-layer LoRA learns a taste that top-layer LoRA learns half of, and the
    SFT term keeps answers from looping where DPO alone starts to."""
    beta: float = 0.1
    loss_type: str = "sigmoid"
    # Weight of a supervised term on the chosen answer (RPO): DPO alone can widen its margin by
    # making both answers less likely, and the policy drifts to text nobody chose.
    sft_weight: float = 0.2
    lr: float = 5e-4          # TRL's 1e-6 suits full fine-tuning; 1e-4 left a LoRA where it was after a round
    epochs: float = 2.0
    max_steps: int = 28       # caps a round's time: later rounds, with more pairs, see each one less often
    # The newest decisive judgements only: the reference is the live policy, which sampled the
    # newest pairs; older ones are off-policy, and the reference pass costs time for each.
    max_pairs: int = 160
    batch_size: int = 8       # pairs per optimiser step
    # Pairs per forward pass. Backward keeps every layer's activations of every token (LoRA is
    # on all layers), about 0.5 GB per answer: a round took 7-10 GB with 8 pairs, 4.5 with 2
    # and 3.4 with 1, which was also the fastest (bench/round_turnaround.py). The DPO term's
    # gradient is the same; the SFT term becomes a mean of per-pair token means, so a short
    # chosen answer weighs as much as a long one.
    micro_batch: int = 1
    max_length: int = 320     # templated prompt + answer: the app's 160-token answers and most prompts fit
    lora: common.LoraSettings = field(default_factory=common.LoraSettings)

    def steps(self, pairs: int) -> int:
        return max(1, min(self.max_steps, math.ceil(self.epochs * min(pairs, self.max_pairs) / self.batch_size)))


def train_dpo(base_path: Path, live_adapter: Path | None, train: list[dict], cfg: DPOSettings,
              out_dir: Path, run_name: str = "dpo", callbacks: list | None = None) -> dict:
    """One round of DPO from the live policy; the trained adapter is written to `out_dir`.

    The reference's log-probabilities are computed once, before training: the reference never
    changes within a round, so a second forward pass per step would only repeat them.
    """
    model = common.policy_for_training(base_path, live_adapter, cfg.lora)
    args = DPOConfig(**common.trainer_args(out_dir, run_name), learning_rate=cfg.lora.learning_rate(cfg.lr),
                     beta=cfg.beta,
                     loss_type=[cfg.loss_type, "sft"] if cfg.sft_weight else [cfg.loss_type],
                     loss_weights=[1.0, cfg.sft_weight] if cfg.sft_weight else None,
                     max_steps=cfg.steps(len(train)),
                     per_device_train_batch_size=cfg.micro_batch,
                     gradient_accumulation_steps=common.accumulation_steps(cfg.batch_size, cfg.micro_batch),
                     max_length=cfg.max_length,
                     precompute_ref_log_probs=True, precompute_ref_batch_size=16)
    dataset = Dataset.from_list([{k: row[k] for k in COLUMNS} for row in train[-cfg.max_pairs:]])
    trainer = DPOTrainer(model=model, args=args, train_dataset=dataset,
                         processing_class=common.load_tokenizer(base_path), callbacks=callbacks)
    result = common.train(trainer)
    common.save_trained_adapter(model, out_dir, live_adapter, cfg.lora)
    last = common.last_logged(trainer, "loss", "rewards/accuracies", "rewards/margins")
    return {"dpo_loss": last["loss"], "dpo_reward_accuracy": last["rewards/accuracies"],
            "dpo_reward_margin": last["rewards/margins"],
            "dpo_samples_per_second": result.metrics["train_samples_per_second"],
            # TRL drops pairs whose prompt alone fills max_length, so count what it kept
            "dpo_train_pairs": float(len(trainer.train_dataset)), "dpo_steps": float(result.global_step)}


@torch.no_grad()
def completion_logprobs(model, tokenizer, prompts: list[list[dict]], completions: list[list[dict]],
                        batch_size: int = 8) -> torch.Tensor:
    """Summed log-probability of each completion's tokens, split from its prompt as DPOTrainer
    splits them (where the templated prompt and the templated conversation diverge)."""
    out = []
    for i in range(0, len(prompts), batch_size):
        seqs, starts = [], []
        for prompt, completion in zip(prompts[i:i + batch_size], completions[i:i + batch_size]):
            prompt_ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, return_dict=True)
            ids = tokenizer.apply_chat_template(prompt + completion, return_dict=True)["input_ids"]
            seqs.append(torch.tensor(ids))
            starts.append(common_prefix_length(prompt_ids["input_ids"], ids))
        input_ids = pad(seqs, padding_value=tokenizer.pad_token_id, padding_side="right").to(model.device)
        mask = pad([torch.ones_like(s) for s in seqs], padding_value=0, padding_side="right").to(model.device)
        logits = model(input_ids=input_ids, attention_mask=mask).logits[:, :-1].float()
        token_logprobs = selective_log_softmax(logits, input_ids[:, 1:])
        # position t predicts token t + 1, so a completion starting at token s is scored from s - 1
        in_completion = torch.arange(1, input_ids.shape[1], device=model.device) >= torch.tensor(
            starts, device=model.device)[:, None]
        out.append((token_logprobs * (in_completion & mask[:, 1:].bool())).sum(dim=1).cpu())
    return torch.cat(out)


def logprob_margin(model, tokenizer, rows: list[dict]) -> float:
    """Mean of log p(chosen) - log p(rejected): how strongly the policy sides with the annotators."""
    model.eval()
    prompts = [r["prompt"] for r in rows]
    chosen = completion_logprobs(model, tokenizer, prompts, [r["chosen"] for r in rows])
    rejected = completion_logprobs(model, tokenizer, prompts, [r["rejected"] for r in rows])
    return (chosen - rejected).mean().item()
