"""`bench/reward_bench.py` runs end to end on the tiny model and reports design and test tastes
apart, each with its interval and count. Its figures are the bench's business, not asserted here."""
import json
import os
import subprocess
import sys

from .conftest import REPO


def test_the_bench_reports_design_and_test_tastes_apart(bench_data, tmp_path):
    out = subprocess.run(
        [sys.executable, "bench/reward_bench.py", "--model", "tiny", "--tastes", "concise,detailed", "--draws", "1",
         "--out", str(tmp_path / "rows.json")],
        cwd=REPO, env={**os.environ, "PREFLOOP_DATA": str(bench_data)}, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert [(r["split"], r["taste"]) for r in rows] == [("design", "concise"), ("test", "detailed")]
    for r in rows:
        assert r["rm_accuracy_low"] <= r["rm_accuracy"] <= r["rm_accuracy_high"]
        assert r["rm_heldout_pairs"] >= r["heldout_prompts"] > 0 and 0 <= r["rm_heldout_calibration_error"] <= 1
    assert "design tastes, default: held-out accuracy" in out.stdout
    assert "test tastes, default: held-out accuracy" in out.stdout
