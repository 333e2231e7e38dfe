"""`bench/annotators.py` runs end to end on the tiny model: logins, judging through the named
API, the old queue beside the new one, a promotion mid-run. Its figures are not asserted here."""
import os
import subprocess
import sys

from .conftest import MODEL_CACHE, REPO, free_port

LABELS = [["queue", "3"], ["worker", "3"], ["one-pair", "3"]]


def test_the_bench_completes_and_prints_every_queue_and_the_promotion(tmp_path):
    MODEL_CACHE.mkdir(parents=True, exist_ok=True)
    (tmp_path / "models").symlink_to(MODEL_CACHE.resolve(), target_is_directory=True)
    out = subprocess.run(
        [sys.executable, "bench/annotators.py", "--model", "tiny", "--annotators", "3", "--seconds", "8",
         "--think", "0.5", "--batches", "1,4", "--port", str(free_port()),
         "--set", "queue.sampling.max_new_tokens=16"],
        cwd=REPO, env={**os.environ, "PREFLOOP_DATA": str(tmp_path)}, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [line.split() for line in out.stdout.splitlines() if line.split()[:2] in LABELS]
    assert {r[0] for r in rows} == {"queue", "worker", "one-pair"} and all(r[-1] == "0" for r in rows), out.stdout
    assert "promotion with 3 annotators: first new pair made" in out.stdout, out.stdout
