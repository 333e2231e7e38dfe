import codecs
import json

import pytest

from storage import imports, queries


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def texts(db):
    return [r["text"] for r in db.query("SELECT text FROM prompts ORDER BY id")]


def test_jsonl_with_exact_and_normalised_duplicates(db, tmp_path):
    f = write(tmp_path / "p.jsonl", "\n".join(json.dumps(r) for r in [
        {"prompt": "Explain tides.", "category": "explanation"},
        {"prompt": "Explain tides."},
        {"prompt": "  explain   TIDES. "},
        {"prompt": "Write a haiku."},
    ]) + "\n")
    result = imports.import_prompt_file(db, f)
    assert (result.added, result.exact_duplicates, result.case_duplicates) == (2, 1, 1)
    assert texts(db) == ["Explain tides.", "Write a haiku."]
    again = imports.import_prompt_file(db, f)
    assert again.added == 0 and texts(db) == ["Explain tides.", "Write a haiku."]


def test_csv_and_datasets_folder(db, tmp_path):
    from datasets import Dataset
    imports.import_prompt_file(db, write(tmp_path / "p.csv", 'prompt,category\n"Say, hi",writing\n'))
    Dataset.from_list([{"prompt": "From a dataset"}]).save_to_disk(str(tmp_path / "ds"))
    imports.import_prompt_file(db, tmp_path / "ds")
    assert texts(db) == ["Say, hi", "From a dataset"]


@pytest.mark.parametrize("content, message", [
    ('{"prompt": "fine"}\n{"prompt": "   "}\n', "line 2: empty prompt"),
    ('{"prompt": "fine"}\n{"prompt": "ok"\n', "line 2: not valid JSON"),
    ('{"prompt": "fine"}\n[1, 2]\n', "line 2: expected an object"),
    ('{"prompt": "fine"}\n{"question": "no"}\n', "line 2: no 'prompt' field"),
    ('{"prompt": "fine"}\n{"prompt": 7}\n', "line 2: the prompt is not text"),
])
def test_malformed_file_names_the_line_and_imports_nothing(db, tmp_path, content, message):
    with pytest.raises(imports.ImportFileError, match=message):
        imports.import_prompt_file(db, write(tmp_path / "bad.jsonl", content))
    assert queries.prompt_count(db) == 0


def test_empty_csv_cell_names_the_line(db, tmp_path):
    with pytest.raises(imports.ImportFileError, match="line 3: empty prompt"):
        imports.import_prompt_file(db, write(tmp_path / "p.csv", "prompt\nok\n\" \"\n"))


def test_unknown_format_and_missing_file(db, tmp_path):
    with pytest.raises(imports.ImportFileError, match="unknown format"):
        imports.import_prompt_file(db, write(tmp_path / "p.txt", "hello"))
    with pytest.raises(imports.ImportFileError, match="no such file"):
        imports.import_prompt_file(db, tmp_path / "missing.jsonl")


def test_bundled_prompts_are_many_and_valid():
    from app.server import ASSETS
    prompts = imports.read_prompt_file(ASSETS / "prompts.jsonl")
    assert len(prompts) >= 200
    assert {"writing", "advice", "explanation", "coding", "reasoning", "safety"} <= {p["category"] for p in prompts}


@pytest.mark.parametrize("name, content", [("empty.jsonl", b""), ("blank.jsonl", b"\n \n"),
                                           ("empty.csv", b""), ("header-only.csv", b"prompt\n")])
