"""Reading prompt files, and gold pairs in TRL's preference format (JSONL, CSV or a `datasets`
folder), with every bad line reported at once.

A file is imported whole or not at all, so a fixed file can simply be imported again.
"""
import codecs
import csv
import io
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from . import layouts, near_duplicates, queries

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
    elif path.suffix.lower() == ".parquet":
        import pyarrow.parquet
        try:
            table = pyarrow.parquet.read_table(path)
        except pyarrow.ArrowInvalid as e:
            raise ImportFileError(f"not a Parquet file ({e})") from None
        for i, row in enumerate(table.to_pylist(), start=1):
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
        raise ImportFileError("unknown format; use .jsonl, .csv, .parquet or a datasets folder")


def _read(path: str | Path, parse, what: str) -> list:
    """Every record of the file as `parse` makes it, or ImportFileError naming each bad line."""
    path = Path(path)
    if not path.exists():
        raise ImportFileError(f"{path}: no such file")
    rows, errors = [], []
    try:
        for where, record in _records(path):
            if isinstance(record, Exception):
                errors.append(f"{where}: {record}")
                continue
            row, error = parse(record, where)
            errors.append(error) if error else rows.append(row)
    except ImportFileError as e:
        raise ImportFileError(f"{path}: {e}; nothing imported") from None
    if not rows and not errors:
        raise ImportFileError(f"{path}: no {what} in it; the file is empty")
    if errors:
        shown = "\n  ".join(errors[:20]) + ("\n  ..." if len(errors) > 20 else "")
        raise ImportFileError(f"{path}: {len(errors)} bad line(s), nothing imported:\n  {shown}")
    return rows


def read_prompt_file(path: str | Path) -> list[dict]:
    """All prompts in the file, or ImportFileError naming each bad line."""
    return _read(path, _record_text, "prompts")


def import_prompt_file(db: sqlite_utils.Database, path: str | Path,
                       near_threshold: float | None = near_duplicates.DEFAULT_THRESHOLD,
                       dry_run: bool = False) -> queries.PromptImport:
    """Import the file's new prompts; see `queries.add_prompts` for what is dropped."""
    return queries.add_prompts(db, read_prompt_file(path), source=Path(path).name,
                               near_threshold=near_threshold, dry_run=dry_run)


def _content(value):
    """Text, or the last message's content in TRL's conversational format."""
    if isinstance(value, list) and value and isinstance(value[-1], dict):
        return value[-1].get("content")
    return value


def _gold_record(record, where: str) -> tuple[dict | None, str | None]:
    """A gold pair in TRL's preference format: a prompt, the chosen and the rejected answer."""
    if not isinstance(record, dict):
        return None, f"{where}: expected an object with prompt, chosen and rejected"
    prompt, error = _record_text({**record, "prompt": _content(record.get("prompt"))}, where)
    if error:
        return None, error
    answers = {}
    for key in ("chosen", "rejected"):
        text = _content(record.get(key))
        if not isinstance(text, str) or not text.strip():
            return None, f"{where}: no '{key}' answer"
        if len(text) > queries.MAX_CORRECTION_CHARS:
            return None, f"{where}: the {key} answer is longer than {queries.MAX_CORRECTION_CHARS} characters"
        answers[key] = text.strip()
    if answers["chosen"] == answers["rejected"]:
        return None, f"{where}: chosen and rejected are the same answer"
    return {**prompt, **answers}, None


