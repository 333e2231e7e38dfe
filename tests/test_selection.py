"""Choosing what people judge: of several answers, the pair whose order the reward model knows
least about goes to people, not a pair of near-copies, nor one it is already sure of; the queue
makes such pairs where it generates, keeps a random share, and says on each pair how it was made."""
import json
import os
import random

import pytest
import torch

from app.pair_queue import PairQueue, QueueConfig, SelectionConfig
from policy.models import checkpoint_dir
from policy.sampling import SamplingConfig
from storage import queries, rounds
from storage.db import open_db
from storage.paths import round_outputs
from trainer.first_pass import RewardModelJudge
from trainer.reward_model import RewardModel, RewardModelConfig, fit_calibrated, train_reward_model
from trainer.selection import information, most_informative

from .conftest import MODEL_CACHE, random_adapter
from .test_reward_model import CONFIG, HELDOUT, TRAIN, synthetic_pairs


def head_fitted_on_feature_0():
    """A reward model whose judged pairs differed along feature 0 alone (the chosen side ahead)."""
    return fit_calibrated(synthetic_pairs(80, seed=0), torch.tensor([i % 5 for i in range(80)]),
                          RewardModelConfig())[0]


def answers(*rows: list[float]) -> torch.Tensor:
    return torch.tensor([row + [0.0] * (8 - len(row)) for row in rows])


def test_the_pair_people_get_differs_where_no_judged_pair_did():
    head = head_fitted_on_feature_0()
    # 0 and 1 are near-copies; 2 is far ahead of them on feature 0, which the head is sure of;
    # 3 differs from them along feature 1, which no judged pair varied in.
    features = answers([0.0], [0.01], [2.0], [0.0, 2.0])
    i, j = most_informative(head, features, torch.zeros(4, dtype=torch.bool))
    assert 3 in (i, j) and {i, j} != {2, 3}


def test_near_copies_tell_nothing_and_unlike_answers_tell_most():
    head = head_fitted_on_feature_0()
    features = answers([0.0, 1.0], [0.0, 1.0], [0.0, -1.0])
    no = torch.zeros(2, dtype=torch.bool)
    bits = information(*head.logits(features[[0, 0]], features[[1, 2]], no, no), head.temperature, head.spread)
    assert bits[0] < 1e-3 < 0.1 < bits[1]  # identical answers: nothing; 2 apart along an unseen feature: much


def test_an_empty_or_looping_answer_is_never_shown_where_the_prompt_has_whole_ones():
    head = head_fitted_on_feature_0()
    features = answers([0.0], [0.01], [0.0, 3.0])
    broken = torch.tensor([False, False, True])  # the unlike answer is a loop: it loses whatever the head says
    assert most_informative(head, features, broken) == (0, 1)
    assert most_informative(head, features[1:], broken[1:]) == (0, 1)  # no other pair: shown all the same


def queue_with(tmp_path, registry, selection: SelectionConfig, choose) -> tuple[object, PairQueue]:
    db = open_db(tmp_path / "q.db")
    queries.ensure_base_version(db, "tiny")
    queries.add_prompts(db, [{"text": f"Question number {i}?"} for i in range(8)], source="t")
    cfg = QueueConfig(sampling=SamplingConfig(max_new_tokens=8, temperature=1.5), selection=selection)
    return db, PairQueue(tmp_path / "q.db", registry, cfg, random.Random(0), choose=choose)


def test_the_queue_pairs_the_answers_the_reward_model_chooses_and_says_so(tmp_path, registry):
    offered = {}

    def last_two(prompt, answers):
        offered[prompt] = answers
        return len(answers) - 2, len(answers) - 1
    db, queue = queue_with(tmp_path, registry, SelectionConfig(answers=4, random_share=0.0), lambda db: last_two)
    assert queue.generate(0, 4) == 4
    for pair in db.query("SELECT p.*, pr.text FROM pairs p JOIN prompts pr ON pr.id = p.prompt_id"):
        answers = offered[pair["text"]]
        assert 2 <= len(answers) <= 4 and len(set(answers)) == len(answers)  # distinct answers to choose from
        assert (pair["completion_0"], pair["completion_1"]) == tuple(answers[-2:])
        assert json.loads(pair["sampling"]) == SamplingConfig(max_new_tokens=8, temperature=1.5).record() | {
            "answers": 4, "pair": "reward model", "picked": [len(answers) - 2, len(answers) - 1]}
    assert max(map(len, offered.values())) > 2  # it did choose among more than two


def test_a_random_share_and_every_pair_before_a_reward_model_are_two_answers_as_they_came(tmp_path, registry):
    asked = []
    db, queue = queue_with(tmp_path, registry, SelectionConfig(answers=4, random_share=1.0),
                           lambda db: lambda prompt, answers: asked.append(prompt) or (2, 3))
    queue.generate(0, 4)
    assert asked == [] and {json.loads(p["sampling"])["pair"] for p in db["pairs"].rows} == {"random"}
    queue.choose = lambda db: None  # no round yet: no reward model to choose, and two answers are enough
    queue.cfg.selection.random_share = 0.0
    queue.generate(0, 4)
    assert [json.loads(p["sampling"]) for p in db["pairs"].rows][4:] == [queue.cfg.sampling.record()] * 4


def test_a_choice_that_fails_leaves_its_pair_random_and_loses_no_batch(tmp_path, registry):
    def broken(prompt, answers):
        raise RuntimeError("the reward model fell over")
    db, queue = queue_with(tmp_path, registry, SelectionConfig(answers=4, random_share=0.0), lambda db: broken)
    assert queue.generate(0, 4) == 4
    assert {json.loads(p["sampling"])["pair"] for p in db["pairs"].rows} == {"random"}


def test_selection_off_makes_pairs_as_before(tmp_path, registry):
    db, queue = queue_with(tmp_path, registry, SelectionConfig(), lambda db: pytest.fail("nobody asked"))
    queue.generate(0, 2)
    assert [json.loads(p["sampling"]) for p in db["pairs"].rows] == [queue.cfg.sampling.record()] * 2


def test_impossible_settings_are_refused(tmp_path, registry):
    for selection in (SelectionConfig(answers=1), SelectionConfig(random_share=1.5)):
        with pytest.raises(ValueError, match="queue.selection"):
            queue_with(tmp_path, registry, selection, None)


def test_after_a_round_its_reward_model_chooses_the_pair_it_knows_least_about(tmp_path):
    db = open_db(tmp_path / "prefloop.db")
    queries.ensure_base_version(db, "tiny")
    judge = RewardModelJudge(tmp_path)
    assert judge.chooser(db) is None  # no round yet
    round_id = rounds.start_round(db, "dpo", {}, os.getpid())
    train_reward_model(checkpoint_dir("tiny", MODEL_CACHE), TRAIN, HELDOUT, CONFIG, round_outputs(tmp_path, round_id)[1])
    rounds.finish_round(db, round_id, rounds.add_version(db, parent_id=0, adapter_path=str(random_adapter(tmp_path / "a")),
                                                         algo="dpo", round_id=round_id))
    prompt = "What should I eat at 3 o'clock?"
    answers = ["I would go with a banana.", "I would go with a plum.", "Try a cherry with some yogurt.",
               "How about a banana and a glass of water?"]
    rm = RewardModel.load(round_outputs(tmp_path, round_id)[1])
    features, broken = rm.read([[{"role": "user", "content": prompt}]] * 4, [[{"role": "assistant", "content": a}]
                                                                               for a in answers])
    assert judge.chooser(db)(prompt, answers) == most_informative(rm.head, features, broken)
