"""Equilibrium propagation and the energy network: EP against backprop through time as β → 0, the bias orders of
one-sided and symmetric nudging, Gammell's rewiring, energy descent, settling, and bad input."""

import dataclasses
import json

import pytest
import torch

from bioplausible.archs import ARCHS, create_arch
from bioplausible.build import resolve_config
from bioplausible.config import TrainConfig
from bioplausible.errors import ConfigError, IncompatibleError
from bioplausible.rules import RULES, create_rule
from bioplausible.rules.ep import Nudge, cost_value


def small_net(hidden=(6,), seed=0, **options):
    torch.manual_seed(seed)
    options = {"free_steps": 2000, "nudged_steps": 2000, "tolerance": 1e-13, **options}
    return create_arch("energy-net", (4,), 3, hidden_sizes=hidden, **options).double()


def batch(n=8, seed=1, classes=3):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 4, generator=g, dtype=torch.float64), torch.arange(n) % classes


def flat(grads):
    return torch.cat([g.flatten() for g in grads.values()])


def bptt_grad(net, x, y, steps=600):
    """The loss gradient at the free fixed point by autograd through the unrolled settling dynamics."""
    net.zero_grad(set_to_none=True)
    state = net.settle(x, steps=steps, tolerance=0).state
    out = state[:, net.layer_slice(net.num_layers)]
    cost_value("mse", out, torch.nn.functional.one_hot(y, 3).double()).backward()
    grads = {n: p.grad.clone() for n, p in net.named_parameters()}
    net.zero_grad(set_to_none=True)
    return flat(grads)


def ep_grad(net, x, y, beta, nudging):
    rule = create_rule("ep", beta=beta, nudging=nudging, cost="mse")
    rule.prepare(net)
    return flat(rule.estimate(net, x, y)[0])


@pytest.fixture(scope="module")
def reference():
    net = small_net(hidden=(6, 5))
    x, y = batch()
    return net, x, y, bptt_grad(net, x, y)


def test_symmetric_ep_approaches_bptt_gradient(reference):
    net, x, y, g_bptt = reference
    assert g_bptt.norm() > 1e-3, "a vanishing reference gradient would make the comparison empty"
    g_ep = ep_grad(net, x, y, 1e-3, "symmetric")
    assert torch.nn.functional.cosine_similarity(g_ep, g_bptt, dim=0) >= 0.99
    torch.testing.assert_close(g_ep, g_bptt, rtol=0, atol=1e-3 * g_bptt.abs().max().item())


def test_one_sided_bias_is_first_order_and_symmetric_second_order(reference):
    net, x, y, g_bptt = reference
    errors = {
        nudging: [(ep_grad(net, x, y, beta, nudging) - g_bptt).norm().item() for beta in (0.01, 0.005)]
        for nudging in ("one-sided", "symmetric")
    }
    one, sym = errors["one-sided"], errors["symmetric"]
    assert one[1] / one[0] == pytest.approx(0.5, abs=0.1), one  # O(β): halving β halves the error
    assert sym[1] / sym[0] < 0.35, sym  # O(β²): halving β quarters it
    assert sym[0] < one[0] / 3


def test_rewiring_keeps_count_and_only_adds_layer_skipping_connections():
    layered = small_net(hidden=(6, 6, 6))
    assert set(layered.connections) == {"0-1", "1-2", "2-3", "3-4"}
    for p in (0.3, 1.0):
        net = small_net(hidden=(6, 6, 6), topology="skip", p=p, seed=3)
        assert net.connection_count() == layered.connection_count() == 4 * 6 + 6 * 6 * 2 + 6 * 3
        skipped = 0
        for c in net.connections.values():
            assert c.lower < c.upper <= net.num_layers  # never within one layer: input-input, output-output
            if c.upper - c.lower >= 2:
                skipped += c.count()
            assert torch.all(c.weight[c.mask == 0] == 0)  # missing connections hold no weight
        assert skipped > 0
        if p == 1.0:  # every adjacent connection moved
            assert skipped == net.connection_count()
    a = small_net(hidden=(6, 6, 6), topology="skip", p=0.3, seed=3, a=0.01)
    assert a.connections["1-3"].weight.abs().max() <= 0.01
    dense = small_net(hidden=(6, 6), topology="dense")
    assert set(dense.connections) == {"0-1", "0-2", "0-3", "1-2", "1-3", "2-3"}


