"""Reward model on the tiny model: it learns a preference that holds on unseen prompts, saves a
folder that reloads and scores the same, learns from 1-10 scores what pairs alone leave open,
cuts over-long pairs instead of losing them, and keeps its rewards within the range it was fitted on."""
from dataclasses import replace

import pytest
import torch
from transformers import AutoConfig

from policy import models
from tests.conftest import MODEL_CACHE
from trainer import common
from trainer.reward_model import (Pairs, RewardModel, RewardModelConfig, calibration_error, encode, fit_calibrated,
                                  fit_head, prompt_folds, train_reward_model)

# The tiny model has 64 features where SmolLM2 has 576, and a banana shows in a few of them:
# less shrinkage than the default lets the head reach them.
CONFIG = RewardModelConfig(max_length=128, l2=1e-3)
FRUITS = ("an apple", "a cherry", "a grape", "a mango", "a pear", "a plum", "a lemon", "a peach")
QUESTIONS = ("What should I eat at {i} o'clock?", "Suggest a snack for guest number {i}.",
             "Pack lunch box {i} with one fruit.", "Which fruit goes in smoothie {i}?")
ANSWERS = ("I would go with {}.", "Maybe {}, it is in season.", "Try {} with some yogurt.",
           "My pick for you is {}!", "How about {} and a glass of water?")
UNSEEN = ["Any fruit ideas for a picnic?", "What goes well with cereal?", "Dessert tonight?"]  # unlike QUESTIONS
LONG_PROMPT = "Please read this carefully. " * 100  # ~600 tokens: over CONFIG.max_length on its own


def row(i: int, margin: float, prompt: str | None = None) -> dict:
    """Annotators prefer the answer that names a banana. The answers' wording varies
    independently, so only the fruit separates them consistently."""
    prompt = prompt or QUESTIONS[i % len(QUESTIONS)].format(i=i)
    chosen = ANSWERS[i % len(ANSWERS)].format("a banana")
    rejected = ANSWERS[i * 3 // 2 % len(ANSWERS)].format(FRUITS[i % len(FRUITS)])
    return {"prompt": [{"role": "user", "content": prompt}],
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}],
            "margin": margin, "score_chosen": 5 + margin if margin else None,
            "score_rejected": 5 if margin else None,  # scored where there is a margin, as the export does
            "vote_id": i, "pair_id": i, "prompt_id": i, "version_id": 0, "annotator": "alice"}


N_LONG = 3
TRAIN = [row(i, margin=float(i % 3 * 2)) for i in range(96)] + \
        [row(200 + i, margin=0.0, prompt=LONG_PROMPT + str(i)) for i in range(N_LONG)]
HELDOUT = [row(1000 + i, margin=0.0 if i % 2 else 5.0) for i in range(32)]  # no 1-3 margins


@pytest.fixture(scope="module")
def base():
    return models.checkpoint_dir("tiny", MODEL_CACHE)


@pytest.fixture(scope="module")
def trained(base, tmp_path_factory):
    out = tmp_path_factory.mktemp("rm") / "reward_model"
    return out, train_reward_model(base, TRAIN, HELDOUT, CONFIG, out)


def test_learns_preference_on_heldout_prompts(trained):
    _, metrics = trained
    assert metrics["rm_accuracy"] >= 0.75  # 24 of 32: 1 in 300 by chance
    assert metrics["rm_heldout_pairs"] == len(HELDOUT)
    buckets = {k for k in metrics if k.startswith("rm_accuracy_margin_") and not k.endswith(("_low", "_high"))}
    assert buckets == {"rm_accuracy_margin_0", "rm_accuracy_margin_4_plus"}  # only buckets with rows
    assert metrics["rm_heldout_pairs_margin_0"] == metrics["rm_heldout_pairs_margin_4_plus"] == 16
    for name in ["rm_accuracy", *buckets]:  # each with its interval, which holds it
        assert 0.0 <= metrics[f"{name}_low"] < metrics[name] <= metrics[f"{name}_high"] <= 1.0


