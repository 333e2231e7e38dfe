"""Sampling: pairs of completions for annotation, and single answers for evaluation and RL,
from batched `generate` calls."""
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

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
        if self.temperature == 0:  # greedy, as OpenAI-compatible servers read it (an LLM judge asks so)
            return {"do_sample": False, "max_new_tokens": self.max_new_tokens}
        return {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p,
                "top_k": self.top_k, "max_new_tokens": self.max_new_tokens}

    def record(self) -> dict:
        """What a pair stores about how it was made."""
        return {k: v for k, v in asdict(self).items() if k != "attempts"}


class Answer(NamedTuple):
    text: str
    cut_off: bool  # stopped at max_new_tokens, not by the model: an annotator should know


@dataclass
class SampledPair:
    completions: tuple[str, str]
    seed: int
    prompt_truncated: bool
    seconds: float  # this pair's share of its batch's generation time
    cut_off: tuple[bool, bool] = (False, False)


class Cancelled(Exception):
    """The batch was abandoned part-way; nothing it sampled is kept."""


class _UntilCancelled(StoppingCriteria):
    def __init__(self, cancel: threading.Event):
        self.cancel = cancel

    def __call__(self, input_ids, scores, **kwargs) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.cancel.is_set(), dtype=torch.bool,
                          device=input_ids.device)


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


def _generate(model, tokenizer, inputs: list[torch.Tensor], cfg: SamplingConfig, seed: int,
              copies: int = 1, cancel: threading.Event | None = None
              ) -> tuple[list[str], torch.Tensor, torch.Tensor, int]:
    """One left-padded `generate` over templated prompts, `copies` completions of each, in order.

    Returns the texts and, for scoring the same tokens under another policy, the full
    sequences, their attention mask and where the completions start. Setting `cancel` stops
    the batch at the next token and raises `Cancelled`.
    """
    batch = tokenizer.pad({"input_ids": inputs}, padding=True, return_tensors="pt").to(model.device)
    torch.manual_seed(seed)
    stop = StoppingCriteriaList([_UntilCancelled(cancel)] if cancel else [])
    out = model.generate(**batch, **cfg.generate_kwargs(), num_return_sequences=copies,
                         pad_token_id=tokenizer.pad_token_id, stopping_criteria=stop)
    if cancel is not None and cancel.is_set():
        raise Cancelled()
    n = batch["input_ids"].shape[1]
    completion = out[:, n:]
    # Everything after the first end-of-sequence token is padding, not part of the answer.
    ended = (completion == tokenizer.eos_token_id) | (completion == tokenizer.pad_token_id)
    keep = torch.cumsum(ended.int(), dim=1) == 0
    mask = torch.cat([batch["attention_mask"].repeat_interleave(copies, dim=0), keep.long()], dim=1)
    texts = [tokenizer.decode(c[k], skip_special_tokens=True).strip() for c, k in zip(completion, keep)]
    return texts, out, mask, n


def _templated(model, tokenizer, prompts: list[str], cfg: SamplingConfig) -> list[tuple[torch.Tensor, bool]]:
    return [(enc["input_ids"][0].cpu(), truncated) for enc, truncated in
            (chat_input(model, tokenizer, p, cfg.max_new_tokens) for p in prompts)]


Pick = Callable[[int, list[Answer]], tuple[int, int]]  # (prompt index, its answers) -> the two to pair


def first_two(_: int, answers: list[Answer]) -> tuple[int, int]:
    return 0, 1


def distinct_pairs(sample: Callable[[list[int], int], list[list[Answer]]], n: int, attempts: int,
                   seed: int, pick: Pick = first_two) -> list[tuple[Answer, Answer, int]]:
    """(answer, answer, seed) for each of n prompts, `sample(prompt indices, seed)` giving answers
    to each and `pick` choosing two of them. Identical answers teach nothing: those prompts alone
    are sampled again with the next seed."""
    made: dict[int, tuple[Answer, Answer, int]] = {}
    todo = list(range(n))
    for attempt in range(attempts):
        for i, answers in zip(todo, sample(todo, seed + attempt)):
            distinct = [a for k, a in enumerate(answers) if a.text not in {b.text for b in answers[:k]}]
            a, b = pick(i, distinct) if len(distinct) > 1 else (0, 0)
            made[i] = (distinct[a], distinct[b], seed + attempt)
        todo = [i for i in todo if made[i][0].text == made[i][1].text]
        if not todo:
            break
    return [made[i] for i in range(n)]


