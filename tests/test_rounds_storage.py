"""Rounds, versions, metrics and promotion as the trainer and the admin tab record them."""
import pytest

from storage import queries, rounds

from .conftest import add_pair, show


def test_promote_and_rollback_are_new_rows_and_keep_history(db, tmp_path):
    queries.ensure_base_version(db, "tiny")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    v1 = rounds.add_version(db, parent_id=0, adapter_path=str(adapter), algo="dpo")
    rounds.promote(db, v1, by="alice")
    assert queries.live_version_id(db) == v1
    assert rounds.previous_live_version(db) == 0
    rounds.promote(db, rounds.previous_live_version(db), by="alice")
    assert queries.live_version_id(db) == 0
    assert [p["version_id"] for p in rounds.promotions(db)] == [0, v1, 0]


def test_promoting_a_missing_adapter_or_unknown_version_changes_nothing(db, tmp_path):
    queries.ensure_base_version(db, "tiny")
    v1 = rounds.add_version(db, parent_id=0, adapter_path=str(tmp_path / "gone"), algo="dpo")
    with pytest.raises(rounds.PromotionError, match="adapter folder is missing"):
        rounds.promote(db, v1, by="alice")
    with pytest.raises(rounds.PromotionError, match="no policy version 99"):
        rounds.promote(db, 99, by="alice")
    with pytest.raises(rounds.PromotionError, match="no earlier version"):
        rounds.previous_live_version(db)
    assert queries.live_version_id(db) == 0 and len(rounds.promotions(db)) == 1


def test_a_round_whose_process_died_is_marked_failed(db):
    queries.ensure_base_version(db, "tiny")
    dead = rounds.start_round(db, "dpo", {}, pid=111)
    done = rounds.start_round(db, "dpo", {}, pid=222)
    rounds.fail_round(db, done, "ValueError: no data")
    assert rounds.fail_stale_rounds(db) == 1
    assert rounds.get_round(db, dead)["status"] == "failed"
    assert "ended without finishing" in rounds.get_round(db, dead)["error"]
    assert rounds.get_round(db, done)["error"] == "ValueError: no data"


def test_the_round_lock_is_exclusive_and_visible(tmp_path):
    assert not rounds.round_running(tmp_path)
    with rounds.round_lock(tmp_path):
        assert rounds.round_running(tmp_path)
        with pytest.raises(rounds.RoundBusy):
            with rounds.round_lock(tmp_path, wait=0.1):
                pass
    assert not rounds.round_running(tmp_path)


def test_new_judgements_are_counted_from_the_last_finished_round(db):
    queries.ensure_base_version(db, "tiny")
    vote_ids = []
    for i in range(3):
        pair_id = add_pair(db, prompt=f"Prompt {i}")
        show(db)
        vote_ids.append(queries.record_vote(db, "alice", pair_id, "a"))
    assert rounds.votes_since_last_round(db) == 3
    failed = rounds.start_round(db, "dpo", {}, pid=1)
    rounds.set_round_votes(db, failed, vote_ids[:2])
    rounds.fail_round(db, failed, "boom")
    assert rounds.votes_since_last_round(db) == 3  # a failed round trained nothing
    done = rounds.start_round(db, "dpo", {}, pid=1)
    rounds.set_round_votes(db, done, vote_ids[:2])
    rounds.finish_round(db, done, 0)
    assert rounds.votes_since_last_round(db) == 1


def test_metrics_are_stored_per_version(db, tmp_path):
    queries.ensure_base_version(db, "tiny")
    round_id = rounds.start_round(db, "dpo", {"beta": 0.1}, pid=1)
    v1 = rounds.add_version(db, parent_id=0, adapter_path=str(tmp_path), algo="dpo", round_id=round_id)
    rounds.add_metrics(db, {"rm_accuracy": 0.75, "rm_accuracy_low": 0.55, "rm_accuracy_high": 0.88,
                            "rm_heldout_pairs": 20, "rm_win_rate_vs_live": 0.55, "rm_win_rate_vs_live_low": 0.46,
                            "rm_win_rate_vs_live_high": 0.64, "eval_answers": 96, "kl_to_ref": 1.5, "skipped": None},
                       round_id=round_id, version_id=v1)
    table = {row["version"]: row for row in rounds.versions_table(db)}
    assert table[0]["live"] and not table[v1]["live"]
    assert table[v1]["rm_accuracy"] == 0.75 and table[v1]["round"] == round_id
    assert table[v1]["reward_accuracy"] == "0.75 [0.55-0.88] of 20"
    assert table[v1]["win_rate_vs_live"] == "0.55 [0.46-0.64] of 96: too few to tell"
    assert table[v1]["win_rate_vs_base"] is None and table[0]["reward_accuracy"] is None
    assert "skipped" not in table[v1]


