from policy.sampling import SamplingConfig, chat_input, sample_pairs

CFG = SamplingConfig(max_new_tokens=12)


def test_pair_has_two_different_completions_and_a_seed_reproduces_it(registry):
    [first] = registry.sample_pairs(0, ["Write a haiku about rain."], CFG, seed=7)
    [again] = registry.sample_pairs(0, ["Write a haiku about rain."], CFG, seed=7)
    [other] = registry.sample_pairs(0, ["Write a haiku about rain."], CFG, seed=8)
    a, b = first.completions
    assert a and b and a != b
    assert again.completions == first.completions and again.seed == first.seed
    assert other.completions != first.completions
    assert not first.prompt_truncated


def test_one_batch_makes_a_pair_for_every_prompt(registry):
    prompts = ["Name a river.", "Write a haiku about rain.", "What is 2+2? " * 20, "Hi"]
    pairs = registry.sample_pairs(0, prompts, CFG, seed=3)
    assert len(pairs) == len(prompts)
    assert all(p.completions[0] != p.completions[1] for p in pairs)
    assert len({p.completions for p in pairs}) == len(prompts)  # no prompt got another's answers
    again = registry.sample_pairs(0, prompts, CFG, seed=3)  # the batch and seed reproduce them
    assert [(p.completions, p.seed) for p in again] == [(p.completions, p.seed) for p in pairs]


def test_prompt_goes_through_the_chat_template(registry):
    enc, _ = chat_input(registry.model, registry.tokenizer, "What is 2+2?", 12)
    text = registry.tokenizer.decode(enc["input_ids"][0])
    assert "<|im_start|>user\nWhat is 2+2?<|im_end|>" in text and text.rstrip().endswith("assistant")


def test_prompt_longer_than_the_context_is_truncated_and_flagged(registry):
    long_prompt = "word " * 2000
    [pair] = sample_pairs(registry.model, registry.tokenizer, [long_prompt], CFG, seed=1)
    assert pair.prompt_truncated and all(pair.completions)
    enc, _ = chat_input(registry.model, registry.tokenizer, long_prompt, CFG.max_new_tokens)
    assert enc["input_ids"].shape[1] + CFG.max_new_tokens <= registry.model.config.max_position_embeddings


def test_unknown_version_is_refused(registry):
    import pytest
    with pytest.raises(KeyError, match="not loaded"):
        registry.sample_pairs(5, ["hi"], CFG, seed=1)


def test_answer_logprobs_match_a_full_softmax_over_every_position(registry):
    """The evaluation's KL reads these; computing only the answer's logits must not change them."""
    import torch
    prompts = ["Write a haiku about rain.", "Name three fruits, please, and say why."]
    _, seqs, mask, start = registry.sample_batch(0, prompts, CFG, seed=5)
    with torch.no_grad():
        logps = registry.token_logprobs(0, seqs, mask, start)
        full = torch.log_softmax(registry.model(input_ids=seqs, attention_mask=mask).logits.float(), -1)
    expected = full[:, start - 1:-1].gather(-1, seqs[:, start:, None]).squeeze(-1) * mask[:, start:]
    assert logps.shape == expected.shape and mask[:, start:].sum() > 0
    assert torch.allclose(logps, expected, atol=1e-4)
