"""Round turnaround and memory on the embedded model: from `python -m trainer round` starting to
the new version answering in a running app, with each phase's seconds and peak resident memory;
and our DPO training samples/s against a plain TRL DPOTrainer script with default settings on
the same data, in the same run.

    python bench/round_turnaround.py [--model smollm2] [--judgements 128] [--algo dpo]

The judgements are made by a scripted annotator (it prefers the shorter answer and scores
both sides) over pairs the model itself samples, so the data has the shape of real votes.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("WANDB_MODE", "disabled")

from gradio_client import Client  # noqa: E402

from app import users  # noqa: E402
from app.pair_queue import QueueConfig  # noqa: E402
from app.server import ASSETS, AppConfig, serve  # noqa: E402
from policy import models  # noqa: E402
from policy.registry import PolicyRegistry  # noqa: E402
from policy.sampling import SamplingConfig  # noqa: E402
from storage import exports, imports, queries, rounds  # noqa: E402
from storage.db import open_db  # noqa: E402
from storage.paths import data_dir  # noqa: E402


def scripted_judgements(data: Path, spec: str, n: int, max_new_tokens: int) -> float:
    """n judged pairs sampled by the model, in batches; returns the seconds it took."""
    start = time.perf_counter()
    db = open_db(data / "prefloop.db")
    registry = PolicyRegistry.load(spec, data / "models")
    queries.ensure_base_version(db, registry.base_model)
    imports.import_prompt_file(db, ASSETS / "prompts.jsonl")
    prompts = list(db.query("SELECT id, text FROM prompts ORDER BY id LIMIT ?", [n]))
    sampling, rng = SamplingConfig(max_new_tokens=max_new_tokens), random.Random(0)
    for i in range(0, len(prompts), 16):
        batch = prompts[i:i + 16]
        first, *_ = registry.sample_batch(0, [p["text"] for p in batch], sampling, seed=i)
        second, *_ = registry.sample_batch(0, [p["text"] for p in batch], sampling, seed=10_000 + i)
        for prompt, a, b in zip(batch, first, second):
            pair_id = queries.add_pair(db, prompt_id=prompt["id"], version_id=0, completions=(a, b),
                                       sampling=sampling.record(), seed=i, prompt_truncated=False,
                                       gen_seconds=0)
            shown = queries.show_next_pair(db, "scripted", 0, rng)
            short_a = len(shown["a"]) <= len(shown["b"])
            gap = rng.randint(1, 5)
            queries.record_vote(db, "scripted", pair_id, "a" if short_a else "b",
                                *((5 + gap // 2, 5 - (gap + 1) // 2) if short_a else
                                  (5 - (gap + 1) // 2, 5 + gap // 2)))
        print(f"  judged {min(i + 16, len(prompts))}/{len(prompts)} pairs", flush=True)
    return time.perf_counter() - start


def watch_round(process: subprocess.Popen, db) -> dict[str, float]:
    """Seconds spent in each phase, read from the round's row as the admin tab reads it."""
    phases, current, since = {}, None, time.perf_counter()
    while process.poll() is None:
        rows = rounds.list_rounds(db, limit=1)
        phase = (rows[0]["phase"] or "").split(" ")[0] if rows else "start-up"
        phase = {"reward": "reward model"}.get(phase, phase)
        if phase != current:
            now = time.perf_counter()
            if current is not None:
                phases[current] = phases.get(current, 0) + now - since
            current, since = phase, now
        time.sleep(0.2)
    phases[current] = phases.get(current, 0) + time.perf_counter() - since
    return phases


def plain_trl_dpo(base_path: Path, rows: list[dict], out: Path) -> float:
    """The baseline: TRL's DPOTrainer with its defaults, changing only what a CPU requires."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    import torch
    cuda = torch.cuda.is_available()
    dataset = Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows])
    args = DPOConfig(output_dir=str(out), report_to=[], bf16=cuda, use_cpu=not cuda, save_strategy="no")
    trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(base_path), args=args,
                         train_dataset=dataset, processing_class=AutoTokenizer.from_pretrained(base_path))
    return trainer.train().metrics["train_samples_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--judgements", type=int, default=128)
    parser.add_argument("--max-new-tokens", type=int, default=96, help="answer length of the judged pairs")
    parser.add_argument("--algo", choices=rounds.ALGOS, default="dpo")
    parser.add_argument("--skip-baseline", action="store_true", help="skip the plain TRL DPO run")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        (data / "models").symlink_to(models.checkpoint_dir(args.model, data_dir() / "models").parent.resolve())
        print(f"making {args.judgements} scripted judgements ...", flush=True)
        judging = scripted_judgements(data, args.model, args.judgements, args.max_new_tokens)

        users.add_account(open_db(data / "prefloop.db"), "bench", "bench-pw", "admin", by="bench")
        cfg = AppConfig(model=args.model, data_dir=data, port=7870,
                        queue=QueueConfig(min_ready=2, sampling=SamplingConfig(max_new_tokens=32)))
        demo, queue = serve(cfg, block=False)
        client = Client(f"http://127.0.0.1:{cfg.port}", auth=("bench", "bench-pw"), verbose=False)
        db = open_db(cfg.db_path)

        print(f"running a {args.algo} round ...", flush=True)
        start = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "trainer", "--data-dir", str(data), "round",
                                    "--algo", args.algo], cwd=REPO)
        phases = watch_round(process, db)
        finished = time.perf_counter()
        [last] = rounds.list_rounds(db, limit=1)
        if last["status"] != "done":
            sys.exit(f"the round failed: {last['error']}")
        version = last["version_id"]
        if queries.live_version_id(db) != version:  # the gate said no; promote anyway to time the swap
            rounds.promote(db, version, by="bench")
        while True:  # skip older versions' pairs: next_pair repeats a pair until it is judged or skipped
            pair_id, *_ = client.predict(api_name="/next_pair")
            if db["pairs"].get(pair_id)["version_id"] == version:
                break
            client.predict(pair_id, api_name="/skip")
        answering = time.perf_counter()
        queue.stop()
        demo.close()
        metrics = rounds.version_metrics(db, version)

        baseline = None
        if args.algo == "dpo" and not args.skip_baseline:
            print("running plain TRL DPOTrainer with default settings on the same data ...", flush=True)
            baseline = plain_trl_dpo(models.checkpoint_dir(args.model, data / "models"),
                                     exports.trl_rows(db), data / "baseline")

    total = answering - start
    print(f"\n{args.algo} round turnaround, model {args.model}, {args.judgements} judgements "
          f"(made in {judging:.0f} s, not counted)")
    print(f"  {'phase':<14}{'seconds':>8}  {'peak MB':>8}   (as the round measured them)")
    for phase, seconds in phases.items():
        key = phase.replace(" ", "_")
        peak = metrics.get(f"peak_mb_{key}")
        print(f"  {phase:<14}{metrics.get(f'seconds_{key}', seconds):8.1f}  "
              f"{f'{peak:8.0f}' if peak else '':>8}")
    print(f"  {'hot-swap':<14}{answering - finished:8.1f}            (round end -> new version answering)")
    print(f"  {'total':<14}{total:8.1f}  {metrics['peak_mb']:8.0f}   "
          "(targets: under 600 s and under 4 096 MB on two CPU cores)")
    print(json.dumps({k: round(v, 3) for k, v in metrics.items()}))
    ours = metrics.get("dpo_samples_per_second")
    if baseline:
        print(f"DPO training samples/s: ours {ours:.2f}, plain TRL defaults {baseline:.2f}, "
              f"ratio {ours / baseline:.2f}x")


if __name__ == "__main__":
    main()
