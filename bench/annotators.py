"""How many annotators one machine serves without making them wait.

    python bench/annotators.py [--model smollm2] [--annotators 1,4,16,64] [--seconds 120] [--think 10]

For each N, the real app runs in its own process (as `make run` starts it) and N simulated
annotators, threads in this process, log in through the named API at the same moment and
then judge pairs (`/next_pair`, a think time of about `--think` seconds, `/vote`) for
`--seconds`. Each N runs three times in the same session: with the app's pair queue generating in the
app's own process, the same with generation in one `python -m policy serve` worker beside it
(sampling_backend=openai), and with the old queue (one pair per `generate` call, six in stock
whatever the demand); with `--reward-model DIR` (a round's reward model folder) also with the
first pass on, that reward model judging every new pair in the app's process.
Before the runs, `generate` is timed flat out for several batch sizes: the capacity the
queue's batch size is chosen from. During the busiest run of the current queue, a new version
is promoted and the time until its pairs reach annotators is printed.

Targets on two CPU cores: pair throughput at least 4x the one-pair baseline; the largest N
with next_pair p95 under 200 ms is named; a promotion reaches a busy app in under 5 s.
"""
import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.server import ASSETS  # noqa: E402
from policy import models  # noqa: E402
from policy.registry import PolicyRegistry  # noqa: E402
from policy.sampling import SamplingConfig  # noqa: E402
from storage import accounts, imports, queries, rounds  # noqa: E402
from storage.db import open_db  # noqa: E402
from storage.paths import data_dir, round_outputs  # noqa: E402

OLD_QUEUE = ["queue.batch=1", "queue.min_ready=6", "queue.max_ready=6", "queue.per_annotator=0"]
PASSWORD = "bench-pw"


@dataclass
class Run:
    label: str
    n: int
    next_pair: list[float] = field(default_factory=list)  # every call after an annotator's first
    first_pair: list[float] = field(default_factory=list)  # the first: it also sets up the session
    votes: list[float] = field(default_factory=list)
    logins: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    pairs_made: int = 0
    shown: int = 0  # pairs annotators were given: what they got out of the pairs made
    seconds: float = 0.0
    promotion: dict = field(default_factory=dict)
    judged: tuple[int, int] = (0, 0)  # pairs with a first-pass verdict, of all pairs stored


