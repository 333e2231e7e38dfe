"""How many human judgements does a round's reward model need, and do chosen pairs or a first
pass need fewer?

Every scripted taste (bench/tastes.py; design and test tastes apart) judges pairs of the base
model's four answers to each training prompt (the answers reward_bench.py reads, sampled once
and kept). Three arms spend the same human budget, the prompts in the same order:

- `random`: two of a prompt's answers at random, as the app serves pairs today;
- `active`: of a prompt's answers, the pair the reward model fitted so far knows least about
  (trainer/selection.py, BALD), but a random share of pairs as `random`;
- `route`: random pairs; the reward model fitted so far labels those it is at least
  `--route-confidence` sure of, people the rest and a blind audit share (the second pass's
  `route` mode), and its labels train beside theirs (`data.judge_labels=include`).

The reward model is refitted on every `--refit` human judgements, as if a round ran that often
(in the app a reward model changes at each round). A tie costs a judgement and trains nothing.
After 32, 64 and 128 human judgements, the reward model is fitted as a round fits it and
measured on every pair of eight answers to each held-out prompt (which no arm judges), with a
95% interval from resampling held-out prompts, over `--seeds` orders of the prompts pooled.

    python bench/label_efficiency.py [--tastes design|test|all|concise,...] [--seeds 4] [--out rows.json]
"""
import argparse
import itertools
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from statistics import mean

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reward_bench import by_prompt  # noqa: E402
from sweep import four_answers, load  # noqa: E402
from tastes import DESIGN, TASTES, TEST, Taste  # noqa: E402

import torch  # noqa: E402

from storage.exports import HELDOUT_FRACTION, is_heldout  # noqa: E402
from storage.paths import data_dir  # noqa: E402
from trainer import common  # noqa: E402
from trainer.degeneration import degenerate  # noqa: E402
from trainer.reward_model import (LinearReward, Pairs, RewardModelConfig, answer_features, calibration_error,  # noqa: E402
                                  fit_calibrated, load_backbone, prompt_folds)
from trainer.rounds import RoundConfig  # noqa: E402
from trainer.selection import most_informative  # noqa: E402

ARMS = ("random", "active", "route")
BUDGETS = (32, 64, 128)


@dataclass
class Answers:
    """One prompt's answers as the reward model reads them."""
    prompt: str
    texts: list[str]
    features: torch.Tensor
    broken: torch.Tensor


def read(base_path: Path, prompts: list[dict], answers: dict[int, list[str]], cfg: RewardModelConfig,
         model: str) -> dict[int, Answers]:
    """Every answer's features, read once and kept under data/bench/ (the fits are what differ)."""
    cache = data_dir() / "bench" / f"features-{model}-depth{cfg.depth}{'-words' if cfg.words else ''}.pt"
    memo = torch.load(cache) if cache.exists() else {}
    flat = [(p["text"], a) for p in prompts for a in answers[p["id"]]]
    new = [x for x in dict.fromkeys(flat) if json.dumps(x) not in memo]
    if new:
        print(f"reading {len(new)} answers ...", flush=True)
        backbone = load_backbone(base_path, cfg.depth)
        tokenizer = common.load_tokenizer(base_path, padding_side="right")
        features, _ = answer_features(backbone, tokenizer, [[{"role": "user", "content": p}] for p, _ in new],
                                      [[{"role": "assistant", "content": a}] for _, a in new], cfg.max_length,
                                      cfg.batch_size, words=cfg.words)
        memo.update({json.dumps(x): f for x, f in zip(new, features)})
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save(memo, cache)
    return {p["id"]: Answers(p["text"], answers[p["id"]],
                             torch.stack([memo[json.dumps((p["text"], a))] for a in answers[p["id"]]]),
                             torch.tensor([degenerate(a) for a in answers[p["id"]]]))
            for p in prompts}


@dataclass
class Label:
    prompt: int
    chosen: int
    rejected: int
    scores: tuple[float, float]  # NaN where a judge, not a person, labelled it


def pairs_of(labels: list[Label], known: dict[int, Answers]) -> tuple[Pairs, torch.Tensor]:
    def side(f, which):
        return torch.stack([f(known[x.prompt])[getattr(x, which)] for x in labels])
    pairs = Pairs(side(lambda a: a.features, "chosen"), side(lambda a: a.features, "rejected"),
                  side(lambda a: a.broken, "chosen"), side(lambda a: a.broken, "rejected"),
                  torch.tensor([x.scores for x in labels], dtype=torch.float), torch.ones(len(labels)))
    folds = torch.tensor(prompt_folds([{"prompt": x.prompt} for x in labels], RewardModelConfig().folds))
    return pairs, folds


def fit(labels: list[Label], known: dict[int, Answers], cfg: RewardModelConfig) -> LinearReward | None:
    if len(labels) < RoundConfig().min_pairs:
        return None
    return fit_calibrated(*pairs_of(labels, known), cfg)[0]


