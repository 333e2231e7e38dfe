"""What a running round reports about itself: its phase line, and each phase's time and memory.

The phase line lives in the round's row, where the Admin tab and the benchmarks read it; the
times and peaks are stored with the round's metrics, so a slow or memory-hungry phase is
named, not guessed at.
"""
import ctypes
import gc
import sys
import threading
import time

import psutil
from transformers import TrainerCallback

from storage import rounds


class PhaseClock:
    """Seconds and peak resident memory of each phase of one round.

    A thread samples the resident set a few times a second, because the kernel's own peak
    (ru_maxrss) only ever rises and so cannot say which phase reached it.
    """

    def __init__(self, db, round_id: int, every: float = 0.2):
        self.db, self.round_id, self.every = db, round_id, every
        self.seconds: dict[str, float] = {}
        self.peak_mb: dict[str, float] = {}
        self._phase: str | None = None
        self._since = self._began = time.perf_counter()
        self._peak = 0
        self._process = psutil.Process()
        self._done = threading.Event()
        self._lock = threading.Lock()
        threading.Thread(target=self._sample, name="phase-clock", daemon=True).start()

    def __enter__(self) -> "PhaseClock":
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()  # a failed round leaves no sampling thread behind in `trainer watch`

    def _sample(self) -> None:
        while not self._done.wait(self.every):
            rss = self._process.memory_info().rss
            with self._lock:
                self._peak = max(self._peak, rss)

    def _close(self) -> None:
        if self._phase is None:
            return
        with self._lock:
            peak, self._peak = max(self._peak, self._process.memory_info().rss), 0
        self.seconds[self._phase] = time.perf_counter() - self._since
        self.peak_mb[self._phase] = peak / 2**20

    def start(self, phase: str) -> None:
        """End the current phase and begin `phase`, shown at once in the round's row."""
        self._close()
        release_memory()
        self._phase, self._since = phase, time.perf_counter()
        rounds.set_round_phase(self.db, self.round_id, phase)

    def stop(self) -> dict[str, float]:
        """End the last phase; the figures as metrics (`seconds_dpo`, `peak_mb_dpo`, ...)."""
        self._close()
        self._phase = None
        self._done.set()
        figures = {"seconds_total": time.perf_counter() - self._began,
                   "peak_mb": max(self.peak_mb.values(), default=0.0)}
        for phase in self.seconds:
            key = phase.replace(" ", "_")
            figures[f"seconds_{key}"] = self.seconds[phase]
            figures[f"peak_mb_{key}"] = self.peak_mb[phase]
        return figures


def release_memory() -> None:
    """Free what the last phase left: a trainer's reference cycles keep its model alive until
    the collector runs, and glibc keeps freed heap resident until asked to give it back, so
    without this the evaluation would carry the training's peak on top of its own."""
    gc.collect()
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PhaseProgress(TrainerCallback):
    """Writes 'phase step/total' to the round's row so the admin tab can show live progress."""

    def __init__(self, db, round_id: int, phase: str):
        self.db, self.round_id, self.phase = db, round_id, phase

    def on_log(self, args, state, control, logs=None, **kwargs):
        rounds.set_round_phase(self.db, self.round_id, f"{self.phase} {state.global_step}/{state.max_steps}")