def test_the_versions_table_reads_accuracy_on_every_pair_the_reward_model_did_not_train_on(db, tmp_path):
    """A round since cross-validation scores its training pairs out of fold too: the table reads
    that figure, over held-out and out-of-fold pairs, with its calibration error."""
    queries.ensure_base_version(db, "tiny")
    round_id = rounds.start_round(db, "rloo", {}, pid=1)
    v1 = rounds.add_version(db, parent_id=0, adapter_path=str(tmp_path), algo="rloo", round_id=round_id)
    rounds.add_metrics(db, {"rm_accuracy": 0.56, "rm_accuracy_low": 0.34, "rm_accuracy_high": 0.75,
                            "rm_heldout_pairs": 18, "rm_unseen_accuracy": 0.81, "rm_unseen_accuracy_low": 0.73,
                            "rm_unseen_accuracy_high": 0.87, "rm_unseen_pairs": 120, "rm_calibration_error": 0.043},
                       round_id=round_id, version_id=v1)
    table = {row["version"]: row for row in rounds.versions_table(db)}
    assert table[v1]["reward_accuracy"] == "0.81 [0.73-0.87] of 120, calibration error 0.04"


def test_retired_stock_is_dropped_but_shown_pairs_are_kept(db):
    shown = add_pair(db, prompt="Seen")
    show(db)
    unseen = add_pair(db, prompt="Unseen")
    assert rounds.drop_unshown_pairs(db, keep_version=5) == 1
    assert [p["id"] for p in db["pairs"].rows] == [shown]
    assert unseen not in [p["id"] for p in db["pairs"].rows]


def test_round_progress_keeps_phases_in_order_with_their_time_left_and_curves(db, monkeypatch):
    queries.ensure_base_version(db, "tiny")
    round_id = rounds.start_round(db, "dpo", {}, pid=1)
    clock = iter(f"2026-01-01T00:00:{s:02d}.000+00:00" for s in (0, 2, 4, 10, 14, 18, 30, 31, 32))
    monkeypatch.setattr(rounds, "now", lambda: next(clock))
    rounds.record_progress(db, round_id, "snapshot", 0, 1)                       # 00
    rounds.record_progress(db, round_id, "snapshot", 1, 1, {"train pairs": 33})  # 02
    rounds.record_progress(db, round_id, "dpo", 0, 10)                           # 04
    rounds.record_progress(db, round_id, "dpo", 2, 10, {"loss": 0.7, "reward margin": 0.1})  # 10
    assert rounds.round_progress(db, round_id, at="2026-01-01T00:00:11.000+00:00")[1]["seconds_left"] is None
    rounds.record_progress(db, round_id, "dpo", 4, 10, {"loss": 0.6, "reward margin": 0.3})  # 14
    assert rounds.get_round(db, round_id)["phase"] == "dpo 4/10"
    snapshot, dpo = rounds.round_progress(db, round_id, at="2026-01-01T00:00:16.000+00:00")
    assert (snapshot["phase"], snapshot["step"], snapshot["total"], snapshot["done"]) == ("snapshot", 1, 1, True)
    assert snapshot["seconds"] == 4 and snapshot["seconds_left"] == 0  # it ended when dpo began
    assert snapshot["points"] == [{"step": 1, "train pairs": 33}]
    assert (dpo["phase"], dpo["step"], dpo["total"], dpo["done"]) == ("dpo", 4, 10, False)
    # steps 2 to 4 took 4 s (the 6 s before step 2 were set-up): 2 s a step, 6 to go, 2 s past
    assert dpo["seconds"] == 12 and dpo["seconds_left"] == 10
    assert [p["loss"] for p in dpo["points"]] == [0.7, 0.6] and [p["step"] for p in dpo["points"]] == [2, 4]

    rounds.record_progress(db, round_id, "register", 0)  # 18: no total, no estimate yet
    assert rounds.get_round(db, round_id)["phase"] == "register"
    assert rounds.round_progress(db, round_id, at="2026-01-01T00:00:19.000+00:00")[-1]["seconds_left"] is None
    rounds.finish_round(db, round_id, rounds.add_version(db, parent_id=0, adapter_path="x", algo="dpo"))
    phases = rounds.round_progress(db, round_id)
    assert [p["phase"] for p in phases] == ["snapshot", "dpo", "register"] and all(p["done"] for p in phases)
    assert phases[1]["seconds"] == 14 and phases[2]["seconds"] == 0


def test_round_progress_is_append_only(db):
    queries.ensure_base_version(db, "tiny")
    round_id = rounds.start_round(db, "dpo", {}, pid=1)
    rounds.record_progress(db, round_id, "snapshot", 0, 1)
    with pytest.raises(Exception, match="append-only"):
        db.execute("UPDATE round_progress SET step = 1")
