"""What a running round reports about itself: each phase's steps and figures as it goes, and each
phase's time and memory once done.

The steps are appended to `round_progress` the moment they happen, each phase's step 0 as it
begins, so the Admin tab never shows a phase that has ended; the same reports draw a bar per
phase on the terminal. The times and peaks are stored with the round's metrics, so a slow or
memory-hungry phase is named, not guessed at.
"""
import ctypes
import gc
import sys
import threading
import time
from dataclasses import dataclass
from typing import TextIO

import psutil
from tqdm import tqdm
from transformers import TrainerCallback

from storage import rounds


class PhaseClock:
    """Seconds and peak resident memory of each phase of one round.

    A thread samples the resident set a few times a second, because the kernel's own peak
    (ru_maxrss) only ever rises and so cannot say which phase reached it.
    """

    def __init__(self, every: float = 0.2):
        self.every = every
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
        """End the current phase and begin timing `phase`."""
        self._close()
        release_memory()
        self._phase, self._since = phase, time.perf_counter()

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


@dataclass
class ProgressConfig:
    every: float = 1.0        # seconds between stored reports of one phase; its first and last are always stored
    log_every: float = 10.0   # seconds between plain lines when the output is a file, not a terminal


class RoundProgress:
    """A running round's reports: rows in `round_progress` for the Admin tab, and on the terminal
    a bar per phase. The app sends a round's output to a log file, where a bar redrawn with
    carriage returns would be one unreadable line: there a plain line at most every
    `log_every` seconds, and one when a phase ends."""

    def __init__(self, db, round_id: int, cfg: ProgressConfig, stream: TextIO | None = None):
        self.db, self.round_id, self.cfg = db, round_id, cfg
        self.stream = stream or sys.stderr
        self.phase, self.total, self.every = "", None, cfg.every
        self._bar: tqdm | None = None
        self._stored = self._printed = self._began = 0.0

    def begin(self, phase: str, total: int | None = None, every: float | None = None) -> None:
        """Start reporting `phase` (`total` steps, if known), stored at once as step 0. `every`
        overrides the seconds between stored reports (0: every step, for curves' points)."""
        self.close()
        self.phase, self.total = phase, total
        self.every = self.cfg.every if every is None else every
        self._stored = self._printed = self._began = time.monotonic()
        rounds.record_progress(self.db, self.round_id, phase, 0, total)
        if self.stream.isatty():
            self._bar = tqdm(total=total, desc=phase, file=self.stream, dynamic_ncols=True)
        else:
            self._line(0, {})

    def update(self, step: int, figures: dict[str, float] | None = None, total: int | None = None) -> None:
        """`step` steps of the phase are done; `figures` are what was measured at that step."""
        news = total is not None and total != self.total  # a total learnt on the way is shown at once
        self.total = total or self.total
        moment = time.monotonic()
        last = self.total is not None and step >= self.total
        if last or news or moment - self._stored >= self.every:
            rounds.record_progress(self.db, self.round_id, self.phase, step, self.total, figures)
            self._stored = moment
        if self._bar is not None:
            self._bar.total = self.total
            self._bar.set_postfix({k: f"{v:.3g}" for k, v in (figures or {}).items()}, refresh=False)
            self._bar.update(step - self._bar.n)
        elif last or moment - self._printed >= self.cfg.log_every:
            self._line(step, figures or {})
            self._printed = moment

    def _line(self, step: int, figures: dict[str, float]) -> None:
        done = f"{step}/{self.total} ({step / self.total:.0%})" if self.total else f"{step}"
        shown = "".join(f", {k} {v:.4g}" for k, v in figures.items())
        print(f"[{self.phase}] {done} after {time.monotonic() - self._began:.0f} s{shown}",
              file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class TrainerProgress(TrainerCallback):
    """Reports each logged step of a TRL trainer with the figures named in `figures` (what TRL
    logs -> the name shown), the loss and the phase's main figure among them."""

    def __init__(self, progress: RoundProgress, figures: dict[str, str]):
        self.progress, self.figures = progress, figures

    def on_log(self, args, state, control, logs=None, **kwargs):
        figures = {name: float(logs[key]) for key, name in self.figures.items() if key in (logs or {})}
        if figures:  # the summary logged after training has none of them
            self.progress.update(state.global_step, figures, total=state.max_steps)
