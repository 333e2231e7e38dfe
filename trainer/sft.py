"""Supervised fine-tuning: the live policy learns to write given answers, token by token.

A round's SFT examples are demonstrations (annotators' corrected answers and imported reference
answers) and, in a rejection-sampling round, the reward model's pick of the policy's own answers
(see `rejection_sampling`). The loss is on the answer only: TRL's SFTTrainer does that for
prompt-completion rows, so the policy is not taught to write the user's questions. Like DPO and
RLOO it continues the live LoRA adapter, so a round is a step from the version people judged.
"""
import math
from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset
from trl import SFTConfig, SFTTrainer

from . import common

# What TRL logs -> what a round's progress shows.
PROGRESS_FIGURES = {"loss": "loss", "mean_token_accuracy": "token accuracy"}


@dataclass
class SFTSettings:
    """Sized for SmolLM2-135M on two CPU cores and a round's few dozen examples: a LoRA at the
    rate DPO uses (TRL's 2e-5 is for full fine-tunes), two passes over the examples."""
    lr: float = 5e-4
    epochs: float = 2.0
    max_steps: int = 32       # caps a round's time when demonstrations pile up
    batch_size: int = 8       # examples per optimiser step
    micro_batch: int = 4      # examples per forward and backward pass (memory)
    max_length: int = 320     # templated prompt + answer, as DPO cuts them
    # Imported reference answers a round samples (annotators' corrections are always taken): a
    # round sees at most max_steps * batch_size examples, and TRL tokenises every row it is given.
    max_imported: int = 200
    lora: common.LoraSettings = field(default_factory=common.LoraSettings)

    def steps(self, examples: int) -> int:
        return max(1, min(self.max_steps, math.ceil(self.epochs * examples / self.batch_size)))


def example(prompt: list[dict], answer: str) -> dict:
    """One SFT row in TRL's conversational prompt-completion form (loss on the completion)."""
    return {"prompt": prompt, "completion": [{"role": "assistant", "content": answer}]}


def sft_trainer(base_path: Path, live_adapter: Path | None, examples: list[dict], cfg: SFTSettings,
                out_dir: Path, run_name: str = "sft", callbacks: list | None = None) -> SFTTrainer:
    """TRL's SFTTrainer on the live policy's LoRA, its rows tokenised with the loss mask: the
    answer and its end-of-turn token, not the prompt."""
    if not examples:
        raise ValueError("no SFT examples: nothing to train on")
    model = common.policy_for_training(base_path, live_adapter, cfg.lora)
    args = SFTConfig(**common.trainer_args(out_dir, run_name), learning_rate=cfg.lora.learning_rate(cfg.lr),
                     max_steps=cfg.steps(len(examples)), per_device_train_batch_size=cfg.micro_batch,
                     gradient_accumulation_steps=common.accumulation_steps(cfg.batch_size, cfg.micro_batch),
                     max_length=cfg.max_length, completion_only_loss=True)
    dataset = Dataset.from_list([{"prompt": e["prompt"], "completion": e["completion"]} for e in examples])
    return SFTTrainer(model=model, args=args, train_dataset=dataset,
                      processing_class=common.load_tokenizer(base_path, padding_side="right"), callbacks=callbacks)


def train_sft(base_path: Path, live_adapter: Path | None, examples: list[dict], cfg: SFTSettings,
              out_dir: Path, run_name: str = "sft", callbacks: list | None = None) -> dict:
    """SFT from the live policy on prompt-completion rows; the adapter is written to `out_dir`."""
    trainer = sft_trainer(base_path, live_adapter, examples, cfg, out_dir, run_name, callbacks)
    result = common.train(trainer)
    common.save_trained_adapter(trainer.model, out_dir, live_adapter, cfg.lora)
    last = common.last_logged(trainer, "loss", "mean_token_accuracy")
    return {"sft_loss": last["loss"], "sft_examples": float(len(examples)),
            "sft_steps": float(result.global_step)} | (
        {"sft_token_accuracy": last["mean_token_accuracy"]} if "mean_token_accuracy" in last else {})
