"""What every training recipe shares: the machine's precision, W&B reporting, the adapter, the policy.

TRL configs default to bf16 and gradient checkpointing, which a two-core CPU cannot use, and
report to every installed logger; these helpers make those choices once, explicitly.
"""
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import IA3Config, LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback

from policy import adapters, models

log = logging.getLogger(__name__)


@dataclass
class LoraSettings:
    """The adapter a method trains: LoRA, or IA3 (`kind`), which learns only a scale per channel
    of the keys, values and feed-forward input, a few hundred times fewer weights than LoRA.
    A round sets `kind` for every method from its own `adapter` setting. `r`, `alpha`,
    `dropout` and `top_layers` are LoRA's; IA3 scales every layer's keys, values and down_proj."""
    kind: str = "lora"
    # IA3's scales start at 1 and move by lr per step like LoRA's weights do from 0, but a
    # change of 1e-3 to a scale is a far smaller change to the answers: IA3 takes the method's
    # learning rate times this (a first guess, not tuned: docs/benchmarks.md, "IA3 against LoRA").
    ia3_lr_scale: float = 10.0
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    # Adapt the linear layers of only the last N decoder layers (0: every layer). The backward
    # pass then stops at the lowest adapted layer, which halves a training step on a CPU.
    top_layers: int = 0

    def learning_rate(self, lr: float) -> float:
        """The method's learning rate, for this kind of adapter."""
        return lr * self.ia3_lr_scale if self.kind == "ia3" else lr

    def config(self, task_type: str, model) -> LoraConfig | IA3Config:
        if self.kind not in adapters.KINDS:
            raise ValueError(f"the adapter kind must be one of {adapters.KINDS}, not {self.kind!r}")
        if self.kind == "ia3":  # PEFT's choice for Llama-style blocks: k_proj, v_proj and down_proj
            return IA3Config(task_type=task_type)
        n = model.config.num_hidden_layers
        if self.top_layers and self.top_layers < n:
            # PEFT takes layers_to_transform only with named modules, so name them by pattern:
            # the projections of Llama-style blocks (model.layers.N.self_attn.q_proj, ...).
            layers = "|".join(str(i) for i in range(n - self.top_layers, n))
            targets = rf".*\.layers\.(?:{layers})\..*_proj"
        else:
            targets = "all-linear"
        return LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=targets, task_type=task_type)


def on_cuda() -> bool:
    return torch.cuda.is_available()


def bf16() -> bool:
    return models.dtype() == torch.bfloat16


def configure_wandb(data_dir: Path) -> None:
    """Offline runs under the data directory unless the user chose a mode or project."""
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_DIR", str(data_dir))
    os.environ.setdefault("WANDB_PROJECT", "prefloop")
    (Path(os.environ["WANDB_DIR"]) / "wandb").mkdir(parents=True, exist_ok=True)


def report_to() -> list[str]:
    return [] if os.environ.get("WANDB_MODE") == "disabled" else ["wandb"]


def trainer_args(out_dir: Path, run_name: str) -> dict:
    """Keyword arguments every TRL config takes: precision for this machine, explicit reporting,
    and no mid-round checkpoints (a round is kept whole or not at all)."""
    return dict(output_dir=str(out_dir), run_name=run_name, bf16=bf16(), use_cpu=not on_cuda(),
                gradient_checkpointing=False, report_to=report_to(), save_strategy="no",
                logging_steps=1, seed=0, dataloader_num_workers=0,
                disable_tqdm=True)  # a round draws its own bar per phase (see `progress`)


def accumulation_steps(batch_size: int, micro_batch: int) -> int:
    """Micro-batches per optimiser step: the step sees `batch_size` examples, the memory only
    `micro_batch` at a time."""
    if micro_batch < 1 or batch_size % micro_batch:
        raise ValueError(f"batch_size ({batch_size}) must be a multiple of micro_batch ({micro_batch})")
    return batch_size // micro_batch


