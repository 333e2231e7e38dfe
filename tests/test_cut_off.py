"""An answer that ran into max_new_tokens is marked cut off, from sampling to the annotator."""
import random

from app.pair_queue import PairQueue, QueueConfig
from policy.sampling import SamplingConfig, sample_pairs
from storage import queries
from storage.db import open_db

SHORT = SamplingConfig(max_new_tokens=4)


def test_an_answer_without_an_end_of_sequence_is_cut_off(registry):
    model, tokenizer = registry.model, registry.tokenizer
    [pair] = sample_pairs(model, tokenizer, ["Say hi."], SHORT, seed=5)
    assert pair.cut_off == (True, True)  # four tokens are too few for any of the tiny model's answers
    # Make the token it writes first the end-of-sequence: the same seed then ends at once.
    first = tokenizer(pair.completions[0], add_special_tokens=False)["input_ids"][0]
    original = tokenizer.eos_token_id
    try:
        tokenizer.eos_token_id = first
        [ended] = sample_pairs(model, tokenizer, ["Say hi."], SHORT, seed=5)
    finally:
        tokenizer.eos_token_id = original
    assert ended.cut_off[0] is False
    assert len(ended.completions[0]) < len(pair.completions[0])  # it did stop early


def test_the_queue_stores_it_and_the_annotator_is_told(tmp_path, registry):
    db_path = tmp_path / "q.db"
    db = open_db(db_path)
    queries.ensure_base_version(db, "tiny")
    queries.add_prompts(db, [{"text": "Say hi."}], source="t")
    queue = PairQueue(db_path, registry, QueueConfig(sampling=SHORT), random.Random(0))
    queue.generate(0, 1)
    assert db.execute("SELECT cut_off_0, cut_off_1 FROM pairs").fetchone() == (1, 1)
    shown = queue.next_pair("alice")
    assert shown["a_cut_off"] and shown["b_cut_off"]
