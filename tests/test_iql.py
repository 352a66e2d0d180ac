"""Discrete language-conditioned IQL: losses by hand, masking, determinism, learning, checkpoints."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rgvlm_core.errors import UsageError
from rgvlm_core.rl.iql import (
    IQL,
    Batch,
    IQLConfig,
    OfflineTensors,
    SeedStack,
    States,
    actor_loss,
    expectile_loss,
    masked_logits,
    q_loss,
    train,
)

# ------------------------------------------------------------------------------ a tiny corridor MDP
# 7 cells, 3 goal instructions (one-hot) at cells 0, 3 and 6. Actions move by -2, -1, +1, +2 or stay
# (two "stay" actions); a move off the corridor is invalid, and the second "stay" is valid only on even
# cells. Reward 1 and done on reaching the goal; at most HORIZON steps, so random play often fails.
CELLS, GOALS, MOVES, HORIZON = 7, (0, 3, 6), (-2, -1, 1, 2, 0, 0), 3
N_ACTIONS = len(MOVES)


def valid_mask(pos: int) -> np.ndarray:
    mask = np.array([0 <= pos + m < CELLS for m in MOVES])
    mask[5] = pos % 2 == 0
    return mask


def expert_action(pos: int, goal: int) -> int:
    gap = goal - pos
    return {-1: 1, 1: 2}.get(gap, 0 if gap < 0 else 3)


def one_hot(i: int, n: int) -> np.ndarray:
    v = np.zeros(n, np.float32)
    v[i] = 1.0
    return v


def rollout(policy, rng: np.random.Generator, goal_idx: int):
    goal = GOALS[goal_idx]
    pos = int(rng.choice([c for c in range(CELLS) if c != goal]))
    steps = []
    for _ in range(HORIZON):
        mask = valid_mask(pos)
        a = policy(pos, goal_idx, mask, rng)
        nxt = pos + MOVES[a]
        done = nxt == goal
        steps.append((pos, a, float(done), nxt, float(done), mask))
        pos = nxt
        if done:
            break
    return steps


def random_policy(pos, goal_idx, mask, rng):
    return int(rng.choice(np.flatnonzero(mask)))


def expert_policy(pos, goal_idx, mask, rng):
    return expert_action(pos, GOALS[goal_idx])


def success_rate(policy, episodes: int = 300, seed: int = 123) -> float:
    rng = np.random.default_rng(seed)
    wins = sum(rollout(policy, rng, i % len(GOALS))[-1][4] for i in range(episodes))
    return wins / episodes


def corridor_dataset(episodes: int = 400, seed: int = 0) -> OfflineTensors:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(episodes):
        policy = expert_policy if i % 2 == 0 else random_policy  # half expert, half random behaviour
        goal_idx = int(rng.integers(len(GOALS)))
        rows += [(goal_idx, *step) for step in rollout(policy, rng, goal_idx)]
    g, s, a, r, s2, d, m = zip(*rows, strict=True)
    cells = torch.eye(CELLS)
    return OfflineTensors(
        states=cells[list(s)],
        next_states=cells[list(s2)],
        instruction_ids=torch.tensor(g),
        next_instruction_ids=torch.tensor(g),
        instruction_table=torch.eye(len(GOALS)),
        actions=torch.tensor(a),
        rewards=torch.tensor(r, dtype=torch.float32),
        dones=torch.tensor(d, dtype=torch.float32),
        masks=torch.tensor(np.stack(m)),
    )


def learner_policy(learner: IQL):
    def policy(pos, goal_idx, mask, rng):
        a = learner.act(
            torch.from_numpy(one_hot(pos, CELLS))[None],
            torch.from_numpy(one_hot(goal_idx, len(GOALS)))[None],
            torch.from_numpy(mask)[None],
        )
        return int(a[0])

    return policy


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These nets are tiny: one thread is fastest, and much faster than two on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


SMALL = IQLConfig(hidden=32, batch_size=64, steps=20, log_every=5)


def random_batch(gen: torch.Generator, b: int = 8, s: int = 5, e: int = 3, a: int = 4, k: int = 1) -> Batch:
    """A (K, B) batch of random transitions: dense states, action 0 (always valid) everywhere."""
    masks = torch.rand(k, b, a, generator=gen) < 0.6
    masks[..., 0] = True
    return Batch(
        states=States(dense=torch.randn(k, b, s, generator=gen)),
        instructions=torch.randn(k, b, e, generator=gen),
        actions=torch.zeros(k, b, dtype=torch.int64),
        rewards=torch.rand(k, b, generator=gen),
        next_states=States(dense=torch.randn(k, b, s, generator=gen)),
        next_instructions=torch.randn(k, b, e, generator=gen),
        dones=(torch.rand(k, b, generator=gen) < 0.2).float(),
        masks=masks,
    )


# ------------------------------------------------------------------------------------------- losses


def test_expectile_loss_weights_positive_errors_by_expectile_and_negative_by_its_complement():
    diff = torch.tensor([2.0, -1.0, 0.5, -3.0])
    # 0.8*4 + 0.2*1 + 0.8*0.25 + 0.2*9 = 3.2 + 0.2 + 0.2 + 1.8 = 5.4; mean 1.35
    assert expectile_loss(diff, 0.8).item() == pytest.approx(1.35)
    assert expectile_loss(diff, 0.5).item() == pytest.approx(0.5 * (4 + 1 + 0.25 + 9) / 4)


def test_q_loss_is_the_mean_of_the_two_critics_squared_errors():
    q1, q2, target = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 4.0]), torch.tensor([1.5, 3.0])
    # q1: (0.25 + 1) / 2 = 0.625; q2: (2.25 + 1) / 2 = 1.625; mean 1.125
    assert q_loss(q1, q2, target).item() == pytest.approx(1.125)


def test_actor_loss_weights_the_masked_log_likelihood_by_clipped_exponentiated_advantages():
    logits = torch.tensor([[0.0, 0.0, 5.0], [1.0, 2.0, 3.0]])
    masks = torch.tensor([[True, True, False], [True, True, True]])
    actions = torch.tensor([0, 2])
    advantages = torch.tensor([0.0, 1.0])
    # row 0: the invalid third action drops out: log pi = log(1/2), weight exp(0) = 1
    # row 1: log pi(2) = 3 - log(e + e^2 + e^3), weight exp(5 * 1) = 148.4 clipped to 100
    lp1 = 3.0 - math.log(math.e + math.e**2 + math.e**3)
    expected = -(1.0 * math.log(0.5) + 100.0 * lp1) / 2
    got = actor_loss(logits, masks, actions, advantages, beta=5.0, max_weight=100.0).item()
    assert got == pytest.approx(expected, rel=1e-6)


def test_a_dataset_action_invalid_in_its_state_carries_no_actor_loss():
    logits = torch.tensor([[0.0, 0.0, 5.0], [1.0, 2.0, 3.0]])
    masks = torch.tensor([[True, True, False], [True, True, True]])
    actions = torch.tensor([2, 0])  # row 0 took an action its mask forbids (a failed attempt)
    advantages = torch.tensor([3.0, 0.0])
    expected = -(1.0 * (1.0 - math.log(math.e + math.e**2 + math.e**3))) / 1
    got = actor_loss(logits, masks, actions, advantages, beta=5.0, max_weight=100.0).item()
    assert got == pytest.approx(expected, rel=1e-6)


def test_masked_logits_give_invalid_actions_zero_probability():
    probs = torch.softmax(
        masked_logits(torch.tensor([[9.0, 0.0, 1.0]]), torch.tensor([[False, True, True]])), -1
    )
    assert probs[0, 0].item() == 0.0
    assert probs[0, 1:].sum().item() == pytest.approx(1.0)


# ----------------------------------------------------------------------------------------- networks


def reference_mlp(net: SeedStack, k: int, j: int, x: torch.Tensor) -> torch.Tensor:
    """Member j of seed k as a plain MLP on concat(state, instruction), layer by layer."""
    h = net.hidden
    cols = slice(j * h, (j + 1) * h)
    z = x
    for i in range(len(net.weights) + 1):
        if i == 0:
            w = torch.cat([net.w_state[k, :, cols], net.w_instruction[k, :, cols]])
            z = z @ w + net.b_first[k, 0, cols]
        else:
            z = z @ net.weights[i - 1][k * net.members + j] + net.biases[i - 1][k * net.members + j, 0]
        n = k * net.members + j
        z = torch.nn.functional.layer_norm(z, (h,), net.norm_weights[i][n, 0], net.norm_biases[i][n, 0])
        z = torch.relu(z)
    return z @ net.head_weight[k * net.members + j].T + net.head_bias[k * net.members + j]


def test_a_seed_stack_computes_exactly_its_separate_mlps():
    torch.manual_seed(0)
    net = SeedStack(2, 2, 4, 2, 5, hidden=8, layers=2, layer_norm=True)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_()
    states, instr = torch.randn(2, 6, 4), torch.randn(2, 6, 2)
    idx = torch.tensor([[0, 3, 1, 2, 4, 4], [1, 1, 0, 2, 3, 0]])
    out, at = net(States(dense=states), instr), net.at(States(dense=states), instr, idx)
    assert out.shape == (2, 2, 6, 5) and at.shape == (2, 2, 6)
    for k in range(2):
        for j in range(2):
            ref = reference_mlp(net, k, j, torch.cat([states[k], instr[k]], 1))
            torch.testing.assert_close(out[k, j], ref)
            torch.testing.assert_close(at[k, j], ref.gather(1, idx[k, :, None])[:, 0])


# ---------------------------------------------------------------------------------------- behaviour


@pytest.mark.parametrize("greedy", [True, False])
def test_act_never_chooses_an_invalid_action(greedy):
    torch.manual_seed(0)
    learner = IQL(5, 3, 12, IQLConfig(hidden=16))
    gen = torch.Generator().manual_seed(1)
    for _ in range(20):
        masks = torch.rand(200, 12, generator=gen) < 0.3
        masks[torch.arange(200), torch.randint(12, (200,), generator=gen)] = True
        acts = learner.act(
            torch.randn(200, 5, generator=gen) * 10, torch.randn(200, 3, generator=gen), masks,
            greedy=greedy, generator=gen,
        )  # fmt: skip
        assert masks[torch.arange(200), acts].all()


def test_act_rejects_a_state_without_any_valid_action():
    learner = IQL(5, 3, 4, IQLConfig(hidden=16))
    with pytest.raises(UsageError, match="no valid action"):
        learner.act(torch.zeros(1, 5), torch.zeros(1, 3), torch.zeros(1, 4, dtype=torch.bool))


def test_config_rejects_an_expectile_outside_the_open_unit_interval():
    with pytest.raises(UsageError, match="expectile"):
        IQL(5, 3, 4, IQLConfig(expectile=1.0))


def test_update_reports_namespaced_finite_metrics_and_decays_the_actor_learning_rate():
    torch.manual_seed(0)
    learner = IQL(5, 3, 4, IQLConfig(hidden=16, steps=10))
    gen = torch.Generator().manual_seed(0)
    first = learner.update(random_batch(gen))[0]
    for _ in range(4):
        (last,) = learner.update(random_batch(gen))
    assert set(first) == {
        "losses/q",
        "losses/v",
        "losses/actor",
        "values/q",
        "values/v",
        "values/adv",
        "lr/actor",
    }
    assert all(math.isfinite(v) for v in last.values())
    assert first["lr/actor"] == pytest.approx(3e-4)
    assert last["lr/actor"] == pytest.approx(3e-4 * 0.5 * (1 + math.cos(math.pi * 4 / 10)))


def metrics_after_training(seed: int) -> list[dict[str, float]]:
    data = corridor_dataset(episodes=60)
    return [m for _, m, _ in train(data, N_ACTIONS, IQLConfig(**{**SMALL.__dict__, "seed": seed}))]


def test_the_same_seed_gives_the_same_metrics_and_another_seed_different_ones():
    a, b, c = metrics_after_training(0), metrics_after_training(0), metrics_after_training(1)
    assert len(a) == 4
    assert a == b
    assert a != c


def test_training_yields_every_log_every_steps_and_after_the_last():
    data = corridor_dataset(episodes=20)
    steps = [
        s for s, _, _ in train(data, N_ACTIONS, IQLConfig(hidden=16, batch_size=16, steps=12, log_every=5))
    ]
    assert steps == [5, 10, 12]


def test_learning_on_a_tiny_corridor_beats_random_play_and_nears_the_expert():
    data = corridor_dataset()
    config = IQLConfig(hidden=64, batch_size=128, steps=1500, log_every=1500, lr=1e-3)
    *_, (_, metrics, learner) = train(data, N_ACTIONS, config)
    random_rate, expert_rate = success_rate(random_policy), success_rate(expert_policy)
    learned = success_rate(learner_policy(learner))
    assert expert_rate == 1.0
    assert random_rate < 0.5
    assert learned >= 0.8 * expert_rate, (learned, random_rate, metrics)


def test_a_saved_and_loaded_checkpoint_acts_identically(tmp_path):
    data = corridor_dataset(episodes=60)
    *_, (_, _, learner) = train(data, N_ACTIONS, SMALL)
    learner.save(tmp_path / "iql.pt")
    loaded = IQL.load(tmp_path / "iql.pt")
    assert loaded.config == learner.config
    gen = torch.Generator().manual_seed(0)
    states, instr = torch.rand(100, CELLS, generator=gen), torch.rand(100, len(GOALS), generator=gen)
    masks = torch.rand(100, N_ACTIONS, generator=gen) < 0.5
    masks[:, 4] = True
    torch.testing.assert_close(
        learner.actor(States(dense=states[None]), instr[None]),
        loaded.actor(States(dense=states[None]), instr[None]),
    )
    assert torch.equal(learner.act(states, instr, masks), loaded.act(states, instr, masks))
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(
        learner.act(states, instr, masks, greedy=False, generator=g1),
        loaded.act(states, instr, masks, greedy=False, generator=g2),
    )