def test_an_empty_file_is_an_error(db, tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(imports.ImportFileError, match="no prompts in it"):
        imports.import_prompt_file(db, tmp_path / name)


def test_a_utf8_byte_order_mark_is_accepted(db, tmp_path):
    """Excel saves CSV as 'UTF-8 with BOM'; Windows tools do the same to JSONL."""
    (tmp_path / "excel.csv").write_bytes("prompt,category\nCafé au lait?,advice\n".encode("utf-8-sig"))
    (tmp_path / "win.jsonl").write_bytes('{"prompt": "Größe?"}\r\n'.encode("utf-8-sig"))
    imports.import_prompt_file(db, tmp_path / "excel.csv")
    imports.import_prompt_file(db, tmp_path / "win.jsonl")
    assert texts(db) == ["Café au lait?", "Größe?"]
    assert db["prompts"].get(1)["category"] == "advice"


def test_a_csv_with_an_unclosed_quote_names_its_line(db, tmp_path):
    f = write(tmp_path / "p.csv", 'prompt\nfine\n"also fine"\n"never closed\nmore\n')
    with pytest.raises(imports.ImportFileError, match="line 4: .*quote"):
        imports.import_prompt_file(db, f)
    assert queries.prompt_count(db) == 0


def test_a_file_that_is_not_utf8_names_the_position(db, tmp_path):
    (tmp_path / "latin1.jsonl").write_bytes('{"prompt": "ok"}\n{"prompt": "Café"}\n'.encode("latin-1"))
    with pytest.raises(imports.ImportFileError, match=r"line 2, byte 32: not UTF-8 \(0xe9\)"):
        imports.import_prompt_file(db, tmp_path / "latin1.jsonl")
    assert queries.prompt_count(db) == 0


def test_a_folder_that_is_not_a_datasets_folder_gets_a_clear_message(db, tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.txt").write_text("not a dataset")
    with pytest.raises(imports.ImportFileError, match="saved by `datasets`' save_to_disk"):
        imports.import_prompt_file(db, tmp_path / "photos")


def test_a_dataset_dict_folder_imports_its_train_split(db, tmp_path):
    from datasets import Dataset, DatasetDict
    DatasetDict({"train": Dataset.from_list([{"prompt": "From train"}]),
                 "test": Dataset.from_list([{"prompt": "From test"}])}).save_to_disk(str(tmp_path / "dd"))
    imports.import_prompt_file(db, tmp_path / "dd")
    assert texts(db) == ["From train"]


def test_an_oversized_prompt_names_its_line(db, tmp_path):
    f = write(tmp_path / "p.jsonl", json.dumps({"prompt": "ok"}) + "\n" +
              json.dumps({"prompt": "x" * (queries.MAX_PROMPT_CHARS + 1)}) + "\n")
    with pytest.raises(imports.ImportFileError, match="line 2: the prompt is longer than 4000"):
        imports.import_prompt_file(db, f)


def test_positions_count_the_byte_order_mark_and_blank_lines(db, tmp_path):
    (tmp_path / "bom.jsonl").write_bytes(codecs.BOM_UTF8 + b'{"prompt": "ok"}\n{"prompt": "\xff"}\n')
    with pytest.raises(imports.ImportFileError, match=r"line 2, byte 32: not UTF-8 \(0xff\)"):
        imports.import_prompt_file(db, tmp_path / "bom.jsonl")
    f = write(tmp_path / "gaps.csv", 'prompt\nhello\n\n\n" "\n')
    with pytest.raises(imports.ImportFileError, match="line 5: empty prompt"):
        imports.import_prompt_file(db, f)
    (tmp_path / "mac.jsonl").write_bytes(b'{"prompt": "one"}\r{"prompt": "two"}\r')
    imports.import_prompt_file(db, tmp_path / "mac.jsonl")
    assert texts(db) == ["one", "two"]


def test_gold_pairs_import_from_a_trl_preference_file(db, tmp_path):
    path = tmp_path / "gold.jsonl"
    with pytest.raises(imports.ImportFileError, match="no base model yet"):
        imports.import_gold_file(db, path, by="lead")
    queries.ensure_base_version(db, "tiny")
    path.write_text(json.dumps({"prompt": "Name a fruit.", "chosen": "A pear.", "rejected": "Rocks."}) + "\n"
                    + json.dumps({"prompt": [{"role": "user", "content": "2+2?"}],
                                  "chosen": [{"role": "assistant", "content": "4"}],
                                  "rejected": [{"role": "assistant", "content": "5"}]}) + "\n")
    assert imports.import_gold_file(db, path, by="lead") == (2, 0)
    assert imports.import_gold_file(db, path, by="lead") == (0, 2)  # a second import adds nothing
    gold = list(db.query("SELECT pr.text, p.completion_0, p.completion_1, g.expected FROM gold_pairs g "
                         "JOIN pairs p ON p.id = g.pair_id JOIN prompts pr ON pr.id = p.prompt_id ORDER BY g.id"))
    assert [tuple(g.values()) for g in gold] == [("Name a fruit.", "A pear.", "Rocks.", "0"), ("2+2?", "4", "5", "0")]
    assert queries.ready_pair_count(db, 0) == 0  # gold pairs are mixed in, never stock
    queries.add_prompts(db, [{"text": "Ordinary."}], source="t")
    assert [p["text"] for p in queries.prompts_needing_pairs(db, 0, 5)] == ["Ordinary."]  # none for gold prompts


def test_a_bad_gold_file_names_its_lines_and_imports_nothing(db, tmp_path):
    queries.ensure_base_version(db, "tiny")
    path = tmp_path / "gold.jsonl"
    path.write_text(json.dumps({"prompt": "Fine.", "chosen": "Yes.", "rejected": "No."}) + "\n"
                    + json.dumps({"prompt": "No rejected.", "chosen": "Yes."}) + "\n"
                    + json.dumps({"prompt": "Same.", "chosen": "Yes.", "rejected": "Yes."}) + "\n")
    with pytest.raises(imports.ImportFileError) as refused:
        imports.import_gold_file(db, path, by="lead")
    assert "line 2: no 'rejected' answer" in str(refused.value)
    assert "line 3: chosen and rejected are the same answer" in str(refused.value)
    assert db["gold_pairs"].count == 0 and db["pairs"].count == 0 and db["prompts"].count == 0
