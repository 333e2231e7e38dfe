"""Reading prompt files (JSONL, CSV or a `datasets` folder) with every bad line reported at once.

A file is imported whole or not at all, so a fixed file can simply be imported again.
"""
import codecs
import csv
import io
import json
import re
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
    if len(text.strip()) > queries.MAX_PROMPT_CHARS:
        return None, f"{where}: the prompt is longer than {queries.MAX_PROMPT_CHARS} characters"
    category = record.get("category")
    return {"text": text.strip(), "category": category if isinstance(category, str) else None}, None


def _decoded(path: Path) -> str:
    """The file's text; a UTF-8 byte-order mark (Excel's CSVs, Windows' JSONL) is dropped."""
    data = path.read_bytes()
    skip = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as e:
        at = skip + e.start  # a position in the file, byte-order mark included
        line = data[:at].count(b"\n") + 1
        raise ImportFileError(f"line {line}, byte {at}: not UTF-8 (0x{data[at]:02x}); "
                              "save the file as UTF-8 and import it again") from None


def _dataset_rows(path: Path):
    from datasets import Dataset, load_from_disk
    try:
        loaded = load_from_disk(str(path))
    except (FileNotFoundError, ValueError, OSError):
        raise ImportFileError("a folder must be one saved by `datasets`' save_to_disk "
                              "(or give a .jsonl or .csv file)") from None
    if not isinstance(loaded, Dataset):  # a DatasetDict: its train split, or its only one
        splits = list(loaded)
        if "train" not in splits and len(splits) != 1:
            raise ImportFileError(f"splits {splits}: save the one to import as a Dataset")
        loaded = loaded["train" if "train" in splits else splits[0]]
    return loaded


def _csv_rows(text: str):
    """Rows as {header: value} with the line each starts on (blank lines count, as an editor
    counts them); an unclosed quote names the line it opened on."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header, start = None, 1
    try:
        for row in reader:
            if row and header is None:
                header = row
            elif row:
                yield f"line {start}", dict(zip(header, row))
            start = reader.line_num + 1
    except csv.Error as e:
        raise ImportFileError(f"line {start}: {e} (is a quote left open?)") from None


def _records(path: Path):
    """(where, record-or-parse-error) for each line or row of the file."""
    if path.is_dir():
        for i, row in enumerate(_dataset_rows(path), start=1):
            yield f"row {i}", row
    elif path.suffix.lower() == ".csv":
        yield from _csv_rows(_decoded(path))
    elif path.suffix.lower() in (".jsonl", ".json"):
        for i, line in enumerate(re.split(r"\r\n|\r|\n", _decoded(path)), start=1):
            if not line.strip():
                continue
            try:
                yield f"line {i}", json.loads(line)
            except json.JSONDecodeError as e:
                yield f"line {i}", ValueError(f"not valid JSON ({e.msg})")
    else:
        raise ImportFileError("unknown format; use .jsonl, .csv or a datasets folder")


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
    except ImportFileError as e:
        raise ImportFileError(f"{path}: {e}; nothing imported") from None
    if not prompts and not errors:
        raise ImportFileError(f"{path}: no prompts in it; the file is empty")
    if errors:
        shown = "\n  ".join(errors[:20]) + ("\n  ..." if len(errors) > 20 else "")
        raise ImportFileError(f"{path}: {len(errors)} bad line(s), nothing imported:\n  {shown}")
    return prompts


def import_prompt_file(db: sqlite_utils.Database, path: str | Path) -> queries.PromptImport:
    return queries.add_prompts(db, read_prompt_file(path), source=Path(path).name)
