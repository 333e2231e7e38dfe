"""SFT on the tiny model: a demonstrated answer becomes more likely, the loss is on the answer
and its end of turn only, and the rows a round trains on are annotators' corrections and
imported answers, never to a held-out prompt nor from an annotator the round left out."""
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
from trainer.common import load_tokenizer
from trainer.sft import SFTSettings, example, sft_trainer, train_sft

PROMPTS = [f"Suggest a snack for day {i}." for i in range(8)]
ANSWER = "A ripe banana, sliced."


@pytest.fixture(scope="module")
def base():
    return models.checkpoint_dir("tiny", MODEL_CACHE)


def likelihood(model, tokenizer) -> float:
    prompts = [[{"role": "user", "content": p}] for p in PROMPTS]
    return completion_logprobs(model, tokenizer, prompts, [[{"role": "assistant", "content": ANSWER}]] * 8).mean().item()


def test_sft_makes_the_demonstrated_answer_more_likely(base, tmp_path):
    tokenizer = load_tokenizer(base)
    before = likelihood(AutoModelForCausalLM.from_pretrained(base), tokenizer)
    cfg = SFTSettings(lr=5e-3, epochs=3, max_length=64)
    metrics = train_sft(base, None, [example([{"role": "user", "content": p}], ANSWER) for p in PROMPTS],
                        cfg, tmp_path / "adapter", run_name="test-sft")
    after = likelihood(PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base),
                                                 str(tmp_path / "adapter")), tokenizer)
    assert metrics["sft_steps"] == cfg.steps(8) == 3 and metrics["sft_examples"] == 8
    assert after > before + 1.0, (before, after)  # nats over the answer's ~10 tokens


def test_the_loss_is_on_the_answer_and_its_end_of_turn_not_the_prompt(base, tmp_path):
    trainer = sft_trainer(base, None, [example([{"role": "user", "content": PROMPTS[0]}], ANSWER)],
                          SFTSettings(max_length=64), tmp_path / "adapter")
    row = trainer.train_dataset[0]
    tokenizer = load_tokenizer(base)
    learned = tokenizer.decode([t for t, label in zip(row["input_ids"], row["labels"]) if label != -100])
    assert learned.strip() == ANSWER + "<|im_end|>"
    assert PROMPTS[0] in tokenizer.decode([t for t, label in zip(row["input_ids"], row["labels"]) if label == -100])


def test_no_examples_is_a_clear_error(base, tmp_path):
    with pytest.raises(ValueError, match="no SFT examples"):
        train_sft(base, None, [], SFTSettings(), tmp_path / "adapter")


def corrections(db, prompts, annotator="alice"):
    for prompt in prompts:
        pair_id = add_pair(db, prompt, ("first", "second"))
        assert show(db, annotator)["pair_id"] == pair_id
        queries.record_vote(db, annotator, pair_id, "a", correction=f"Corrected by {annotator}: {prompt}")


def test_a_round_fine_tunes_on_corrections_and_imports_but_never_held_out_prompts(db, tmp_path):
    prompts = [f"Question {i}?" for i in range(30)]
    corrections(db, prompts)
    corrections(db, ["Asked of bob?"], "bob")
    rows = [{"prompt": p, "completion": f"Imported: {p}"} for p in prompts[:10]] + \
        [{"prompt": "Never asked here.", "completion": "Imported."}]
    (tmp_path / "refs.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    imports.import_demonstration_file(db, tmp_path / "refs.jsonl")
    ids = {r["text"]: r["id"] for r in db.query("SELECT id, text FROM prompts")}
    held = {p for p in prompts if is_heldout(ids[p])}
    assert held and len(held) < len(prompts) and not is_heldout(ids["Asked of bob?"])

    def answers(examples):
        return {(e["prompt"][-1]["content"], e["completion"][0]["content"]) for e in examples}
    examples = data.demonstrations(db, 0.2, excluded=["bob"], max_imported=100, seed=0)
    assert answers(examples) == {(p, f"Corrected by alice: {p}") for p in prompts if p not in held} | \
        {(p, f"Imported: {p}") for p in prompts[:10] if p not in held} | {("Never asked here.", "Imported.")}
    assert all(e["completion"][0]["role"] == "assistant" and len(e["completion"]) == 1 for e in examples)
    assert ("Asked of bob?", "Corrected by bob: Asked of bob?") in answers(
        data.demonstrations(db, 0.2, excluded=[], max_imported=100, seed=0))
    capped = answers(data.demonstrations(db, 0.2, excluded=["bob"], max_imported=2, seed=0))
    assert len([a for a in capped if a[1].startswith("Imported")]) == 2  # every correction, two imports
    assert len([a for a in capped if a[1].startswith("Corrected")]) == len(prompts) - len(held)
