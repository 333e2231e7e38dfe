"""PPO: the loss pieces against hand-computed values, then a round on the tiny model that learns a
scripted reward, stays near its reference, saves a loadable adapter and continues from it."""
import math
from dataclasses import replace

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from policy import models
from policy.sampling import SamplingConfig, sample_batch
from tests.conftest import MODEL_CACHE
from trainer import common
from trainer.ppo import (AdaptiveKLController, PPOConfig, compute_gae, forward, policy_loss, token_rewards,
                         train_ppo, value_loss, whiten)


def test_gae_matches_hand_computation():
    values = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 99.0]])
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 5.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    advantages, returns = compute_gae(values, rewards, mask, gamma=0.9, lam=0.5)
    # Row 0: deltas 0.8, 0.7, -2; A2 = -2, A1 = 0.7 + 0.45 * -2, A0 = 0.8 + 0.45 * A1.
    # Row 1 ends after two tokens: its padding's value (99) and reward (5) must not leak in.
    torch.testing.assert_close(advantages, torch.tensor([[0.71, -0.2, -2.0], [0.35, -1.0, 0.0]]))
    torch.testing.assert_close(returns, torch.tensor([[1.71, 1.8, 1.0], [1.35, 1.0, 0.0]]))


def test_gae_without_discount_or_bootstrap_returns_reward_to_go():
    values = torch.tensor([[0.5, -1.0, 2.0]])
    rewards = torch.tensor([[1.0, -0.5, 2.0]])
    _, returns = compute_gae(values, rewards, torch.ones(1, 3), gamma=1.0, lam=1.0)
    torch.testing.assert_close(returns, torch.tensor([[2.5, 1.5, 2.0]]))


def test_whiten_uses_only_real_tokens():
    torch.manual_seed(0)
    x = torch.randn(4, 6) * 3 + 7
    mask = (torch.arange(6) < torch.tensor([[6], [4], [2], [5]])).float()
    x_padded = torch.where(mask.bool(), x, torch.full_like(x, 1e6))
    white = whiten(x_padded, mask)
    real = white[mask.bool()]
    assert real.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert real.std().item() == pytest.approx(1.0, abs=1e-4)
    assert (white[~mask.bool()] == 0).all()


@pytest.mark.parametrize("advantage, ratio, loss, clipped", [
    (1.0, 1.1, -1.1, False),   # inside the trust region: the plain surrogate
    (1.0, 1.5, -1.2, True),    # already raised a good token beyond 1 + eps: no further gain
    (1.0, 0.5, -0.5, False),   # lowered a good token: the pessimistic bound keeps pushing it back
    (-1.0, 0.5, 0.8, True),    # already lowered a bad token beyond 1 - eps: no further gain
    (-1.0, 1.5, 1.5, False),   # raised a bad token: still penalised in full
])
def test_policy_loss_clips_only_in_the_direction_the_advantage_favours(advantage, ratio, loss, clipped):
    old = torch.tensor([[-2.0, -2.0]])
    logprobs = (old + torch.tensor([[torch.log(torch.tensor(ratio)), 5.0]])).requires_grad_()
    mask = torch.tensor([[1.0, 0.0]])  # the second token is padding with a wild ratio
    value, clipfrac = policy_loss(logprobs, old, torch.tensor([[advantage, -1.0]]), mask, cliprange=0.2)
    value.backward()
    assert value.item() == pytest.approx(loss)
    assert clipfrac.item() == float(clipped)
    assert (logprobs.grad[0, 0] == 0) == clipped
    assert logprobs.grad[0, 1] == 0


@pytest.mark.parametrize("new_value, loss, clipped", [
    (0.1, 0.5 * 0.9 ** 2, False),   # a small step: plain squared error
    (1.0, 0.5 * 0.8 ** 2, True),    # jumped onto the return: counted as if it stopped at +0.2
    (-1.0, 0.5 * 2.0 ** 2, False),  # jumped away from the return: the clip never hides a worse value
])
def test_value_loss_clips_large_steps_towards_the_return(new_value, loss, clipped):
    values = torch.tensor([[new_value]], requires_grad=True)
    value, clipfrac = value_loss(values, torch.zeros(1, 1), torch.ones(1, 1), torch.ones(1, 1),
                                 cliprange_value=0.2)
    value.backward()
    assert value.item() == pytest.approx(loss)
    assert clipfrac.item() == float(clipped)
    assert (values.grad.item() == 0) == clipped


