"""The tiny test model: a seed gives the same weights wherever it is built, and building it
leaves the process's torch settings as they were."""
import torch

from policy import models


def test_a_seed_builds_the_same_weights_and_another_seed_others(tmp_path, monkeypatch):
    torch.set_num_threads(2)
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        models._build_tiny(tmp_path / name, seed, steps=2, batch=2)
    weights = {name: (tmp_path / name / "model.safetensors").read_bytes() for name in "abc"}
    assert weights["a"] == weights["b"] and weights["a"] != weights["c"]
    assert torch.get_num_threads() == 2 and not torch.are_deterministic_algorithms_enabled()
    monkeypatch.setenv("PREFLOOP_TINY_SEED", "6")  # each seed is cached apart: no build here
    (tmp_path / "tiny-llama-fruit-seed6").mkdir()
    (tmp_path / "tiny-llama-fruit-seed6" / "config.json").write_text("{}")
    assert models.checkpoint_dir("tiny", tmp_path) == tmp_path / "tiny-llama-fruit-seed6"
