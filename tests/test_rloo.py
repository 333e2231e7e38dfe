"""RLOO on the tiny model: a few steps end to end against a trained reward model, and an adapter
the app can load."""
import math

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, TrainerCallback

from policy import models
from tests.conftest import MODEL_CACHE
from trainer.reward_model import RewardModel, RewardModelConfig, train_reward_model
from trainer.rloo import RLOOSettings, train_rloo

SETTINGS = RLOOSettings(num_generations=2, batch_size=4, steps=2, max_completion_length=8, lr=1e-3)
PROMPTS = ["Name a colour.", "Say something kind.", "What is two plus two?", "Write one word."]


@pytest.fixture(scope="module")
def base():
    return models.checkpoint_dir("tiny", MODEL_CACHE)


@pytest.fixture(scope="module")
def reward_model(base, tmp_path_factory):
    """A reward model fitted to a few judgements preferring short answers."""
    def row(prompt: str, chosen: str, rejected: str) -> dict:
        return {"prompt": [{"role": "user", "content": prompt}], "margin": 0.0,
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}]}
    rows = [row(p, "Yes, it is.", f"Well, about {p.lower()} there is a lot to say.") for p in PROMPTS]
    out = tmp_path_factory.mktemp("reward_model")
    train_reward_model(base, rows, rows, RewardModelConfig(max_length=64), out)
    return RewardModel.load(out)


@pytest.fixture(scope="module")
def trained(base, reward_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("rloo") / "adapter"
    return out, train_rloo(base, None, PROMPTS, reward_model, SETTINGS, out, run_name="test-rloo")


def test_round_reports_finite_reward_and_kl(trained):
    _, metrics = trained
    assert metrics["rloo_steps"] == SETTINGS.steps
    assert math.isfinite(metrics["rloo_reward"]) and math.isfinite(metrics["rloo_kl"])
    assert 0 < metrics["rloo_completion_length"] <= SETTINGS.max_completion_length


def test_saves_a_trained_adapter_that_loads(base, trained):
    out, _ = trained
    assert not any(p.is_dir() for p in out.iterdir())  # no "ref/" copy beside it
    weights = load_file(out / "adapter_model.safetensors")
    # A fresh LoRA starts with B = 0; a trained one has moved it.
    assert any(w.abs().sum() > 0 for name, w in weights.items() if "lora_B" in name)
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        before = AutoModelForCausalLM.from_pretrained(base)(input_ids=ids).logits
        after = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), str(out))(input_ids=ids).logits
    assert not torch.allclose(before, after)


class KLLog(TrainerCallback):
    def __init__(self):
        self.kl = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if "kl" in logs:
            self.kl.append(logs["kl"])


def test_continues_from_and_stays_near_the_live_adapter(base, reward_model, trained, tmp_path):
    live, _ = trained
    log = KLLog()
    train_rloo(base, live, PROMPTS, reward_model, SETTINGS, tmp_path / "adapter", callbacks=[log])
    # The first answers come from the live adapter itself, so their KL to the reference is zero;
    # measured against the base model, round 1's update would show.
    assert log.kl[0] == pytest.approx(0.0, abs=1e-5)
    assert log.kl[-1] != 0.0
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()