def person(taste: Taste, pid: int, answers: Answers, i: int, j: int) -> Label | None:
    """A scripted annotator's judgement with its 1-10 scores; None for a tie."""
    verdict = taste.verdict(answers.texts[i], answers.texts[j])
    if verdict == "tie":
        return None
    c, r = (i, j) if verdict == "a" else (j, i)
    return Label(pid, c, r, (taste.score(answers.texts[c]), taste.score(answers.texts[r])))


def run_arm(arm: str, taste: Taste, pool: list[int], known: dict[int, Answers], seed: int, args,
            cfg: RewardModelConfig) -> list[dict]:
    """One arm on one order of the prompts: the training labels at each budget, and what the
    judge did (route)."""
    rng = random.Random(seed)
    # A prompt comes back for another of its six pairs once every prompt has had one.
    order = [pid for _ in range(6) for pid in rng.sample(pool, len(pool))]
    used: dict[int, set] = {}
    labels: list[Label] = []
    head, humans, since_fit, ties = None, 0, 0, 0
    judged_by_head, judge_decisive, judge_right = 0, 0, 0  # its labels, those on pairs the taste decides, right
    chosen = 0  # pairs the reward model chose (active)
    out = []
    for pid in order:
        if humans >= max(BUDGETS):
            break
        answers = known[pid]
        free = [c for c in itertools.combinations(range(len(answers.texts)), 2) if c not in used.setdefault(pid, set())
                and answers.texts[c[0]] != answers.texts[c[1]]]
        if not free:
            continue
        if arm == "active" and head is not None and rng.random() >= args.random_share:
            i, j = most_informative(head, answers.features, answers.broken, free)
            chosen += 1
        else:
            i, j = rng.choice(free)
        used[pid].add((i, j))
        if arm == "route" and head is not None and rng.random() >= args.audit_share:
            p = head.preference(answers.features[[i]], answers.features[[j]], answers.broken[[i]],
                                answers.broken[[j]]).item()
            if max(p, 1 - p) >= args.route_confidence:
                c, r = (i, j) if p > 0.5 else (j, i)
                labels.append(Label(pid, c, r, (float("nan"), float("nan"))))
                judged_by_head += 1
                verdict = taste.verdict(answers.texts[c], answers.texts[r])
                judge_decisive += verdict != "tie"
                judge_right += verdict == "a"
                continue
        humans += 1
        since_fit += 1
        label = person(taste, pid, answers, i, j)
        if label is None:
            ties += 1
        else:
            labels.append(label)
        if humans in BUDGETS:
            out.append({"budget": humans, "labels": list(labels), "ties": ties, "judge_labels": judged_by_head,
                        "judge_decisive": judge_decisive, "judge_right": judge_right, "chosen": chosen})
        if since_fit >= args.refit and arm != "random":
            head, since_fit = fit(labels, known, cfg), 0
    return out


def measure(labels: list[Label], known: dict[int, Answers], held: list[tuple[int, int, int]],
            cfg: RewardModelConfig) -> torch.Tensor:
    """The probability that each held-out comparison's chosen answer wins, from a reward model
    fitted on these labels as a round fits it."""
    head = fit(labels, known, cfg)
    if head is None:
        return torch.full((len(held),), 0.5)
    f = lambda which: torch.stack([known[h[0]].features[h[which]] for h in held])  # noqa: E731
    b = lambda which: torch.stack([known[h[0]].broken[h[which]] for h in held])  # noqa: E731
    return head.preference(f(1), f(2), b(1), b(2))


def right(p: torch.Tensor) -> torch.Tensor:
    """1 for each comparison ranked right, 0 wrong, a half where the reward model cannot tell
    (mostly: no reward model, too few decisive judgements to fit one)."""
    return (p > 0.5).float() + 0.5 * (p == 0.5).float()


def heldout_comparisons(taste: Taste, heldout: list[int], known: dict[int, Answers]) -> list[tuple[int, int, int]]:
    """(prompt, chosen, rejected) for every decisive pair of a held-out prompt's eight answers."""
    out = []
    for pid in heldout:
        texts = known[pid].texts
        for i, j in itertools.combinations(range(len(texts)), 2):
            verdict = taste.verdict(texts[i], texts[j])
            if verdict != "tie":
                out.append((pid, i, j) if verdict == "a" else (pid, j, i))
    return out


