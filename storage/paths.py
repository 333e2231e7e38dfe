"""Where prefloop keeps its files: one data directory holds the database, models and logs."""
import os
from pathlib import Path


def data_dir() -> Path:
    """The data directory: $PREFLOOP_DATA, else ./data, so a checkout is self-contained."""
    return Path(os.environ.get("PREFLOOP_DATA", "data"))