def test_rewiring_is_independent_of_the_weights():
    """With the same seed for weights and rewiring (the defaults), the removed connections must not be the most
    negative weights: the kept adjacent weights keep a mean of about zero (a replayed random stream gave
    +0.1 × bound, and a net that settled with every unit on)."""
    torch.manual_seed(0)
    net = create_arch("energy-net", (64,), 10, hidden_sizes=(100,) * 3, topology="skip", p=0.1, rewire_seed=0)
    for key in ("1-2", "2-3"):
        c = net.connections[key]
        kept = c.weight[c.mask == 1]
        bound = (6 / 200) ** 0.5
        assert abs(kept.mean().item()) < 0.02 * bound, kept.mean()
        assert kept.min().item() < -0.95 * bound  # the negative tail is still there


def test_persistent_states_restart_each_example_from_its_last_equilibrium():
    net = small_net(hidden=(6, 5), tolerance=1e-10)
    x, y = batch()
    rule = create_rule("ep", beta=0.1, nudging="one-sided", persistent=True)
    rule.prepare(net)
    assert rule.per_example_state
    index = torch.arange(3, 3 + len(x))
    free, _, _ = rule.equilibria(net, x, y, index)
    assert free.steps > 10
    assert rule.seen.sum() == len(x) and not rule.seen[:3].any()
    torch.testing.assert_close(rule.memory[index], free.state)
    again, _, _ = rule.equilibria(net, x, y, index)  # same weights: it starts at its fixed point
    assert again.steps == 1
    torch.testing.assert_close(again.state, free.state)
    new = torch.tensor([0, 1, 2, 3])  # 0–2 unseen (from zeros), 3 seen: a mixed batch
    mixed, _, _ = rule.equilibria(net, x[:4], y[:4], new)
    torch.testing.assert_close(mixed.state, free.state[:4], atol=1e-8, rtol=0)
    assert rule.seen.sum() == len(x) + 3
    restored = create_rule("ep", beta=0.1, nudging="one-sided", persistent=True)
    restored.load_state_dict(rule.state_dict())
    torch.testing.assert_close(restored.memory, rule.memory)


def test_rewiring_weights_get_gradient_only_where_connected():
    net = small_net(hidden=(6, 6, 6), topology="skip", p=0.3, seed=3)
    x, y = batch()
    rule = create_rule("ep", beta=0.1, nudging="symmetric")
    rule.prepare(net)
    rule.step(net, x, y)
    for c in net.connections.values():
        assert torch.all(c.weight.grad[c.mask == 0] == 0)


@pytest.mark.parametrize(("clip_states", "epsilon"), [(True, 0.5), (True, 1.0), (False, 0.5)])
def test_energy_does_not_increase_along_free_dynamics(clip_states, epsilon):
    """Projected dynamics descend for ε <= 1; unprojected ones only for ε < 1 (at ε = 1 a unit with a negative
    drive jumps between 0 and its drive, a 2-cycle)."""
    net = small_net(hidden=(6, 5), settle="euler", epsilon=epsilon, clip_states=clip_states)
    with torch.no_grad():
        for c in net.connections.values():
            c.weight.mul_(0.5)  # ‖W‖ < 1, where a step of ε <= 1 is a descent step
    x, _ = batch()
    state, energies = None, []
    with torch.no_grad():
        for _ in range(30):
            state = net.settle(x, state=state, steps=1, tolerance=0).state
            energies.append(net.energy(state, x))
    energies = torch.stack(energies)  # (steps, N)
    assert (energies[1:] <= energies[:-1] + 1e-12).all()
    assert (energies[-1] < energies[0]).all()


