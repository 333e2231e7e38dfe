"""Sampling a pair: two completions for one prompt from one batched `generate` call."""
import time
from dataclasses import asdict, dataclass

import torch

# Room the chat template adds around a user message (system prompt and role markers).
TEMPLATE_TOKENS = 64


@dataclass
class SamplingConfig:
    temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int = 160
    # Identical completions teach nothing; resample with the next seed up to this many times.
    attempts: int = 3

    def generate_kwargs(self) -> dict:
        return {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p,
                "max_new_tokens": self.max_new_tokens}

    def record(self) -> dict:
        """What a pair stores about how it was made."""
        return {k: v for k, v in asdict(self).items() if k != "attempts"}


@dataclass
class SampledPair:
    completions: tuple[str, str]
    seed: int
    prompt_truncated: bool
    seconds: float


def chat_input(model, tokenizer, prompt: str, max_new_tokens: int) -> tuple[dict, bool]:
    """The templated prompt as model inputs, its user text cut to fit the model's context."""
    budget = model.config.max_position_embeddings - max_new_tokens - TEMPLATE_TOKENS
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    truncated = len(ids) > budget
    if truncated:
        prompt = tokenizer.decode(ids[:max(budget, 1)])
    enc = tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                        add_generation_prompt=True, return_tensors="pt",
                                        return_dict=True)
    return {k: v.to(model.device) for k, v in enc.items()}, truncated


@torch.inference_mode()
def sample_pair(model, tokenizer, prompt: str, cfg: SamplingConfig, seed: int) -> SampledPair:
    """Two completions from one `generate` call; the seed makes the pair reproducible."""
    start = time.perf_counter()
    enc, truncated = chat_input(model, tokenizer, prompt, cfg.max_new_tokens)
    n = enc["input_ids"].shape[1]
    for attempt in range(cfg.attempts):
        torch.manual_seed(seed + attempt)
        out = model.generate(**enc, **cfg.generate_kwargs(), num_return_sequences=2,
                             pad_token_id=tokenizer.pad_token_id)
        a, b = (tokenizer.decode(o[n:], skip_special_tokens=True).strip() for o in out)
        if a != b:
            break
    return SampledPair((a, b), seed + attempt, truncated, time.perf_counter() - start)
