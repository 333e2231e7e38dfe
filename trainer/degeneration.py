"""Empty and looping answers: what an over-trained policy writes, whatever the annotators' taste.

The gate keeps as a candidate one that writes more of them than the base model does (beyond a
margin), and the reward model scores them below every answer it was fitted on, so RL rounds are
not paid for them either.
"""
import re

WORD = re.compile(r"\w+")


def repetitive(text: str, n: int = 4, share: float = 0.3) -> bool:
    """More than `share` of the answer's word n-grams repeat an earlier one: a loop, not prose."""
    words = [w.lower() for w in WORD.findall(text)]
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return len(grams) >= 8 and 1 - len(set(grams)) / len(grams) > share


def empty(text: str) -> bool:
    """Under three words: no answer to anything the app asks."""
    return len(WORD.findall(text)) < 3


def degenerate(text: str) -> bool:
    return empty(text) or repetitive(text)


def degeneration(texts: list[str]) -> dict[str, float]:
    """Shares of empty and looping answers, and of either: what an over-trained policy writes."""
    n = max(len(texts), 1)
    return {"empty_share": sum(map(empty, texts)) / n, "repetitive_share": sum(map(repetitive, texts)) / n,
            "degenerate_share": sum(map(degenerate, texts)) / n}
