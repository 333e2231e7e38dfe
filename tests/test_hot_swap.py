"""Hot-swap: a promoted adapter starts answering in a running queue without a restart."""
import random
import threading
import time

import pytest

from app.pair_queue import PairQueue, QueueConfig
from policy.registry import PolicyRegistry
from policy.sampling import SamplingConfig
from storage import queries, rounds
from storage.db import open_db

from .conftest import MODEL_CACHE, random_adapter, wait_for

FAST = SamplingConfig(max_new_tokens=8)


@pytest.fixture
def swap_setup(tmp_path):
    db_path = tmp_path / "swap.db"
    db = open_db(db_path)
    queries.ensure_base_version(db, "tiny")
    queries.add_prompts(db, [{"text": f"Tell me about topic {i}."} for i in range(40)], source="t")
    adapter = random_adapter(tmp_path / "adapter-v1")
    v1 = rounds.add_version(db, parent_id=0, adapter_path=str(adapter), algo="dpo")
    return db_path, db, v1


def test_swapped_version_answers_differently_and_base_still_answers(swap_setup):
    _, db, v1 = swap_setup
    registry = PolicyRegistry.load("tiny", MODEL_CACHE)
    before = registry.sample_pairs(0, ["Tell me a story."], FAST, seed=3)[0].completions
    registry.ensure_loaded(v1, rounds.get_version(db, v1)["adapter_path"])
    assert registry.sample_pairs(v1, ["Tell me a story."], FAST, seed=3)[0].completions != before
    assert registry.sample_pairs(0, ["Tell me a story."], FAST, seed=3)[0].completions == before
    with pytest.raises(KeyError, match="not loaded"):
        registry.sample_pairs(v1 + 1, ["Tell me a story."], FAST, seed=3)


def test_promotion_under_concurrent_next_pair_calls(swap_setup):
    db_path, db, v1 = swap_setup
    registry = PolicyRegistry.load("tiny", MODEL_CACHE)
    queue = PairQueue(db_path, registry, QueueConfig(min_ready=3, per_annotator=0, batch=1, idle_seconds=0.2,
                                                     sampling=FAST), random.Random(0)).start()
    served, errors, stop = [], [], threading.Event()

    def annotator(name):
        db = open_db(db_path)
        while not stop.is_set():
            try:
                pair = queue.next_pair(name)
                served.append((time.monotonic(), pair["version_id"]))
                queries.skip_pair(db, name, pair["pair_id"])
            except Exception as e:  # noqa: BLE001 - any error fails the test below
                errors.append(e)

    threads = [threading.Thread(target=annotator, args=(f"annotator-{i}",)) for i in range(4)]
    try:
        for t in threads:
            t.start()
        time.sleep(1.5)
        rounds.promote(db, v1, by="test")
        promoted_at = time.monotonic()
        deadline = promoted_at + 30
        while not any(v == v1 for _, v in served) and time.monotonic() < deadline:
            time.sleep(0.1)
        swapped_at = time.monotonic()
        time.sleep(1.5)
        stop.set()
        for t in threads:
            t.join(timeout=60)
    finally:
        stop.set()
        queue.stop()

    assert not errors, errors
    assert any(v == 0 for _, v in served), "served nothing before the swap"
    assert swapped_at - promoted_at < 10, "the new version took too long to answer"
    # A next_pair that started after the swap was seen never gets a retired version's pair.
    assert all(v == v1 for t, v in served if t > swapped_at + 0.5)
    assert queries.ready_pair_count(db, 0) == 0  # the retired version's stock was dropped


def test_rollback_goes_back_through_the_same_path(swap_setup):
    db_path, db, v1 = swap_setup
    registry = PolicyRegistry.load("tiny", MODEL_CACHE)
    queue = PairQueue(db_path, registry, QueueConfig(sampling=FAST), random.Random(0))
    rounds.promote(db, v1, by="test")
    assert queue.next_pair("alice")["version_id"] == v1
    rounds.promote(db, rounds.previous_live_version(db), by="test")
    assert queue.next_pair("bob")["version_id"] == 0


def test_annotators_never_wait_for_a_promotion(swap_setup):
    db_path, db, v1 = swap_setup
    registry = PolicyRegistry.load("tiny", MODEL_CACHE)
    queue = PairQueue(db_path, registry, QueueConfig(min_ready=2, per_annotator=0, batch=2,
                                                     sampling=FAST), random.Random(0)).start()
    try:
        wait_for(lambda: queries.ready_pair_count(db, 0) >= 2)
        with registry._lock:  # the model is busy: the new version cannot answer yet
            rounds.promote(db, v1, by="test")
            served = []
            waiter = threading.Thread(target=lambda: served.append(queue.next_pair("alice")))
            waiter.start()
            waiter.join(timeout=5)
            assert served and served[0]["version_id"] == 0  # the old version's stock, at once
        wait_for(lambda: queries.ready_pair_count(db, 0) == 0)  # dropped once v1 has stock
        assert queries.ready_pair_count(db, v1) and queue.next_pair("bob")["version_id"] == v1
    finally:
        queue.stop()


def test_unloading_every_adapter_leaves_the_base_answering_and_frees_copies(tmp_path):
    """A worker whose last adapter is unloaded still answers as version 0, and a base-model copy
    made for a second adapter kind is dropped with that kind's last adapter."""
    registry = PolicyRegistry.load("tiny", MODEL_CACHE)
    base = registry.sample_pairs(0, ["Tell me a story."], FAST, seed=3)[0].completions
    registry.ensure_loaded(1, random_adapter(tmp_path / "lora"))
    registry.ensure_loaded(2, random_adapter(tmp_path / "ia3", kind="ia3"))
    ia3 = registry.sample_pairs(2, ["Tell me a story."], FAST, seed=3)[0].completions
    registry.unload(1)
    assert registry.sample_pairs(0, ["Tell me a story."], FAST, seed=3)[0].completions == base
    assert registry.sample_pairs(2, ["Tell me a story."], FAST, seed=3)[0].completions == ia3
    assert set(registry._by_kind) == {"ia3"}  # the LoRA-wrapped model went with its last adapter
    registry.unload(2)
    assert registry.sample_pairs(0, ["Tell me a story."], FAST, seed=3)[0].completions == base
    registry.ensure_loaded(3, tmp_path / "lora")  # and adapters load again afterwards
    assert registry.sample_pairs(3, ["Tell me a story."], FAST, seed=3)[0].completions != base