def capacity(model: str, batches: list[int], tokens: int) -> list[tuple[int, float, float]]:
    """(batch, seconds per call, pairs per second) for `generate` flat out, same prompts."""
    registry = PolicyRegistry.load(model, data_dir() / "models")
    prompts = [p["text"] for p in imports.read_prompt_file(ASSETS / "prompts.jsonl")]
    sampling = SamplingConfig(max_new_tokens=tokens)
    rows = []
    for batch in batches:
        calls = max(1, 8 // batch)
        start = time.perf_counter()
        for i in range(calls):
            registry.sample_pairs(0, prompts[i * batch:(i + 1) * batch], sampling, seed=i)
        seconds = (time.perf_counter() - start) / calls
        rows.append((batch, seconds, batch / seconds))
        print(f"  batch {batch:3d}: {seconds:6.1f} s per call, {batch / seconds:5.2f} pairs/s", flush=True)
    return rows


def prepare_data(root: Path, n: int) -> Path:
    """A data directory with the starter prompts, N annotator accounts and the model cache."""
    root.mkdir(parents=True)
    (root / "models").symlink_to((data_dir() / "models").resolve(), target_is_directory=True)
    db = open_db(root / "prefloop.db")
    imports.import_prompt_file(db, ASSETS / "prompts.jsonl")
    hashed = accounts.hash_password(PASSWORD)  # one scrypt for every account
    team = {f"annotator-{i}": {"password": hashed, "role": "annotator"} for i in range(n)}
    team["root"] = {"password": hashed, "role": "admin"}
    (root / "users.json").write_text(json.dumps(team))  # imported on the app's first start
    return root


def start_app(root: Path, model: str, port: int, settings: list[str], min_ready: int) -> subprocess.Popen:
    """`python -m app serve` on this data directory, returned once its stock is in."""
    cmd = [sys.executable, "-m", "app", "--data-dir", str(root), "serve", "--model", model,
           "--port", str(port), *[a for s in settings for a in ("--set", s)]]
    proc = subprocess.Popen(cmd, stdout=open(root / "app.log", "w"), stderr=subprocess.STDOUT,
                            cwd=Path(__file__).resolve().parent.parent)
    db = open_db(root / "prefloop.db")
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited; see {root / 'app.log'}")
        try:
            up = httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code < 500
        except httpx.HTTPError:
            up = False
        if up and queries.ready_pair_count(db, queries.live_version_id(db)) >= min_ready:
            return proc
        time.sleep(1)
    proc.kill()
    raise RuntimeError("the app did not start in 15 minutes")


def annotate(url: str, name: str, until: float, think: float, run: Run, lock: threading.Lock) -> None:
    from gradio_client import Client
    rng = random.Random(name)
    try:
        start = time.perf_counter()
        client = Client(url, auth=(name, PASSWORD), verbose=False)
        with lock:
            run.logins.append(time.perf_counter() - start)
        calls = run.first_pair
        while time.perf_counter() < until:
            start = time.perf_counter()
            pair_id, *_ = client.predict(api_name="/next_pair")
            with lock:
                calls.append(time.perf_counter() - start)
            calls = run.next_pair
            time.sleep(think * rng.uniform(0.5, 1.5))
            start = time.perf_counter()
            client.predict(pair_id, rng.choice(["a", "b", "tie"]), None, None, "", api_name="/vote")
            with lock:
                run.votes.append(time.perf_counter() - start)
    except Exception as e:  # noqa: BLE001 - a failed annotator is a figure, not a crash
        with lock:
            run.failures.append(f"{name}: {e}")


def zero_adapter(model: str, out: Path) -> Path:
    """A LoRA adapter that changes nothing in the answers: what matters here is the swap."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from policy.models import checkpoint_dir
    base = AutoModelForCausalLM.from_pretrained(checkpoint_dir(model, data_dir() / "models"))
    get_peft_model(base, LoraConfig(r=8, target_modules="all-linear", task_type="CAUSAL_LM")).save_pretrained(out)
    return out


def promote_midway(root: Path, adapter: Path, at: float, run: Run) -> None:
    """Promote a new version at `at`; record when its first pair is stored and first shown."""
    time.sleep(max(0.0, at - time.perf_counter()))
    db = open_db(root / "prefloop.db")
    version = rounds.add_version(db, parent_id=0, adapter_path=str(adapter), algo="bench")
    promoted = datetime.now(timezone.utc)
    rounds.promote(db, version, by="bench")
    deadline = time.perf_counter() + 300
    while time.perf_counter() < deadline:
        made = db.execute("SELECT min(created_at) FROM pairs WHERE version_id = ?", [version]).fetchone()[0]
        shown = db.execute("SELECT min(s.shown_at) FROM shows s JOIN pairs p ON p.id = s.pair_id "
                           "WHERE p.version_id = ?", [version]).fetchone()[0]
        if made and shown:
            run.promotion = {k: (datetime.fromisoformat(v) - promoted).total_seconds()
                             for k, v in (("made", made), ("shown", shown))}
            old = db.execute("SELECT count(*) FROM shows s JOIN pairs p ON p.id = s.pair_id "
                             "WHERE p.version_id != ? AND s.shown_at > ?",
                             [version, promoted.isoformat(timespec="milliseconds")]).fetchone()[0]
            run.promotion["old_pairs_shown_meanwhile"] = old
            return
        time.sleep(0.2)


def start_worker(root: Path, model: str, port: int) -> subprocess.Popen:
    """`python -m policy serve` beside the app, returned once it answers."""
    proc = subprocess.Popen([sys.executable, "-m", "policy", "--data-dir", str(root), "serve", "--model", model,
                             "--port", str(port)], stdout=open(root / "worker.log", "w"),
                            stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parent.parent)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(1)
    proc.kill()
    raise RuntimeError(f"the worker did not start; see {root / 'worker.log'}")


def with_reward_model(root: Path, model: str, reward_model: Path, adapter: Path) -> None:
    """A finished round, so that the app's first pass loads its reward model: the version it
    made is registered, not live, so the pairs are still the base model's."""
    db = open_db(root / "prefloop.db")
    queries.ensure_base_version(db, models.model_name(model))
    round_id = rounds.start_round(db, "dpo", {}, os.getpid())
    shutil.copytree(reward_model, round_outputs(root, round_id)[1])
    rounds.finish_round(db, round_id, rounds.add_version(db, parent_id=0, adapter_path=str(adapter), algo="bench",
                                                         round_id=round_id))


def measure(label: str, settings: list[str], min_ready: int, n: int, args, port: int,
            adapter: Path | None, judge_adapter: Path | None = None) -> Run:
    run = Run(label, n)
    with tempfile.TemporaryDirectory() as tmp:
        root = prepare_data(Path(tmp) / "data", n)
        if label == "judged":
            with_reward_model(root, args.model, Path(args.reward_model), judge_adapter)
        worker = None
        if label == "worker":
            worker = start_worker(root, args.model, port + 1)
            settings = [*settings, "sampling_backend=openai", f"endpoints=http://127.0.0.1:{port + 1}"]
        proc = start_app(root, args.model, port, settings, min_ready)
        try:
            db = open_db(root / "prefloop.db")
            before = db.execute("SELECT count(*) FROM pairs").fetchone()[0]
            start = time.perf_counter()
            until = start + args.seconds
            lock = threading.Lock()
            threads = [threading.Thread(target=annotate, args=(f"http://127.0.0.1:{port}/", f"annotator-{i}",
                                                               until, args.think, run, lock))
                       for i in range(n)]
            if adapter:
                threads.append(threading.Thread(target=promote_midway,
                                                args=(root, adapter, start + args.seconds / 2, run)))
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            run.seconds = time.perf_counter() - start
            run.pairs_made = db.execute("SELECT count(*) FROM pairs").fetchone()[0] - before
            run.shown = db.execute("SELECT count(*) FROM shows").fetchone()[0]
            run.judged = db["first_pass"].count, db["pairs"].count
        finally:
            for process in (proc, worker):
                if process is not None:
                    process.terminate()
                    process.wait(timeout=60)
        if run.failures:
            shutil.copy(root / "app.log", Path(tempfile.gettempdir()) / f"annotators-{label}-{n}.log")
    return run


def p(xs: list[float], q: float) -> float:
    return statistics.quantiles(xs, n=100, method="inclusive")[int(q) - 1] if len(xs) > 1 else (xs or [0])[0]


def row(run: Run) -> str:
    xs = run.next_pair
    fast = sum(x < 0.2 for x in xs) / max(len(xs), 1)
    return (f"{run.label:9} {run.n:4d} {len(xs):6d} {fast:7.0%} {p(xs, 50) * 1000:8.0f} {p(xs, 95) * 1000:8.0f} "
            f"{max(xs or [0]) * 1000:8.0f} {p(run.first_pair, 50) * 1000:8.0f} {run.pairs_made / run.seconds:8.3f} "
            f"{run.shown / run.seconds:8.3f} {p(run.votes, 95) * 1000:8.0f} {p(run.logins, 95):8.1f} "
            f"{len(run.failures):5d}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--annotators", default="1,4,16,64")
    parser.add_argument("--seconds", type=float, default=120, help="length of each run")
    parser.add_argument("--think", type=float, default=10, help="mean seconds an annotator reads a pair")
    parser.add_argument("--batches", default="1,2,4,8,16", help="batch sizes timed flat out ('' skips)")
    parser.add_argument("--set", action="append", default=[], help="app settings for the current queue")
    parser.add_argument("--port", type=int, default=7871)
    parser.add_argument("--reward-model", help="a round's reward model folder: also run with the first pass on")
    args = parser.parse_args()
    ns = [int(n) for n in args.annotators.split(",")]

    if args.batches:
        print("generate flat out, 160-token answers:", flush=True)
        rows = capacity(args.model, [int(b) for b in args.batches.split(",")], 160)
        base = rows[0][2]
        for batch, _, rate in rows:
            print(f"  batch {batch:3d}: {rate / base:4.1f}x the pairs per second of batch {rows[0][0]}")

    with tempfile.TemporaryDirectory() as tmp:
        adapter = zero_adapter(args.model, Path(tmp) / "adapter")
        busiest = max(n for n in ns if n <= 16) if any(n <= 16 for n in ns) else ns[0]
        runs = []
        for n in ns:
            arms = [("queue", args.set, 4), ("worker", args.set, 4), ("one-pair", args.set + OLD_QUEUE, 6)]
            for label, settings, min_ready in arms + ([("judged", args.set, 4)] if args.reward_model else []):
                print(f"{label}, {n} annotators ...", flush=True)
                runs.append(measure(label, settings, min_ready, n, args, args.port,
                                    adapter if label == "queue" and n == busiest else None, adapter))
                print("  " + row(runs[-1]), flush=True)

    print(f"\nannotators, model {args.model}, {args.seconds:.0f} s each, think ~{args.think:.0f} s")
    print("next_pair figures are for every call after an annotator's first; 'first ms' is the median first call")
    print(f"{'queue':9} {'N':>4} {'calls':>6} {'<200ms':>7} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} "
          f"{'first ms':>8} {'made/s':>8} {'shown/s':>8} {'vote p95':>8} {'login s':>8} {'fails':>5}")
    for run in runs:
        print(row(run))
    for n in ns:
        new, worker, old = [r for r in runs if r.n == n][:3]
        if old.shown:
            rate = old.shown / old.seconds
            print(f"N={n}: pairs given to annotators per second, queue {new.shown / new.seconds / rate:.1f}x and "
                  f"worker {worker.shown / worker.seconds / rate:.1f}x the one-pair queue's {rate:.3f}")
    for label in ("queue", "worker", "judged"):
        served = [r.n for r in runs if r.label == label and r.next_pair and p(r.next_pair, 95) < 0.2 and not r.failures]
        print(f"{label}: largest N with next_pair p95 under 200 ms: {max(served) if served else 'none'}")
    for run in runs:
        if run.promotion:
            print(f"promotion with {run.n} annotators: first new pair made {run.promotion['made']:.1f} s "
                  f"after it, first shown {run.promotion['shown']:.1f} s after it; "
                  f"{run.promotion['old_pairs_shown_meanwhile']} old-version pairs served meanwhile")
    for run in runs:
        if run.label == "judged":
            print(f"first pass with {run.n} annotators: {run.judged[0]} of {run.judged[1]} pairs judged")
    for run in runs:
        for failure in run.failures[:3]:
            print(f"failure ({run.label}, N={run.n}): {failure}")


if __name__ == "__main__":
    main()
