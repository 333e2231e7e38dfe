"""The pair queue: pairs are generated ahead, in the database, so annotators never wait.

The stock is simply the live version's pairs that still need judgements and that nobody holds
(with an overlap of k, a pair needs k annotators), so it survives a restart; a background
thread keeps enough pairs that nobody has touched yet for the annotators active lately, makes
more at once for anyone who has seen everything in stock, and sleeps until a claim wakes it. The live version is read from the database on every call, so a
promotion made by another process (a training round, the admin tab, the CLI) reaches the app
at the next claim, or within `idle_seconds`: a batch still being made for the old version is
abandoned, and annotators are served the old version's stock until the new version's first
batch is stored, so nobody waits for a promotion.
"""
import logging
import queue
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from policy.registry import PolicyRegistry
from policy.remote import RemotePolicy
from policy.sampling import Answer, Cancelled, Pick, SamplingConfig, first_two
from storage import queries, rounds
from storage.db import thread_db

log = logging.getLogger(__name__)


@dataclass
class SelectionConfig:
    """Which two answers make a pair. With `answers` above 2 the live policy writes that many to
    each prompt and the newest round's reward model pairs the two whose order it knows least
    about (trainer/selection.py); a `random_share` of pairs are the first two answers as they
    came, so the data keep a random part. Before the first round there is no reward model to
    choose, and two answers are written as ever. More answers make each batch slower to write."""
    answers: int = 2
    random_share: float = 0.25


# choose(db): None while there is no reward model, else chooser(prompt, answers) -> the two to pair
Choose = Callable[[object], Callable[[str, list[str]], tuple[int, int]] | None]


@dataclass
class QueueConfig:
    """Stock follows demand: about `per_annotator` unshown pairs for everyone who was shown a pair
    in the last `active_minutes`, never fewer than `min_ready` (the first annotator of the day
    should not wait) nor more than `max_ready` (a promotion throws the old version's stock away)."""
    per_annotator: int = 2
    min_ready: int = 4
    max_ready: int = 64
    # Pairs per `generate` call. On two cores 8 pairs take 10.4 s in one call, 28 s one at a time
    # (2.7x); 16 take 18.1 s (3.1x) but hold the model twice as long (bench/annotators.py).
    batch: int = 8
    active_minutes: float = 5.0
    claim_seconds: float = queries.CLAIM_SECONDS  # an unjudged, unskipped pair goes back after this
    idle_seconds: float = 2.0  # how often an idle queue looks for a newly promoted version
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)