def paired(rows: list[dict], split: str, arm: str) -> str:
    """The arm's accuracy after 64 human judgements less random pairs' after 128, seed by seed
    (a seed is one order of the prompts, the same in every arm), over the split's tastes."""
    def per_seed(arm: str, humans: int) -> dict[str, list[float]]:
        return {r["taste"]: r["per_seed"] for r in rows if (r["split"], r["arm"], r["humans"]) == (split, arm, humans)}
    mine, random_ = per_seed(arm, 64), per_seed("random", 128)
    gaps = [a - b for taste in mine.keys() & random_.keys() for a, b in zip(mine[taste], random_[taste])]
    if not gaps:
        return "nothing to compare"
    return (f"mean difference {mean(gaps):+.3f}, at least as good in {sum(g >= 0 for g in gaps)} of {len(gaps)} "
            "taste-seeds")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tastes", default="all", help="design, test, all, or names from bench/tastes.py")
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--seeds", type=int, default=4, help="orders of the prompts, pooled")
    parser.add_argument("--refit", type=int, default=16, help="human judgements between fits of the reward model")
    parser.add_argument("--random-share", type=float, default=0.25, help="active: pairs still drawn at random")
    parser.add_argument("--audit-share", type=float, default=0.15, help="route: pairs people judge blind")
    parser.add_argument("--route-confidence", type=float, default=0.8)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--out", help="write every row as JSON here")
    args = parser.parse_args()
    names = {"design": list(DESIGN), "test": list(TEST), "all": list(TASTES)}.get(args.tastes) or args.tastes.split(",")
    cfg = RewardModelConfig()
    registry, base_path, prompts = load(args.model)
    heldout = [p for p in prompts if is_heldout(p["id"], HELDOUT_FRACTION)]
    answers = four_answers(registry, prompts)
    more = four_answers(registry, heldout, seed=20_000)  # eight answers to each held-out prompt
    answers |= {p["id"]: answers[p["id"]] + more[p["id"]] for p in heldout}
    del registry
    known = read(base_path, prompts, answers, cfg, args.model)
    pool = [p["id"] for p in prompts if p not in heldout]
    held_ids = [p["id"] for p in heldout]
    print("split  taste          arm     humans  held-out accuracy [95%] (comparisons x seeds)  calib.  "
          "decisive  ties  judge labels (on ties; right where decisive)", flush=True)
    rows = []
    for name in names:
        taste = TASTES[name]
        held = heldout_comparisons(taste, held_ids, known)
        held_rows = [{"prompt": [{"content": known[h[0]].prompt}]} for h in held]
        for arm in args.arms.split(","):
            runs = [run_arm(arm, taste, pool, known, seed, args, cfg) for seed in range(args.seeds)]
            for k, budget in enumerate(BUDGETS):
                snaps = [run[k] for run in runs if len(run) > k]
                if not snaps:
                    print(f"{name}, {arm}: the prompts ran out before {budget} human judgements", flush=True)
                    continue
                probabilities = [measure(s["labels"], known, held, cfg) for s in snaps]
                per_seed = [right(q) for q in probabilities]
                judge, decisive = sum(s["judge_labels"] for s in snaps), sum(s["judge_decisive"] for s in snaps)
                fitted = torch.cat(probabilities)
                row = {"split": "design" if name in DESIGN else "test", "taste": name, "arm": arm, "humans": budget,
                       "seeds": len(snaps), **by_prompt(torch.cat(per_seed).tolist(), held_rows * len(snaps)),
                       "calibration_error": calibration_error(fitted[fitted != 0.5]),
                       "decisive": mean(len(s["labels"]) - s["judge_labels"] for s in snaps),
                       "ties": mean(s["ties"] for s in snaps), "judge_labels": judge / len(snaps),
                       "judge_on_ties": (judge - decisive) / len(snaps),
                       "chosen": mean(s["chosen"] for s in snaps),
                       "judge_right": sum(s["judge_right"] for s in snaps) / decisive if decisive else float("nan"),
                       "per_seed": [q.mean().item() for q in per_seed]}
                rows.append(row)
                print(f"{row['split']:<7}{name:<15}{arm:<8}{budget:>6}  {row['rm_accuracy']:.3f} "
                      f"[{row['rm_accuracy_low']:.3f}, {row['rm_accuracy_high']:.3f}] ({len(held)} x {len(snaps)})  "
                      f"{row['calibration_error']:.3f}  {row['decisive']:8.1f}  {row['ties']:4.1f}  "
                      f"{row['judge_labels']:5.1f} ({row['judge_on_ties']:.1f}; {row['judge_right']:.2f})", flush=True)
    for split in ("design", "test"):
        for arm in args.arms.split(","):
            for budget in BUDGETS:
                mine = [r for r in rows if r["split"] == split and r["arm"] == arm and r["humans"] == budget]
                if mine:
                    print(f"{split} tastes, {arm}, {budget} humans: held-out accuracy mean "
                          f"{mean(r['rm_accuracy'] for r in mine):.3f} ({len(mine)} tastes)")
        for arm in set(args.arms.split(",")) - {"random"}:
            print(f"{split} tastes, {arm} at 64 against random at 128: {paired(rows, split, arm)}")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
