"""The policy versions a running app can sample from, over one loaded base model."""
import threading
from pathlib import Path

from . import models
from .sampling import SampledPair, SamplingConfig, sample_pair


class PolicyRegistry:
    """Owns the base model; every generation goes through here, one at a time.

    Generation is serialised by a lock: on two CPU cores a second concurrent `generate`
    only slows the first, and a seeded pair is reproducible only if nothing else draws
    from the RNG meanwhile.
    """

    def __init__(self, model, tokenizer, base_model: str):
        self.model, self.tokenizer, self.base_model = model, tokenizer, base_model
        self._lock = threading.Lock()
        self._versions = {0}

    @classmethod
    def load(cls, spec: str, cache_dir: Path) -> "PolicyRegistry":
        model, tokenizer = models.load(spec, cache_dir)
        return cls(model, tokenizer, models.model_name(spec))

    def loaded_versions(self) -> set[int]:
        return set(self._versions)

    def sample_pair(self, version_id: int, prompt: str, cfg: SamplingConfig,
                    seed: int) -> SampledPair:
        with self._lock:
            if version_id not in self._versions:
                raise KeyError(f"policy version {version_id} is not loaded")
            return sample_pair(self.model, self.tokenizer, prompt, cfg, seed)