def test_ep_refuses_feed_forward_nets_and_bad_options():
    torch.manual_seed(0)
    mlp = create_arch("mlp", (4,), 3, depth=1, width=5)
    with pytest.raises(IncompatibleError, match="symmetric energy network.*MLP is not one"):
        create_rule("ep").prepare(mlp)
    with pytest.raises(ConfigError, match="beta must be > 0"):
        create_rule("ep", beta=0.0)
    with pytest.raises(ConfigError, match="nudging"):
        create_rule("ep", nudging="two-sided")
    with pytest.raises(ConfigError, match="layer_lr_scale"):
        create_rule("ep", layer_lr_scale=(1.0,)).prepare(small_net(hidden=(6, 6)))
    for options, message in [
        ({"topology": "skip", "p": 1.5}, "p must be <= 1"),
        ({"hidden_sizes": (0,)}, "hidden_sizes must be"),
        ({"epsilon": 0.0}, r"epsilon must be > 0 \(got 0.0\)"),
        ({"epsilon": 1.5}, "epsilon must be <= 1 .* larger Euler steps oscillate"),
        ({"epsilon": 1.0, "clip_states": False}, r"epsilon must be < 1 without clip_states"),
        ({"omega": 2.0}, r"omega must be < 2 .*block settling diverges"),
        ({"settle": "jacobi"}, "settle must be one of block, euler"),
        ({"topology": "ring"}, "topology must be one of"),
        ({"settle": "euler", "omega": 1.2}, "omega relaxes block settling, which neither phase uses"),
        ({"settle": "block", "epsilon": 0.3}, "epsilon is the Euler step, which neither phase uses"),
    ]:
        with pytest.raises(ConfigError, match=message):
            create_arch("energy-net", (4,), 3, **options)


def test_layer_lr_scale_scales_each_layers_gradient():
    x, y = batch()
    scales = (1.0, 0.25, 0.0625)
    plain, scaled = (
        flat(create_rule("ep", nudging="one-sided", **options).estimate(small_net(hidden=(6, 5)), x, y)[0])
        for options in ({}, {"layer_lr_scale": scales})
    )
    net = small_net(hidden=(6, 5))
    factors = torch.cat(
        [
            torch.full((p.numel(),), scales[net.parameter_layers()[name] - 1], dtype=torch.float64)
            for name, p in net.named_parameters()
        ]
    )
    torch.testing.assert_close(scaled, plain * factors)


def test_sgd_steps_lower_loss_and_settling_stops_at_tolerance(sgd_steps):
    torch.manual_seed(0)
    euler = {"settle": "euler", "hidden_sizes": (16,)}  # block settling trains in test_ep_block.py
    net = create_arch("energy-net", (4,), 3, free_steps=200, nudged_steps=30, tolerance=1e-4, **euler)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(24, 4, generator=g)
    y = (x[:, 0] > x[:, 1]).long() + (x[:, 2] > 0.5).long()  # a tiny learnable 3-class problem
    for nudging in ("one-sided", "random-sign", "symmetric"):
        model = (
            net
            if nudging == "one-sided"
            else create_arch("energy-net", (4,), 3, free_steps=100, nudged_steps=20, **euler)
        )
        model.load_state_dict(net.state_dict())
        rule = create_rule("ep", beta=0.5, nudging=nudging, warm_start=nudging == "symmetric")
        rule.prepare(model)
        records = sgd_steps(rule, model, x, y)
        losses, metrics = [r["loss"] for r in records], records[-1]
        assert losses[-1] < 0.8 * losses[0], (nudging, losses)
        assert 1 <= metrics["free_steps"].item() < 200  # stopped at the tolerance, not the cap
        assert 1 <= metrics["nudged_steps"].item() <= 30
    settled = net.settle(x)
    assert settled.steps < 200 and settled.residuals[-1] < 1e-4 <= settled.residuals[-2]
    assert len(settled.residuals) == settled.steps
    capped = net.settle(x, tolerance=0)
    assert capped.steps == 200
    probes = create_rule("ep").probe(net, x, y)
    assert set(probes) == {
        "probe/ep_update_norm/0-1",
        "probe/ep_update_norm/1-2",
        "probe/ep_free_steps",
        "probe/ep_residual_last",
        "probe/ep_free_unsettled",
    }
    assert probes["probe/ep_free_steps"] == settled.steps and probes["probe/ep_update_norm/0-1"] > 0
    assert all(p.grad is None or p.grad.abs().sum() >= 0 for p in net.parameters())


