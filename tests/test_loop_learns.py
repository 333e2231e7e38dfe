"""The loop learns, on the tiny model: an annotator who prefers answers that mention a banana
judges pairs the app's queue samples; one round later the new version mentions bananas more
often than the base did, beyond chance, as the same judge sees it on held-out prompts answered
with the same seeds; and the gate acts on what the round's reward model saw."""
import random

import pytest

from app.pair_queue import PairQueue, QueueConfig
from policy import models
from policy.registry import PolicyRegistry
from policy.sampling import SamplingConfig
from storage import queries, rounds
from storage.db import open_db
from storage.exports import is_heldout
from storage.ratings import win_rate_interval
from trainer.evaluate import AnswerCache
from policy.settings import apply_overrides
from trainer.rounds import RoundConfig, answer_cache, run_round

from .conftest import MODEL_CACHE

SAMPLING = SamplingConfig(max_new_tokens=16)  # the tiny model's answers are about ten tokens
# Measured on this data: 40 steps take "banana" from 19 to 33 of 80 held-out answers, and more
# steps add nothing. The supervised term keeps the answers whole: DPO alone wrecked them.
TINY = ["eval.sampling.max_new_tokens=16", "eval.samples=4", "reward.l2=1e-3",
        "reward.max_length=96", "dpo.lr=3e-3", "dpo.sft_weight=1.0", "dpo.epochs=8", "dpo.max_steps=40",
        "dpo.batch_size=8", "dpo.micro_batch=8", "dpo.max_length=96"]


def prefers_banana(a: str, b: str) -> str:
    return "tie" if ("banana" in a) == ("banana" in b) else "a" if "banana" in a else "b"


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    data = tmp_path_factory.mktemp("loop")
    MODEL_CACHE.mkdir(parents=True, exist_ok=True)
    (data / "models").symlink_to(MODEL_CACHE.resolve(), target_is_directory=True)
    db = open_db(data / "prefloop.db")
    queries.ensure_base_version(db, "tiny")
    queries.add_prompts(db, [{"text": f"Suggest a snack for guest {i}."} for i in range(240)], source="test")
    registry = PolicyRegistry.load("tiny", MODEL_CACHE)
    queue = PairQueue(data / "prefloop.db", registry, QueueConfig(sampling=SAMPLING), random.Random(0))
    for _ in range(15):
        queue.generate(0, 16)
    for _ in range(240):
        pair = queue.next_pair("alice")
        queries.record_vote(db, "alice", pair["pair_id"], prefers_banana(pair["a"], pair["b"]))
    cfg = apply_overrides(RoundConfig(algo="dpo", data_dir=data), TINY)
    return cfg, db, run_round(cfg)


def test_a_round_on_a_learnable_preference_beats_the_base_beyond_chance(loop):
    cfg, db, result = loop
    heldout = [p["text"] for p in queries.all_prompts(db) if is_heldout(p["id"], cfg.heldout_fraction)]
    cache = AnswerCache(answer_cache(cfg.data_dir), cfg.eval.questions(heldout), cfg.eval, models.dtype())
    new, base = cache.get(result.version_id), cache.get(0)  # kept by the round's own evaluation
    verdicts = [prefers_banana(a, b) for a, b in zip(new.texts, base.texts)]
    rate = win_rate_interval(verdicts.count("a"), verdicts.count("b"), verdicts.count("tie"))
    assert rate.games >= 120 and rate.low > 0.5, rate
    assert sum("banana" in t for t in new.texts) > 1.5 * sum("banana" in t for t in base.texts)


def test_the_gate_decides_on_the_rounds_own_figures_and_live_follows_its_decision(loop):
    """Whether the gate promotes here depends on how well a reward model learnt from ~60 decisive
    tiny-model pairs, which varies from machine to machine; that it acts on its figures does not."""
    cfg, db, result = loop
    metrics = rounds.version_metrics(db, result.version_id)
    passes, _ = cfg.gate.decide(metrics)  # the rule itself is tested in test_gate.py; here, its inputs
    assert result.promoted == passes
    assert (queries.live_version_id(db) == result.version_id) == passes
    assert result.decision.startswith("promoted: " if passes else "kept as a candidate: ")
    assert f"interval {metrics['rm_win_rate_vs_live_low']:.2f}-{metrics['rm_win_rate_vs_live_high']:.2f}" in result.decision
    assert rounds.get_round(db, result.round_id)["decision"] == result.decision
    assert {"seconds_reward_model", "seconds_dpo", "seconds_evaluate", "peak_mb_dpo"} <= set(metrics)
