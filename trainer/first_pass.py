"""The first pass on new pairs: the newest round's reward model judges each pair the pair queue
makes, on a thread of the queue's own after the pair is stored, so no annotator waits for it.

Its verdicts are stored apart from votes (`storage.first_pass`), with how sure it is: the
calibrated probability that people prefer the answer it picked (`RewardModel.preference`).
"""
import logging
import threading
from pathlib import Path

from storage import first_pass, rounds
from storage.paths import round_outputs

from .reward_model import RewardModel

log = logging.getLogger(__name__)


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
            pairs = list(db.query(
                f"""SELECT p.id, pr.text AS prompt, p.completion_0, p.completion_1 FROM pairs p
                    JOIN prompts pr ON pr.id = p.prompt_id WHERE p.id IN ({','.join('?' * len(pair_ids))})
                    ORDER BY p.id""", pair_ids))
            preferred = rm.preference([p["prompt"] for p in pairs], [p["completion_0"] for p in pairs],
                                      [p["completion_1"] for p in pairs])
            return first_pass.add_verdicts(db, self.name(round_id),
                                           {p["id"]: float(x) for p, x in zip(pairs, preferred)})
