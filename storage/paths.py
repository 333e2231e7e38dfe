"""Where prefloop keeps its files: one data directory holds the database, models and logs."""
import os
from pathlib import Path


def data_dir() -> Path:
    """The data directory: $PREFLOOP_DATA, else ./data, so a checkout is self-contained."""
    return Path(os.environ.get("PREFLOOP_DATA", "data"))


def round_outputs(root: Path, round_id: int) -> tuple[Path, Path]:
    """Where a finished round's adapter and reward model live under the data directory."""
    return root / "adapters" / f"round-{round_id}", root / "reward_models" / f"round-{round_id}"