def test_the_round_reports_accuracy_on_every_judged_pair_it_did_not_train_on(trained):
    """18 held-out pairs cannot tell 0.56 from 0.81: the training pairs are also scored, each by
    a head fitted without its prompt's fold, so the figure stands on every judged pair."""
    _, metrics = trained
    assert metrics["rm_cv_pairs"] == len(TRAIN) and metrics["rm_unseen_pairs"] == len(TRAIN) + len(HELDOUT)
    for name in ("rm_cv_accuracy", "rm_unseen_accuracy"):
        assert 0.5 < metrics[f"{name}_low"] < metrics[name] <= metrics[f"{name}_high"] <= 1.0
    assert 0 <= metrics["rm_calibration_error"] <= 0.15


def test_held_out_accuracy_says_when_its_pairs_are_too_few_to_tell():
    """The versions table's words: 15 of 18 right clears chance; 10 of 18 cannot be told from it."""
    from storage.ratings import win_rate_interval
    from storage.rounds import with_interval

    def reported(right: int, pairs: int) -> str:
        rate = win_rate_interval(right, pairs - right, 0)
        return with_interval({"rm_accuracy": rate.value, "rm_accuracy_low": rate.low,
                              "rm_accuracy_high": rate.high, "rm_heldout_pairs": pairs},
                             "rm_accuracy", "rm_heldout_pairs")
    assert reported(15, 18) == "0.83 [0.60-0.95] of 18"
    assert reported(10, 18) == "0.56 [0.34-0.75] of 18: too few to tell"
    assert reported(69, 85) == "0.81 [0.71-0.88] of 85"
    assert reported(520, 1000) == "0.52 [0.49-0.55] of 1000: no better than a coin"
    assert with_interval({"rm_accuracy": 0.7}, "rm_accuracy") is None  # an old round without its interval


def test_overlong_pairs_are_cut_and_counted_not_dropped(trained):
    _, metrics = trained
    assert metrics["rm_train_pairs"] == len(TRAIN)
    assert metrics["rm_truncated"] == N_LONG
    assert metrics["rm_scored_pairs"] == sum(r["score_chosen"] is not None for r in TRAIN) == 64


def test_saved_folder_keeps_the_lower_layers_and_ranks_the_preferred_answer(base, trained):
    out, metrics = trained
    saved, full = AutoConfig.from_pretrained(out), AutoConfig.from_pretrained(base)
    assert saved.num_hidden_layers == metrics["rm_layers"] == round(CONFIG.depth * full.num_hidden_layers)

    rm = RewardModel.load(out)
    prompts = [q.format(i=500 + i) for i, q in enumerate(QUESTIONS[:3])]  # prompts it was not fitted on
    banana = rm.score(prompts, ["I would go with a banana."] * 3)
    other = rm.score(prompts, ["I would go with a plum.", "I would go with a cherry.", "I would go with a peach."])
    assert banana.dtype.is_floating_point and banana.shape == (3,)
    assert (banana > other).all()


@pytest.mark.parametrize("words", [True, False])
def test_a_reloaded_model_reads_answers_as_it_was_fitted_with_or_without_words(base, tmp_path, words):
    out = tmp_path / "rm"
    metrics = train_reward_model(base, TRAIN[:48], HELDOUT, replace(CONFIG, words=words), out)
    rm = RewardModel.load(out)
    assert rm.words is words
    hits = rm.preference(*([r[k][0]["content"] for r in HELDOUT] for k in ("prompt", "chosen", "rejected"))) > 0.5
    assert hits.float().mean().item() == pytest.approx(metrics["rm_accuracy"])  # the same verdicts as in training


def test_the_saved_head_keeps_its_posterior_and_calibration(base, trained):
    out, metrics = trained
    rm = RewardModel.load(out)
    assert rm.head.covariance.shape == (rm.head.weight.shape[0],) * 2 and rm.head.covariance.abs().sum() > 0
    assert (rm.head.temperature, rm.head.spread) == pytest.approx((metrics["rm_temperature"], metrics["rm_spread"]))
    prompts = [q.format(i=700 + i) for i, q in enumerate(QUESTIONS[:3])]
    sure = rm.preference(prompts, ["I would go with a banana."] * 3, ["I would go with a plum."] * 3)
    assert (sure > 0.5).all() and (sure < 1).all()  # prefers the banana, and says how sure
    flipped = rm.preference(prompts, ["I would go with a plum."] * 3, ["I would go with a banana."] * 3)
    assert flipped == pytest.approx((1 - sure).tolist(), abs=1e-5)


