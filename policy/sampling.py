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
    top_k: int = 0  # off, so top-p alone truncates (transformers would quietly add top_k=50)
    max_new_tokens: int = 160
    # Identical completions teach nothing; resample with the next seed up to this many times.
    attempts: int = 3

    def generate_kwargs(self) -> dict:
        return {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p,
                "top_k": self.top_k, "max_new_tokens": self.max_new_tokens}

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


@torch.inference_mode()
def sample_batch(model, tokenizer, prompts: list[str], cfg: SamplingConfig,
                 seed: int) -> tuple[list[str], torch.Tensor, torch.Tensor, int]:
    """One completion per prompt from one `generate` call, the same seed for every version.

    Returns the texts and, for scoring the same tokens under another policy, the full
    sequences, their attention mask and where the completions start.
    """
    encs = [chat_input(model, tokenizer, p, cfg.max_new_tokens)[0]["input_ids"][0].cpu()
            for p in prompts]
    batch = tokenizer.pad({"input_ids": encs}, padding=True, return_tensors="pt").to(model.device)
    torch.manual_seed(seed)
    out = model.generate(**batch, **cfg.generate_kwargs(), pad_token_id=tokenizer.pad_token_id)
    n = batch["input_ids"].shape[1]
    completion = out[:, n:]
    # Everything after the first end-of-sequence token is padding, not part of the answer.
    ended = (completion == tokenizer.eos_token_id) | (completion == tokenizer.pad_token_id)
    keep = torch.cumsum(ended.int(), dim=1) == 0
    mask = torch.cat([batch["attention_mask"], keep.long()], dim=1)
    texts = [tokenizer.decode(c[k], skip_special_tokens=True).strip() for c, k in zip(completion, keep)]
    return texts, out, mask, n


@torch.inference_mode()
def token_logprobs(model, sequences: torch.Tensor, mask: torch.Tensor, start: int) -> torch.Tensor:
    """Log-probability of each token from `start` on under `model` (0 where masked out)."""
    logits = model(input_ids=sequences, attention_mask=mask).logits[:, start - 1:-1].float()
    targets = sequences[:, start:]
    logps = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return logps * mask[:, start:]
