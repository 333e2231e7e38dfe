"""Shared fixtures: a fresh database per test, the tiny model built once and cached."""
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import random  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from storage import queries  # noqa: E402
from storage.db import open_db  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
# The tiny model is deterministic, so one copy serves every run on this checkout.
MODEL_CACHE = Path(os.environ.get("PREFLOOP_TEST_MODELS", REPO / ".cache" / "models"))
CHROMIUM = "/usr/bin/chromium"  # Debian's; never `playwright install`


@pytest.fixture
def db(tmp_path):
    return open_db(tmp_path / "test.db")


@pytest.fixture(scope="session")
def registry():
    from policy.registry import PolicyRegistry
    return PolicyRegistry.load("tiny", MODEL_CACHE)


@pytest.fixture(scope="session")
def bench_data(tmp_path_factory) -> Path:
    """A data directory for the benches that judge the tiny model's four answers to every shipped
    prompt: they sample them once, into `bench/`, and share them."""
    data = tmp_path_factory.mktemp("bench-data")
    MODEL_CACHE.mkdir(parents=True, exist_ok=True)
    (data / "models").symlink_to(MODEL_CACHE.resolve(), target_is_directory=True)
    return data


def add_pair(db, prompt="Say hello.", completions=("hello there", "hi"), version_id=0) -> int:
    """A stored pair without running a model, for storage-level tests."""
    queries.ensure_base_version(db, "tiny")
    queries.add_prompts(db, [{"text": prompt}], source="test")
    prompt_id = db.execute("SELECT id FROM prompts WHERE text = ?", [prompt]).fetchone()[0]
    return queries.add_pair(db, prompt_id=prompt_id, version_id=version_id, completions=completions,
                            sampling={"temperature": 1.0}, seed=1, prompt_truncated=False,
                            gen_seconds=0.1)


def banana_judgements(root: Path) -> Path:
    """A data directory with 40 judged pairs where the answer mentioning a banana always wins."""
    MODEL_CACHE.mkdir(parents=True, exist_ok=True)
    (root / "models").symlink_to(MODEL_CACHE.resolve(), target_is_directory=True)
    db = open_db(root / "prefloop.db")
    queries.ensure_base_version(db, "tiny")
    queries.add_prompts(db, [{"text": f"Suggest a snack for day {i}."} for i in range(40)], source="t")
    for prompt in db.query("SELECT id FROM prompts ORDER BY id"):
        pair_id = queries.add_pair(db, prompt_id=prompt["id"], version_id=0,
                                   completions=("Have a banana.", "Have nothing."), sampling={},
                                   seed=0, prompt_truncated=False, gen_seconds=0)
        shown = queries.show_next_pair(db, "alice", 0, random.Random(pair_id))
        banana_first = shown["a"] == "Have a banana."
        queries.record_vote(db, "alice", pair_id, "a" if banana_first else "b",
                            *((9, 2) if banana_first else (2, 9)))
    return root


def show(db, annotator="alice", seed=0) -> dict:
    return queries.show_next_pair(db, annotator, 0, random.Random(seed))


def wait_for(condition, seconds=60):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(data: Path, ready: int, port: int | None = None, mode: str = "both"):
    """The real app on the tiny model, served on a free port (or `port`, to restart one), with
    annotators alice, bob, carol and crowd-0 to crowd-49, and the admin root; `mode` is the
    Annotate tab's pick, score or both."""
    from storage import accounts
    from app.pair_queue import QueueConfig
    from app.server import AppConfig, serve
    from policy.sampling import SamplingConfig

    MODEL_CACHE.mkdir(parents=True, exist_ok=True)
    if not (data / "models").exists():  # else a restart
        (data / "models").symlink_to(MODEL_CACHE.resolve(), target_is_directory=True)
    team = {name: {"password": accounts.hash_password(f"{name}-pw"), "role": "annotator"}
            for name in ("alice", "bob", "carol")}  # carol is the one the lockout test locks
    team["root"] = {"password": accounts.hash_password("root-pw"), "role": "admin"}
    crowd = accounts.hash_password("crowd-pw")  # fifty annotators for the login storm, one hash
    team |= {f"crowd-{i}": {"password": crowd, "role": "annotator"} for i in range(50)}
    (data / "users.json").write_text(json.dumps(team))  # as earlier versions kept them: imported
    cfg = AppConfig(model="tiny", data_dir=data, port=port or free_port(), mode=mode,
                    queue=QueueConfig(min_ready=ready, batch=2, sampling=SamplingConfig(max_new_tokens=16)))
    demo, queue = serve(cfg, block=False)
    return cfg, demo, queue


def api_client(cfg, name: str, password: str | None = None):
    """gradio_client logged in to the app at cfg.port as name (password name-pw by default)."""
    from gradio_client import Client
    return Client(f"http://127.0.0.1:{cfg.port}", auth=(name, password or f"{name}-pw"), verbose=False)


@pytest.fixture(scope="module")
def live_app(tmp_path_factory):
    cfg, demo, queue = start_app(tmp_path_factory.mktemp("data"), ready=4)
    yield cfg
    queue.stop()
    demo.close()


def random_adapter(path: Path, kind: str = "lora") -> Path:
    """A LoRA (or IA3) adapter for the tiny model with random weights, so it visibly changes answers."""
    import torch
    from peft import IA3Config, LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from policy.models import checkpoint_dir
    base = AutoModelForCausalLM.from_pretrained(checkpoint_dir("tiny", MODEL_CACHE))
    torch.manual_seed(1)
    config = IA3Config(init_ia3_weights=False, task_type="CAUSAL_LM") if kind == "ia3" else \
        LoraConfig(r=8, lora_alpha=64, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM")
    model = get_peft_model(base, config)
    model.save_pretrained(path)
    return path


@pytest.fixture
def log_in_browser():
    """A real Chromium: `log_in_browser(port, name)` is a page logged in as name (password
    name-pw) on the app at that port."""
    if not shutil.which(CHROMIUM):
        pytest.skip("needs Debian chromium (.ci/run installs it)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])

        def log_in(port: int, name: str):
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/")
            page.get_by_label("username").fill(name)
            page.get_by_label("password").fill(f"{name}-pw")
            page.get_by_role("button", name="Login").click()
            return page
        yield log_in
        browser.close()


def judge(db, annotator: str, verdict: str, seconds_seed: int = 0, **kwargs) -> int:
    """Show `annotator` their next pair of version 0 and vote so that the verdict on its stored
    answers is `verdict` ("0", "1", "tie", "both_bad"), whichever side each was shown on."""
    shown = queries.show_next_pair(db, annotator, 0, random.Random(seconds_seed))
    assert shown is not None, f"nothing to show {annotator}"
    order = db.execute("SELECT shown_order FROM shows WHERE pair_id = ? AND annotator = ?",
                       [shown["pair_id"], annotator]).fetchone()[0]
    choice = {order[0]: "a", order[1]: "b"}.get(verdict, verdict)
    return queries.record_vote(db, annotator, shown["pair_id"], choice, **kwargs)
