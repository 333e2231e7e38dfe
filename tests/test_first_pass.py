"""The first pass: a judge's verdict on each new pair, stored apart from the votes, never
exported nor counted as agreement, and checked against the annotators who then judge the pair."""
import json
import os
import random
import sqlite3
import time

import httpx
import pytest

from app.pair_queue import PairQueue, QueueConfig
from policy.models import checkpoint_dir
from policy.registry import PolicyRegistry
from policy.sampling import SamplingConfig
from storage import agreement, exports, first_pass, queries, rounds
from storage.db import open_db
from storage.paths import round_outputs
from trainer.first_pass import LLMJudge, LLMJudgeConfig, RewardModelJudge, every, letter
from trainer.reward_model import train_reward_model

from .conftest import MODEL_CACHE, banana_judgements, random_adapter, wait_for
from .test_reward_model import CONFIG, HELDOUT, TRAIN
from .test_worker import worker  # noqa: F401 - the fixture


def test_verdicts_are_kept_apart_from_votes_and_checked_against_them(tmp_path):
    db = open_db(banana_judgements(tmp_path) / "prefloop.db")  # alice preferred "Have a banana." 40 times
    exported, quality = exports.trl_rows(db), agreement.quality(db)
    pair_ids = [p["id"] for p in db["pairs"].rows]
    # Right and 90% sure on 30 pairs, wrong and 80% sure on 9, and no verdict (even odds) on the last.
    guesses = {pair_id: 0.9 if i < 30 else 0.2 for i, pair_id in enumerate(pair_ids)}
    assert len(pair_ids) == 40 and first_pass.add_verdicts(db, "judge-x", guesses | {pair_ids[-1]: 0.5}) == 40
    assert first_pass.add_verdicts(db, "judge-x", {pair_ids[0]: 0.1}) == 0  # its first verdict stands

    assert db["votes"].count == 40 and exports.trl_rows(db) == exported
    now = agreement.quality(db)
    assert {k: v for k, v in now.items() if k != "first_pass"} == {k: v for k, v in quality.items() if k != "first_pass"}
    [audit] = now["first_pass"]
    assert audit["pairs"] == 40 and audit["abstained"] == 1 and audit["audited_votes"] == 39
    assert audit["agreement"] == pytest.approx(30 / 39) and audit["agreement_low"] < 30 / 39 < audit["agreement_high"]
    # 0.9-sure verdicts all right (0.1 under), 0.8-sure ones all wrong (0.8 over)
    assert audit["calibration_error"] == pytest.approx((30 * 0.1 + 9 * 0.8) / 39)
    assert "judge-x: judged 40 pairs (1 abstained); agrees with **0.77**" in agreement.summary_markdown(now)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("UPDATE first_pass SET verdict = '1'")


def test_a_retired_versions_unjudged_stock_is_dropped_and_its_judged_stock_kept(tmp_path):
    db = open_db(banana_judgements(tmp_path) / "prefloop.db")
    made = [queries.add_pair(db, prompt_id=1, version_id=0, completions=(f"A fig {i}.", f"A date {i}."), sampling={},
                             seed=0, prompt_truncated=False, gen_seconds=0) for i in range(2)]
    first_pass.add_verdicts(db, "judge-x", {made[0]: 0.7, 1: 0.9})
    v1 = rounds.add_version(db, parent_id=0, adapter_path=str(random_adapter(tmp_path / "a")), algo="dpo")
    assert rounds.drop_unshown_pairs(db, keep_version=v1) == 1  # what a promotion does: the unjudged one
    assert db["pairs"].count == 41  # a judge's verdict may be a training label: its pair stays
    newer = queries.add_pair(db, prompt_id=1, version_id=v1, completions=("A kiwi.", "A lime."), sampling={},
                             seed=0, prompt_truncated=False, gen_seconds=0)
    assert newer == made[1]  # SQLite gave the dropped pair's id to the next one: it had no verdict to pass on
    first_pass.add_verdicts(db, "judge-x", {newer: 0.8})
    [audit] = first_pass.audit(db)
    assert audit["pairs"] == 3 and audit["audited_votes"] == 1