def test_token_rewards_penalise_every_token_and_score_the_last():
    logprobs = torch.tensor([[-1.0, -1.0, -1.0], [-1.0, -3.0, -1.0]])
    ref_logprobs = torch.tensor([[-2.0, -1.0, -1.0], [-1.0, -1.0, -1.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    rewards, kl = token_rewards(torch.tensor([5.0, 1.0]), logprobs, ref_logprobs, mask, kl_coef=0.1)
    torch.testing.assert_close(rewards, torch.tensor([[-0.1, 5.0, 0.0], [0.0, 0.2, 1.0]]))
    torch.testing.assert_close(kl, torch.tensor([[1.0, 0.0, 0.0], [0.0, -2.0, 0.0]]))


def test_adaptive_kl_coefficient_follows_the_kl():
    ctl = AdaptiveKLController(init=0.1, target=6.0, horizon=100)
    assert ctl.update(12.0, n_steps=10) == pytest.approx(0.1 * 1.02)    # above target: error capped at +20%
    ctl = AdaptiveKLController(init=0.1, target=6.0, horizon=100)
    assert ctl.update(5.4, n_steps=10) == pytest.approx(0.1 * 0.99)     # 10% below: falls by 10% * 10/100
    assert ctl.update(6.0, n_steps=10) == pytest.approx(0.1 * 0.99)     # on target: unchanged


# The tiny model answers with one sentence naming a fruit; the reward is a taste among them. It is
# graded, so every sample carries a signal, and the policy can express it by naming other fruits.
# Chosen on tiny models built from seeds 0-2 and checked on 3-4: at lr 5e-3 with minibatches of
# 16, one seed's KL ran to 51 nats and its answers emptied; one minibatch per epoch at 3e-3 raised
# every seed's reward by 0.13-0.23, its KL staying under 18 (docs/rounds.md).
TASTE = {"banana": 1.0, "mango": 0.6, "peach": 0.3}
SETTINGS = PPOConfig(lr=3e-3, batch_size=32, mini_batch_size=32, ppo_epochs=4, iterations=12,
                     max_new_tokens=16, temperature=0.7)
PROMPTS = [f"Question {i}: tell me about {topic}." for i, topic in
           enumerate(["cats", "dogs", "rain", "code", "tea", "maps", "ships", "trees"])]


def fruit_reward(prompts: list[str], completions: list[str]) -> torch.Tensor:
    return torch.tensor([max([v for fruit, v in TASTE.items() if fruit in c], default=0.0) for c in completions])


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Beside other jobs on two cores, a second OpenMP thread mostly waits for a busy core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def base():
    return models.checkpoint_dir("tiny", MODEL_CACHE)


@pytest.fixture(scope="module")
def round1(base, tmp_path_factory):
    out = tmp_path_factory.mktemp("round1") / "adapter"
    logged = []
    return out, train_ppo(base, None, PROMPTS, fruit_reward, SETTINGS, out, log=logged.append), logged


def test_round_learns_the_reward_and_stays_near_the_reference(round1):
    _, history, logged = round1
    assert logged == history
    assert [s["iteration"] for s in history] == list(range(1, SETTINGS.iterations + 1))
    rewards = [s["reward"] for s in history]
    assert sum(rewards[-4:]) / 4 > sum(rewards[:4]) / 4 + 0.05
    assert history[0]["kl"] == pytest.approx(0.0, abs=1e-4)  # a fresh LoRA is the base model
    assert max(s["kl"] for s in history) < 20.0
    assert all(math.isfinite(s[k]) for s in history for k in ("policy_loss", "value_loss", "entropy"))


def test_the_critic_reads_the_policy_without_training_it(base):
    """The value loss reaches the value head and never the adapter: a shared trunk let it move
    the policy on tokens no reward asked about."""
    tokenizer = common.load_tokenizer(base)
    model = common.policy_for_training(base, None, SETTINGS.lora)
    batch = tokenizer(["Hi there, how about a pear?"], return_tensors="pt")
    _, _, hidden = forward(model, batch["input_ids"], batch["attention_mask"], start=3, temperature=1.0)
    value_head = torch.nn.Linear(hidden.shape[-1], 1)
    value_head(hidden).square().mean().backward()
    assert value_head.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters() if p.requires_grad)


def test_saved_adapter_is_the_trained_policy(base, round1):
    out, _, _ = round1
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "adapter_config.json",
                                                     "adapter_model.safetensors"]
    tokenizer, prompts = common.load_tokenizer(base), PROMPTS * 8
    sampling = SamplingConfig(temperature=SETTINGS.temperature, top_p=1.0,
                              max_new_tokens=SETTINGS.max_new_tokens)
    model = AutoModelForCausalLM.from_pretrained(base)
    model.generation_config.top_k = 0
    before = fruit_reward(prompts, sample_batch(model, tokenizer, prompts, sampling, seed=123)[0])
    tuned = PeftModel.from_pretrained(model, str(out))
    after = fruit_reward(prompts, sample_batch(tuned, tokenizer, prompts, sampling, seed=123)[0])
    assert after.mean() > before.mean() + 0.05


def test_second_round_starts_at_its_reference_and_repeats_exactly(base, round1, tmp_path):
    out1, history1, _ = round1
    # Round 1's first rollout had the same prompts and sampling seed: only the policy differs.
    cfg = replace(SETTINGS, iterations=1, ppo_epochs=1)
    first = train_ppo(base, out1, PROMPTS, fruit_reward, cfg, tmp_path / "a")
    assert first[0]["reward"] > history1[0]["reward"]
    # The reference is the live adapter: against the base model the KL would be round 1's.
    assert first[0]["kl"] == pytest.approx(0.0, abs=1e-4)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["README.md", "adapter_config.json",
                                                                  "adapter_model.safetensors"]
    assert train_ppo(base, out1, PROMPTS, fruit_reward, cfg, tmp_path / "b") == first
