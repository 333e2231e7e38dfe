"""`bench/label_efficiency.py` runs end to end on the tiny model: every arm at every human budget,
each figure with its interval and counts, the first pass's labels counted apart. Its figures are
the bench's business, not asserted here."""
import json
import os
import subprocess
import sys

from .conftest import REPO


def test_the_bench_reports_every_arm_at_every_budget(bench_data, tmp_path):
    out = subprocess.run(
        [sys.executable, "bench/label_efficiency.py", "--model", "tiny", "--tastes", "concise", "--seeds", "2",
         "--route-confidence", "0.5", "--audit-share", "0.5", "--out", str(tmp_path / "rows.json")],
        cwd=REPO, env={**os.environ, "PREFLOOP_DATA": str(bench_data)}, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert [(r["arm"], r["humans"]) for r in rows] == [(a, n) for a in ("random", "active", "route")
                                                        for n in (32, 64, 128)]
    for r in rows:
        assert r["rm_accuracy_low"] <= r["rm_accuracy"] <= r["rm_accuracy_high"] and r["seeds"] == 2
        assert r["decisive"] + r["ties"] == r["humans"]  # every human judgement counted, a tie too
        assert (r["judge_labels"] > 0) == (r["arm"] == "route")  # only route lets the reward model label (at 0.5, any pair)
        assert (r["chosen"] > 0) == (r["arm"] == "active")  # only active lets it choose the pair
    assert "design tastes, active, 64 humans: held-out accuracy" in out.stdout
