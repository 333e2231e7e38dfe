"""The app against a real `python -m policy serve` worker on the tiny model: the OpenAI-style
endpoints, pairs, a promotion, and a worker killed and restarted under a running queue."""
import random
import subprocess
import sys

import httpx
import pytest

from app.pair_queue import PairQueue, QueueConfig
from policy.remote import RemotePolicy
from policy.sampling import SamplingConfig
from storage import queries, rounds
from storage.db import open_db

from .conftest import MODEL_CACHE, REPO, free_port, random_adapter, wait_for

FAST = SamplingConfig(max_new_tokens=12)


def start_worker(data, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "policy", "--data-dir", str(data), "serve", "--model", "tiny",
                             "--port", str(port)], cwd=REPO)

    def up() -> bool:
        assert proc.poll() is None, "the worker exited"
        try:
            return httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
        except httpx.HTTPError:
            return False
    wait_for(up, seconds=120)
    return proc


@pytest.fixture
def worker(tmp_path):
    MODEL_CACHE.mkdir(parents=True, exist_ok=True)
    (tmp_path / "models").symlink_to(MODEL_CACHE.resolve(), target_is_directory=True)
    port = free_port()
    proc = start_worker(tmp_path, port)
    yield tmp_path, port, proc
    proc.kill()
    proc.wait()


def chat(port, **body):
    return httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=60,
                      json={"messages": [{"role": "user", "content": "Suggest a snack."}], "max_tokens": 12, **body})


def test_the_worker_speaks_the_openai_api_the_app_uses(worker, tmp_path):
    _, port, _ = worker
    assert [m["id"] for m in httpx.get(f"http://127.0.0.1:{port}/v1/models").json()["data"]] == ["tiny"]
    answers = chat(port, model="tiny", n=2, seed=3).json()["choices"]
    assert len(answers) == 2 and all(a["message"]["content"] for a in answers)
    assert [a["finish_reason"] for a in answers] == ["stop", "stop"]  # the tiny model's answers end
    short = chat(port, model="tiny", n=2, seed=3, max_tokens=2).json()["choices"]
    assert [a["finish_reason"] for a in short] == ["length", "length"]
    missing = chat(port, model="policy-v1", seed=3)
    assert missing.status_code == 404 and "does not exist" in missing.json()["error"]["message"]
    adapter = random_adapter(tmp_path / "adapter")
    loaded = httpx.post(f"http://127.0.0.1:{port}/v1/load_lora_adapter",
                        json={"lora_name": "policy-v1", "lora_path": str(adapter)})
    assert loaded.status_code == 200
    base = chat(port, model="tiny", seed=3).json()["choices"][0]["message"]["content"]
    tuned = chat(port, model="policy-v1", seed=3).json()["choices"][0]["message"]["content"]
    assert tuned != base
    assert chat(port, model="tiny", n=0).status_code == 400


def test_pairs_a_promotion_and_a_killed_worker(worker, tmp_path):
    data, port, proc = worker
    db_path = tmp_path / "app.db"
    db = open_db(db_path)
    queries.ensure_base_version(db, "tiny")
    queries.add_prompts(db, [{"text": f"Suggest a snack for day {i}."} for i in range(30)], source="t")
    policy = RemotePolicy([f"http://127.0.0.1:{port}"], "tiny", timeout=30)
    queue = PairQueue(db_path, policy, QueueConfig(min_ready=4, per_annotator=0, batch=4, idle_seconds=0.2,
                                                   sampling=FAST), random.Random(0)).start()
    try:
        pair = queue.next_pair("alice")
        assert pair["version_id"] == 0 and pair["a"] and pair["b"]
        # Read from the endpoint's finish_reason: two tokens cut every answer off.
        [cut] = policy.sample_pairs(0, ["Suggest a snack."], SamplingConfig(max_new_tokens=2), seed=1)
        [whole] = policy.sample_pairs(0, ["Suggest a snack."], SamplingConfig(max_new_tokens=24), seed=1)
        assert cut.cut_off == (True, True) and whole.cut_off == (False, False)
        v1 = rounds.add_version(db, parent_id=0, adapter_path=str(random_adapter(tmp_path / "v1")), algo="dpo")
        rounds.promote(db, v1, by="test")
        wait_for(lambda: queries.ready_pair_count(db, v1) >= 4)
        assert queue.next_pair("bob")["version_id"] == v1
        served = httpx.get(f"http://127.0.0.1:{port}/v1/models").json()["data"]
        assert "policy-v1" in [m["id"] for m in served]

        proc.kill()
        proc.wait()
        assert queue.next_pair("carol")["version_id"] == v1  # from stock while the worker is down
        made = db.execute("SELECT count(*) FROM pairs").fetchone()[0]
        restarted = start_worker(data, port)
        try:
            # The restarted worker has no adapters; the queue loads policy-v1 again and refills.
            wait_for(lambda: db.execute("SELECT count(*) FROM pairs").fetchone()[0] > made, seconds=60)
            assert queue.next_pair("dave")["version_id"] == v1
        finally:
            restarted.kill()
            restarted.wait()
    finally:
        queue.stop()