def test_forward_is_the_settled_output_and_warm_start_reaches_it():
    net = small_net(hidden=(6, 5))
    x, _ = batch()
    with torch.no_grad():
        out = net(x)
        warm = net.settle(x, state=net.feedforward_state(x))
    assert out.shape == (8, 3)
    torch.testing.assert_close(warm.state[:, net.layer_slice(net.num_layers)], out, atol=1e-9, rtol=0)


@pytest.mark.parametrize("topology", ["layered", "skip", "dense"])
@pytest.mark.parametrize(("method", "cost"), [("euler", None), ("block", None), ("block", "mse"), ("block", "ce")])
def test_in_place_settling_equals_differentiable_settling(topology, method, cost):
    """The no-grad path (preallocated buffers, in-place products) runs the same dynamics as the autograd path
    (block settling: with a plain force, and with the rule's MSE and cross-entropy nudges: other output steps)."""
    net = small_net(hidden=(6, 5, 4), topology=topology, p=0.4, settle=method)
    x, y = batch()
    target = torch.nn.functional.one_hot(y, 3).double()
    force = (lambda out: -0.3 * (out - target)) if cost is None else Nudge(cost, 0.3, target)
    start = net.feedforward_state(x).detach()
    with torch.no_grad():
        fast = net.settle(x, state=start, steps=40, force=force, tolerance=1e-6)
    slow = net.settle(x, state=start, steps=40, force=force, tolerance=1e-6)
    assert slow.state.requires_grad and not fast.state.requires_grad
    assert fast.steps == slow.steps
    torch.testing.assert_close(fast.state, slow.state.detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(fast.residuals, slow.residuals, rtol=0, atol=1e-12)


def test_input_enters_through_rho_so_standardised_inputs_do_not_overdrive_the_net():
    """s_0 = ρ(x), as in Scellier & Bengio: a standardised input (mean 0, std 1, values far outside [0, 1]) acts as
    its clamp onto [0, 1]. Fed as given, standardised MNIST drove 18 % of the hidden units of 784-500-10 to 1 at
    initialisation and stalled EP near 86 % test accuracy."""
    g = torch.Generator().manual_seed(3)
    x = 2.0 * torch.randn(8, 4, generator=g, dtype=torch.float64)  # standardised-like: many values < 0 or > 1
    y = torch.arange(8) % 3
    net = small_net(hidden=(6,))
    a, b = net.settle(x).state, net.settle(x.clamp(0, 1)).state
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(net.energy(a, x), net.energy(a, x.clamp(0, 1)))
    torch.testing.assert_close(ep_grad(net, x, y, 0.1, "one-sided"), ep_grad(net, x.clamp(0, 1), y, 0.1, "one-sided"))
    raw = small_net(hidden=(6,), input_rho=False)
    assert not torch.allclose(raw.settle(x).state, raw.settle(x.clamp(0, 1)).state)


def test_persistent_evaluation_starts_each_test_example_where_the_last_evaluation_left_it():
    net = small_net(hidden=(6, 5), free_steps=3, tolerance=0)  # a few steps: where they start shows
    x, _ = batch()
    plain = create_rule("ep", beta=0.1)
    torch.testing.assert_close(plain.predict(net, x, "test", 0), net(x))  # off: settled from zeros, as forward
    assert not plain.eval_memory
    rule = create_rule("ep", beta=0.1, persistent_eval=True)
    first = rule.predict(net, x[:5], "test", 0)
    torch.testing.assert_close(first, net(x[:5]))  # the first evaluation starts from zeros
    rule.predict(net, x[5:], "test", 5)
    assert rule.eval_memory["test"].shape == (len(x), 6 + 5 + 3)  # every non-input unit of each test example
    stored = rule.eval_memory["test"].clone()
    with torch.no_grad():
        for c in net.connections.values():
            c.weight.mul_(1.5)  # the weights move: settling from the stored states differs from settling from zeros
    again = rule.predict(net, x, "val", 0)  # another split has its own states: from zeros
    torch.testing.assert_close(again, net(x))
    out = net.layer_slice(net.num_layers)
    resumed = net.settle(x, state=stored).state[:, out]
    assert (resumed - net(x)).abs().max() > 1e-3  # so the next line tells the two starts apart
    torch.testing.assert_close(rule.predict(net, x, "test", 0), resumed)
    restored = create_rule("ep", beta=0.1, persistent_eval=True)
    restored.load_state_dict(rule.state_dict())
    assert restored.eval_memory.keys() == {"test", "val"}
    torch.testing.assert_close(restored.eval_memory["test"], rule.eval_memory["test"])


def test_persistent_evaluation_refuses_another_model_and_restarts_on_another_set():
    net = small_net(hidden=(6, 5), free_steps=3, tolerance=0)
    x, _ = batch()
    rule = create_rule("ep", beta=0.1, persistent_eval=True)
    rule.predict(net, x, "test", 0, len(x))
    with pytest.raises(ValueError, match="width 14, but this model's states have 10 units"):
        rule.predict(small_net(hidden=(7,), free_steps=3, tolerance=0), x, "test", 0, len(x))
    with pytest.raises(ValueError, match="offset must be >= 0"):
        rule.predict(net, x, "test", -1, len(x))
    with pytest.warns(RuntimeWarning, match="holds 8 test states but the test set has 4 examples"):
        out = rule.predict(net, x[:4], "test", 0, 4)  # another test set (a resume with another --data-dir)
    torch.testing.assert_close(out, net(x[:4]))  # from zeros again
    assert len(rule.eval_memory["test"]) == 4


def test_evaluations_at_steps_do_not_move_where_the_epochs_evaluation_starts(tiny_config, tmp_path):
    """--eval-steps evaluates the test set mid-epoch in states of its own: the epochs' test metrics are those of a
    run without them (with persistent_eval the epoch's evaluation starts where the previous epoch's left off)."""
    from bioplausible.engine import fit

    options = {
        "rule": "ep", "arch": "energy-net", "dataset": "digits", "loss": "mse", "optimizer": "sgd",
        "batch_size": 100, "max_batches": 2, "rule_options": {"persistent_eval": True, "beta": 0.5},
        "arch_options": {"hidden_sizes": [16], "free_steps": 20, "nudged_steps": 4},
    }  # fmt: skip
    runs = [
        fit(tiny_config(epochs=2, out=str(tmp_path / name), eval_steps=steps, **options), quiet=True)
        for name, steps in (("plain", ()), ("steps", (1, 3)))
    ]
    tests = [[(r["test/loss"], r["test/accuracy"]) for r in map(json.loads, run.joinpath("metrics.jsonl").open())
              if "test/loss" in r and r.get("eval") != "step"] for run in runs]  # fmt: skip
    assert len(tests[0]) == 2 and tests[0] == tests[1]


@pytest.mark.parametrize("persistent_eval", [False, True])
def test_engine_passes_indices_for_persistent_states_and_resumes_them(tiny_config, tmp_path, persistent_eval):
    """A persistent run through fit(): the rule remembers every example it trained on (and, with persistent_eval,
    every test and validation example it evaluated), in its checkpoint, and a killed-and-resumed run continues from
    the same memory (the same metrics as an uninterrupted run)."""
    from bioplausible.engine import fit

    options = {
        "rule": "ep",
        "arch": "energy-net",
        "dataset": "digits",
        "loss": "mse",
        "optimizer": "sgd",
        "batch_size": 100,
        "max_batches": 4,
        "rule_options": {"persistent": True, "beta": 0.5, "persistent_eval": persistent_eval},
        "arch_options": {"hidden_sizes": [20, 20], "free_steps": 60, "nudged_steps": 8},
        "val_fraction": 0.1,
    }
    whole = fit(tiny_config(epochs=2, out=str(tmp_path / "whole"), **options), quiet=True)
    memory = torch.load(whole / "checkpoint.pt", weights_only=False)["rule"]["_extra_state"]
    assert 400 < int(memory["seen"].sum()) <= 2 * 4 * 100  # two epochs of 4 batches, reshuffled
    sizes = {split: len(states) for split, states in memory["eval_memory"].items()}
    assert sizes == ({"test": 360, "val": 144} if persistent_eval else {})  # the digits' test set, a tenth of train
    fit(tiny_config(epochs=1, out=str(tmp_path / "split"), **options), quiet=True)
    split = fit(tiny_config(epochs=2, out=str(tmp_path / "split"), resume=True, **options), quiet=True)
    metrics = [
        {k: v for k, v in json.loads(line).items() if not k.startswith("time/")}
        for run in (whole, split)
        for line in (run / "metrics.jsonl").read_text().splitlines()
    ]
    assert metrics[:2] == metrics[2:]


def test_sparse_layer_skipping_connections_settle_like_the_masked_matrices():
    """Rewired skip pairs between hidden layers are settled connection by connection; the dynamics must equal
    those of the same pairs as masked dense matrices, with and without autograd."""
    net = small_net(hidden=(6, 5, 4), topology="skip", p=0.4)
    sparse = [c for c in net.connections.values() if c.sparse]
    assert sparse and all(c.upper - c.lower >= 2 and c.lower > 0 for c in sparse)
    x, _ = batch()
    with torch.no_grad():
        fast = net.settle(x, steps=30, tolerance=0)
    slow = net.settle(x, steps=30, tolerance=0)
    for c in sparse:
        c.sparse = False
    with torch.no_grad():
        dense = net.settle(x, steps=30, tolerance=0)
    torch.testing.assert_close(fast.state, dense.state, rtol=0, atol=1e-12)
    torch.testing.assert_close(slow.state.detach(), dense.state, rtol=0, atol=1e-12)


@pytest.mark.parametrize("nudging", ["one-sided", "symmetric"])
def test_a_step_reads_the_host_once_for_its_health_checks(nudging, monkeypatch):
    """The unsettled and dead-network checks read the residuals and the nudged shift in one transfer: each read
    is a synchronisation a GPU pays at every batch. With a fixed number of steps (tolerance 0) the settling itself
    reads nothing, so a step makes exactly one host read; the checks still fire (an unsettled phase is warned)."""
    rule = create_rule("ep", beta=0.5, nudging=nudging)
    net = small_net(hidden=(6, 5), free_steps=5, nudged_steps=3, tolerance=0.0)
    x, y = batch()
    # the flush-to-zero query computes on a CPU tensor whatever the device: not a device read, so left out
    monkeypatch.setattr("bioplausible.archs.energy.flushing_denormals", lambda: False)
    reads = []
    for name in ("item", "tolist", "__bool__", "__float__", "__int__"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            reads.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    metrics = rule.step(net, x, y)
    monkeypatch.undo()
    assert reads == ["tolist"]
    assert metrics["free_unsettled"] == 0 and metrics["nudged_shift"] > 0  # tolerance 0: no equilibrium asked for
    stuck = small_net(hidden=(6, 5), free_steps=2, nudged_steps=2, tolerance=1e-9)
    with pytest.warns(RuntimeWarning, match="free phase stopped at its cap of 2 sweeps"):
        assert rule.step(stuck, x, y)["free_unsettled"] == 1


def test_nudging_after_the_step_as_gammells_code_sets_saturated_outputs_to_the_target():
    """--nudge-after-step (Gammell et al.'s step_weakly_clamped): after each projected Euler step the output moves by
    2ε F(s_L); at ε = 0.5, β = 1 under MSE that is the target, however far beyond 0 the drive holds the outputs,
    where the force inside the step cannot unclip them (the 784-500×3-10 net died so). Same with and without
    autograd; only for projected Euler nudged phases."""
    x, y = batch()
    target = torch.nn.functional.one_hot(y, 3).double()
    outputs = {}
    for after in (False, True):
        net = small_net(hidden=(6, 5), settle="euler", epsilon=0.5, nudge_after_step=after)
        with torch.no_grad():
            net.biases[2].fill_(-50.0)  # every output driven far below 0
            free = net.settle(x)
            nudged = net.settle(x, state=free.state, steps=1, force=Nudge("mse", 1.0, target))
        outputs[after] = nudged.state[:, net.layer_slice(net.num_layers)]
        with torch.enable_grad():  # the out-of-place (BPTT) dynamics step the same way
            again = net.settle(x, state=free.state, steps=1, force=Nudge("mse", 1.0, target)).state
        torch.testing.assert_close(nudged.state, again.detach())
    assert not outputs[False].any()  # inside the step: the force −β(s − y) = +1 cannot beat a drive of −50
    torch.testing.assert_close(outputs[True], target)
    with pytest.raises(ConfigError, match="nudge_after_step applies to projected Euler nudged phases"):
        small_net(settle="block", nudge_after_step=True)


def unpinned_net(**options):
    """A net whose free outputs all lie inside (0, 1): biases 0.5, small weights."""
    net = small_net(hidden=(6, 5), settle="euler", nudge_after_step=True, **options)
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.mul_(0.2) if "weight" in name else p.fill_(0.5)
    return net


def test_ep_with_the_nudge_after_the_step_estimates_twice_the_gradient_while_no_output_is_pinned():
    """The nudge after the step acts as a force of about 2β (2β / (1 − 2εβ) at the fixed point), while the update
    divides by β, as in Gammell et al.'s code: with every output inside (0, 1), EP (one-sided, small β) points along
    the BPTT gradient with twice its length, so their learning rates are about twice ours in gradient terms."""
    net = unpinned_net()
    x, y = batch()
    out = net.settle(x).state[:, net.layer_slice(net.num_layers)]
    assert ((out > 0.01) & (out < 0.99)).all()
    g_bptt = bptt_grad(net, x, y)
    g_ep = ep_grad(net, x, y, 1e-5, "one-sided")
    assert torch.nn.functional.cosine_similarity(g_ep, g_bptt, dim=0) >= 0.999
    assert g_ep.norm() / g_bptt.norm() == pytest.approx(2.0, rel=0.01)


def test_the_nudge_after_the_step_leaves_a_pinned_output_pinned_at_small_beta():
    """In Gammell's order (the free step, the nudge, one clip) an output held at 0 by its drive (−5) stays there
    under a small nudge, as the gradient through the clip says: the estimate still converges to twice the gradient
    as β → 0 (projecting before the nudge would lift it by 2εβ, an error that does not shrink: a review's
    finding). Only as 2εβ nears 1 does the nudge set outputs to the target past any drive (the test above)."""
    net = unpinned_net()
    x, y = batch()
    with torch.no_grad():
        net.biases[2][0] = -5.0  # output 0 pinned at 0; its target is 1 for a third of the batch
    assert not net.settle(x).state[:, net.layer_slice(net.num_layers)][:, 0].any()
    g_bptt = bptt_grad(net, x, y)
    errors = [(ep_grad(net, x, y, beta, "one-sided") - 2 * g_bptt).norm() / g_bptt.norm() for beta in (1e-4, 1e-6)]
    assert errors[1] < 1e-4 and errors[1] < errors[0] / 10, errors


def nudged_option_changes(arch: str) -> dict:
    """Each option of ``arch`` that only a nudged phase reads, set to a value other than its default."""
    changes = {}
    for f in dataclasses.fields(ARCHS.get(arch).Config):
        if not f.metadata.get("nudged"):
            continue
        choices = f.metadata.get("choices")
        if isinstance(f.default, bool):
            changes[f.name] = not f.default
        elif choices:
            changes[f.name] = next(c for c in reversed(choices) if c != f.default)
        else:
            changes[f.name] = f.default + 1
    return changes


# a free phase under which every nudged-phase option of the arch validates (nudge_after_step needs Euler steps)
EULER = {"energy-net": {"settle": "euler"}, "conv-energy-net": {}}


@pytest.mark.parametrize("arch", sorted(EULER))
def test_nudged_phase_options_are_refused_by_rules_without_one(arch):
    """Backprop through an energy net's free phase reads no nudged-phase option: one set with it is refused, not
    ignored; EP accepts the same options; left at their defaults they pass with every rule."""
    changes = nudged_option_changes(arch)
    assert changes, f"{arch} marks no option as nudged-only"
    without = [name for name in RULES.list() if not RULES.get(name).nudges]
    assert "bp" in without and "ep" not in without
    for rule in without:
        for name, value in changes.items():
            config = TrainConfig(rule=rule, arch=arch, dataset="synthetic", arch_options={**EULER[arch], name: value})
            with pytest.raises(ConfigError, match=f"--{name.replace('_', '-')} sets the nudged phase of {arch}"):
                resolve_config(config)
        resolve_config(TrainConfig(rule=rule, arch=arch, dataset="synthetic", arch_options=EULER[arch]))
    options = {**EULER[arch], **changes}
    resolved_ep = resolve_config(TrainConfig(rule="ep", arch=arch, dataset="synthetic", arch_options=options))
    assert all(resolved_ep.arch_options[name] == value for name, value in changes.items())