def test_a_verdict_never_passes_to_a_pair_that_took_over_its_id(tmp_path):
    db = open_db(tmp_path / "prefloop.db")
    queries.ensure_base_version(db, "tiny")
    queries.add_prompts(db, [{"text": "Name a fruit."}], source="t")
    old = queries.add_pair(db, prompt_id=1, version_id=0, completions=("A fig.", "A date."), sampling={}, seed=0,
                           prompt_truncated=False, gen_seconds=0)
    first_pass.add_verdicts(db, "judge-x", {old: 0.9})
    db.execute("DELETE FROM pairs WHERE id = ?", [old])  # as if dropped before the verdict landed
    time.sleep(0.01)  # times are kept to the millisecond
    new = queries.add_pair(db, prompt_id=1, version_id=0, completions=("A kiwi.", "A lime."), sampling={}, seed=0,
                           prompt_truncated=False, gen_seconds=0)
    assert new == old
    queries.set_second_pass(db, "review")
    shown = queries.show_next_pair(db, "alice", 0, random.Random(1))
    assert shown["pair_id"] == new and shown["suggestion"] is None  # the old pair's verdict is not this one's
    assert first_pass.audit(db)[0]["pairs"] == 0 and first_pass.sure_labels(db) == []


def test_the_queue_judges_pairs_after_storing_them_and_a_failing_judge_loses_none(tmp_path):
    db = open_db(tmp_path / "prefloop.db")
    queries.ensure_base_version(db, "tiny")
    queries.add_prompts(db, [{"text": f"Name a fruit for day {i}."} for i in range(6)], source="t")
    judged = []
    registry = PolicyRegistry.load("tiny", MODEL_CACHE)
    queue = PairQueue(tmp_path / "prefloop.db", registry, QueueConfig(sampling=SamplingConfig(max_new_tokens=8)),
                      random.Random(0), judge=lambda db, ids: judged.append(ids))
    assert queue.generate(0, 2) == 2  # stored and returned without waiting for the judge
    wait_for(lambda: judged == [[p["id"] for p in db["pairs"].rows]])

    def broken(db, ids):
        judged.append("tried")
        raise RuntimeError("the judge fell over")
    queue.judge = broken
    assert queue.generate(0, 2) == 2 and db["pairs"].count == 4
    wait_for(lambda: judged[-1] == "tried")
    assert queue.generate(0, 2) == 2 and db["pairs"].count == 6  # it goes on judging and making pairs
    wait_for(lambda: judged.count("tried") == 2)
    queue.stop()


def test_the_newest_rounds_reward_model_judges_new_pairs(tmp_path):
    db = open_db(tmp_path / "prefloop.db")
    queries.ensure_base_version(db, "tiny")
    queries.add_prompts(db, [{"text": "What should I eat at 3 o'clock?"}, {"text": "Pack lunch box 7 with one fruit."}],
                        source="t")
    answers = [("Try a cherry with some yogurt.", "Try a banana with some yogurt."),
               ("I would go with a banana.", "I would go with a plum.")]
    ids = [queries.add_pair(db, prompt_id=p["id"], version_id=0, completions=pair, sampling={}, seed=0,
                            prompt_truncated=False, gen_seconds=0) for p, pair in zip(db["prompts"].rows, answers)]
    judge = RewardModelJudge(tmp_path)
    assert judge(db, ids) == 0 and db["first_pass"].count == 0  # no round yet: no judge

    round_id = rounds.start_round(db, "dpo", {}, os.getpid())
    train_reward_model(checkpoint_dir("tiny", MODEL_CACHE), TRAIN, HELDOUT, CONFIG, round_outputs(tmp_path, round_id)[1])
    version = rounds.add_version(db, parent_id=0, adapter_path=str(random_adapter(tmp_path / "a")), algo="dpo",
                                 round_id=round_id)
    rounds.finish_round(db, round_id, version)
    assert judge(db, ids) == 2
    verdicts = {r["pair_id"]: r for r in db["first_pass"].rows}
    assert [verdicts[i]["verdict"] for i in ids] == ["1", "0"]  # the banana, wherever it is
    assert all(r["judge"] == f"reward-model:round-{round_id}" and 0.5 < r["confidence"] <= 1 for r in verdicts.values())
    assert first_pass.audit(db)[0]["audited_votes"] == 0  # nobody has judged these pairs yet


