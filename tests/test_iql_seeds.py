"""Stacked-seeds IQL: seed k of a stack trains, saves and acts as a learner of that seed alone."""

from __future__ import annotations

import math
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch
from torch import Tensor

from rgvlm_core.errors import UsageError
from rgvlm_core.rl.adam import Adam
from rgvlm_core.rl.iql import IQL, Batch, IQLConfig, OfflineTensors, SeedStack, States, train_seeds
from rgvlm_core.rl.tensors import SparseRows

S, E, A, N = 40, 6, 7, 300  # a state of 40 with at most 4 non-zeros: sparse enough (SPARSE_BELOW)
CONFIG = IQLConfig(hidden=16, batch_size=32, steps=20, log_every=1)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These nets are tiny: one thread is fastest, and much faster than two on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def sparse_states(gen: torch.Generator, n: int = N) -> Tensor:
    """(n, S) rows with 0 to 4 entries in {1, 2}, like the simulator's symbolic states."""
    out = torch.zeros(n, S)
    for row in range(n):
        cols = torch.randperm(S, generator=gen)[: int(torch.randint(5, (), generator=gen))]
        out[row, cols] = torch.randint(1, 3, (len(cols),), generator=gen).float()
    return out


def dataset(sparse: bool) -> OfflineTensors:
    gen = torch.Generator().manual_seed(11)
    masks = torch.rand(N, A, generator=gen) < 0.6
    masks[:, 0] = True
    data = OfflineTensors(
        states=sparse_states(gen),
        next_states=sparse_states(gen),
        instruction_ids=torch.randint(5, (N,), generator=gen),
        next_instruction_ids=torch.randint(5, (N,), generator=gen),
        instruction_table=torch.randn(5, E, generator=gen),
        actions=torch.randint(A, (N,), generator=gen),  # some invalid in their state: failed attempts
        rewards=(torch.rand(N, generator=gen) < 0.2).float(),
        dones=(torch.rand(N, generator=gen) < 0.1).float(),
        masks=masks,
    )
    return data.with_sparse_states() if sparse else data


def trained(data: OfflineTensors, seeds: tuple[int, ...], config: IQLConfig = CONFIG):
    """(metrics of every step, per seed; the learner) after `config.steps` updates."""
    runs = list(train_seeds(data, A, config, seeds))
    return [metrics for _, metrics, _ in runs], runs[-1][2]


def assert_states_close(a: dict, b: dict, **tol: float) -> None:
    assert a.keys() == b.keys()
    for name in a:
        if isinstance(a[name], dict):
            assert_states_close(a[name], b[name], **tol)
        elif isinstance(a[name], list):
            for x, y in zip(a[name], b[name], strict=True):
                torch.testing.assert_close(x, y, **tol)
        elif isinstance(a[name], Tensor):
            torch.testing.assert_close(a[name], b[name], **tol, msg=name)
        else:
            assert a[name] == b[name], name


# ----------------------------------------------------------------------------------- seed equivalence


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_seed_k_of_a_stack_trains_like_a_stack_of_one_with_that_seed(sparse):
    data = dataset(sparse)
    assert (data.sparse is not None) == sparse
    seeds = (3, 0, 7)
    stack_history, stack = trained(data, seeds)
    assert len(stack_history) == CONFIG.steps
    for k, seed in enumerate(seeds):
        alone_history, alone = trained(data, (seed,))
        for step, (mine, theirs) in enumerate(zip(stack_history, alone_history, strict=True)):
            assert mine[k] == pytest.approx(theirs[0], rel=1e-4, abs=1e-6), (seed, step)
        assert_states_close(stack.state_dict(seed_index=k), alone.state_dict(), rtol=1e-4, atol=1e-5)


def test_different_seeds_of_a_stack_learn_different_networks():
    _, stack = trained(dataset(True), (3, 0))
    a, b = stack.state_dict(seed_index=0)["actor"], stack.state_dict(seed_index=1)["actor"]
    assert not torch.allclose(a["head_weight"], b["head_weight"])


def test_a_stack_rejects_repeated_seeds_naming_them():
    with pytest.raises(UsageError, match=r"seeds=\[3, 0, 3\]"):
        IQL(S, E, A, CONFIG, seeds=(3, 0, 3))
    with pytest.raises(UsageError, match=r"seeds=\[\]"):
        IQL(S, E, A, CONFIG, seeds=())


# ------------------------------------------------------------------------------ sparse first layer


def random_stack(seeds: int = 2, members: int = 2) -> SeedStack:
    net = SeedStack(seeds, members, S, E, A, hidden=8, layers=2, layer_norm=True)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    return net


