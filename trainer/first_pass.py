"""The first pass on new pairs: judges verdict each pair the pair queue makes, on a thread of the
queue's own after the pair is stored, so no annotator waits for them.

- The newest round's reward model, with how sure it is: the calibrated probability that people
  prefer the answer it picked (`RewardModel.preference`).
- Optionally an LLM behind an OpenAI-compatible endpoint, asked in both orders: a language model
  judging two answers favours one position, so a verdict counts only where both orders agree.
  It says which answer, not how sure.

Verdicts are stored apart from votes (`storage.first_pass`).
"""
import logging
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

from storage import first_pass, rounds
from storage.paths import round_outputs

from .reward_model import RewardModel
from .selection import most_informative

log = logging.getLogger(__name__)

Judge = Callable[[object, list[int]], int]  # judge(db, pair_ids) stores verdicts, returns how many


def _pairs(db, pair_ids: list[int]) -> list[dict]:
    return list(db.query(
        f"""SELECT p.id, pr.text AS prompt, p.completion_0, p.completion_1 FROM pairs p
            JOIN prompts pr ON pr.id = p.prompt_id WHERE p.id IN ({','.join('?' * len(pair_ids))})
            ORDER BY p.id""", pair_ids))


class RewardModelJudge:
    """Loads the reward model of the newest round that made a version, once, and again when a
    newer round finishes; before any round there is no judge and pairs go unjudged."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self._lock = threading.Lock()
        self._loaded: tuple[int, RewardModel] | None = None
        self._unloadable: int | None = None  # a round whose reward model failed to load: not retried

    def name(self, round_id: int) -> str:
        return f"reward-model:round-{round_id}"

    def _model(self, db) -> tuple[int, RewardModel] | None:
        newest = max(rounds.registered_round_ids(db), default=None)
        if newest is None or newest == self._unloadable:
            return None
        if self._loaded is None or self._loaded[0] != newest:
            try:
                self._loaded = newest, RewardModel.load(round_outputs(self.data_dir, newest)[1])
            except Exception:
                log.exception("no first pass until the next round: round %d's reward model did not load", newest)
                self._loaded, self._unloadable = None, newest
                return None
        return self._loaded

    def __call__(self, db, pair_ids: list[int]) -> int:
        """Judge these stored pairs; returns how many verdicts were stored."""
        with self._lock:
            loaded = self._model(db)
            if loaded is None or not pair_ids:
                return 0
            round_id, rm = loaded
            pairs = _pairs(db, pair_ids)
            preferred = rm.preference([p["prompt"] for p in pairs], [p["completion_0"] for p in pairs],
                                      [p["completion_1"] for p in pairs])
            return first_pass.add_verdicts(db, self.name(round_id),
                                           {p["id"]: float(x) for p, x in zip(pairs, preferred)})

    def chooser(self, db) -> Callable[[str, list[str]], tuple[int, int]] | None:
        """Which two of a prompt's answers to pair: the two whose order the newest round's
        reward model knows least about (trainer/selection.py); None before any round."""
        with self._lock:
            loaded = self._model(db)
        if loaded is None:
            return None
        rm = loaded[1]

        def least_known(prompt: str, answers: list[str]) -> tuple[int, int]:
            with self._lock:
                features, broken = rm.read([[{"role": "user", "content": prompt}]] * len(answers),
                                           [[{"role": "assistant", "content": a}] for a in answers])
            return most_informative(rm.head, features, broken)
        return least_known


JUDGE_PROMPT = """Two assistants answered the same message. Which answer is better: more helpful, \
correct and clear?

[Message]
{prompt}

[Answer A]
{a}

[Answer B]
{b}

Reply with one letter: A or B."""


@dataclass
class LLMJudgeConfig:
    """An LLM judge behind an OpenAI-compatible endpoint (vLLM, `python -m policy serve`, any
    chat API); off while `url` is empty."""
    url: str = ""                # e.g. http://gpu-server:8000, without /v1
    model: str = ""              # the name the endpoint serves the judge under
    api_key: str = ""            # sent as a bearer token where the endpoint wants one
    max_tokens: int = 4          # the reply is one letter
    timeout: float = 120.0       # seconds per request
    parallel: int = 16           # requests in flight: a worker or vLLM batches them


def letter(reply: str) -> str | None:
    """The answer a judge's reply names, 'A' or 'B' ("B", "Answer A.", "**A**"), or None."""
    match = re.match(r"\W*(?:(?i:answer)\W*)?([AB])\b", reply.strip())
    return match.group(1) if match else None


class LLMJudge:
    """Asks for each pair twice, answer 0 shown first and then second, greedily (temperature 0);
    a verdict where both replies name the same answer, an abstention otherwise."""

    def __init__(self, cfg: LLMJudgeConfig, transport: httpx.BaseTransport | None = None):
        self.cfg = cfg
        headers = {"Authorization": f"Bearer {cfg.api_key}"} if cfg.api_key else {}
        self._http = httpx.Client(base_url=cfg.url.rstrip("/"), headers=headers, transport=transport,
                                  timeout=httpx.Timeout(cfg.timeout, connect=5.0))
        self.name = f"llm:{cfg.model}"

    def ask(self, prompt: str, a: str, b: str) -> str | None:
        response = self._http.post("/v1/chat/completions", json={
            "model": self.cfg.model, "temperature": 0, "seed": 0, "max_tokens": self.cfg.max_tokens,
            "messages": [{"role": "user", "content": JUDGE_PROMPT.format(prompt=prompt, a=a, b=b)}]})
        response.raise_for_status()
        return letter(response.json()["choices"][0]["message"]["content"] or "")

    def _ask_or_fail(self, question: tuple[str, str, str]) -> str | None | Exception:
        try:
            return self.ask(*question)
        except Exception as e:  # noqa: BLE001 - that pair stays unjudged; the others are stored
            return e

    def __call__(self, db, pair_ids: list[int]) -> int:
        """Judge these stored pairs; a pair whose request failed stores nothing (it stays
        unjudged, rather than abstained)."""
        pairs = _pairs(db, pair_ids) if pair_ids else []
        questions = [(p["prompt"], *answers) for p in pairs
                     for answers in ((p["completion_0"], p["completion_1"]), (p["completion_1"], p["completion_0"]))]
        with ThreadPoolExecutor(max_workers=self.cfg.parallel) as pool:
            replies = list(pool.map(self._ask_or_fail, questions))
        failed = [r for r in replies if isinstance(r, Exception)]
        if failed:
            log.warning("the LLM judge %s failed on %d of %d questions: %s", self.name, len(failed), len(replies),
                        failed[0])
        verdicts = {}
        for p, first, second in zip(pairs, replies[::2], replies[1::2]):
            if isinstance(first, Exception) or isinstance(second, Exception):
                continue
            # answer 0 is A the first time and B the second: agreeing replies are "A, B" or "B, A"
            verdicts[p["id"]] = 1.0 if (first, second) == ("A", "B") else 0.0 if (first, second) == ("B", "A") else None
        return first_pass.add_verdicts(db, self.name, verdicts, sure=False)


def every(judges: list[Judge]) -> Judge | None:
    """One judge for the queue that runs each of these in turn; one that fails does not stop the
    others (its pairs stay unjudged by it)."""
    if not judges:
        return None

    def judge_all(db, pair_ids: list[int]) -> int:
        stored = 0
        for judge in judges:
            try:
                stored += judge(db, pair_ids)
            except Exception:
                log.exception("a first-pass judge failed on %d pairs", len(pair_ids))
        return stored
    return judge_all
