"""The policy versions a running app can sample from: one base model, one adapter per version.

Hot-swap is loading a new adapter beside the others; nothing global changes. PEFT holds adapters
of one kind per model, so IA3 versions live on a second base model beside the LoRA ones, read
from disk when the first of them is loaded and dropped with the last. Each call names
the version it wants and selects that adapter under the lock for the length of its own
`generate`, so a generation already running finishes on its version and a promotion never
switches weights under it.
"""
import contextlib
import threading
from pathlib import Path
from typing import Callable

from peft import PeftModel

from . import adapters, models
import torch

from .sampling import (Answer, Pick, SampledPair, SamplingConfig, complete, first_two, sample_batch, sample_pairs,
                       token_logprobs)


class PolicyRegistry:
    """Owns the base model; every generation goes through here, one at a time.

    Generation is serialised by a lock: on two CPU cores a second concurrent `generate`
    only slows the first, and a seeded pair is reproducible only if nothing else draws
    from the RNG meanwhile.
    """

    def __init__(self, model, tokenizer, base_model: str, fresh_base: Callable[[], torch.nn.Module]):
        self.model, self.tokenizer, self.base_model = model, tokenizer, base_model  # model answers as version 0
        self._fresh_base = fresh_base  # another copy of the base model, without adapters
        self._lock = threading.Lock()
        self._by_kind: dict[str, PeftModel] = {}  # adapter kind -> the model holding those adapters
        self._adapters: dict[int, tuple[PeftModel, str]] = {}  # version -> its model and adapter name

    @classmethod
    def load(cls, spec: str, cache_dir: Path) -> "PolicyRegistry":
        model, tokenizer = models.load(spec, cache_dir)
        return cls(model, tokenizer, models.model_name(spec), lambda: models.load(spec, cache_dir)[0])

    def ensure_loaded(self, version_id: int, adapter_path: str | Path | None) -> None:
        """Load a version's adapter once; version 0 is the base model itself.

        Evaluation loads a candidate that is not registered yet under a negative id.
        """
        if version_id == 0 or version_id in self._adapters:
            return
        if not adapter_path:
            raise ValueError(f"policy version {version_id} has no adapter")
        name = f"v{version_id}" if version_id > 0 else f"candidate{-version_id}"
        kind = adapters.kind(adapter_path)
        # The first kind wraps the base model itself, another one a second base model, read here
        # outside the lock so that sampling goes on meanwhile.
        fresh = self._fresh_base() if self._by_kind and kind not in self._by_kind else None
        with self._lock:
            if version_id in self._adapters:  # loaded by another caller while we waited
                return
            model = self._by_kind.get(kind)
            if model is not None:
                model.load_adapter(str(adapter_path), adapter_name=name)
            else:
                base = self.model if not self._by_kind else fresh if fresh is not None else self._fresh_base()
                model = PeftModel.from_pretrained(base, str(adapter_path), adapter_name=name)
                self._by_kind[kind] = model
                if base is self.model:
                    self.model = model
            model.eval()
            self._adapters[version_id] = (model, name)

    def check_servable(self, adapter_path: str | Path) -> str:
        """The adapter's kind: every kind loads here (see `RemotePolicy.check_servable`)."""
        return adapters.kind(adapter_path)

    @contextlib.contextmanager
    def _selected(self, version_id: int):
        """The model answering as one version, for the caller that holds the lock."""
        if version_id == 0:
            if isinstance(self.model, PeftModel):
                with self.model.disable_adapter():
                    yield self.model
            else:
                yield self.model
            return
        if version_id not in self._adapters:
            raise KeyError(f"policy version {version_id} is not loaded")
        model, name = self._adapters[version_id]
        model.set_adapter(name)
        yield model

    def sample_pairs(self, version_id: int, prompts: list[str], cfg: SamplingConfig, seed: int,
                     cancel: threading.Event | None = None, copies: int = 2, pick: Pick = first_two
                     ) -> list[SampledPair]:
        """Two answers to each prompt from this version; see `sampling.sample_pairs`."""
        with self._lock, self._selected(version_id) as model:
            return sample_pairs(model, self.tokenizer, prompts, cfg, seed, cancel, copies, pick)

    def complete(self, version_id: int, prompts: list[str], cfg: SamplingConfig, seed: int,
                 copies: int = 1) -> list[list[Answer]]:
        """`copies` answers to each prompt from this version; see `sampling.complete`."""
        with self._lock, self._selected(version_id) as model:
            return complete(model, self.tokenizer, prompts, cfg, seed, copies)

    def unload(self, version_id: int) -> None:
        """Free a version's adapter, and the model that held it once it holds none (version 0
        moves to another kind's model, or back to the bare base); a generation using it finishes
        first."""
        with self._lock:
            loaded = self._adapters.pop(version_id, None)
            if loaded is None:
                return
            model, name = loaded
            if any(held is model for held, _ in self._adapters.values()):
                model.delete_adapter(name)
                return
            kind = next(k for k, held in self._by_kind.items() if held is model)
            del self._by_kind[kind]
            if model is self.model:
                # PEFT cannot delete a model's last adapter; unloading restores the bare base.
                others = list(self._by_kind.values())
                self.model = others[0] if others else model.unload()

    def sample_batch(self, version_id: int, prompts: list[str], cfg: SamplingConfig, seed: int):
        """One answer per prompt from this version; see `sampling.sample_batch`."""
        with self._lock, self._selected(version_id) as model:
            return sample_batch(model, self.tokenizer, prompts, cfg, seed)

    def token_logprobs(self, version_id: int, sequences: torch.Tensor, mask: torch.Tensor,
                       start: int) -> torch.Tensor:
        with self._lock, self._selected(version_id) as model:
            return token_logprobs(model, sequences, mask, start)