def test_sparse_and_dense_states_give_the_same_outputs_and_gradients():
    gen = torch.Generator().manual_seed(1)
    dense = sparse_states(gen, 2 * 9)
    rows = SparseRows.of(dense)
    assert rows is not None
    instr = torch.randn(2, 9, E, generator=gen)
    as_dense = States(dense=dense.view(2, 9, S))
    as_sparse = States(index=rows.index.view(2, 9, -1), value=rows.value.view(2, 9, -1))
    projection = torch.randn(4, 9, 8, generator=gen)
    results = []
    for states in (as_dense, as_sparse):
        net = random_stack()
        out = net.trunk(states, instr)
        (out * projection).sum().backward()
        results.append((out.detach(), {n: p.grad for n, p in net.named_parameters()}))
    torch.testing.assert_close(results[0][0], results[1][0])
    for name, grad in results[0][1].items():
        torch.testing.assert_close(grad, results[1][1][name], msg=name)


def test_sparse_rows_scatter_back_to_the_dense_rows():
    gen = torch.Generator().manual_seed(2)
    dense = sparse_states(gen, 50)
    dense[7] = 0.0  # a row without any non-zero
    dense[8, :3] = torch.tensor([-1.5, 0.0, 2.0])  # negative values count as non-zeros too
    rows = SparseRows.of(dense)
    assert rows is not None
    assert rows.index.dtype == torch.int64 and rows.index.shape == rows.value.shape
    assert rows.index.shape[1] == int((dense != 0).sum(1).max())
    back = torch.zeros_like(dense).scatter_add_(1, rows.index, rows.value)
    assert torch.equal(back, dense)


def test_sparse_rows_are_not_made_for_dense_data():
    assert SparseRows.of(torch.randn(10, S)) is None
    assert SparseRows.of(torch.zeros(0, S)) is None
    dense_data = dataset(False)
    dense_data.states = torch.randn(N, S)
    assert dense_data.with_sparse_states().sparse is None


# ------------------------------------------------------------------------------------------- adam


