"""next_pair latency with the queue warm against generating on demand, four annotators at once.

    python bench/next_pair_latency.py [--model smollm2] [--requests 5]

Both runs use the same model, prompts and sampling settings in this one process; the
warm run keeps the background refill going while annotators claim pairs, as in the app.
Target: p95 under 200 ms warm, and at least 20x faster than on demand.
"""
import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.pair_queue import PairQueue, QueueConfig  # noqa: E402
from app.server import ASSETS  # noqa: E402
from policy.registry import PolicyRegistry  # noqa: E402
from policy.sampling import SamplingConfig  # noqa: E402
from storage import imports, queries  # noqa: E402
from storage.db import open_db  # noqa: E402
from storage.paths import data_dir  # noqa: E402

ANNOTATORS = 4


def fresh_db(path: Path, base_model: str) -> Path:
    db = open_db(path)
    queries.ensure_base_version(db, base_model)
    imports.import_prompt_file(db, ASSETS / "prompts.jsonl")
    return path


def annotators_claim(queue: PairQueue, requests: int, think: float) -> list[float]:
    """Each simulated annotator asks for `requests` pairs; returns every call's seconds."""
    latencies, lock = [], threading.Lock()

    def annotator(name: str) -> None:
        for _ in range(requests):
            start = time.perf_counter()
            queue.next_pair(name)
            with lock:
                latencies.append(time.perf_counter() - start)
            time.sleep(think)

    threads = [threading.Thread(target=annotator, args=(f"annotator-{i}",)) for i in range(ANNOTATORS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies


def percentiles(xs: list[float]) -> tuple[float, float]:
    qs = statistics.quantiles(xs, n=20, method="inclusive")
    return statistics.median(xs), qs[18]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--requests", type=int, default=5, help="next_pair calls per annotator")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--think", type=float, default=0.2, help="seconds between an annotator's calls")
    args = parser.parse_args()

    registry = PolicyRegistry.load(args.model, data_dir() / "models")
    sampling = SamplingConfig(max_new_tokens=args.max_new_tokens)
    n = ANNOTATORS * args.requests
    with tempfile.TemporaryDirectory() as tmp:
        warm_db = fresh_db(Path(tmp) / "warm.db", registry.base_model)
        warm = PairQueue(warm_db, registry, QueueConfig(ready=n, batch=2, sampling=sampling),
                         random.Random(0)).start()
        print(f"filling the queue with {n} pairs ...", flush=True)
        while queries.ready_pair_count(open_db(warm_db), 0) < n:
            time.sleep(0.5)
        warm_latencies = annotators_claim(warm, args.requests, args.think)  # refill keeps running
        warm.stop()

        cold_db = fresh_db(Path(tmp) / "cold.db", registry.base_model)
        cold = PairQueue(cold_db, registry, QueueConfig(ready=0, sampling=sampling), random.Random(0))
        print(f"{n} pairs on demand ...", flush=True)
        cold_latencies = annotators_claim(cold, args.requests, args.think)

    (w50, w95), (c50, c95) = percentiles(warm_latencies), percentiles(cold_latencies)
    print(f"\nnext_pair, {ANNOTATORS} annotators x {args.requests} calls, model {args.model}, "
          f"max_new_tokens {args.max_new_tokens}")
    print(f"{'':12}{'p50 ms':>10}{'p95 ms':>10}")
    print(f"{'warm queue':12}{w50 * 1000:10.1f}{w95 * 1000:10.1f}")
    print(f"{'on demand':12}{c50 * 1000:10.1f}{c95 * 1000:10.1f}")
    print(f"on demand / warm: p50 {c50 / w50:.0f}x, p95 {c95 / w95:.0f}x "
          f"(target: warm p95 < 200 ms, ratio >= 20x)")


if __name__ == "__main__":
    main()
