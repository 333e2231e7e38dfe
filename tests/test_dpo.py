"""DPO on the tiny model: a round teaches held-out prompts the annotators' preference, saves a
loadable adapter, and a second round starts from (and is regularised towards) the first."""
import dataclasses
import math

import pytest
import torch
from peft import PeftModel, get_peft_model
from safetensors import safe_open
from transformers import AutoModelForCausalLM, TrainerCallback

from policy import models
from tests.conftest import MODEL_CACHE, random_adapter
from trainer import common
from trainer.dpo import DPOSettings, logprob_margin, train_dpo

# The DPO loss alone (no supervised term), whose value at the reference is exactly log 2.
SETTINGS = DPOSettings(lr=3e-3, epochs=2, batch_size=8, micro_batch=8, max_length=128, sft_weight=0.0)


def pairs(first: int, n: int) -> list[dict]:
    """Annotators always prefer the polite answer; prompts differ, answers are the same style."""
    return [{"prompt": [{"role": "user", "content": f"Question {i}: what is {i} plus {i}?"}],
             "chosen": [{"role": "assistant", "content": f"Happy to help! It is {2 * i}."}],
             "rejected": [{"role": "assistant", "content": f"{2 * i}, obviously. Go away."}],
             "margin": 0.0, "vote_id": i, "pair_id": i, "prompt_id": i, "version_id": 0, "annotator": "alice"}
            for i in range(first, first + n)]


TRAIN, HELDOUT = pairs(0, 8), pairs(100, 8)


class LossLog(TrainerCallback):
    def __init__(self):
        self.losses = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if "loss" in logs:
            self.losses.append(logs["loss"])


@pytest.fixture(scope="module")
def base():
    return models.checkpoint_dir("tiny", MODEL_CACHE)


def heldout_margin(base, adapter=None) -> float:
    model = AutoModelForCausalLM.from_pretrained(base)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, str(adapter))
    return logprob_margin(model, common.load_tokenizer(base), HELDOUT)


@pytest.fixture(scope="module")
def round1(base, tmp_path_factory):
    out = tmp_path_factory.mktemp("round1") / "adapter"
    return out, train_dpo(base, None, TRAIN, SETTINGS, out, run_name="test-dpo-1")


def test_round_raises_heldout_margin(base, round1):
    out, metrics = round1
    assert heldout_margin(base, out) > heldout_margin(base) + 1.0
    assert metrics["dpo_train_pairs"] == len(TRAIN)
    assert math.isfinite(metrics["dpo_loss"]) and metrics["dpo_loss"] < math.log(2)
    assert metrics["dpo_samples_per_second"] > 0


def test_saves_only_the_trained_adapter(round1):
    out, _ = round1
    names = {p.name for p in out.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= names
    assert not any(p.is_dir() for p in out.iterdir())  # no "ref/" copy beside it
    with safe_open(out / "adapter_model.safetensors", "pt") as f:
        keys = list(f.keys())
    assert keys and not any(".ref." in k for k in keys)


def test_second_round_continues_from_live_adapter(base, round1, tmp_path):
    out1, _ = round1
    losses = LossLog()
    out2 = tmp_path / "adapter"
    train_dpo(base, out1, TRAIN, dataclasses.replace(SETTINGS, epochs=1), out2, run_name="test-dpo-2",
              callbacks=[losses])
    # The policy starts equal to its reference (the live adapter), so the first loss is log 2;
    # against the base model it would already be lower after round 1.
    assert losses.losses[0] == pytest.approx(math.log(2), abs=1e-4)
    assert heldout_margin(base, out2) > heldout_margin(base, out1)


def test_lora_on_the_top_layers_adapts_only_those_layers():
    base = AutoModelForCausalLM.from_pretrained(models.checkpoint_dir("tiny", MODEL_CACHE))
    model = get_peft_model(base, common.LoraSettings(top_layers=1).config("CAUSAL_LM", base))
    adapted = {name.split(".layers.")[1].split(".")[0] for name, _ in model.named_parameters() if "lora_A" in name}
    assert adapted == {str(base.config.num_hidden_layers - 1)}


def test_micro_batches_change_the_memory_not_what_a_step_learns(base, tmp_path):
    """One optimiser step on 8 pairs from the same adapter, taken whole and one pair at a time
    (the default): the same update, up to float rounding."""
    start = random_adapter(tmp_path / "start")
    weights = []
    for micro in (8, 1):
        out = tmp_path / f"micro-{micro}"
        train_dpo(base, start, TRAIN, dataclasses.replace(SETTINGS, micro_batch=micro, max_steps=1), out)
        with safe_open(str(out / "adapter_model.safetensors"), "pt") as f:
            weights.append({k: f.get_tensor(k) for k in f.keys()})
    with safe_open(str(start / "adapter_model.safetensors"), "pt") as f:
        moved = sum(float((weights[1][k] - f.get_tensor(k)).abs().sum()) for k in f.keys())
    assert moved > 0 and weights[0].keys() == weights[1].keys()
    # Adam's first step is about lr * sign(gradient): where a gradient is ~0, rounding may flip it.
    same = sum(int(torch.isclose(weights[0][k], weights[1][k], atol=1e-5).sum()) for k in weights[0])
    total = sum(w.numel() for w in weights[0].values())
    assert same / total > 0.99
    with pytest.raises(ValueError, match="multiple of micro_batch"):
        train_dpo(base, None, TRAIN, dataclasses.replace(SETTINGS, micro_batch=3), tmp_path / "bad")
