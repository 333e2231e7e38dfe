"""IA3 adapters beside LoRA: a round trains one, the app and a worker hot-swap it, and an
endpoint that loads LoRA only (vLLM) is never sent one."""
import dataclasses
import json
import math
import os
import subprocess
import sys
from types import SimpleNamespace

import gradio as gr
import httpx
import pytest

from app.admin import Admin
from app.users import add_account
from policy.models import checkpoint_dir
from policy.registry import PolicyRegistry
from policy.remote import AdapterRefused, RemotePolicy
from policy.sampling import SamplingConfig
from storage import queries, rounds
from storage.db import open_db
from trainer.common import LoraSettings
from trainer.dpo import train_dpo
from trainer.rounds import run_round

from .conftest import MODEL_CACHE, REPO, banana_judgements, random_adapter
from .test_dpo import SETTINGS, TRAIN, LossLog, heldout_margin
from .test_round import FAST, config
from .test_worker import chat, worker  # noqa: F401 - the fixture

SHORT = SamplingConfig(max_new_tokens=8)
PROMPTS = ["Tell me a story.", "Name a fruit."]


def answers(registry: PolicyRegistry, version: int) -> list[str]:
    return [a.text for [a] in registry.complete(version, PROMPTS, SHORT, seed=3)]


def test_an_ia3_version_answers_beside_a_lora_one_and_the_base(tmp_path):
    registry = PolicyRegistry.load("tiny", MODEL_CACHE)
    base = answers(registry, 0)
    registry.ensure_loaded(1, random_adapter(tmp_path / "lora"))
    lora = answers(registry, 1)
    registry.ensure_loaded(2, random_adapter(tmp_path / "ia3", kind="ia3"))
    ia3 = answers(registry, 2)
    assert ia3 != base and ia3 != lora and lora != base
    assert answers(registry, 1) == lora and answers(registry, 0) == base  # loading IA3 changed neither

    alone = PolicyRegistry.load("tiny", MODEL_CACHE)
    alone.ensure_loaded(2, tmp_path / "ia3")
    assert answers(alone, 2) == ia3  # the same answers as when it is the only adapter
    registry.unload(2)
    with pytest.raises(KeyError, match="not loaded"):
        answers(registry, 2)
    assert answers(registry, 1) == lora


def adapter_config(data, round_id: int) -> dict:
    return json.loads((data / "adapters" / f"round-{round_id}" / "adapter_config.json").read_text())


def test_ia3_rounds_go_live_and_stay_ia3_until_asked_for_lora(tmp_path):
    data = banana_judgements(tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "trainer", "--data-dir", str(data), "round", "--algo", "dpo", "--adapter", "ia3",
         *[arg for s in [*FAST, "gate.min_win_rate=-1"] for arg in ("--set", s)]],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    db = open_db(data / "prefloop.db")
    assert queries.live_version_id(db) == 1 and adapter_config(data, 1)["peft_type"] == "IA3"
    record = json.loads(rounds.get_round(db, 1)["config"])
    assert record["adapter"] == "ia3" and record["dpo"]["lora"]["kind"] == record["sft"]["lora"]["kind"] == "ia3"

    from safetensors.torch import load_file
    scales = load_file(data / "adapters" / "round-1" / "adapter_model.safetensors")
    assert scales and any((s != 1).any() for s in scales.values())  # trained away from the identity
    registry = PolicyRegistry.load("tiny", data / "models")
    registry.ensure_loaded(1, rounds.get_version(db, 1)["adapter_path"])
    assert all(answers(registry, 1))  # the registry serves it (its answers differ: see the first test)

    # A round launched without --adapter (the Admin tab, `trainer watch`) keeps the live kind.
    second = run_round(config(data, "dpo", "gate.min_win_rate=-1"))
    assert second.promoted and adapter_config(data, second.round_id)["peft_type"] == "IA3"
    third = run_round(config(data, "dpo", "gate.min_win_rate=-1", "adapter=lora"))  # a fresh LoRA on the base
    assert third.promoted and adapter_config(data, third.round_id)["peft_type"] == "LORA"


def test_an_ia3_round_continues_from_the_live_ia3_policy_and_saves_the_whole_of_it(tmp_path):
    base = checkpoint_dir("tiny", MODEL_CACHE)
    settings = dataclasses.replace(SETTINGS, lora=LoraSettings(kind="ia3"))
    first, second, losses = tmp_path / "first", tmp_path / "second", LossLog()
    train_dpo(base, None, TRAIN, settings, first, run_name="test-ia3-1")
    assert heldout_margin(base, first) > heldout_margin(base) + 1.0  # IA3 learns the preference too
    train_dpo(base, first, TRAIN, dataclasses.replace(settings, epochs=1), second, run_name="test-ia3-2",
              callbacks=[losses])
    # The reference is the live IA3 policy, as for LoRA: the first loss is log 2 (against the
    # base model it would already be lower), and the saved scales carry both rounds' learning.
    assert losses.losses[0] == pytest.approx(math.log(2), abs=1e-4)
    assert heldout_margin(base, second) > heldout_margin(base, first)


def fake_vllm(loads: list) -> httpx.MockTransport:
    """What vLLM answers: its models are its own, and it would take any adapter it is sent."""
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "smollm2", "owned_by": "vllm", "parent": None}]})
        if request.url.path == "/v1/load_lora_adapter":
            loads.append(json.loads(request.content)["lora_name"])
            return httpx.Response(200, text="Success")
        return httpx.Response(404)
    return httpx.MockTransport(handle)


def test_an_ia3_version_is_never_sent_to_vllm_and_its_promotion_is_refused(tmp_path):
    loads = []
    remote = RemotePolicy(["http://vllm:8000"], "smollm2")
    remote._http = httpx.Client(transport=fake_vllm(loads))
    lora, ia3 = random_adapter(tmp_path / "lora"), random_adapter(tmp_path / "ia3", kind="ia3")
    remote.ensure_loaded(1, lora)
    assert loads == ["policy-v1"]
    with pytest.raises(AdapterRefused, match="loads LoRA adapters only .* an IA3 adapter"):
        remote.ensure_loaded(2, ia3)
    assert loads == ["policy-v1"]

    db = open_db(tmp_path / "prefloop.db")
    queries.ensure_base_version(db, "smollm2")
    add_account(db, "root", "root-pw", "admin", by="test")
    v1 = rounds.add_version(db, parent_id=0, adapter_path=str(lora), algo="dpo")
    v2 = rounds.add_version(db, parent_id=0, adapter_path=str(ia3), algo="dpo")
    admin = Admin(tmp_path, tmp_path / "prefloop.db", remote.check_servable)
    root = SimpleNamespace(username="root")
    assert admin.promote(v1, root) == v1
    with pytest.raises(gr.Error, match="an IA3 adapter: serve it with workers"):
        admin.promote(v2, root)
    assert queries.live_version_id(db) == v1 and loads == ["policy-v1"]


def test_a_worker_hot_swaps_an_ia3_adapter(worker, tmp_path):  # noqa: F811 - the fixture
    _, port, _ = worker
    remote = RemotePolicy([f"http://127.0.0.1:{port}"], "tiny")
    remote.ensure_loaded(1, random_adapter(tmp_path / "ia3", kind="ia3"))  # a prefloop worker takes it
    base = [c["message"]["content"] for c in chat(port, model="tiny", n=2, seed=3).json()["choices"]]
    swapped = [c["message"]["content"] for c in chat(port, model="policy-v1", n=2, seed=3).json()["choices"]]
    assert all(swapped) and swapped != base