def test_adam_matches_torch_adam_with_a_changing_learning_rate():
    gen = torch.Generator().manual_seed(3)
    shapes = [(3, 4), (5,), (2, 1, 6)]
    ours_params = [torch.randn(s, generator=gen) for s in shapes]
    torch_params = [p.clone().requires_grad_(True) for p in ours_params]
    for p in ours_params:
        p.requires_grad_(True)
    ours = Adam(ours_params, lr=1e-2)
    reference = torch.optim.Adam(torch_params, lr=1e-2)
    for step in range(20):
        lr = 1e-2 * 0.5 * (1 + math.cos(math.pi * step / 20))
        grads = [torch.randn(s, generator=gen) for s in shapes]
        for p, q, g in zip(ours_params, torch_params, grads, strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        ours.step(lr)
        for group in reference.param_groups:
            group["lr"] = lr
        reference.step()
        for p, q in zip(ours_params, torch_params, strict=True):
            torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
    assert ours.steps == 20


def test_adam_leaves_a_parameter_without_gradient_alone_like_torch_adam():
    gen = torch.Generator().manual_seed(4)
    ours_params = [torch.randn(4, generator=gen).requires_grad_(True) for _ in range(2)]
    torch_params = [p.detach().clone().requires_grad_(True) for p in ours_params]
    ours, reference = Adam(ours_params, lr=0.1), torch.optim.Adam(torch_params, lr=0.1)
    for step in range(6):
        grads = [torch.randn(4, generator=gen), torch.randn(4, generator=gen) if step < 3 else None]
        for p, q, g in zip(ours_params, torch_params, grads, strict=True):
            p.grad, q.grad = (None, None) if g is None else (g.clone(), g.clone())
        ours.step()
        reference.step()
    for p, q in zip(ours_params, torch_params, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------------------------------ acting


def probe(n: int = 40, seed: int = 5) -> tuple[Tensor, Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    masks = torch.rand(n, A, generator=gen) < 0.5
    masks[:, 3] = True
    return sparse_states(gen, n), torch.randn(n, E, generator=gen), masks


def test_logits_and_actions_of_mixed_members_equal_those_of_each_seed_alone():
    _, stack = trained(dataset(True), (3, 0, 7), replace(CONFIG, steps=5, log_every=5))
    states, instr, masks = probe()
    members = torch.randint(3, (len(states),), generator=torch.Generator().manual_seed(6))
    members[:3] = torch.tensor([2, 0, 2])  # in no particular order; seed 1 appears later
    logits = stack.logits(states, instr, members)
    acts = stack.act(states, instr, masks, members=members)
    for k in range(3):
        rows = members == k
        alone = torch.full((int(rows.sum()),), k)
        torch.testing.assert_close(logits[rows], stack.logits(states[rows], instr[rows], alone))
        expected = stack.actor(
            States(dense=states[rows][None].expand(3, -1, -1)), instr[rows][None].expand(3, -1, -1)
        )
        torch.testing.assert_close(logits[rows], expected[k, 0])
        assert torch.equal(acts[rows], stack.act(states[rows], instr[rows], masks[rows], members=alone))
    assert torch.equal(
        stack.logits(states, instr), stack.logits(states, instr, torch.zeros(40, dtype=torch.int64))
    )


def test_logits_reject_a_member_outside_the_stack():
    learner = IQL(S, E, A, CONFIG, seeds=(3, 0))
    states, instr, masks = probe(4)
    for bad in ([0, 2, 1, 0], [0, -1, 1, 0]):
        with pytest.raises(UsageError, match="members"):
            learner.act(states, instr, masks, members=torch.tensor(bad))
    alone = IQL(S, E, A, CONFIG)
    with pytest.raises(UsageError, match="members"):
        alone.logits(states, instr, torch.tensor([0, 1, 0, 0]))


# ------------------------------------------------------------------------------------- checkpoints


def test_one_saved_seed_of_a_stack_loads_as_a_learner_acting_as_that_seed(tmp_path):
    seeds, config = (3, 0, 7), replace(CONFIG, steps=6, log_every=6)
    _, stack = trained(dataset(True), seeds, config)
    states, instr, masks = probe()
    for k, seed in enumerate(seeds):
        stack.save(tmp_path / f"seed{seed}.pt", seed_index=k)
        loaded = IQL.load(tmp_path / f"seed{seed}.pt")
        assert loaded.seeds == (seed,) and loaded.config == replace(config, seed=seed)
        members = torch.full((len(states),), k)
        torch.testing.assert_close(loaded.logits(states, instr), stack.logits(states, instr, members))
        assert torch.equal(loaded.act(states, instr, masks), stack.act(states, instr, masks, members=members))
        assert_states_close(loaded.state_dict(), stack.state_dict(seed_index=k), rtol=0, atol=0)


def seed_batch(batch: Batch, k: int) -> Batch:
    """Seed k's part of a stacked batch, as a batch of one seed."""

    def part(value: Tensor | States) -> Tensor | States:
        if isinstance(value, States):
            return States(dense=value.dense[k : k + 1] if value.dense is not None else None)
        return value[k : k + 1]

    return Batch(**{name: part(value) for name, value in vars(batch).items()})


def test_a_loaded_seed_goes_on_training_as_it_would_have_in_the_stack(tmp_path):
    _, stack = trained(dataset(False), (3, 0), replace(CONFIG, steps=4, log_every=4))
    stack.save(tmp_path / "seed0.pt", seed_index=1)
    loaded = IQL.load(tmp_path / "seed0.pt")
    batch = dataset(False).sample(16, [torch.Generator().manual_seed(s) for s in (1, 2)], "cpu")
    (alone,) = loaded.update(seed_batch(batch, 1))
    assert alone == pytest.approx(stack.update(batch)[1], rel=1e-5, abs=1e-7)
    assert_states_close(loaded.state_dict(), stack.state_dict(seed_index=1), rtol=1e-5, atol=1e-6)


def test_saving_a_stack_needs_a_seed_index_within_the_stack(tmp_path):
    learner = IQL(S, E, A, CONFIG, seeds=(3, 0))
    with pytest.raises(UsageError, match="seed_index"):
        learner.save(tmp_path / "both.pt")
    for bad in (2, -1):
        with pytest.raises(UsageError, match="seed_index"):
            learner.save(tmp_path / "bad.pt", seed_index=bad)
    assert not (tmp_path / "bad.pt").exists()


# ------------------------------------------------------------------------- version-1 checkpoints
# Version 1 (before seed stacks) stored each network as a StackedMLP of m members over the joint input
# concat(state, instruction): weights.0 (D, m*H) side by side, weights.i (m, H, H), biases.i (m, 1, H),
# norm_weights.i / norm_biases.i (m, 1, H), head_weight (m, A, H), head_bias (m, A); torch.optim state.

H1, LAYERS1 = 8, 3


def old_network(members: int, out: int, gen: torch.Generator) -> dict[str, Tensor]:
    d, m, h = S + E, members, H1
    state = {"weights.0": torch.randn(d, m * h, generator=gen) / math.sqrt(d)}
    for i in range(1, LAYERS1):
        state[f"weights.{i}"] = torch.randn(m, h, h, generator=gen) / math.sqrt(h)
    for i in range(LAYERS1):
        state[f"biases.{i}"] = torch.randn(m, 1, h, generator=gen)
        state[f"norm_weights.{i}"] = 1 + 0.1 * torch.randn(m, 1, h, generator=gen)
        state[f"norm_biases.{i}"] = 0.1 * torch.randn(m, 1, h, generator=gen)
    state["head_weight"] = torch.randn(m, out, h, generator=gen)
    state["head_bias"] = torch.randn(m, out, generator=gen)
    return state


def old_forward(state: dict[str, Tensor], x: Tensor) -> Tensor:
    """Version 1's StackedMLP.forward: (B, D) -> (m, B, out)."""
    m, _, h = state["biases.0"].shape
    z = torch.addmm(state["biases.0"].view(1, m * h), x, state["weights.0"]).view(-1, m, h)
    z = torch.addcmul(
        state["norm_biases.0"].view(m, h),
        torch.nn.functional.layer_norm(z, (h,)),
        state["norm_weights.0"].view(m, h),
    )
    z = torch.relu(z).transpose(0, 1)
    for i in range(1, LAYERS1):
        z = torch.baddbmm(state[f"biases.{i}"], z, state[f"weights.{i}"])
        z = torch.addcmul(
            state[f"norm_biases.{i}"], torch.nn.functional.layer_norm(z, (h,)), state[f"norm_weights.{i}"]
        )
        z = torch.relu(z)
    return torch.baddbmm(state["head_bias"].unsqueeze(1), z, state["head_weight"].transpose(1, 2))


def write_version_1(path: Path, config: IQLConfig) -> dict[str, dict[str, Tensor]]:
    gen = torch.Generator().manual_seed(9)
    nets = {
        "critic": old_network(2, A, gen),
        "critic_target": old_network(2, A, gen),
        "value": old_network(1, 1, gen),
        "actor": old_network(1, A, gen),
    }
    state: dict = dict(nets)
    for name, net in (("critic_opt", "critic"), ("value_opt", "value"), ("actor_opt", "actor")):
        params = [torch.nn.Parameter(t.clone()) for t in nets[net].values()]
        opt = torch.optim.Adam(params, lr=config.lr, fused=True)
        if name == "actor_opt":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, config.steps)
            state["actor_sched"] = sched.state_dict()
        state[name] = opt.state_dict()
    dims = {"state_dim": S, "instruction_dim": E, "n_actions": A}
    torch.save({"version": 1, "config": asdict(config), "dims": dims, "state": state}, path)
    return nets


def test_a_version_1_checkpoint_loads_networks_computing_what_the_old_ones_did(tmp_path):
    config = IQLConfig(hidden=H1, layers=LAYERS1, seed=4)
    nets = write_version_1(tmp_path / "v1.pt", config)
    loaded = IQL.load(tmp_path / "v1.pt")
    assert loaded.config == config and loaded.seeds == (4,)
    states, instr, masks = probe()
    x = torch.cat([states, instr], 1)
    for name in ("critic", "critic_target", "value", "actor"):
        new = getattr(loaded, name)(States(dense=states[None]), instr[None])[0]
        torch.testing.assert_close(new, old_forward(nets[name], x), msg=name)
    old_logits = old_forward(nets["actor"], x)[0]
    torch.testing.assert_close(loaded.logits(states, instr), old_logits)
    expected = old_logits.masked_fill(~masks, -1e9).argmax(-1)
    assert torch.equal(loaded.act(states, instr, masks), expected)


def test_behaviour_cloning_steps_the_actor_exactly_as_the_full_update_does() -> None:
    """beta = 0 skips Q and V (they cannot change the actor): the actor must not notice."""
    torch.manual_seed(0)
    config = IQLConfig(hidden=16, batch_size=32, steps=8, beta=0.0)
    data = _bc_data()
    short, full = IQL(7, 3, 5, config, seeds=(0, 1)), IQL(7, 3, 5, config, seeds=(0, 1))
    for _ in range(8):
        metrics = short.update(data.sample(32, short.generators, "cpu"))
        full._iql_update(data.sample(32, full.generators, "cpu"))
    assert set(metrics[0]) == {"losses/actor", "lr/actor"}
    for name, value in full.actor.state_dict().items():
        torch.testing.assert_close(short.actor.state_dict()[name], value, rtol=0, atol=1e-7)
    assert not torch.equal(short.actor.w_instruction, IQL(7, 3, 5, config, seeds=(0, 1)).actor.w_instruction)


def _bc_data() -> OfflineTensors:
    g = torch.Generator().manual_seed(3)
    n = 200
    masks = torch.rand(n, 5, generator=g) < 0.7
    masks[:, 0] = True
    return OfflineTensors(
        states=torch.rand(n, 7, generator=g),
        next_states=torch.rand(n, 7, generator=g),
        instruction_ids=torch.randint(0, 4, (n,), generator=g),
        next_instruction_ids=torch.randint(0, 4, (n,), generator=g),
        instruction_table=torch.rand(4, 3, generator=g),
        actions=torch.randint(0, 5, (n,), generator=g),
        rewards=torch.rand(n, generator=g),
        dones=torch.zeros(n),
        masks=masks,
    )
