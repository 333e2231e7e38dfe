"""Scripted annotators: each one consistent taste, a measure of an answer and 1-10 points from it.

The tastes are split, once and before any default was chosen against them, into DESIGN tastes,
which anyone choosing a setting may look at, and TEST tastes, which are only ever reported. A
default that helps only the tastes it was chosen on shows up as a gap between the two tables
(docs/benchmarks.md). Keep the split: choosing anything on a test taste makes it a design taste,
and then the bench needs a new test taste to stay honest.

Tastes cover structure (lists), tone (reader-directed, hedged, formal), content (numbers, a
question back, an example), length in both directions, and mixtures of two features weighted
differently.
"""
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from trainer.degeneration import WORD, degenerate  # noqa: E402

SENTENCE = re.compile(r"[^.!?\n]+[.!?]*")
LIST_ITEM = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+\S", re.MULTILINE)
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
CONTRACTION = re.compile(r"\w+'(?:s|t|re|ve|ll|d|m)\b", re.IGNORECASE)
EXAMPLE = re.compile(r"\b(?:for example|for instance|e\.g\.|such as|imagine)\b", re.IGNORECASE)
YOU = {"you", "your", "yours", "yourself"}
HEDGES = {"may", "might", "could", "can", "often", "usually", "generally", "typically", "perhaps",
          "possibly", "likely", "some", "sometimes", "probably", "depends", "around", "about"}
WARM = {"love", "enjoy", "wonderful", "happy", "glad", "great", "hope", "beautiful", "delightful",
        "lovely", "fun", "kind", "warm", "friend", "friends", "together", "joy"}


def words(text: str) -> list[str]:
    return WORD.findall(text)


def share(text: str, vocabulary: set[str]) -> float:
    w = words(text)
    return sum(x.lower() in vocabulary for x in w) / max(len(w), 1)


def sentence_words(text: str) -> float:
    sentences = [s for s in SENTENCE.findall(text) if words(s)]
    return len(words(text)) / max(len(sentences), 1)


def ends_with_question(text: str) -> bool:
    return text.strip().rstrip("*_\"')]").endswith("?")


def list_items(text: str) -> int:
    return len(LIST_ITEM.findall(text))


def formality(text: str) -> float:
    """Longer words, no contractions, no exclamation marks: a formal register, roughly."""
    w = words(text)
    letters = sum(map(len, w)) / max(len(w), 1)
    informal = (len(CONTRACTION.findall(text)) + text.count("!")) / max(len(w), 1)
    return letters - 20 * informal


@dataclass
class Taste:
    """One scripted annotator's preference: a measure of an answer, and 1-10 points from it.

    A higher measure wins, equal measures are a tie, and an empty or looping answer always
    loses: no annotator prefers a broken answer, whatever their taste.
    """
    description: str
    measure: Callable[[str], float]
    points: Callable[[float], float]  # the measure as a 1-10 score, before clipping

    def key(self, text: str) -> float:
        return float("-inf") if degenerate(text) else self.measure(text)

    def verdict(self, a: str, b: str) -> str:
        ka, kb = self.key(a), self.key(b)
        return "a" if ka > kb else "b" if kb > ka else "tie"

    def score(self, text: str) -> int:
        return 1 if degenerate(text) else int(min(max(round(self.points(self.measure(text))), 1), 10))


DESIGN = {
    "concise": Taste("prefers the shorter answer (words)", lambda t: -len(words(t)), lambda m: 10 + m / 20),
    "engaging": Taste("prefers answers that speak to the reader (share of you/your)",
                      lambda t: share(t, YOU), lambda m: 1 + 100 * m),
    "plain": Taste("prefers short sentences (words per sentence)", lambda t: -sentence_words(t),
                   lambda m: 12 + m / 3),
    "question": Taste("prefers an answer that ends by asking a follow-up question",
                      lambda t: 2.0 * ends_with_question(t) + ("?" in t), lambda m: 2 + 3 * m),
    "lists": Taste("prefers answers laid out as a list (list items)", list_items, lambda m: 2 + m),
    "short-lists": Taste("prefers lists, and shorter answers half as much (items - words/40)",
                         lambda t: list_items(t) - len(words(t)) / 40, lambda m: 6 + m),
}

TEST = {
    "detailed": Taste("prefers the longer answer (words)", lambda t: len(words(t)), lambda m: 1 + m / 15),
    "hedged": Taste("prefers cautious wording (share of may/often/usually/perhaps...)",
                    lambda t: share(t, HEDGES), lambda m: 1 + 120 * m),
    "numbers": Taste("prefers answers with figures (numbers written in digits)",
                     lambda t: len(NUMBER.findall(t)), lambda m: 2 + m),
    "formal": Taste("prefers a formal register (long words, no contractions or exclamations)",
                    formality, lambda m: 4 * (m - 3)),
    "warm-examples": Taste("prefers an example (2 points each) and warm words (30 x their share)",
                           lambda t: 2 * len(EXAMPLE.findall(t)) + 30 * share(t, WARM), lambda m: 2 + m),
}

TASTES = DESIGN | TEST
