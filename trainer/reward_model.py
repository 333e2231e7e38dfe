"""Reward model: the base model with a one-number head, taught the annotators' choices.

RLOO and PPO need a reward for answers nobody judged, and the promotion gate needs a judge
other than the policy. The head sits on the base checkpoint and is trained with LoRA on the
Bradley-Terry loss, the chosen answer's reward above the rejected one's by at least the
pair's (scaled) score margin. The LoRA is then merged, so every consumer, RLOOTrainer
included (it cannot take a PeftModel), loads a plain AutoModelForSequenceClassification by path.

Training and scoring template and cut every conversation with the same function, `encode`:
the rewards a policy is trained on come from inputs shaped like the ones the model learnt from.
"""
from dataclasses import dataclass, field
from pathlib import Path

import torch
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, set_seed
from trl import RewardConfig, RewardTrainer
from trl.trainer.reward_trainer import suppress_seqcls_warning

from policy import models

from . import common


@dataclass
class RewardModelConfig:
    """Defaults sized for a round on ~128 judgements with SmolLM2-135M on two CPU cores."""
    lr: float = 3e-4            # taught SmolLM2-135M a toy preference from 64 pairs in one epoch
    epochs: float = 1.0
    batch_size: int = 8         # pairs per step, each two sequences
    max_length: int = 512       # tokens per templated prompt + answer; longer prompts lose their end
    margin_scale: float = 0.25  # reward gap per point of score gap: 4 points ask 1 (a 73% preference)
    lora: common.LoraSettings = field(default_factory=common.LoraSettings)


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


def encode(tokenizer, prompt: list[dict], completion: list[dict], max_length: int) -> tuple[list[int], bool]:
    """Token ids of the templated conversation, cut to `max_length`, and whether anything was cut.

    RewardTrainer silently drops a pair that does not fit. Instead the prompt's last message
    loses its end, since the answer is what is being judged; only an answer too long on its
    own is cut as well.
    """
    truncated = False
    while len(ids := tokenizer.apply_chat_template(prompt + completion, tokenize=True,
                                                   return_dict=True)["input_ids"]) > max_length:
        truncated, excess = True, len(ids) - max_length
        if prompt[-1]["content"]:
            prompt = _shorten(tokenizer, prompt, excess)
        elif completion[-1]["content"]:
            completion = _shorten(tokenizer, completion, excess)
        else:
            raise ValueError(f"max_length {max_length} cannot hold the chat template itself")
    return ids, truncated


class RewardModel:
    """A trained reward model, scoring answers exactly as its training pairs were presented."""

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model.eval(), tokenizer
        # Training stores its max_length here: the model has never seen a longer sequence.
        self.max_length = tokenizer.model_max_length

    @classmethod
    def load(cls, path: Path) -> "RewardModel":
        model = AutoModelForSequenceClassification.from_pretrained(path, dtype=models.dtype())
        return cls(model.to(models.device()), common.load_tokenizer(path, padding_side="right"))

    @torch.inference_mode()
    def score_messages(self, prompts: list[list[dict]], completions: list[list[dict]],
                       batch_size: int = 8) -> torch.Tensor:
        ids = [encode(self.tokenizer, p, c, self.max_length)[0]
               for p, c in zip(prompts, completions, strict=True)]
        rewards = []
        for i in range(0, len(ids), batch_size):
            batch = self.tokenizer.pad({"input_ids": ids[i:i + batch_size]}, return_tensors="pt")
            rewards.append(self.model(**batch.to(self.model.device)).logits[:, 0].float().cpu())
        return torch.cat(rewards) if rewards else torch.empty(0)

    def score(self, prompts: list[str], completions: list[str], batch_size: int = 8) -> torch.Tensor:
        """One reward per answer to a single-turn prompt, the form the policy's samples take."""
        return self.score_messages([[{"role": "user", "content": p}] for p in prompts],
                                   [[{"role": "assistant", "content": c}] for c in completions], batch_size)


def margin_bucket(margin: float) -> str:
    """Score gaps are differences of 1-10 integers; 0 means no scores (or equal ones)."""
    return "0" if margin == 0 else "1_3" if margin < 4 else "4_plus"


def pairwise_accuracy(rm: RewardModel, rows: list[dict]) -> dict:
    """Share of pairs whose chosen answer scores higher, overall and per margin bucket: a model
    that only separates the pairs annotators found obvious is weaker than its overall figure."""
    prompts = [r["prompt"] for r in rows]
    correct = (rm.score_messages(prompts, [r["chosen"] for r in rows])
               > rm.score_messages(prompts, [r["rejected"] for r in rows])).tolist()
    metrics = {"rm_accuracy": sum(correct) / len(correct), "rm_heldout_pairs": float(len(rows))}
    buckets: dict[str, list[bool]] = {}
    for row, hit in zip(rows, correct):
        buckets.setdefault(margin_bucket(row["margin"]), []).append(hit)
    for name, hits in sorted(buckets.items()):
        metrics[f"rm_accuracy_margin_{name}"] = sum(hits) / len(hits)
    return metrics


def preference_dataset(tokenizer, rows: list[dict], cfg: RewardModelConfig) -> tuple[Dataset, int]:
    """Pairs already tokenised by `encode` (so RewardTrainer's length filter finds nothing to
    drop), with their scaled margins, and how many pairs had text cut."""
    records, truncated = [], 0
    for row in rows:
        chosen, chosen_cut = encode(tokenizer, row["prompt"], row["chosen"], cfg.max_length)
        rejected, rejected_cut = encode(tokenizer, row["prompt"], row["rejected"], cfg.max_length)
        records.append({"chosen_ids": chosen, "rejected_ids": rejected,
                        "margin": cfg.margin_scale * row["margin"]})
        truncated += chosen_cut or rejected_cut
    return Dataset.from_list(records), truncated


def train_reward_model(base_path: Path, train: list[dict], heldout: list[dict], cfg: RewardModelConfig,
                       out_dir: Path, run_name: str = "reward", callbacks: list | None = None) -> dict:
    """Train on `train`, save the merged model and its tokenizer to `out_dir`, measure on `heldout`."""
    tokenizer = common.load_tokenizer(base_path, padding_side="right")
    tokenizer.model_max_length = cfg.max_length  # saved with the model, so scoring cuts where training did
    dataset, truncated = preference_dataset(tokenizer, train, cfg)
    args = RewardConfig(**common.trainer_args(out_dir, run_name), learning_rate=cfg.lr,
                        num_train_epochs=cfg.epochs, per_device_train_batch_size=cfg.batch_size,
                        max_length=cfg.max_length)
    set_seed(args.seed)  # the new head is drawn at random as the model loads
    # float32 weights, bf16 arithmetic where `common.trainer_args` turns autocast on: the new
    # head is trained whole, and Adam's small steps vanish in bf16 weights.
    with suppress_seqcls_warning():  # the head is missing from a causal-LM checkpoint by design
        model = AutoModelForSequenceClassification.from_pretrained(base_path, num_labels=1,
                                                                   dtype=torch.float32)
    model.config.pad_token_id = tokenizer.pad_token_id  # the head reads the last non-pad token
    trainer = RewardTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                            peft_config=cfg.lora.config("SEQ_CLS", model), callbacks=callbacks)
    trainer.train()
    merged = trainer.model.merge_and_unload()
    merged.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {**pairwise_accuracy(RewardModel(merged, tokenizer), heldout),
            "rm_loss": common.last_logged(trainer, "loss")["loss"],
            "rm_train_pairs": float(len(trainer.train_dataset)), "rm_truncated": float(truncated)}
