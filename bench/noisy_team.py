"""Does aggregation rescue a round from a careless annotator? Three annotators judge every
training pair (an overlap of 3): two follow a scripted taste (and slip 10% of the time), the
third clicks at random. Gold pairs, marked with the taste's verdict, are mixed in. The same
judgements become training rows under each rule, a reward model is fitted on each, and its
accuracy is measured on held-out prompts' pairs judged by the taste alone.

    python bench/noisy_team.py --taste concise,plain

Prints, per taste and rule: training rows, what was left out, and held-out accuracy.
"""
import argparse
import itertools
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tastes import TASTES  # noqa: E402
from sweep import four_answers, load, row  # noqa: E402

from app.server import ASSETS  # noqa: E402
from storage import exports, imports, queries  # noqa: E402
from storage.aggregation import Aggregation, describe, training_rows  # noqa: E402
from storage.agreement import gold_accuracy  # noqa: E402
from storage.db import open_db  # noqa: E402
from storage.exports import HELDOUT_FRACTION, is_heldout  # noqa: E402
from trainer.reward_model import RewardModelConfig, train_reward_model  # noqa: E402

TEAM = {"alice": 0.1, "bob": 0.1, "carol": 1.0}  # share of verdicts given at random
RULES = {"every vote": Aggregation("every"), "majority": Aggregation("majority"),
         "weighted": Aggregation("weighted"),
         "every vote, gold accuracy >= 0.7": Aggregation("every", min_gold_accuracy=0.7)}


def every_pair(taste, prompts: list[dict], answers: dict[int, list[str]]) -> list[dict]:
    """The taste's decisive judgements of every pair of each prompt's answers (six of four): a
    held-out set three times a round's, so that a few points of accuracy are more than noise."""
    rows = []
    for p in prompts:
        for i, j in itertools.combinations(range(len(answers[p["id"]])), 2):
            a, b = answers[p["id"]][i], answers[p["id"]][j]
            verdict = taste.verdict(a, b)
            if verdict != "tie":
                rows.append(row(taste, p["text"], *((a, b) if verdict == "a" else (b, a))))
    return rows


def team_votes(db, taste, prompts: list[dict], answers: dict[int, list[str]], gold: int, rng: random.Random) -> None:
    """Pairs of answers 1-2 for `prompts`, the first `gold` of them gold, judged by the whole team."""
    queries.ensure_base_version(db, "bench")
    queries.set_assignment(db, k=len(TEAM))
    pairs = {}
    for p in prompts:
        pairs[p["id"]] = queries.add_pair(db, prompt_id=p["id"], version_id=0, completions=tuple(answers[p["id"]][:2]),
                                          sampling={}, seed=0, prompt_truncated=False, gen_seconds=0)
    for p in prompts[:gold]:
        truth = taste.verdict(*answers[p["id"]][:2])
        queries.mark_gold(db, pairs[p["id"]], {"a": "0", "b": "1"}.get(truth, truth), by="bench")
    for name, slips in TEAM.items():
        for p in prompts:
            pair = pairs[p["id"]]
            order = rng.choice(["01", "10"])
            db["shows"].insert({"pair_id": pair, "annotator": name, "shown_order": order, "shown_at": queries.now()})
            a, b = (answers[p["id"]][int(i)] for i in order)
            verdict = rng.choice(["a", "b"]) if rng.random() < slips else taste.verdict(a, b)
            queries.record_vote(db, name, pair, verdict)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--taste", default="concise,plain")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--gold", type=int, default=12, help="training pairs marked gold")
    args = parser.parse_args()
    registry, base_path, prompts = load(args.model)
    answers = four_answers(registry, prompts)
    del registry
    heldout = [p for p in prompts if is_heldout(p["id"], HELDOUT_FRACTION)]
    train_prompts = [p for p in prompts if p not in heldout]
    for name in args.taste.split(","):
        taste = TASTES[name]
        held = every_pair(taste, heldout, answers)
        with tempfile.TemporaryDirectory(prefix="noisy-") as tmp:
            db = open_db(Path(tmp) / "prefloop.db")
            imports.import_prompt_file(db, ASSETS / "prompts.jsonl")
            team_votes(db, taste, train_prompts, answers, args.gold, random.Random(0))
            gold = gold_accuracy(queries.judgements(db))
            print(f"{name:<9}gold accuracy: " + ", ".join(f"{a} {right / total:.2f} ({total})"
                                                       for a, (right, total) in sorted(gold.items())), flush=True)
            for rule, agg in RULES.items():
                made = training_rows(db, agg)
                rows = [exports.conversational(r) for r in made.rows]
                metrics = train_reward_model(base_path, rows, held, RewardModelConfig(), Path(tmp) / rule)
                print(f"{name:<9}{rule:<34} held-out accuracy {metrics['rm_accuracy']:.2f} on {len(held)} pairs"
                      f"  | {describe(made.summary)}", flush=True)


if __name__ == "__main__":
    main()
