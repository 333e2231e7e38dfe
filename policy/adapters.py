"""What kind of adapter a policy version is, LoRA or IA3, read from the PEFT config saved with it.

The kind decides who can serve a version: the local backend and `python -m policy serve` load
either, vLLM loads LoRA only. It also decides whether a round can train the live adapter on: a
round training IA3 cannot continue a LoRA, so it starts a fresh adapter on the base model.
"""
import json
from pathlib import Path

KINDS = ("lora", "ia3")


def kind(adapter_dir: str | Path) -> str:
    """'lora' or 'ia3' (PEFT's `peft_type`, lower-cased)."""
    config = Path(adapter_dir) / "adapter_config.json"
    try:
        peft_type = json.loads(config.read_text())["peft_type"]
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"{adapter_dir} is not a PEFT adapter folder: {e}") from None
    return str(peft_type).lower()