def _answers(model, tokenizer, inputs: list[torch.Tensor], cfg: SamplingConfig, seed: int,
             copies: int, cancel: threading.Event | None = None) -> list[list[Answer]]:
    """`copies` answers to each input, grouped by input. An answer that took all `max_new_tokens`
    tokens, none of them an end of sequence, ran into the limit: it is cut off."""
    texts, _, mask, start = _generate(model, tokenizer, inputs, cfg, seed, copies, cancel)
    full = mask.shape[1] - start == cfg.max_new_tokens
    cut = (mask[:, start:].bool().all(dim=1) & full).tolist()
    answers = [Answer(text, c) for text, c in zip(texts, cut)]
    return [answers[i:i + copies] for i in range(0, len(answers), copies)]


@torch.inference_mode()
def sample_pairs(model, tokenizer, prompts: list[str], cfg: SamplingConfig, seed: int,
                 cancel: threading.Event | None = None, copies: int = 2, pick: Pick = first_two
                 ) -> list[SampledPair]:
    """Two completions for each prompt, all from one batched `generate` call: `pick` chooses
    them from `copies` answers to each.

    On a CPU one call for many prompts costs little more than a call for one, so pairs are made
    in batches. The seed and the batch's prompts in order reproduce a pair. A batch made for
    a version that stopped being live is abandoned through `cancel`.
    """
    start = time.perf_counter()
    templated = _templated(model, tokenizer, prompts, cfg)

    def sample(indices: list[int], seed: int) -> list[list[Answer]]:
        return _answers(model, tokenizer, [templated[i][0] for i in indices], cfg, seed, copies, cancel)

    made = distinct_pairs(sample, len(prompts), cfg.attempts, seed, pick)
    share = (time.perf_counter() - start) / max(len(prompts), 1)
    return [SampledPair((a.text, b.text), s, truncated, share, (a.cut_off, b.cut_off))
            for (a, b, s), (_, truncated) in zip(made, templated)]


@torch.inference_mode()
def complete(model, tokenizer, prompts: list[str], cfg: SamplingConfig, seed: int,
             copies: int = 1) -> list[list[Answer]]:
    """`copies` answers to each prompt from one `generate` call: what an OpenAI-style request
    with `n` answers asks for."""
    return _answers(model, tokenizer, [ids for ids, _ in _templated(model, tokenizer, prompts, cfg)],
                    cfg, seed, copies)


@torch.inference_mode()
def sample_batch(model, tokenizer, prompts: list[str], cfg: SamplingConfig,
                 seed: int) -> tuple[list[str], torch.Tensor, torch.Tensor, int]:
    """One completion per prompt from one `generate` call, the same seed for every version;
    see `_generate` for what it returns."""
    return _generate(model, tokenizer, [ids for ids, _ in _templated(model, tokenizer, prompts, cfg)],
                     cfg, seed)


@torch.inference_mode()
def token_logprobs(model, sequences: torch.Tensor, mask: torch.Tensor, start: int) -> torch.Tensor:
    """Log-probability of each token from `start` on under `model` (0 where masked out).

    Logits are a vocabulary-wide row per token (49k floats for SmolLM2), so only the
    completion's are computed, and normalised one sequence at a time: a batch's full logits
    and their log-softmax copy would take over a gigabyte.
    """
    logits = model(input_ids=sequences, attention_mask=mask,
                   logits_to_keep=sequences.shape[1] - start + 1).logits[:, :-1]
    targets = sequences[:, start:]
    logps = torch.stack([row.float().log_softmax(-1).gather(-1, t.unsqueeze(-1)).squeeze(-1)
                         for row, t in zip(logits, targets)])
    return logps * mask[:, start:]