def test_empty_or_looping_answers_score_below_every_answer_it_was_fitted_on(trained):
    """A banana is what these annotators want, yet an answer that only says so, or says it in a
    loop, earns less than any ordinary answer: RL must not be paid for a broken answer."""
    out, _ = trained
    rm = RewardModel.load(out)
    ordinary = rm.score(UNSEEN, ["I would go with a plum.", "Maybe a cherry, it is in season.",
                                  "Try a pear with some yogurt."])
    broken = rm.score(UNSEEN, ["Banana!", "", "a banana, a banana, " * 12])
    assert (broken <= rm.floor).all()
    assert broken.max() < ordinary.min()


def test_no_answer_scores_above_the_best_answer_it_was_fitted_on(trained):
    """Four bananas are not four times what these annotators want: a linear head would score
    such an answer far above any it was fitted on (18 against 1, measured), and RL would chase it."""
    out, _ = trained
    rm = RewardModel.load(out)
    best = rm.score([r["prompt"][0]["content"] for r in TRAIN], [r["chosen"][0]["content"] for r in TRAIN]).max()
    assert best == pytest.approx(rm.ceiling, abs=0.05)  # reloaded in the default dtype
    more = rm.score(UNSEEN, ["A banana, banana bread, a banana split and banana pudding: bananas all day."] * 3)
    assert (more <= rm.ceiling).all()


def test_scores_do_not_depend_on_batching_and_match_what_rloo_sees(trained, monkeypatch):
    """RLOOTrainer calls `reward_func` with conversations; those rewards must be the ones `score`
    gives, however batched. Checked in float32, where that holds exactly."""
    monkeypatch.setenv("PREFLOOP_DTYPE", "float32")
    out, _ = trained
    rm = RewardModel.load(out)
    prompts = ["Hi", "Tell me a very long story about fruit and the people who grow it."]
    answers = ["A banana, please.", "Once upon a time there was an orchard with one banana tree in it."]
    batched = rm.score(prompts, answers, batch_size=2)
    single = rm.score(prompts, answers, batch_size=1)
    assert batched == pytest.approx(single.tolist(), abs=1e-4)
    rloo = rm.reward_func(prompts=[[{"role": "user", "content": p}] for p in prompts],
                          completions=[[{"role": "assistant", "content": a}] for a in answers], completion_ids=None)
    assert rloo == pytest.approx(batched.tolist(), abs=1e-4)


def test_scores_settle_what_the_pairs_leave_open():
    """Every chosen answer is ahead on both features alike, so pairs alone cannot say which
    feature matters; the 1-10 scores follow the first one only. An answer ahead on the first
    feature and far behind on the second is then preferred only by a head that read the scores."""
    torch.manual_seed(0)
    rejected = torch.randn(64, 2)
    step = torch.rand(64, 1) + 0.5
    chosen = rejected + step  # ahead on both features by the same step
    scores = torch.stack([5 + 2 * chosen[:, 0], 5 + 2 * rejected[:, 0]], dim=1)
    unscored = torch.full_like(scores, float("nan"))
    better, worse = torch.tensor([[1.0, -1.0]]), torch.tensor([[0.0, 0.5]])
    with_scores = fit_head(chosen, rejected, scores, l2=0.01, score_weight=0.5)
    pairs_only = fit_head(chosen, rejected, unscored, l2=0.01, score_weight=0.5)
    assert with_scores.weight @ (better - worse)[0] > 0  # unclamped: the cap cannot hide a difference
    assert pairs_only.weight @ (better - worse)[0] < 0


def test_encode_cuts_the_prompt_and_keeps_the_answer(base):
    tokenizer = common.load_tokenizer(base)
    prompt = [{"role": "user", "content": LONG_PROMPT}]
    answer = [{"role": "assistant", "content": "I would go with a banana."}]
    ids, start, truncated = encode(tokenizer, prompt, answer, max_length=128)
    assert truncated and len(ids) <= 128
    assert tokenizer.decode(ids[start:]).strip() == "I would go with a banana.<|im_end|>"
    assert "Please read this carefully." in tokenizer.decode(ids[:start])  # the prompt's start survives

    short = [{"role": "user", "content": "Hi"}]
    ids, start, truncated = encode(tokenizer, short, answer, max_length=128)
    assert not truncated
    assert ids == tokenizer.apply_chat_template(short + answer, tokenize=True, return_dict=True)["input_ids"]

    long_answer = [{"role": "assistant", "content": LONG_PROMPT}]
    ids, start, truncated = encode(tokenizer, short, long_answer, max_length=64)
    assert truncated and len(ids) <= 64 and start < len(ids)


