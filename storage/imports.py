"""Reading prompt files (JSONL, CSV or a `datasets` folder) with every bad line reported at once.

A file is imported whole or not at all, so a fixed file can simply be imported again.
"""
import csv
import json
from pathlib import Path

import sqlite_utils

from . import queries

TEXT_KEYS = ("prompt", "text")


class ImportFileError(ValueError):
    """A prompt file with bad lines; nothing from it was imported."""


def _record_text(record, where: str) -> tuple[dict | None, str | None]:
    """The prompt in one record, or why it cannot be one."""
    if isinstance(record, str):
        record = {"prompt": record}
    if not isinstance(record, dict):
        return None, f"{where}: expected an object with a 'prompt' field"
    key = next((k for k in TEXT_KEYS if k in record), None)
    if key is None:
        return None, f"{where}: no 'prompt' field"
    text = record[key]
    if not isinstance(text, str):
        return None, f"{where}: the prompt is not text"
    if not text.strip():
        return None, f"{where}: empty prompt"
    category = record.get("category")
    return {"text": text.strip(), "category": category if isinstance(category, str) else None}, None


def _records(path: Path):
    """(where, record-or-parse-error) for each line or row of the file."""
    if path.is_dir():
        from datasets import load_from_disk
        for i, row in enumerate(load_from_disk(str(path)), start=1):
            yield f"row {i}", row
    elif path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            for i, row in enumerate(csv.DictReader(f), start=2):
                yield f"line {i}", row
    elif path.suffix.lower() in (".jsonl", ".json"):
        with path.open(encoding="utf-8") as f:
            for i, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    yield f"line {i}", json.loads(line)
                except json.JSONDecodeError as e:
                    yield f"line {i}", ValueError(f"not valid JSON ({e.msg})")
    else:
        raise ImportFileError(f"{path}: unknown format; use .jsonl, .csv or a datasets folder")


def read_prompt_file(path: str | Path) -> list[dict]:
    """All prompts in the file, or ImportFileError naming each bad line."""
    path = Path(path)
    if not path.exists():
        raise ImportFileError(f"{path}: no such file")
    prompts, errors = [], []
    try:
        for where, record in _records(path):
            if isinstance(record, Exception):
                errors.append(f"{where}: {record}")
                continue
            prompt, error = _record_text(record, where)
            errors.append(error) if error else prompts.append(prompt)
    except (UnicodeDecodeError, csv.Error) as e:
        errors.append(f"unreadable file ({e})")
    if errors:
        shown = "\n  ".join(errors[:20]) + ("\n  ..." if len(errors) > 20 else "")
        raise ImportFileError(f"{path}: {len(errors)} bad line(s), nothing imported:\n  {shown}")
    return prompts


def import_prompt_file(db: sqlite_utils.Database, path: str | Path) -> queries.PromptImport:
    return queries.add_prompts(db, read_prompt_file(path), source=Path(path).name)
