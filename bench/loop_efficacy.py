"""Does a round teach the policy what the annotators prefer?

Scripted annotators, each with one consistent taste, judge pairs that the live policy samples
through the app's own code path (the pair queue's `generate` and sampling settings, `next_pair`,
`record_vote` with 1-10 scores); rounds run as `python -m trainer round`. After each round the
same scripted judge compares the new version's answers to held-out prompts, which no round
trains on, with the base model's and the previous version's: the same prompts, the same seeds,
the app's sampling settings.

    python bench/loop_efficacy.py [--model smollm2] [--tastes design|test|concise,lists,...]
        [--algos dpo,ppo,rloo,rs-sft,online-dpo,rs-sft-dpo,dpo+ia3] [--rounds 3] [--rl-rounds 1] [--judgements 128] [--set dpo.lr=1e-3]

Prints per taste, algorithm and round: win-rate against the base with its 95% interval and
against the previous version, the taste's own measure of the answers, the reward model's
accuracy on judged pairs it did not train on (held-out prompts and cross-validation), KL to the reference, mean length, degenerate answers (empty or looping),
the round's time by phase and its peak memory, and the gate's decision. The tastes are split
into design and test tastes (bench/tastes.py): choose defaults on the first, report the second.
"""
import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import mean

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from app.pair_queue import PairQueue, QueueConfig  # noqa: E402
from app.server import ASSETS  # noqa: E402
from policy import models  # noqa: E402
from policy.registry import PolicyRegistry  # noqa: E402
from storage import imports, queries, rounds  # noqa: E402
from storage.db import open_db  # noqa: E402
from storage.exports import is_heldout  # noqa: E402
from storage.paths import data_dir  # noqa: E402
from storage.ratings import win_rate_interval  # noqa: E402
from trainer.degeneration import degeneration  # noqa: E402
from trainer.evaluate import AnswerCache, Answers, answer  # noqa: E402
from policy.settings import apply_overrides  # noqa: E402
from trainer.rounds import RoundConfig, answer_cache  # noqa: E402
from tastes import DESIGN, TASTES, TEST, Taste, words  # noqa: E402


def vote(db, queue: PairQueue, taste: Taste, annotator: str, n: int) -> int:
    """Claim n pairs as the app serves them and judge each; returns the decisive votes."""
    decisive = 0
    for _ in range(n):
        pair = queue.next_pair(annotator)
        choice = taste.verdict(pair["a"], pair["b"])  # points rise with the measure: they agree with it
        queries.record_vote(db, annotator, pair["pair_id"], choice, taste.score(pair["a"]), taste.score(pair["b"]))
        decisive += choice != "tie"
    return decisive


def stock(queue: PairQueue, version: int, n: int, batch: int = 16) -> float:
    """n unshown pairs of `version`, made by the pair queue in batches; returns the seconds."""
    start = time.perf_counter()
    for i in range(0, n, batch):
        queue.generate(version, min(batch, n - i))
    return time.perf_counter() - start


def clone(src: Path, dst: Path) -> None:
    """A copy of a data directory: the database as one consistent file, the shared model cache."""
    dst.mkdir(parents=True)
    open_db(src / "prefloop.db").execute("VACUUM INTO ?", [str(dst / "prefloop.db")])
    (dst / "models").symlink_to((src / "models").resolve(), target_is_directory=True)
    if answer_cache(src).exists():  # the base's held-out answers: the same for every taste
        shutil.copytree(answer_cache(src), answer_cache(dst))


