"""SFT on the tiny model: a demonstrated answer becomes more likely, and the rows a round trains
on are annotators' corrections and imported answers, never to a held-out prompt."""
import json

import pytest
from peft import PeftModel
from transformers import AutoModelForCausalLM

from policy import models
from storage import imports, queries
from storage.exports import is_heldout
from tests.conftest import MODEL_CACHE, add_pair, show
from trainer import data
from trainer.dpo import completion_logprobs
from trainer.sft import SFTSettings, example, train_sft

PROMPTS = [f"Suggest a snack for day {i}." for i in range(8)]
ANSWER = "A ripe banana, sliced."


@pytest.fixture(scope="module")
def base():
    return models.checkpoint_dir("tiny", MODEL_CACHE)


def likelihood(model, tokenizer) -> float:
    prompts = [[{"role": "user", "content": p}] for p in PROMPTS]
    return completion_logprobs(model, tokenizer, prompts, [[{"role": "assistant", "content": ANSWER}]] * 8).mean().item()


def test_sft_makes_the_demonstrated_answer_more_likely(base, tmp_path):
    from trainer.common import load_tokenizer
    tokenizer = load_tokenizer(base)
    before = likelihood(AutoModelForCausalLM.from_pretrained(base), tokenizer)
    cfg = SFTSettings(lr=5e-3, epochs=3, max_length=64)
    metrics = train_sft(base, None, [example([{"role": "user", "content": p}], ANSWER) for p in PROMPTS],
                        cfg, tmp_path / "adapter", run_name="test-sft")
    after = likelihood(PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base),
                                                 str(tmp_path / "adapter")), tokenizer)
    assert metrics["sft_steps"] == cfg.steps(8) == 3 and metrics["sft_examples"] == 8
    assert after > before + 1.0, (before, after)  # nats over the answer's ~10 tokens


def test_no_examples_is_a_clear_error(base, tmp_path):
    with pytest.raises(ValueError, match="no SFT examples"):
        train_sft(base, None, [], SFTSettings(), tmp_path / "adapter")


def test_a_round_fine_tunes_on_corrections_and_imports_but_never_held_out_prompts(db, tmp_path):
    prompts = [f"Question {i}?" for i in range(30)]
    for prompt in prompts:
        pair_id = add_pair(db, prompt, ("first", "second"))
        shown = show(db)
        queries.record_vote(db, "alice", pair_id, "a", correction=f"Corrected: {prompt}")
        assert shown["pair_id"] == pair_id
    rows = [{"prompt": p, "completion": f"Imported: {p}"} for p in prompts[:10]] + \
        [{"prompt": "Never asked here.", "completion": "Imported."}]
    (tmp_path / "refs.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    imports.import_demonstration_file(db, tmp_path / "refs.jsonl")
    ids = {r["text"]: r["id"] for r in db.query("SELECT id, text FROM prompts")}
    held = {p for p in prompts if is_heldout(ids[p])}
    assert held and len(held) < len(prompts)

    examples = data.demonstrations(db, 0.2)
    answers = {(e["prompt"][-1]["content"], e["completion"][0]["content"]) for e in examples}
    assert answers == {(p, f"Corrected: {p}") for p in prompts if p not in held} | \
        {(p, f"Imported: {p}") for p in prompts[:10] if p not in held} | {("Never asked here.", "Imported.")}
    assert all(e["completion"][0]["role"] == "assistant" and len(e["completion"]) == 1 for e in examples)
