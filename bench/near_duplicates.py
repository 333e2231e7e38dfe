"""How near-copy detection does at each threshold: precision and recall on a labelled set of
reworded copies and look-alike prompts from one template (tests/data/near_duplicates.jsonl),
and how many of the shipped prompts, which hold no copies, it would drop.

    python bench/near_duplicates.py

A pair counts as caught when the second prompt, looked up in an index holding the first
(`storage.near_duplicates.PromptIndex`, as an import does), is reported as its near-copy.
"""
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from storage.near_duplicates import DEFAULT_THRESHOLD, PromptIndex  # noqa: E402

THRESHOLDS = (0.4, 0.45, 0.5, 0.55, 0.6, 0.7)
LATE = 10  # the labelled pairs written after the word rules in `storage.near_duplicates`


def labelled() -> list[dict]:
    return [json.loads(line) for line in (REPO / "tests" / "data" / "near_duplicates.jsonl").read_text().splitlines()]


def caught(pair: dict, threshold: float) -> bool:
    index = PromptIndex(threshold)
    index.add(pair["a"])
    return index.copy_of(pair["b"]) is not None


def precision_recall(pairs: list[dict], threshold: float) -> tuple[float, float]:
    hits = [(caught(p, threshold), p["duplicate"]) for p in pairs]
    true = sum(h and d for h, d in hits)
    flagged = sum(h for h, _ in hits)
    return true / max(flagged, 1), true / sum(d for _, d in hits)


def shipped_dropped(threshold: float) -> int:
    prompts = [json.loads(line)["prompt"] for line in (REPO / "assets" / "prompts.jsonl").read_text().splitlines()]
    index, dropped = PromptIndex(threshold), 0
    for text in prompts:
        if index.copy_of(text):
            dropped += 1
        else:
            index.add(text)
    return dropped


def main() -> None:
    pairs = labelled()
    print(f"{sum(p['duplicate'] for p in pairs)} reworded copies, {sum(not p['duplicate'] for p in pairs)} look-alikes")
    print("threshold | precision | recall | shipped prompts dropped")
    for threshold in THRESHOLDS:
        precision, recall = precision_recall(pairs, threshold)
        mark = "  (default)" if threshold == DEFAULT_THRESHOLD else ""
        print(f"{threshold:9} | {precision:9.2f} | {recall:6.2f} | {shipped_dropped(threshold)}{mark}")
    # The last pairs were written after the word rules, so they test them rather than fit them.
    precision, recall = precision_recall(pairs[-LATE:], DEFAULT_THRESHOLD)
    print(f"the {LATE} pairs written last, at the default: precision {precision:.2f}, recall {recall:.2f}")


if __name__ == "__main__":
    main()