def run_round(data: Path, recipe: str, sets: list[str]) -> dict:
    """`python -m trainer round`, timed, with the peak resident memory the kernel saw. A recipe
    is an algorithm, with `+ia3` for an IA3 adapter instead of LoRA."""
    algo, _, adapter = recipe.partition("+")
    log = data / f"round-{algo}-{time.time_ns()}.log"
    start = time.perf_counter()
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "trainer", "--data-dir", str(data), "round", "--algo", algo,
             "--adapter", adapter or "lora", *[arg for s in sets for arg in ("--set", s)]],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    db = open_db(data / "prefloop.db")
    [last] = rounds.list_rounds(db, limit=1)
    if status != 0 or last["status"] != "done":  # the last round may be an earlier one: see the log
        sys.exit(f"round failed (exit status {status}; {last['error']}); see {log}")
    adapter = Path(rounds.get_version(db, last["version_id"])["adapter_path"])
    return {"version": last["version_id"], "decision": last["decision"], "wall_s": seconds,
            "adapter_kb": sum(f.stat().st_size for f in adapter.glob("*.safetensors")) / 1024,
            "peak_mb": usage.ru_maxrss / 1024, "metrics": rounds.version_metrics(db, last["version_id"])}


class Judge:
    """Held-out answers of each version, and the scripted verdicts between two versions."""

    def __init__(self, registry: PolicyRegistry, cfg: RoundConfig, questions: list[str]):
        self.registry, self.cfg, self.questions = registry, cfg, questions

    def answers(self, data: Path, version: int) -> Answers:
        """The round's own evaluation answers when it kept them (same prompts, seeds, settings)."""
        cache = AnswerCache(answer_cache(data), self.questions, self.cfg.eval, self.registry.model.dtype)
        found = cache.get(version)
        if found is None:
            db = open_db(data / "prefloop.db")
            self.registry.ensure_loaded(version, rounds.get_version(db, version)["adapter_path"])
            found = answer(self.registry, version, self.questions, self.cfg.eval)
            cache.put(version, found)
        return found

    @staticmethod
    def win_rate(taste: Taste, a: Answers, b: Answers):
        results = [taste.verdict(x, y) for x, y in zip(a.texts, b.texts)]
        return win_rate_interval(results.count("a"), results.count("b"), results.count("tie"))


def row(taste_name: str, taste: Taste, algo: str, number: int, judge: Judge, data: Path,
        result: dict, previous: int, pairs_s: float, decisive: int) -> dict:
    base, prev, new = (judge.answers(data, v) for v in (0, previous, result["version"]))
    vs_base, vs_prev = judge.win_rate(taste, new, base), judge.win_rate(taste, new, prev)
    m = result["metrics"]
    return {
        "taste": taste_name, "algo": algo, "round": number, "version": result["version"],
        "win_vs_base": vs_base.value, "win_vs_base_low": vs_base.low, "win_vs_base_high": vs_base.high,
        "win_vs_previous": vs_prev.value, "decisive_votes": decisive,
        "measure": mean(map(taste.measure, new.texts)), "measure_base": mean(map(taste.measure, base.texts)),
        "words": mean(len(words(t)) for t in new.texts), "words_base": mean(len(words(t)) for t in base.texts),
        **degeneration(new.texts), **{k: m.get(k) for k in REWARD_MODEL_FIGURES}, "kl_to_ref": m.get("kl_to_ref"),
        # rejection sampling: prompts kept, and the best-minus-median reward gap by N
        **{k: v for k, v in m.items() if k.startswith("rs_")},
        "promoted": (result["decision"] or "").startswith("promoted"), "decision": result["decision"],
        "round_s": result["wall_s"], "peak_mb": result["peak_mb"], "pairs_s": pairs_s,
        "adapter_kb": result["adapter_kb"],
        "phases_s": {k.removeprefix("seconds_"): v for k, v in m.items()
                     if k.startswith("seconds_") and k != "seconds_total"},
        "phase_peak_mb": {k.removeprefix("peak_mb_"): v for k, v in m.items() if k.startswith("peak_mb_")},
    }


REWARD_MODEL_FIGURES = ("rm_accuracy", "rm_heldout_pairs", "rm_unseen_accuracy", "rm_unseen_accuracy_low",
                        "rm_unseen_accuracy_high", "rm_unseen_pairs", "rm_calibration_error")