class PairQueue:
    def __init__(self, db_path: Path, registry: PolicyRegistry | RemotePolicy, cfg: QueueConfig,
                 rng: random.Random | None = None, judge: Callable[[object, list[int]], int] | None = None,
                 choose: Choose | None = None):
        if cfg.selection.answers < 2 or not 0 <= cfg.selection.random_share <= 1:
            raise ValueError(f"queue.selection.answers must be at least 2 (it is {cfg.selection.answers}) and "
                             f"queue.selection.random_share within 0-1 (it is {cfg.selection.random_share})")
        self.db_path, self.registry, self.cfg = db_path, registry, cfg
        self.judge = judge  # the first pass: judge(db, pair_ids) stores verdicts on new pairs
        self.choose = choose  # which two of a prompt's answers to pair (see SelectionConfig)
        self._unjudged: queue.SimpleQueue[list[int]] = queue.SimpleQueue()
        self._judging: threading.Thread | None = None
        self.rng = rng or random.Random()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._stocked = threading.Condition()  # guards the counters below
        self._batches = 0    # batches stored, so a waiter never misses one
        self._failures = 0   # refills that failed, so a waiter does not wait forever
        self._last_error = ""
        self._waiting = 0
        # Waiting annotators, and the batch count when they last found no pair for them: with an
        # overlap above 1 the stock can hold pairs that they have all seen.
        self._hungry: dict[str, int] = {}
        # The batch under way: version, cancel, how many pairs.
        self._making: tuple[int, threading.Event, int] | None = None
        self._ready = 0  # the live version's untouched stock when the refill last counted it
        self._thread: threading.Thread | None = None
        self._serving: int | None = None  # the version the refill makes pairs for
        self._draining: int | None = None  # the version before it, while the new one has no stock

    def start(self) -> "PairQueue":
        self._thread = threading.Thread(target=self._refill_forever, name="pair-queue", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if making := self._making:
            making[1].set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=60)

    def next_pair(self, annotator: str) -> dict:
        """The pair this annotator was judging (a reloaded page shows it again), else a fresh one.

        With the stock empty it waits for the refill, which makes one batch for everyone waiting,
        and gives up with the refill's error if a refill fails meanwhile; with no refill running
        it generates a pair itself.
        """
        db = thread_db(self.db_path)
        with self._stocked:
            self._waiting += 1
            failures = self._failures
        try:
            while True:
                with self._stocked:
                    batches = self._batches
                pair = self._claim(db, annotator)
                if pair is not None:
                    return pair
                with self._stocked:
                    self._hungry[annotator] = batches
                if self._thread is None or not self._thread.is_alive():
                    self.generate(queries.live_version_id(db), 1)
                    continue
                with self._stocked:
                    if self._failures != failures:
                        raise LookupError(f"no pair could be made: {self._last_error}")
                    if self._batches == batches:
                        self._stocked.wait(timeout=self.cfg.idle_seconds)
        finally:
            with self._stocked:
                self._waiting -= 1
                self._hungry.pop(annotator, None)

    def _claim(self, db, annotator: str) -> dict | None:
        """The pair this annotator holds, else one of the live version's, or, until the live
        version has stock, one of the version before it."""
        version = queries.live_version_id(db)
        making = self._making
        if making and making[0] != version:
            making[1].set()  # stop the old version's batch now, not when it ends
        self._wake.set()
        pair = (queries.open_claim(db, annotator, self.cfg.claim_seconds)
                or queries.show_next_pair(db, annotator, version, self.rng, self.cfg.claim_seconds))
        old = self._serving if self._serving != version else self._draining
        if pair is None and old is not None:
            pair = queries.show_next_pair(db, annotator, old, self.rng, self.cfg.claim_seconds)
        return pair

    def outlook(self) -> str:
        """What an annotator waiting for a pair is waiting for, in words: pairs ready, or the batch
        being written and about how long such a batch takes here. Asked at every vote, so it
        reads the stock the refill counted last (at most `idle_seconds` old) rather than count
        it again."""
        ready = self._ready
        if ready:
            return f"{ready} pair{'s are' if ready > 1 else ' is'} ready; yours is on its way."
        making = self._making
        if making is None:
            return "No pair is ready yet; the model starts writing some now."
        per_pair = queries.recent_pair_seconds(thread_db(self.db_path), making[0])
        took = f", which takes about {making[2] * per_pair:.0f} s here" if per_pair else ""
        return f"No pair is ready yet: the model is writing {making[2]} now{took}."

    def _starved(self) -> int:
        """Annotators who found nothing for them in the stock since the last batch was stored."""
        with self._stocked:
            return sum(batches == self._batches for batches in self._hungry.values())

    def target_stock(self, db) -> int:
        """How many unshown pairs of the live version to keep right now."""
        demand = self.cfg.per_annotator * queries.active_annotators(db, self.cfg.active_minutes)
        return min(max(self.cfg.min_ready, demand, self._waiting), self.cfg.max_ready)

    def generate(self, version_id: int, n: int, cancel: threading.Event | None = None) -> int:
        """Sample and store n pairs of this version, for the prompts it has answered least, in
        one batch; wake everyone waiting for stock."""
        db = thread_db(self.db_path)
        self.load_version(version_id)
        prompts = queries.prompts_needing_pairs(db, version_id, n)
        if not prompts:
            raise LookupError("there are no prompts to annotate; import some with "
                              "`python -m storage import FILE`")
        seed = self.rng.randrange(2**31)
        texts = [p["text"] for p in prompts]
        chosen: dict[int, tuple[int, int]] = {}  # the pairs the reward model chose, by prompt
        copies, pick = self._selection(db, texts, chosen)
        pairs = self.registry.sample_pairs(version_id, texts, self.cfg.sampling, seed, cancel, copies, pick)
        made = [queries.add_pair(db, prompt_id=prompt["id"], version_id=version_id,
                                 completions=pair.completions, sampling=self._record(copies, chosen.get(i)),
                                 seed=pair.seed, prompt_truncated=pair.prompt_truncated,
                                 gen_seconds=pair.seconds, cut_off=pair.cut_off)
                for i, (prompt, pair) in enumerate(zip(prompts, pairs))]
        with self._stocked:
            self._batches += 1
            self._stocked.notify_all()
        self._judge_later(made)
        return len(prompts)

    def _selection(self, db, prompts: list[str], chosen: dict[int, tuple[int, int]]) -> tuple[int, Pick]:
        """How many answers to write to each prompt, and which two of them to pair: with
        selection on and a reward model to choose, its choice (noted in `chosen`), but a random
        share of pairs are the first two answers. A choice that fails leaves its pair random:
        no batch is lost to it."""
        cfg = self.cfg.selection
        chooser = self.choose(db) if cfg.answers > 2 and self.choose is not None else None
        if chooser is None:
            return 2, first_two

        def pick(i: int, answers: list[Answer]) -> tuple[int, int]:
            chosen.pop(i, None)
            if self.rng.random() < cfg.random_share:
                return first_two(i, answers)
            try:
                chosen[i] = chooser(prompts[i], [a.text for a in answers])
            except Exception:
                log.exception("the reward model could not choose a pair; this one is random")
                return first_two(i, answers)
            return chosen[i]
        return cfg.answers, pick

    def _record(self, copies: int, chosen: tuple[int, int] | None) -> dict:
        """What a pair stores about how it was made: the sampling settings, and where it was
        one of more than two answers, how many, by whom it was chosen, and which two (of the
        distinct answers, in the order written)."""
        record = self.cfg.sampling.record()
        if copies == 2:
            return record
        return record | {"answers": copies,
                         **({"pair": "reward model", "picked": list(chosen)} if chosen else {"pair": "random"})}

    def _judge_later(self, pair_ids: list[int]) -> None:
        """Hand new pairs to the first pass, on a thread of its own: neither the next batch nor
        an annotator waits for it (nor for its reward model to load)."""
        if self.judge is None:
            return
        self._unjudged.put(pair_ids)
        with self._stocked:
            if self._judging is None:
                self._judging = threading.Thread(target=self._judge_forever, name="first-pass", daemon=True)
                self._judging.start()

    def _judge_forever(self) -> None:
        db = thread_db(self.db_path)
        while not self._stop.is_set():
            try:
                pair_ids = self._unjudged.get(timeout=1)
            except queue.Empty:
                continue
            try:
                self.judge(db, pair_ids)
            except Exception:  # a pair without a verdict is served all the same
                log.exception("the first pass failed on pairs %s", pair_ids)

    def _batch_size(self, ready: int) -> int:
        """A full batch, except: the first batch of a newly live version is one pair, so that it
        reaches annotators in seconds; and while annotators wait with nothing in stock for them,
        only as many pairs as there are such people, which is quicker to make."""
        if self._draining is not None:
            return 1
        hungry = self._starved() if ready else self._waiting
        return min(self.cfg.batch, hungry) if hungry else self.cfg.batch

    def _refill_forever(self) -> None:
        db = thread_db(self.db_path)
        while not self._stop.is_set():
            try:
                version = queries.live_version_id(db)
                if version != self._serving:
                    self._swap_to(db, version)
                ready = self._ready = queries.ready_pair_count(db, version, self.cfg.claim_seconds)
                if ready and self._draining is not None:
                    self._retire_old_stock(db)
                if ready < self.target_stock(db) or self._starved():
                    self._making = (version, threading.Event(), self._batch_size(ready))
                    self.generate(version, self._making[2], self._making[1])
                    continue  # the old version's stock is retired at the top, now there is stock
            except Cancelled:
                log.info("abandoned a batch for version %s: no longer live", self._serving)
                continue
            except Exception as e:  # keep serving from stock; the next wake retries
                log.exception("pair queue refill failed")
                with self._stocked:
                    self._failures += 1
                    self._last_error = str(e)
                    self._stocked.notify_all()
            finally:
                self._making = None
            self._wake.wait(self.cfg.idle_seconds)
            self._wake.clear()

    def _swap_to(self, db, version_id: int) -> None:
        """Load the newly live version beside the others; annotators are served the old
        version's stock until the new one has stock of its own."""
        self.load_version(version_id)
        self._draining, self._serving = self._serving, version_id
        if self._draining is None:  # just started: stock of versions retired meanwhile goes now
            rounds.drop_unshown_pairs(db, keep_version=version_id)
        log.info("now generating for policy version %d", version_id)

    def _retire_old_stock(self, db) -> None:
        dropped = rounds.drop_unshown_pairs(db, keep_version=self._serving)
        log.info("now serving policy version %d (dropped %d unshown pairs of older versions)",
                 self._serving, dropped)
        self._draining = None

    def load_version(self, version_id: int) -> None:
        """Make a registered version ready to answer (its adapter loaded once)."""
        adapter = rounds.get_version(thread_db(self.db_path), version_id)["adapter_path"]
        self.registry.ensure_loaded(version_id, adapter)
