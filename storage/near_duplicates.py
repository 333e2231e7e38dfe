"""Near-copies of prompts: the same request reworded ("Please write a four line poem about ..."),
which case and whitespace rules miss and which would make annotators judge one prompt twice.

Similarity is the Jaccard index of character 5-grams of the prompt's words, lowercased: a few
changed words or a reordered clause keep most 5-grams, while two prompts from one template
("a haiku about a cat ..." / "... about a dog ...") share fewer. MinHash LSH (`datasketch`)
finds candidates among any number of known prompts without comparing every pair; the exact
Jaccard of the candidates decides, so a MinHash estimate never drops a prompt on its own. Two
prompts holding different numbers are different questions, however alike their words.
The default threshold was measured with bench/near_duplicates.py on a labelled set of reworded
copies and template look-alikes, and on the shipped prompts, which hold no copies.
"""
import re
from collections.abc import Iterable
from dataclasses import dataclass

from datasketch import MinHash, MinHashLSH

SHINGLE = 5
DEFAULT_THRESHOLD = 0.6
NUM_PERM = 128
# LSH looks for candidates this far below the threshold: a MinHash estimate on 128 permutations
# is within about 0.09 of the true similarity 95% of the time.
SLACK = 0.15


def shingles(text: str) -> set[bytes]:
    words = " ".join(re.findall(r"\w+", text.casefold()))
    return {words[i:i + SHINGLE].encode() for i in range(max(1, len(words) - SHINGLE + 1))}


def _numbers(text: str) -> frozenset[str]:
    return frozenset(re.findall(r"\d+(?:[.,]\d+)?", text))


def similarity(a: set[bytes], b: set[bytes]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


@dataclass
class NearCopy:
    text: str
    similar_to: str
    similarity: float


class PromptIndex:
    """Prompts seen so far, to ask of each new one which known prompt it copies, if any."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD):
        if not 0 < threshold <= 1:
            raise ValueError(f"the near-duplicate threshold must be above 0 and at most 1, not {threshold}")
        self.threshold = threshold
        self._lsh = MinHashLSH(threshold=max(0.05, threshold - SLACK), num_perm=NUM_PERM)
        self._texts: list[str] = []
        self._shingles: list[set[bytes]] = []
        self._numbers: list[frozenset[str]] = []

    def _minhash(self, grams: set[bytes]) -> MinHash:
        m = MinHash(num_perm=NUM_PERM, seed=1)
        m.update_batch(sorted(grams))
        return m

    def add_all(self, texts: Iterable[str]) -> None:
        texts = list(texts)
        grams = [shingles(t) for t in texts]
        for text, g, m in zip(texts, grams, MinHash.bulk([sorted(g) for g in grams], num_perm=NUM_PERM, seed=1)):
            self._insert(text, g, m)

    def add(self, text: str) -> None:
        g = shingles(text)
        self._insert(text, g, self._minhash(g))

    def _insert(self, text: str, grams: set[bytes], m: MinHash) -> None:
        self._lsh.insert(len(self._texts), m)
        self._texts.append(text)
        self._shingles.append(grams)
        self._numbers.append(_numbers(text))

    def copy_of(self, text: str) -> NearCopy | None:
        """The known prompt this one is a near-copy of (the most similar), or None. Two prompts
        that both hold numbers, but not the same ones, are different questions ("3 km north and
        4 km east" / "5 km north and 12 km east") however alike their words."""
        grams, numbers = shingles(text), _numbers(text)
        scored = [(similarity(grams, self._shingles[i]), i) for i in self._lsh.query(self._minhash(grams))
                  if not (numbers and self._numbers[i] and numbers != self._numbers[i])]
        best = max(scored, default=(0.0, -1))
        if best[0] < self.threshold:
            return None
        return NearCopy(text, self._texts[best[1]], round(best[0], 3))