def fake_llm(reply) -> httpx.MockTransport:
    """An OpenAI-compatible endpoint whose judge replies reply(question) to each question."""
    def answer(request: httpx.Request) -> httpx.Response:
        question = json.loads(request.content)["messages"][-1]["content"]
        return httpx.Response(200, json={"choices": [{"message": {"role": "assistant", "content": reply(question)}}]})
    return httpx.MockTransport(answer)


def test_an_llm_judge_gives_a_verdict_only_where_both_orders_agree(tmp_path):
    db = open_db(banana_judgements(tmp_path) / "prefloop.db")  # answer 0 is always the banana, which alice chose
    ids = [p["id"] for p in db["pairs"].rows]
    fair = LLMJudge(LLMJudgeConfig(url="http://judge", model="fair"),
                    fake_llm(lambda q: "A" if "[Answer A]\nHave a banana." in q else "**B**, clearly"))
    first_seen = LLMJudge(LLMJudgeConfig(url="http://judge", model="first-seen"), fake_llm(lambda q: "Answer A."))
    rambling = LLMJudge(LLMJudgeConfig(url="http://judge", model="rambling"), fake_llm(lambda q: "Both are fine."))
    down = LLMJudge(LLMJudgeConfig(url="http://judge", model="down"), httpx.MockTransport(lambda r: httpx.Response(500)))
    assert every([down, fair, first_seen, rambling])(db, ids[:20]) == 60  # the failing judge stops no other

    verdicts = {(r["judge"], r["pair_id"]): r for r in db["first_pass"].rows}
    assert {verdicts["llm:fair", i]["verdict"] for i in ids[:20]} == {"0"}  # the banana, asked either way round
    assert all(verdicts["llm:fair", i]["confidence"] is None for i in ids[:20])  # it says which, not how sure
    assert all(verdicts[name, i]["verdict"] is None for name in ("llm:first-seen", "llm:rambling") for i in ids[:20])
    assert not any(judge == "llm:down" for judge, _ in verdicts)  # its pairs stay unjudged, not abstained

    fair_audit = next(a for a in first_pass.audit(db) if a["judge"] == "llm:fair")
    assert (fair_audit["agreement"], fair_audit["audited_votes"], fair_audit["calibration_error"]) == (1.0, 20, None)
    assert "llm:fair: judged 20 pairs (0 abstained); agrees with **1.00**" in agreement.summary_markdown(
        agreement.quality(db))
    assert "it does not say how sure it is" in agreement.summary_markdown(agreement.quality(db))


def test_judge_replies_are_read_as_a_letter_or_nothing():
    assert [letter(r) for r in ("A", " B.", "**A**", "answer B: it is shorter", "Apples", "a tie", "Neither", "")] == \
        ["A", "B", "A", "B", None, None, None, None]


def test_an_llm_judge_through_a_real_worker_asks_both_orders(worker, tmp_path):
    _, port, _ = worker
    (tmp_path / "app").mkdir()
    db = open_db(banana_judgements(tmp_path / "app") / "prefloop.db")
    asked = []

    class Recording(httpx.HTTPTransport):
        def handle_request(self, request):
            response = super().handle_request(request)
            response.read()
            asked.append((json.loads(request.content), response.json()["choices"][0]["message"]["content"]))
            return response
    judge = LLMJudge(LLMJudgeConfig(url=f"http://127.0.0.1:{port}", model="tiny"), Recording())
    pairs = list(db.query("SELECT p.id, pr.text FROM pairs p JOIN prompts pr ON pr.id = p.prompt_id LIMIT 3"))
    judge(db, [p["id"] for p in pairs])
    assert len(asked) == 6 and all(body["temperature"] == 0 for body, _ in asked)
    stored = {r["pair_id"]: r["verdict"] for r in db["first_pass"].rows}
    for pair in pairs:  # each pair asked once in each order; a verdict only where the replies agree
        replies = {question["messages"][0]["content"].split("[Answer A]\n")[1].split("\n")[0]: letter(reply)
                   for question, reply in asked if f"[Message]\n{pair['text']}\n" in question["messages"][0]["content"]}
        assert set(replies) == {"Have a banana.", "Have nothing."}
        both = replies["Have a banana."], replies["Have nothing."]
        assert stored[pair["id"]] == {("A", "B"): "0", ("B", "A"): "1"}.get(both)
