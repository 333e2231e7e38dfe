"""Whole rounds on the tiny model: register, evaluate, promote; and fail without a trace."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from storage import queries, rounds
from storage.db import open_db
from trainer import rounds as trainer_rounds
from trainer.reward_model import RewardModel
from policy.settings import apply_overrides
from trainer.rounds import RoundConfig, run_round

from .conftest import REPO, banana_judgements

FAST = ["reward.max_length=96", "dpo.max_length=96", "eval.prompts=4", "eval.samples=1",
        "eval.sampling.max_new_tokens=8", "ppo.iterations=2", "ppo.batch_size=4",
        "ppo.max_new_tokens=8", "rloo.steps=2", "rloo.max_completion_length=8",
        "max_rl_prompts=8", "min_pairs=4", "sft.max_length=96", "rs.n=2", "rs.sampling.max_new_tokens=8"]


@pytest.fixture
def data(tmp_path):
    return banana_judgements(tmp_path)


def config(data, algo="dpo", *extra):
    return apply_overrides(RoundConfig(algo=algo, data_dir=data), [*FAST, *extra])


def test_dpo_round_registers_a_version_with_its_figures_and_promotes_it(data):
    result = run_round(config(data, "dpo", "gate.min_win_rate=-1"))  # the gate always passes
    db = open_db(data / "prefloop.db")
    assert result.promoted and queries.live_version_id(db) == result.version_id == 1
    record = rounds.get_round(db, result.round_id)
    assert record["status"] == "done" and record["from_version_id"] == 0
    assert sorted(json.loads(record["vote_ids"])) == [v["id"] for v in db["votes"].rows]
    metrics = rounds.version_metrics(db, 1)
    for name in ("rm_accuracy", "dpo_loss", "rm_win_rate_vs_live", "kl_to_ref", "mean_length"):
        assert name in metrics, name
    assert metrics["eval_answers"] == 4 and metrics["kl_to_ref"] >= 0
    version = rounds.get_version(db, 1)
    adapter = json.loads((data / "adapters" / "round-1" / "adapter_config.json").read_text())
    # What vLLM's runtime LoRA loading takes: plain LoRA on linear projections, rank <= 16.
    assert adapter["peft_type"] == "LORA" and adapter["r"] <= 16 and not adapter["use_dora"]
    assert not adapter["modules_to_save"] and all(m.endswith("_proj") for m in adapter["target_modules"])
    assert version["adapter_path"] == str((data / "adapters" / "round-1").resolve())
    rm = RewardModel.load(data / "reward_models" / "round-1")  # the next rounds' judge, in place
    assert rm.score(["Name a fruit."], ["A banana."]).shape == (1,)
    assert not (data / "rounds" / "round-1").exists()
    judged = list(db.query("SELECT * FROM eval_votes WHERE judge = 'reward_model'"))
    assert len(judged) == 4 and all(j["round_id"] == 1 for j in judged)


def test_a_round_records_every_phase_as_it_goes_with_totals_and_figures(data):
    result = run_round(config(data, "dpo"))
    db = open_db(data / "prefloop.db")
    phases = {p["phase"]: p for p in rounds.round_progress(db, result.round_id)}
    assert list(phases) == ["snapshot", "reward model: reading answers", "reward model: fitting",
                            "dpo", "evaluate", "register"]
    for p in phases.values():  # each phase ended with every step done
        assert p["done"] and p["total"] and p["step"] == p["total"] and p["seconds_left"] == 0, p
    assert phases["reward model: reading answers"]["total"] == 2 * (33 + 7)  # both answers of each pair
    assert phases["evaluate"]["total"] == 4 * 2  # the candidate's answers and the base's (live), none cached
    dpo = phases["dpo"]
    assert dpo["total"] == 9 and [p["step"] for p in dpo["points"]] == list(range(1, 10))  # every step a point
    assert all({"loss", "reward margin"} <= set(p) for p in dpo["points"])
    fitting = phases["reward model: fitting"]
    assert fitting["total"] == RoundConfig().reward.folds + 1  # a head per fold, then one on every pair
    assert 0 <= fitting["points"][-1]["cross-validated accuracy"] <= 1
    assert phases["snapshot"]["points"] == [{"step": 1, "training pairs": 33, "held-out pairs": 7}]
    # every phase began with a step 0 stored the moment it began, in the round's phase line too
    steps = [(r["phase"], r["step"]) for r in db.query("SELECT phase, step FROM round_progress ORDER BY id")]
    assert [s for s in steps if s[1] == 0] == [(name, 0) for name in phases]
    assert rounds.get_round(db, result.round_id)["phase"] == "done"


def test_a_failing_gate_keeps_a_candidate_that_can_still_be_promoted(data):
    result = run_round(config(data, "dpo", "gate.max_kl=-1", "gate.min_win_rate=-1"))  # only the KL bound fails
    db = open_db(data / "prefloop.db")
    assert not result.promoted and queries.live_version_id(db) == 0
    assert result.decision.startswith("kept as a candidate: KL") and "exceeds the bound -1.0" in result.decision
    assert rounds.get_round(db, result.round_id)["decision"] == result.decision
    assert re.search(r"Its reward model ranked judged pairs it had not trained on [01]\.\d\d \[[01]\.\d\d-[01]\.\d\d\] "
                     r"of 40(: too few to tell)?, calibration error 0\.\d\d$", result.decision)
    rounds.promote(db, result.version_id, by="admin")
    assert queries.live_version_id(db) == result.version_id


def test_a_failed_round_changes_nothing_and_a_rerun_works(data, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("out of memory, say")
    monkeypatch.setattr(trainer_rounds, "train_dpo", boom)
    with pytest.raises(RuntimeError):
        run_round(config(data))
    db = open_db(data / "prefloop.db")
    failed = rounds.get_round(db, 1)
    assert failed["status"] == "failed" and "out of memory" in failed["error"]
    assert queries.live_version_id(db) == 0 and db["policy_versions"].count == 1
    assert not (data / "rounds" / "round-1").exists() and not (data / "adapters").exists()
    monkeypatch.undo()
    assert run_round(config(data)).version_id == 1


def test_a_round_killed_midway_leaves_the_live_version_and_a_rerun_succeeds(data):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    sets = [arg for s in FAST for arg in ("--set", s)]
    process = subprocess.Popen(
        [sys.executable, "-m", "trainer", "--data-dir", str(data), "round", "--algo", "dpo", *sets],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = open_db(data / "prefloop.db")
    deadline = time.monotonic() + 120
    while not (db["rounds"].count and (rounds.get_round(db, 1)["phase"] or "").startswith(
            ("reward model", "dpo"))):
        assert process.poll() is None and time.monotonic() < deadline, "the round never started training"
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert queries.live_version_id(db) == 0 and db["policy_versions"].count == 1

    result = run_round(config(data, "dpo"))
    assert rounds.get_round(db, 1)["status"] == "failed"
    assert not (data / "rounds" / "round-1").exists()
    assert result.version_id == 1 and rounds.get_round(db, result.round_id)["status"] == "done"


@pytest.mark.parametrize("algo", ["rloo", "ppo"])
def test_rl_rounds_run_end_to_end_with_the_rounds_reward_model(data, algo):
    result = run_round(config(data, algo, "auto_promote=false"))
    db = open_db(data / "prefloop.db")
    assert rounds.get_round(db, result.round_id)["status"] == "done"
    assert rounds.get_version(db, result.version_id)["algo"] == algo
    assert "kl_to_ref" in rounds.version_metrics(db, result.version_id)
    assert queries.live_version_id(db) == 0
    [trained] = [p for p in rounds.round_progress(db, result.round_id) if p["phase"] == algo]
    assert trained["step"] == trained["total"] == 2
    assert {"loss", "reward", "KL"} <= set(trained["points"][-1])


def test_a_second_busy_round_is_refused(data):
    with rounds.round_lock(data):
        with pytest.raises(rounds.RoundBusy):
            run_round(config(data))


def test_a_majority_round_records_its_rule_and_what_it_dropped(data):
    db = open_db(data / "prefloop.db")
    queries.set_assignment(db, k=2)
    # The fixture's alice picked the banana on all 40 pairs; bob agrees on 30 and not on 10.
    for i, pair in enumerate(r["id"] for r in db.query("SELECT id FROM pairs ORDER BY id")):
        db["shows"].insert({"pair_id": pair, "annotator": "bob", "shown_order": "01", "shown_at": queries.now()})
        queries.record_vote(db, "bob", pair, "a" if i % 4 else "b")  # completion_0 is the banana
    result = run_round(config(data, "dpo", "data.rule=majority", "gate.min_win_rate=-1"))
    record = rounds.get_round(db, result.round_id)
    summary = json.loads(record["aggregation"])
    assert summary["rule"] == "majority" and summary["rows"] == 30
    assert summary["dropped"]["split_pairs"] == 10 and summary["dropped"]["split"] == 20
    assert len(json.loads(record["vote_ids"])) == 60
    [version] = [v for v in rounds.versions_table(db) if v["round"] == result.round_id]
    assert "majority: 30 rows from 80 judgements" in version["data"] and "(10 pairs)" in version["data"]


def test_a_round_turns_reference_answers_into_pairs_against_the_live_policy(data, tmp_path):
    from storage import imports
    db = open_db(data / "prefloop.db")
    refs = tmp_path / "refs.jsonl"
    refs.write_text("\n".join(json.dumps({"prompt": f"Suggest a snack for night {i}.",
                                           "completion": "Sliced apple with peanut butter."}) for i in range(3)) + "\n")
    imports.import_demonstration_file(db, refs)
    result = run_round(config(data, "dpo", "data.demonstration_pairs=2", "gate.min_win_rate=-1"))
    summary = json.loads(rounds.get_round(db, result.round_id)["aggregation"])
    assert summary["demonstration_pairs"] == 2
    [version] = [v for v in rounds.versions_table(db) if v["round"] == result.round_id]
    assert "2 from reference answers" in version["data"]


def import_snack_answers(db, tmp_path, count=6):
    from storage import imports
    refs = tmp_path / "refs.jsonl"
    refs.write_text("\n".join(json.dumps({"prompt": f"Suggest a snack for night {i}.",
                                           "completion": "Sliced apple with peanut butter."})
                              for i in range(count)) + "\n")
    imports.import_demonstration_file(db, refs)


def test_an_sft_round_without_demonstrations_says_what_it_needs_and_changes_nothing(data):
    with pytest.raises(ValueError, match="write corrections or import demonstrations"):
        run_round(config(data, "sft"))
    db = open_db(data / "prefloop.db")
    assert rounds.get_round(db, 1)["status"] == "failed" and queries.live_version_id(db) == 0
    assert [p["phase"] for p in rounds.round_progress(db, 1)] == ["snapshot"]  # said before fitting anything


def test_the_whole_recipe_samples_scores_fine_tunes_then_prefers_and_serves(data, tmp_path, registry, monkeypatch):
    """Reward model, best of N, SFT on the kept answers and demonstrations, then DPO from the
    SFT'd adapter on the reward model's pairs and the judgements."""
    db = open_db(data / "prefloop.db")
    import_snack_answers(db, tmp_path)
    from policy.sampling import Answer
    choose = trainer_rounds.best_of_n

    class Finished:
        """The tiny model never ends an answer: let its 8 tokens count as whole answers."""
        def __init__(self, policy):
            self.policy = policy

        def complete(self, *args, **kwargs):
            return [[Answer(x.text, False) for x in xs] for xs in self.policy.complete(*args, **kwargs)]

    class ByLength:
        """The tiny reward model scores all of the tiny model's babble alike: prefer longer."""
        def score(self, prompts, texts):
            return torch.tensor([float(len(t)) for t in texts])

    def scripted(policy, version, prompts, rm, *args, **kwargs):
        return choose(Finished(policy), version, prompts, ByLength(), *args, **kwargs)
    monkeypatch.setattr(trainer_rounds, "best_of_n", scripted)
    result = run_round(config(data, "rs-sft-dpo", "gate.min_win_rate=-1", "rs.margin=0"))  # keep every best
    assert result.promoted and rounds.get_version(db, result.version_id)["algo"] == "rs-sft-dpo"
    metrics = rounds.version_metrics(db, result.version_id)
    assert metrics["rs_prompts"] == 8 and "rs_gap_n2" in metrics
    kept = list(db.query("SELECT * FROM best_answers"))
    assert len(kept) == metrics["rs_kept"] == 8 and all(k["round_id"] == result.round_id for k in kept)
    assert metrics["sft_examples"] == 8 + 6  # the kept answers and the imported ones
    progress = rounds.round_progress(db, result.round_id)
    phases = {p["phase"]: p for p in progress}
    assert phases["best of n"]["step"] == phases["best of n"]["total"] == 8
    assert phases["sft"]["step"] == phases["sft"]["total"] and "loss" in phases["sft"]["points"][-1]
    assert 0 < metrics["rs_pairs"] <= 8
    assert metrics["dpo_train_pairs"] == progress[0]["points"][-1]["training pairs"] + metrics["rs_pairs"]
    assert {"seconds_best_of_n", "seconds_sft", "seconds_dpo", "peak_mb_sft"} <= set(metrics)
    # the app's registry serves the new version
    registry.ensure_loaded(result.version_id, rounds.get_version(db, result.version_id)["adapter_path"])
    from policy.sampling import SamplingConfig
    [[answer]] = registry.complete(result.version_id, ["Name a fruit."], SamplingConfig(max_new_tokens=4), seed=0)
    assert answer.text


def test_the_whole_recipe_runs_as_a_command_and_its_version_goes_live(data, tmp_path):
    db = open_db(data / "prefloop.db")
    import_snack_answers(db, tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "trainer", "--data-dir", str(data), "round", "--algo", "rs-sft-dpo",
         *[arg for s in [*FAST, "gate.min_win_rate=-1"] for arg in ("--set", s)]],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout[out.stdout.index("{"):])
    assert result["promoted"] and queries.live_version_id(db) == result["version"]
    assert rounds.get_version(db, result["version"])["algo"] == "rs-sft-dpo"
    assert [p["phase"] for p in rounds.round_progress(db, result["round"])] == [
        "snapshot", "reward model: reading answers", "reward model: fitting", "best of n", "sft", "dpo",
        "evaluate", "register"]
