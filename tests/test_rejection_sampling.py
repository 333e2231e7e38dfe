"""Rejection sampling's choice, with a scripted policy and reward model: the best of N is kept
when it clears the prompt's median by the margin, never an answer cut off at the length limit,
earlier rounds' kept answers compete again, and online DPO pairs put the best over the worst."""
import torch

from policy.sampling import Answer
from storage import queries, rounds
from trainer.rejection_sampling import RejectionSamplingSettings, best_of_n, gaps


class Policy:
    """Answers each prompt with the scripted answers, in order, N at a time."""
    def __init__(self, answers: dict[str, list[Answer]]):
        self.answers, self.calls = answers, []

    def complete(self, version, prompts, cfg, seed, copies=1):
        self.calls.append((version, list(prompts), copies))
        return [self.answers[p][:copies] for p in prompts]


class Judge:
    """Rewards an answer by how many times it says "good"."""
    def score(self, prompts, texts):
        return torch.tensor([float(t.count("good")) for t in texts])


def answers(*texts: str, cut: int | None = None) -> list[Answer]:
    return [Answer(t, i == cut) for i, t in enumerate(texts)]


SETTINGS = RejectionSamplingSettings(n=4, margin=1.0, chunk=2)


def test_keeps_the_best_of_n_and_drops_a_prompt_whose_best_is_near_its_median():
    policy = Policy({"clear": answers("meh", "good good", "meh", "good"),
                     "flat": answers("good", "good", "meh", "good good"),  # best 2, median 1
                     "even": answers("good", "good", "good", "good")})
    chosen = best_of_n(policy, 3, ["clear", "flat", "even"], Judge(), SETTINGS, seed=0)
    assert [(k["prompt"], k["answer"]) for k in chosen.kept] == [("clear", "good good"), ("flat", "good good")]
    assert [k["median"] for k in chosen.kept] == [0.0, 1.0]  # torch's median: the lower middle one
    assert chosen.examples[0] == {"prompt": [{"role": "user", "content": "clear"}],
                                  "completion": [{"role": "assistant", "content": "good good"}]}
    assert all(call[0] == 3 and call[2] == 4 for call in policy.calls)  # the live version, N each
    assert chosen.metrics["rs_kept"] == 2 and chosen.metrics["rs_prompts"] == 3
    strict = best_of_n(policy, 3, ["clear", "flat", "even"], Judge(),
                       RejectionSamplingSettings(n=4, margin=1.5, chunk=2), seed=0)
    assert [k["prompt"] for k in strict.kept] == ["clear"]


def test_never_keeps_an_answer_cut_off_at_the_length_limit():
    policy = Policy({"p": answers("meh", "good good good", "meh", "good", cut=1)})
    [kept] = best_of_n(policy, 0, ["p"], Judge(), SETTINGS, seed=0).kept
    assert kept["answer"] == "good"
    policy = Policy({"p": answers("meh", "good good good", "meh", "meh", cut=1)})
    chosen = best_of_n(policy, 0, ["p"], Judge(), SETTINGS, seed=0)
    assert chosen.kept == [] and chosen.metrics["rs_cut_off_share"] == 0.25


def test_an_earlier_rounds_answer_competes_against_todays_median():
    policy = Policy({"p": answers("meh", "good", "meh", "meh")})
    pooled = {"p": ["good good good"], "other prompt": ["good"]}
    [kept] = best_of_n(policy, 0, ["p"], Judge(), SETTINGS, seed=0, pooled=pooled).kept
    assert kept == {"prompt": "p", "answer": "good good good", "reward": 3.0, "median": 0.0, "pooled": True}


def test_the_gap_between_best_and_median_is_reported_for_each_n():
    rewards = torch.tensor([[0.0, 2.0, 1.0, 3.0], [1.0, 1.0, 1.0, 5.0]])
    figures = gaps(rewards)
    assert set(figures) == {"rs_gap_n2", "rs_gap_n4"}
    assert figures["rs_gap_n2"] == (2.0 + 0.0) / 2  # of two answers the lower median is the worse
    assert figures["rs_gap_n4"] == ((3.0 - 1.0) + (5.0 - 1.0)) / 2
    assert set(gaps(torch.zeros(3, 6))) == {"rs_gap_n2", "rs_gap_n4", "rs_gap_n6"}


def test_kept_answers_are_stored_and_pooled_distinct_by_prompt(db):
    queries.ensure_base_version(db, "tiny")
    for _ in range(2):
        rounds.start_round(db, "rs-sft", {}, pid=0)
    rounds.add_best_answers(db, 1, [{"prompt": "p", "answer": "A", "reward": 1.0, "median": 0.0}])
    rounds.add_best_answers(db, 2, [{"prompt": "p", "answer": "B", "reward": 2.0, "median": 0.0},
                                    {"prompt": "p", "answer": "A", "reward": 2.0, "median": 0.0},
                                    {"prompt": "q", "answer": "C", "reward": 2.0, "median": 0.0}])
    assert rounds.best_answers(db, ["p", "r"]) == {"p": ["A", "B"]}


def test_online_dpo_pairs_put_the_reward_models_best_over_its_worst():
    policy = Policy({"clear": answers("meh", "good good", "good", "good"),  # best - median 1, - worst 2
                     "near": answers("good", "good", "good", "good good"),  # best - worst 1: not with margin 1.5
                     "cut": answers("good good good", "meh", "meh", "meh", cut=0),  # the best is a fragment
                     "cut worst": answers("good good", "good", "good", "", cut=3)})  # so is the worst
    chosen = best_of_n(policy, 0, ["clear", "near", "cut", "cut worst"], Judge(),
                       RejectionSamplingSettings(n=4, margin=1.5, chunk=2), seed=0)
    assert chosen.pairs == [{"prompt": [{"role": "user", "content": "clear"}],
                             "chosen": [{"role": "assistant", "content": "good good"}],
                             "rejected": [{"role": "assistant", "content": "meh"}]}]
    assert chosen.kept == [] and chosen.metrics["rs_pairs"] == 1


def test_answers_all_alike_make_no_pair_even_without_a_margin():
    policy = Policy({"same": answers("good", "good", "good", "good")})
    chosen = best_of_n(policy, 0, ["same"], Judge(), RejectionSamplingSettings(n=4, margin=0.0), seed=0)
    assert chosen.pairs == [] and len(chosen.kept) == 1