def test_cross_validation_never_splits_a_prompt_across_folds():
    rows = [{"prompt": [{"role": "user", "content": f"question {i % 13}"}]} for i in range(60)]
    folds = prompt_folds(rows, k=5)
    by_prompt = {}
    for row, fold in zip(rows, folds):
        by_prompt.setdefault(row["prompt"][0]["content"], set()).add(fold)
    assert all(len(f) == 1 for f in by_prompt.values())  # every pair of a prompt in one fold
    assert sorted(set(folds)) == [0, 1, 2, 3, 4]
    assert prompt_folds(rows, k=5) == folds  # the same folds on every run


def synthetic_pairs(n: int, seed: int, offset: float = 0.0) -> Pairs:
    """Pairs whose chosen answer is ahead on feature 0 alone; the other seven features vary a
    little, and by `offset` more on the chosen side (answers unlike the training ones)."""
    g = torch.Generator().manual_seed(seed)
    rejected = 0.1 * torch.randn(n, 8, generator=g)
    chosen = rejected + 0.1 * torch.randn(n, 8, generator=g)
    chosen[:, 0] += 0.5 + torch.rand(n, generator=g)
    chosen[:, 1:] += offset
    no = torch.zeros(n, dtype=torch.bool)
    return Pairs(chosen, rejected, no, no, torch.full((n, 2), float("nan")), torch.ones(n))


def test_a_reward_model_fitted_on_one_feature_is_less_sure_of_pairs_unlike_its_training_pairs():
    train = synthetic_pairs(80, seed=0)
    folds = torch.tensor([i % 5 for i in range(80)])
    head, _ = fit_calibrated(train, folds, RewardModelConfig())
    p_like = synthetic_pairs(200, seed=1).preference(head)
    unlike = synthetic_pairs(200, seed=2, offset=1.0)
    p_unlike = unlike.preference(head)
    p_unlike_without_posterior = unlike.preference(replace(head, covariance=torch.zeros_like(head.covariance)))
    assert (p_like > 0.5).float().mean() >= 0.95  # ranked by the feature it learnt
    assert (p_unlike > 0.5).float().mean() >= 0.95  # the same gap on that feature, still ranked right
    assert p_unlike.mean() < p_like.mean() - 0.05  # but less sure where it has seen nothing alike,
    assert p_unlike.mean() < p_unlike_without_posterior.mean() - 0.05  # and that is the posterior's doing


def test_pairs_of_one_prompt_get_a_head_but_no_cross_validated_figures():
    pairs = synthetic_pairs(20, seed=0)
    head, out_of_fold = fit_calibrated(pairs, torch.zeros(20, dtype=torch.long), RewardModelConfig())
    assert len(out_of_fold) == 0 and head.temperature == 1.0
    assert (pairs.preference(head) > 0.5).all()


def test_its_probabilities_are_calibrated_on_pairs_it_did_not_see():
    """Annotators who agree with a hidden linear taste only as often as it says (a coin weighted
    by how far apart the answers are): of the comparisons it calls p sure, about p come out right."""
    def noisy(n: int, seed: int) -> Pairs:
        g = torch.Generator().manual_seed(seed)
        a, b = torch.randn(n, 16, generator=g), torch.randn(n, 16, generator=g)
        taste = torch.linspace(1.0, -0.5, 16) * 0.6
        a_wins = torch.rand(n, generator=g) < torch.sigmoid((a - b) @ taste)
        chosen, rejected = torch.where(a_wins[:, None], a, b), torch.where(a_wins[:, None], b, a)
        no = torch.zeros(n, dtype=torch.bool)
        return Pairs(chosen, rejected, no, no, torch.full((n, 2), float("nan")), torch.ones(n))
    train, test = noisy(300, seed=0), noisy(2000, seed=1)
    head, _ = fit_calibrated(train, torch.tensor([i % 5 for i in range(300)]), RewardModelConfig())
    p = test.preference(head)
    assert calibration_error(p) <= 0.05
    assert 0.6 < (p > 0.5).float().mean() < 0.9  # a taste that is hard to call: not trivially sure