def load_tokenizer(base_path: Path, padding_side: str = "left"):
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    tokenizer.padding_side = padding_side
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def continues(live_adapter: Path | None, lora: LoraSettings) -> bool:
    """Whether a round trains on from the live adapter: only from one of the kind it trains."""
    return live_adapter is not None and adapters.kind(live_adapter) == lora.kind


def merges_live(live_adapter: Path | None, lora: LoraSettings) -> bool:
    """Whether the live IA3 scales are merged into the weights and a fresh IA3 trained on top.

    TRL's trainers make their frozen reference by copying the adapter's weights to a "ref"
    adapter by name, and TRL 1.16 copies only names holding ".default.", which LoRA's do
    (lora_A.default.weight) and IA3's do not (ia3_l.default): a continued IA3 would be measured
    against unit scales, the base model. On the merged weights unit scales are the live policy.
    """
    return lora.kind == "ia3" and continues(live_adapter, lora)


def policy_for_training(base_path: Path, live_adapter: Path | None, lora: LoraSettings) -> PeftModel:
    """The live policy as a trainable adapter named "default", equal to the live version.

    A LoRA round continues the live LoRA (TRL copies it into a frozen "ref" adapter, so the
    reference is the policy the round started from); an IA3 round trains fresh scales on top
    of the live ones (see `merges_live`). After a version of the other kind, or on the base
    model, a round starts a fresh adapter on the base model: LoRA's zero-initialised update and
    IA3's unit scales make it equal to version 0.
    """
    model = AutoModelForCausalLM.from_pretrained(base_path, dtype=models.dtype())
    if merges_live(live_adapter, lora):
        live = PeftModel.from_pretrained(model, str(live_adapter))
        targets = set(live.peft_config["default"].target_modules)
        fresh = get_peft_model(live.merge_and_unload(), lora.config("CAUSAL_LM", model))
        if set(fresh.peft_config["default"].target_modules) != targets:  # said now, not after training
            raise ValueError(f"the live IA3 adapter {live_adapter} scales {sorted(targets)}, and this round's "
                             f"would scale {sorted(fresh.peft_config['default'].target_modules)}")
        return fresh
    if continues(live_adapter, lora):
        return PeftModel.from_pretrained(model, str(live_adapter), is_trainable=True)
    if live_adapter is not None:
        log.warning("the live version is a %s adapter and this round trains %s: it starts a fresh "
                    "adapter on the base model", adapters.kind(live_adapter), lora.kind)
    return get_peft_model(model, lora.config("CAUSAL_LM", model))


def save_trained_adapter(model: PeftModel, out_dir: Path, live_adapter: Path | None, lora: LoraSettings) -> None:
    """Only "default" (the frozen "ref" copy TRL added would otherwise land in out_dir/ref/); an
    IA3 trained on merged live scales is saved as their product, to apply to the base model."""
    model.save_pretrained(str(out_dir), selected_adapters=["default"])
    if merges_live(live_adapter, lora):
        weights = Path(out_dir) / "adapter_model.safetensors"
        trained, live = load_file(weights), load_file(Path(live_adapter) / "adapter_model.safetensors")
        save_file({k: (v.float() * live[k].float()).to(v.dtype) for k, v in trained.items()}, weights,
                  metadata={"format": "pt"})


def train(trainer):
    """`trainer.train()` without transformers' printed dict of figures at every step: a round
    reports its steps itself (see `progress`), and the dicts buried the log's other lines."""
    trainer.remove_callback(PrinterCallback)
    return trainer.train()


def last_logged(trainer, *keys: str) -> dict:
    """The latest logged value of each key: where the round ended, not its average. A key never
    logged (RLOO's KL when beta is 0) is left out rather than invented."""
    history = trainer.state.log_history
    return {key: next(float(h[key]) for h in reversed(history) if key in h)
            for key in keys if any(key in h for h in history)}
