"""How well does the reward model learn a taste it was not designed on, and how sure should it be?

Every scripted taste (bench/tastes.py), design and test tastes apart, judges the same answers:
the base model's four answers to each shipped prompt (sampled once and kept, see sweep.py).
A round's worth of judgements trains each variant: answers 1 and 2 of the training prompts
(102 pairs before ties, as 128 judgements with a fifth held out), and in a second draw answers
3 and 4. Every variant is measured on the same held-out comparisons, which no variant trains
on: every pair of eight answers to each held-out prompt (28 per prompt, before ties).

- `default`: the round's reward model as configured;
- `trl` (with --trl, first draw only): TRL's RewardTrainer with a LoRA and a score head, TRL's
  defaults apart from a learning rate for LoRA, on the same pairs;
- with `--try FIELD=VALUE,...`, the reward model with those `RewardModelConfig` settings.

    python bench/reward_bench.py [--tastes design|test|all|concise,...] [--trl] [--try words=true]
                                 [--out rows.json]

Prints per taste and draw: held-out accuracy with its 95% interval (resampling held-out prompts)
and its count of pairs and prompts, calibration error
(of the comparisons it calls p sure, how far from p come out right), its accuracy out of fold
on its own training pairs (what a round reports), and seconds.
"""
import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from statistics import mean

sys.path.insert(0, str(Path(__file__).resolve().parent))
from noisy_team import every_pair  # noqa: E402
from sweep import four_answers, judged, load  # noqa: E402
from tastes import DESIGN, TASTES, TEST  # noqa: E402

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import AutoModelForSequenceClassification  # noqa: E402
from trl import RewardConfig, RewardTrainer  # noqa: E402
from trl.trainer.reward_trainer import suppress_seqcls_warning  # noqa: E402

from storage.exports import HELDOUT_FRACTION, is_heldout  # noqa: E402
from trainer import common, reward_model  # noqa: E402
from trainer.reward_model import RewardModel, RewardModelConfig, train_reward_model  # noqa: E402
from trainer.rounds import RoundConfig  # noqa: E402
from policy.settings import apply_overrides  # noqa: E402


MIN_PAIRS = RoundConfig().min_pairs


def read_once() -> None:
    """Every taste judges the same answers: read each answer's features once, not once per
    taste and draw (the fit is what differs, and it takes seconds)."""
    read, memo = reward_model.answer_features, {}

    def cached(backbone, tokenizer, prompts, completions, max_length, batch_size=8, progress=None, words=False):
        keys = [json.dumps([p, c, len(backbone.layers), max_length, words]) for p, c in zip(prompts, completions)]
        new = list({k: i for i, k in enumerate(keys) if k not in memo}.values())
        if new:
            features, cut = read(backbone, tokenizer, [prompts[i] for i in new], [completions[i] for i in new],
                                 max_length, batch_size, words=words)
            memo.update({keys[i]: (f, c) for i, f, c in zip(new, features, cut)})
        return torch.stack([memo[k][0] for k in keys]), [memo[k][1] for k in keys]
    reward_model.answer_features = cached


def trl_baseline(base_path: Path, train: list[dict], held: list[dict], out: Path) -> list[bool]:
    """TRL's RewardTrainer on the same pairs, the model with a score head and a LoRA, one epoch;
    whether it ranks each held-out pair right."""
    tokenizer = common.load_tokenizer(base_path, padding_side="right")
    args = RewardConfig(**common.trainer_args(out, "reward-baseline"), learning_rate=3e-4, num_train_epochs=1,
                        per_device_train_batch_size=8, max_length=512)
    with suppress_seqcls_warning():
        model = AutoModelForSequenceClassification.from_pretrained(base_path, num_labels=1, dtype=torch.float32)
    model.config.pad_token_id = tokenizer.pad_token_id
    dataset = Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in train])
    trainer = RewardTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                            peft_config=common.LoraSettings().config("SEQ_CLS", model))
    trainer.train()
    scorer = trainer.model.eval()

    # Score each held-out answer once: the comparisons are every pair of eight answers per prompt.
    texts = {tokenizer.apply_chat_template(r["prompt"] + r[side], tokenize=False): None
             for r in held for side in ("chosen", "rejected")}
    ordered = list(texts)
    with torch.inference_mode():
        for i in range(0, len(ordered), 8):
            batch = tokenizer(ordered[i:i + 8], return_tensors="pt", padding=True, truncation=True,
                              max_length=512, add_special_tokens=False)
            texts.update(zip(ordered[i:i + 8], scorer(**batch).logits[:, 0].float().tolist()))

    def score(r: dict, side: str) -> float:
        return texts[tokenizer.apply_chat_template(r["prompt"] + r[side], tokenize=False)]
    return [score(r, "chosen") > score(r, "rejected") for r in held]


