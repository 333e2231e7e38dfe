"""Near-copies of prompts: the same request reworded ("Please write a four line poem about ..."),
which case and whitespace rules miss and which would make annotators judge one prompt twice.

Similarity is the Jaccard index of character 5-grams of the prompt's words, lowercased: a few
changed words or a reordered clause keep most 5-grams, while two prompts from one template
("a haiku about a cat ..." / "... about a dog ...") share fewer. MinHash LSH (`datasketch`)
finds candidates among any number of known prompts without comparing every pair; the exact
Jaccard of the candidates decides, so a MinHash estimate never drops a prompt on its own. Letters
alike do not make a copy of a short prompt that swaps its subject ("a poem about love" / "...
war") or negates it: such a prompt, or one with other numbers, is a different question.
The default threshold was measured with bench/near_duplicates.py on a labelled set of reworded
copies and template look-alikes, and on the shipped prompts, which hold no copies.
"""
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from datasketch import MinHash, MinHashLSH

SHINGLE = 5
DEFAULT_THRESHOLD = 0.5
NUM_PERM = 128
# LSH looks for candidates this far below the threshold: a MinHash estimate on 128 permutations
# is within about 0.09 of the true similarity 95% of the time.
SLACK = 0.15


def shingles(text: str) -> set[bytes]:
    words = " ".join(re.findall(r"\w+", text.casefold()))
    return {words[i:i + SHINGLE].encode() for i in range(max(1, len(words) - SHINGLE + 1))}


def _numbers(text: str) -> frozenset[str]:
    return frozenset(re.findall(r"\d+(?:[.,]\d+)?", text))


# Words a rewording adds, drops or swaps without changing the request.
FILLER = frozenset("""a an the this that these those which who whom whose what's it its is are was were be
    been am do does did can could would will shall should may might must i me my mine we us our you
    your yours please kindly thanks thank just also then and or but so of to in into on onto at for
    from by with as about there here some any""".split())
NEGATIONS = frozenset("not no never without don't doesn't isn't aren't can't cannot won't shouldn't".split())
NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve".split())}


def _words(text: str) -> Counter:
    # Words, numbers, and operators such as == or -> (a question about `==` is not one about lists).
    tokens = re.findall(r"\d+|[^\W\d_]+(?:'[^\W\d_]+)?|[=<>!+\-*/%&|^~:]{2,}", text.casefold())
    return Counter(NUMBER_WORDS.get(t, t) for t in tokens)


def _alike(a: str, b: str) -> bool:
    """Spellings of one word: neighbour / neighbor, tyre / tire, grandma / grandmother,
    declining / decline."""
    return (a.startswith(b[:4]) or b.startswith(a[:4]) or similarity(_grams(a), _grams(b)) >= 0.4
            or (min(len(a), len(b)) >= 4 and _one_edit(a, b)))


def _one_edit(a: str, b: str) -> bool:
    if abs(len(a) - len(b)) > 1:
        return False
    i = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return a[i + 1:] == b[i + 1:] or a[i:] == b[i + 1:] or a[i + 1:] == b[i:]


def _grams(word: str) -> set[bytes]:
    padded = f" {word} "
    return {padded[i:i + 3].encode() for i in range(len(padded) - 2)}


def replaces_a_word(a: str, b: str) -> bool:
    """Whether b says something a does not: it negates where a does not (or the reverse), or a
    word of each is replaced by an unlike word of the other ("a cat" / "a dog", "French" /
    "Spanish", "two plus two" / "two plus three"). Words added or dropped alone, filler swapped
    for filler, and spelling variants are rewordings."""
    wa, wb = _words(a), _words(b)
    only_a, only_b = wa - wb, wb - wa
    if NEGATIONS & (only_a.keys() | only_b.keys()):
        return True
    content_a = [w for w in only_a if w not in FILLER]
    content_b = [w for w in only_b if w not in FILLER]
    unmatched_a = [w for w in content_a if not any(_alike(w, v) for v in content_b)]
    unmatched_b = [w for w in content_b if not any(_alike(w, v) for v in content_a)]
    return bool(unmatched_a and unmatched_b)


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
        """The known prompt this one is a near-copy of (the most similar), or None. However alike
        their letters, two prompts are different questions when both hold numbers but not the
        same ones ("3 km north and 4 km east" / "5 km north and 12 km east"), or when one
        replaces a word of the other or negates it (see `replaces_a_word`)."""
        grams, numbers = shingles(text), _numbers(text)
        scored = [(similarity(grams, self._shingles[i]), i) for i in self._lsh.query(self._minhash(grams))
                  if not (numbers and self._numbers[i] and numbers != self._numbers[i])]
        scored = [(sim, i) for sim, i in scored if sim >= self.threshold and not replaces_a_word(self._texts[i], text)]
        best = max(scored, default=(0.0, -1))
        if best[0] < self.threshold:
            return None
        return NearCopy(text, self._texts[best[1]], round(best[0], 3))
