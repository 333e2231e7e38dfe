"""`python -m storage` finds its database the way `app` and `trainer` do: by --data-dir."""
import json

import pytest

from storage.__main__ import main
from storage.db import open_db

from .conftest import add_pair


def test_data_dir_and_db_name_the_same_database(tmp_path, capsys):
    add_pair(open_db(tmp_path / "prefloop.db"))
    assert main(["--data-dir", str(tmp_path), "stats"]) == 0
    by_dir = json.loads(capsys.readouterr().out)
    assert by_dir["pairs"] == 1
    assert main(["--db", str(tmp_path / "prefloop.db"), "stats"]) == 0
    assert json.loads(capsys.readouterr().out) == by_dir


def test_data_dir_defaults_to_prefloop_data(tmp_path, monkeypatch, capsys):
    add_pair(open_db(tmp_path / "prefloop.db"))
    monkeypatch.setenv("PREFLOOP_DATA", str(tmp_path))
    assert main(["stats"]) == 0
    assert json.loads(capsys.readouterr().out)["pairs"] == 1


def test_both_at_once_is_refused(tmp_path):
    with pytest.raises(SystemExit):
        main(["--data-dir", str(tmp_path), "--db", str(tmp_path / "x.db"), "stats"])
