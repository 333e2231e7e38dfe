"""The pair queue: pairs are generated ahead, in the database, so annotators never wait.

The stock is simply the live version's unshown pairs, so it survives a restart; a
background thread tops it up in small batches and sleeps until a claim wakes it. The live
version is read from the database on every call, so a promotion made by another process
(a training round, the admin tab, the CLI) reaches the app within `idle_seconds`.
"""
import logging
import random
import threading
from dataclasses import dataclass, field
from pathlib import Path

from policy.registry import PolicyRegistry
from policy.sampling import SamplingConfig
from storage import queries, rounds
from storage.db import thread_db

log = logging.getLogger(__name__)


@dataclass
class QueueConfig:
    ready: int = 6          # unshown pairs kept per live version; 0 generates on demand only
    batch: int = 2          # pairs generated before the stock is checked again
    idle_seconds: float = 2.0  # how often an idle queue looks for a newly promoted version
    sampling: SamplingConfig = field(default_factory=SamplingConfig)


class PairQueue:
    def __init__(self, db_path: Path, registry: PolicyRegistry, cfg: QueueConfig,
                 rng: random.Random | None = None):
        self.db_path, self.registry, self.cfg = db_path, registry, cfg
        self.rng = rng or random.Random()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._serving: int | None = None

    def start(self) -> "PairQueue":
        self._thread = threading.Thread(target=self._refill_forever, name="pair-queue", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=60)

    def next_pair(self, annotator: str) -> dict:
        """A fresh pair for this annotator: from stock, or generated now if the stock is empty."""
        db = thread_db(self.db_path)
        while True:
            version = queries.live_version_id(db)
            pair = queries.show_next_pair(db, annotator, version, self.rng)
            self._wake.set()
            if pair is not None:
                return pair
            self.generate(version, 1)

    def generate(self, version_id: int, n: int) -> int:
        """Sample and store n pairs of this version, for the prompts it has answered least, in
        one batch."""
        db = thread_db(self.db_path)
        self.load_version(version_id)
        prompts = queries.prompts_needing_pairs(db, version_id, n)
        if not prompts:
            raise LookupError("there are no prompts to annotate; import some with "
                              "`python -m storage import FILE`")
        seed = self.rng.randrange(2**31)
        pairs = self.registry.sample_pairs(version_id, [p["text"] for p in prompts], self.cfg.sampling, seed)
        for prompt, pair in zip(prompts, pairs):
            queries.add_pair(db, prompt_id=prompt["id"], version_id=version_id,
                             completions=pair.completions, sampling=self.cfg.sampling.record(),
                             seed=pair.seed, prompt_truncated=pair.prompt_truncated,
                             gen_seconds=pair.seconds)
        return len(prompts)

    def _refill_forever(self) -> None:
        db = thread_db(self.db_path)
        while not self._stop.is_set():
            try:
                version = queries.live_version_id(db)
                if version != self._serving:
                    self._swap_to(db, version)
                missing = self.cfg.ready - queries.ready_pair_count(db, version)
                if missing > 0:
                    self.generate(version, min(missing, self.cfg.batch))
                    continue
            except Exception:  # keep serving from stock; the next wake retries
                log.exception("pair queue refill failed")
            self._wake.wait(self.cfg.idle_seconds)
            self._wake.clear()

    def _swap_to(self, db, version_id: int) -> None:
        """Load the newly live version beside the others and retire the old version's stock."""
        self.load_version(version_id)
        dropped = rounds.drop_unshown_pairs(db, keep_version=version_id)
        log.info("now serving policy version %d (dropped %d unshown pairs)", version_id, dropped)
        self._serving = version_id

    def load_version(self, version_id: int) -> None:
        """Make a registered version ready to answer (its adapter loaded once)."""
        adapter = rounds.get_version(thread_db(self.db_path), version_id)["adapter_path"]
        self.registry.ensure_loaded(version_id, adapter)