def by_prompt(hits: list[bool], held: list[dict], resamples: int = 2000) -> dict:
    """Held-out accuracy with a 95% interval from resampling held-out prompts, not pairs: the
    28 pairs of one prompt share its eight answers, so they are not 28 independent trials."""
    groups: dict[str, list[bool]] = {}
    for hit, row in zip(hits, held):
        groups.setdefault(row["prompt"][0]["content"], []).append(hit)
    right = torch.tensor([sum(g) for g in groups.values()], dtype=torch.float)
    count = torch.tensor([len(g) for g in groups.values()], dtype=torch.float)
    draws = torch.randint(len(groups), (resamples, len(groups)), generator=torch.Generator().manual_seed(0))
    rates = right[draws].sum(1) / count[draws].sum(1)
    return {"rm_accuracy": sum(hits) / len(hits), "rm_accuracy_low": rates.quantile(0.025).item(),
            "rm_accuracy_high": rates.quantile(0.975).item(), "rm_heldout_pairs": float(len(hits)),
            "heldout_prompts": float(len(groups))}


def measure(variant: str, base_path: Path, train: list[dict], held: list[dict]) -> dict:
    with tempfile.TemporaryDirectory(prefix="reward-bench-") as tmp:
        start = time.perf_counter()
        if variant == "trl":
            metrics, hits = {}, trl_baseline(base_path, train, held, Path(tmp))
        else:
            cfg = apply_overrides(RewardModelConfig(), [] if variant == "default" else variant.split(","))
            metrics = train_reward_model(base_path, train, held, cfg, Path(tmp) / "rm")
            p = RewardModel.load(Path(tmp) / "rm").preference(*(
                [r[k][0]["content"] for r in held] for k in ("prompt", "chosen", "rejected")))
            hits = (p > 0.5).tolist()
        return metrics | by_prompt(hits, held) | {"seconds": time.perf_counter() - start}


def print_row(r: dict) -> None:
    calibration = r.get("rm_heldout_calibration_error")
    cv = f"{r['rm_cv_accuracy']:.2f} of {r['rm_cv_pairs']:.0f}" if "rm_cv_accuracy" in r else "-"
    print(f"{r['split']:<7}{r['taste']:<15}{r['draw']:>4}  {r['variant']:<12}{r['rm_accuracy']:6.2f} "
          f"[{r['rm_accuracy_low']:.2f}, {r['rm_accuracy_high']:.2f}] of {r['rm_heldout_pairs']:4.0f} "
          f"({r['heldout_prompts']:.0f})  "
          f"{'-' if calibration is None else f'{calibration:.3f}':>6}  {cv:>11}{r['seconds']:7.0f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tastes", default="all", help="design, test, all, or names from bench/tastes.py")
    parser.add_argument("--draws", type=int, default=2, help="training draws: answers 1-2, then 3-4")
    parser.add_argument("--trl", action="store_true", help="add TRL's RewardTrainer as a baseline")
    parser.add_argument("--try", dest="variants", action="append", default=[], metavar="FIELD=VALUE,...",
                        help="also fit the reward model with these RewardModelConfig settings")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--judgements", type=int, default=128)
    parser.add_argument("--out", help="write every row as JSON here")
    args = parser.parse_args()
    names = {"design": list(DESIGN), "test": list(TEST), "all": list(TASTES)}.get(args.tastes) or args.tastes.split(",")
    registry, base_path, prompts = load(args.model)
    heldout = [p for p in prompts if is_heldout(p["id"], HELDOUT_FRACTION)]
    train_prompts = random.Random(0).sample([p for p in prompts if p not in heldout],
                                            round(args.judgements * (1 - HELDOUT_FRACTION)))
    answers = four_answers(registry, prompts)
    more = four_answers(registry, heldout, seed=20_000)  # eight answers to each held-out prompt
    answers |= {p["id"]: answers[p["id"]] + more[p["id"]] for p in heldout}
    del registry
    read_once()
    print("split  taste          draw variant  held-out accuracy [95%] pairs (prompts)  calib.  out of fold  seconds")
    rows = []
    for name in names:
        held = every_pair(TASTES[name], heldout, answers)
        for draw in range(args.draws):
            train = judged(TASTES[name], train_prompts, answers, 2 * draw)
            if len(train) < MIN_PAIRS or not held:
                print(f"{name}, draw {draw + 1}: {len(train)} decisive training pairs and {len(held)} held-out "
                      f"comparisons; a round needs {MIN_PAIRS} and some held out", flush=True)
                continue
            for variant in ["default", *args.variants] + ["trl"] * (args.trl and draw == 0):
                rows.append({"split": "design" if name in DESIGN else "test", "taste": name, "draw": draw + 1,
                             "variant": variant, "train_pairs": len(train), **measure(variant, base_path, train, held)})
                print_row(rows[-1])
    for split in ("design", "test"):
        for variant in ("default", *args.variants, "trl"):
            mine = [r for r in rows if r["split"] == split and r["variant"] == variant]
            if mine:
                print(f"{split} tastes, {variant}: held-out accuracy mean {mean(r['rm_accuracy'] for r in mine):.3f}, "
                      f"lowest {min(r['rm_accuracy'] for r in mine):.3f}" + (
                          f"; calibration error mean {mean(r['rm_heldout_calibration_error'] for r in mine):.3f}, "
                          f"highest {max(r['rm_heldout_calibration_error'] for r in mine):.3f}"
                          if variant != "trl" else "") + f" ({len(mine)} taste-draws)")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
