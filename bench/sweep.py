"""How the DPO and reward-model settings were chosen: each variant trains on the same scripted
judgements and is measured the same way, so the defaults can be checked, or re-chosen for
another model.

    python bench/sweep.py dpo --taste concise,engaging --try lr=5e-4 --try lr=1e-4,epochs=1
    python bench/sweep.py reward --taste engaging --try depth=0.45 --try l2=0.3,score_weight=0

The base model answers every shipped prompt four times at the app's sampling settings; the
taste's scripted annotator judges answers 1 and 2 of each prompt, as a round's 128 judgements
would be judged. `dpo` trains the policy on the training prompts' pairs and prints its win-rate
against the base on held-out prompts (the same seeds for both, as in `loop_efficacy.py`), with
mean length and degenerate answers. `reward` trains the reward model and prints its accuracy on
the held-out prompts' pairs of answers 1-2 and 3-4, a larger set than a round holds out.
"""
import argparse
import itertools
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from statistics import mean

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loop_efficacy import Judge  # noqa: E402
from tastes import TASTES, words  # noqa: E402

from app.server import ASSETS  # noqa: E402
from policy import models  # noqa: E402
from policy.registry import PolicyRegistry  # noqa: E402
from policy.sampling import SamplingConfig  # noqa: E402
from storage import imports, queries  # noqa: E402
from storage.db import open_db  # noqa: E402
from storage.exports import HELDOUT_FRACTION, is_heldout  # noqa: E402
from storage.paths import data_dir  # noqa: E402
from trainer.degeneration import degenerate  # noqa: E402
from trainer.dpo import DPOSettings, train_dpo  # noqa: E402
from trainer.evaluate import answer  # noqa: E402
from trainer.reward_model import RewardModelConfig, train_reward_model  # noqa: E402
from policy.settings import apply_overrides  # noqa: E402
from trainer.rounds import RoundConfig  # noqa: E402


def row(taste, prompt: str, chosen: str, rejected: str) -> dict:
    """A judgement as a round reads it, with the taste's 1-10 scores, as loop_efficacy votes."""
    scores = taste.score(chosen), taste.score(rejected)
    return {"prompt": [{"role": "user", "content": prompt}], "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}], "margin": float(abs(scores[0] - scores[1])),
            "score_chosen": scores[0], "score_rejected": scores[1]}


def judged(taste, prompts: list[dict], answers: dict[int, list[str]], first: int) -> list[dict]:
    """The decisive judgements of answers `first` and `first + 1` of each prompt."""
    rows = []
    for p in prompts:
        a, b = answers[p["id"]][first:first + 2]
        verdict = taste.verdict(a, b)
        if verdict != "tie":
            rows.append(row(taste, p["text"], *((a, b) if verdict == "a" else (b, a))))
    return rows


def load(model: str) -> tuple[PolicyRegistry, Path, list[dict]]:
    """The model, its checkpoint folder, and the shipped prompts with the ids an import gives them
    (which decide the held-out split)."""
    cache = models.checkpoint_dir(model, data_dir() / "models").parent
    with tempfile.TemporaryDirectory(prefix="sweep-") as tmp:
        db = open_db(Path(tmp) / "prefloop.db")
        imports.import_prompt_file(db, ASSETS / "prompts.jsonl")
        prompts = queries.all_prompts(db)
    return PolicyRegistry.load(model, cache), models.checkpoint_dir(model, cache), prompts


def four_answers(registry, prompts: list[dict], seed: int = 0) -> dict[int, list[str]]:
    """The base model's four answers to each prompt, at the app's sampling settings; kept in the
    data directory (the same seeds give the same answers), so a second bench starts at once.
    Another `seed` (a multiple of 20,000) gives four others."""
    cache = data_dir() / "bench" / f"four-answers-{registry.base_model}{f'-seed{seed}' if seed else ''}.json"
    if cache.exists():
        known = json.loads(cache.read_text())
        if all(p["text"] in known for p in prompts):
            return {p["id"]: known[p["text"]] for p in prompts}
    print(f"sampling 4 answers to each of {len(prompts)} prompts ...", flush=True)
    answers = {}
    for i in range(0, len(prompts), 16):
        batch = prompts[i:i + 16]
        for p, a, b in zip(batch, registry.sample_pairs(0, [p["text"] for p in batch], SamplingConfig(), seed=seed + i),
                           registry.sample_pairs(0, [p["text"] for p in batch], SamplingConfig(),
                                                 seed=seed + 10_000 + i)):
            answers[p["id"]] = [*a.completions, *b.completions]
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({p["text"]: answers[p["id"]] for p in prompts}))
    return answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["dpo", "reward"])
    parser.add_argument("--taste", default="concise", help=f"one or more of {', '.join(TASTES)}, comma-separated")
    parser.add_argument("--try", dest="variants", action="append", required=True, metavar="FIELD=VALUE,...",
                        help="settings of the variant (fields of DPOSettings or RewardModelConfig)")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--judgements", type=int, default=128)
    args = parser.parse_args()
    registry, base_path, prompts = load(args.model)
    heldout = [p for p in prompts if is_heldout(p["id"], HELDOUT_FRACTION)]
    train_prompts = random.Random(0).sample([p for p in prompts if p not in heldout],
                                            round(args.judgements * (1 - HELDOUT_FRACTION)))
    answers = four_answers(registry, prompts)
    cfg = RoundConfig()
    judge = Judge(registry, cfg, cfg.eval.questions([p["text"] for p in heldout]))
    base = answer(registry, 0, judge.questions, cfg.eval)
    print(f"{len(base.texts)} held-out answers, base mean {mean(len(words(t)) for t in base.texts):.0f} words",
          flush=True)
    versions = itertools.count(1000)  # registry ids for the variants' adapters
    for name in args.taste.split(","):
        taste = TASTES[name]
        train = judged(taste, train_prompts, answers, 0)
        held = judged(taste, heldout, answers, 0) + judged(taste, heldout, answers, 2)
        print(f"{name}: {len(train)} decisive training pairs, {len(held)} held-out pairs", flush=True)
        for variant in args.variants:
            print(f"{name:<9}{args.what} {variant:<48}", measure(args.what, variant, registry, base_path, train,
                                                              held, judge, taste, base, next(versions)), flush=True)


def measure(what: str, variant: str, registry, base_path: Path, train: list[dict], held: list[dict],
            judge: Judge, taste, base, version: int) -> str:
    assignments = [a for a in variant.split(",") if a]
    with tempfile.TemporaryDirectory(prefix="sweep-") as tmp:
        start = time.perf_counter()
        if what == "reward":
            metrics = train_reward_model(base_path, train, held, apply_overrides(RewardModelConfig(), assignments),
                                         Path(tmp) / "rm")
            return (f"{time.perf_counter() - start:6.0f} s  held-out accuracy {metrics['rm_accuracy']:.2f} "
                    f"on {len(held)} pairs")
        train_dpo(base_path, None, train, apply_overrides(DPOSettings(), assignments), Path(tmp) / "adapter",
                  run_name="sweep")
        seconds = time.perf_counter() - start
        registry.ensure_loaded(version, Path(tmp) / "adapter")
        new = answer(registry, version, judge.questions, judge.cfg.eval)
    rate = Judge.win_rate(taste, new, base)
    return (f"{seconds:6.0f} s  win vs base {rate.value:.2f} [{rate.low:.2f}, {rate.high:.2f}]  "
            f"words {mean(len(words(t)) for t in new.texts):5.1f}  degenerate {sum(map(degenerate, new.texts))}"
            f"/{len(new.texts)}")


if __name__ == "__main__":
    main()