def print_row(r: dict) -> None:
    phases = " ".join(f"{k} {v:.0f}" for k, v in r["phases_s"].items()) + f"; adapter {r['adapter_kb']:.0f} kB"
    rm = "-" if r["rm_unseen_accuracy"] is None else f"{r['rm_unseen_accuracy']:.2f}/{r['rm_unseen_pairs']:.0f}"
    print(f"{r['taste']:<14}{r['algo']:<15}{r['round']:>3}  v{r['version']:<3}"
          f"{r['win_vs_base']:6.2f} [{r['win_vs_base_low']:.2f}, {r['win_vs_base_high']:.2f}]"
          f"{r['win_vs_previous']:7.2f}  {r['measure_base']:7.3f} -> {r['measure']:7.3f}"
          f"{r['words']:7.1f}  {r['empty_share']:.2f}/{r['repetitive_share']:.2f}  {rm:>8}"
          f"{r['kl_to_ref'] or 0:7.1f}{r['round_s']:7.0f}{r['peak_mb']:7.0f}  "
          f"{'promoted ' if r['promoted'] else 'candidate'}  ({phases})", flush=True)


HEADER = ("taste         algo           rnd  ver  vs base [95% interval]  vs prev  taste measure base -> new   words  "
          "empty/loop  RM acc/n   KL  round s  peak MB  gate  (phase seconds)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--tastes", default="design", help=f"design, test, or names of {', '.join(TASTES)}")
    parser.add_argument("--algos", default="dpo,ppo,rloo", help="recipes: an algorithm, +ia3 for IA3 adapters")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of DPO (LoRA or IA3), each on new judgements")
    parser.add_argument("--rl-rounds", type=int, default=1, help="rounds of every other algorithm")
    parser.add_argument("--judgements", type=int, default=128, help="new judgements before each round")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="passed to every round (and eval.* to the judge's answers)")
    parser.add_argument("--out", help="write every row as JSON here")
    args = parser.parse_args()
    cfg = apply_overrides(RoundConfig(), args.set)
    rows = []
    with tempfile.TemporaryDirectory(prefix="loop-efficacy-") as tmp:
        root = Path(tmp)
        template = root / "template"
        template.mkdir()
        (template / "models").symlink_to(models.checkpoint_dir(args.model, data_dir() / "models").parent.resolve())
        registry = PolicyRegistry.load(args.model, template / "models")
        db = open_db(template / "prefloop.db")
        queries.ensure_base_version(db, registry.base_model)
        imports.import_prompt_file(db, ASSETS / "prompts.jsonl")
        questions = cfg.eval.questions([p["text"] for p in queries.all_prompts(db) if is_heldout(p["id"], cfg.heldout_fraction)])
        judge = Judge(registry, cfg, questions)
        print(f"{args.judgements} pairs from the base model for round 1 ...", flush=True)
        # Seeded: every run judges the same first pairs, so rows of separate runs compare.
        first_pairs_s = stock(PairQueue(template / "prefloop.db", registry, QueueConfig(), random.Random(0)), 0,
                              args.judgements)
        print(HEADER, flush=True)
        judge.answers(template, 0)  # the base's held-out answers, written once for every taste
        for name in {"design": list(DESIGN), "test": list(TEST)}.get(args.tastes) or args.tastes.split(","):
            taste = TASTES[name]
            for algo in args.algos.split(","):
                data = root / f"{name}-{algo}"
                clone(template, data)
                queue = PairQueue(data / "prefloop.db", registry, QueueConfig(), random.Random(0))
                db = open_db(data / "prefloop.db")
                pairs_s = first_pairs_s
                for number in range(1, (args.rounds if algo.startswith("dpo") else args.rl_rounds) + 1):
                    live = queries.live_version_id(db)
                    if number > 1:
                        pairs_s = stock(queue, live, args.judgements)
                    decisive = vote(db, queue, taste, f"{name}-annotator", args.judgements)
                    result = run_round(data, algo, args.set)
                    rows.append(row(name, taste, algo, number, judge, data, result, live, pairs_s, decisive))
                    print_row(rows[-1])
                    if args.out:  # after every row: a run stopped part-way keeps what it measured
                        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