def import_gold_file(db: sqlite_utils.Database, path: str | Path, by: str) -> tuple[int, int]:
    """Gold pairs from a preference file (TRL's prompt / chosen / rejected, JSONL, CSV or a
    `datasets` folder): each becomes a pair whose first answer is the chosen one, marked gold.
    Made by no policy version, they are filed under the base (version 0), their sampling
    recording the file. A gold pair already there (same prompt and answers) is not added again,
    so nobody meets it twice. All or nothing; returns (added, already there)."""
    if not db.execute("SELECT 1 FROM policy_versions WHERE id = 0").fetchone():
        raise ImportFileError("this database has no base model yet: start the app on it once, then import")
    rows = _read(path, _gold_record, "gold pairs")
    source = Path(path).name
    with queries.immediate(db):
        queries.add_prompts(db, rows, source=source)  # no near-copy check: a gold pair keeps its own prompt
        added = 0
        for row in rows:
            prompt_id = db.execute("SELECT id FROM prompts WHERE norm = ?", [queries.normalise(row["text"])]).fetchone()[0]
            if db.execute("""SELECT 1 FROM gold_pairs g JOIN pairs p ON p.id = g.pair_id WHERE p.prompt_id = ?
                             AND p.completion_0 = ? AND p.completion_1 = ?""",
                          [prompt_id, row["chosen"], row["rejected"]]).fetchone():
                continue
            pair = queries.add_pair(db, prompt_id=prompt_id, version_id=0, completions=(row["chosen"], row["rejected"]),
                                    sampling={"imported": source}, seed=0, prompt_truncated=False, gen_seconds=0)
            queries.mark_gold(db, pair, "0", by=by)
            added += 1
    return added, len(rows) - added


def _parsed(parse):
    """A layouts parser as `_read` wants it: (row, None), (None, the row's error), or a
    ({"skipped": why}, None) marker for a well-formed row without a preference."""
    def read(record, where: str):
        try:
            return parse(record, where) | {"row": int(where.split()[-1])}, None
        except layouts.Skipped as e:
            return {"skipped": str(e)}, None
        except KeyError as e:
            return None, f"{where}: no {e} field"
        except (ValueError, TypeError) as e:
            return None, f"{where}: {e}"
    return read


@dataclass
class Imported:
    added: int
    skipped: dict[str, int]  # rows without a preference, by reason
    already: int             # rows the same as ones imported before
    labels_removed: int = 0  # texts that lost a "Human:" or "Assistant:" label


def import_preference_file(db: sqlite_utils.Database, path: str | Path, source: str | None = None,
                           columns: str | None = None) -> Imported:
    """Preference pairs from an existing set (see `storage.layouts` for the layouts), kept apart
    from votes with their provenance. All or nothing; a row already imported (same prompt and
    answers) is not added again."""
    path = Path(path)
    mapping = layouts.parse_columns(columns)
    rows = _read(path, _parsed(lambda record, where: layouts.parse(record, where, mapping)), "preference pairs")
    skipped = Counter(r["skipped"] for r in rows if "skipped" in r)
    rows = [r for r in rows if "skipped" not in r]
    labels = sum(r.pop("labels_removed") for r in rows)
    added, already = _insert_imported(db, "imported_preferences", rows, path, source,
                                      key=("prompt", "chosen", "rejected"))
    return Imported(added, dict(skipped), already, labels)


def _insert_imported(db: sqlite_utils.Database, table: str, rows: list[dict], path: Path, source: str | None,
                     key: tuple[str, ...]) -> tuple[int, int]:
    """Insert the rows not already in the table (by `key`); returns (added, already there)."""
    created = queries.now()
    rows = [r | {"prompt": json.dumps(r["prompt"], ensure_ascii=False)} for r in rows]
    with queries.immediate(db):
        known = {tuple(r[k] for k in key) for r in db[table].rows_where(select=", ".join(key))}
        new = []
        for r in rows:
            if tuple(r[k] for k in key) not in known:
                known.add(tuple(r[k] for k in key))
                new.append({**r, "source": source or path.stem, "file": path.name, "created_at": created})
        db[table].insert_all(new)
    return len(new), len(rows) - len(new)


def import_demonstration_file(db: sqlite_utils.Database, path: str | Path,
                              source: str | None = None) -> tuple[int, int]:
    """Reference answers from an existing SFT set (see `storage.layouts`), kept with their
    provenance beside the annotators' corrected answers. All or nothing; returns (added, already
    imported before)."""
    path = Path(path)
    rows = _read(path, _parsed(layouts.parse_demonstration), "demonstrations")
    return _insert_imported(db, "imported_demonstrations", rows, path, source, key=("prompt", "answer"))
