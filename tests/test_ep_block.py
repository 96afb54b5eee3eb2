"""Block (layer-wise exact) settling of the energy network: its equilibria are those of the Euler dynamics, it
descends the energy, EP at its equilibrium matches backprop at that same equilibrium, and it takes fewer steps;
plus the settling's side effects and health reports (denormal flushing scoped, unsettled and blown-up phases
counted and warned about) and the removal of the layer-skipping connections."""

import warnings

import pytest
import torch
import torch.nn.functional as F

from bioplausible.archs import create_arch
from bioplausible.archs.energy import flush_denormal, flushing_denormals
from bioplausible.rules import create_rule
from bioplausible.rules.ep import Nudge, cost_value

TOPOLOGIES = ["layered", "skip", "dense"]


def net64(hidden=(6, 5, 4), seed=0, gain=1.0, **options):
    """A small float64 net; ``gain`` scales the weights (stronger coupling: more sweeps, richer equilibria)."""
    torch.manual_seed(seed)
    options = {"free_steps": 5000, "nudged_steps": 5000, "tolerance": 1e-12, "p": 0.4, **options}
    net = create_arch("energy-net", (4,), 3, hidden_sizes=hidden, **options).double()
    with torch.no_grad():
        for c in net.connections.values():
            c.weight.mul_(gain)
    return net


def batch(n=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 4, generator=g, dtype=torch.float64), torch.arange(n) % 3


def forces(y):
    target = F.one_hot(y, 3).double()
    return {
        "free": None,
        "mse +0.5": Nudge("mse", 0.5, target),
        "mse -0.5": Nudge("mse", -0.5, target),
        "ce +0.5": Nudge("ce", 0.5, target),
    }


def euler_residual(net, x, state, force=None):
    """max |Δs| of one Euler step (ε = 0.5) from ``state``: 0 exactly at a fixed point of the Euler map."""
    with torch.no_grad():
        return net.settle(x, state, steps=1, tolerance=0, force=force, method="euler").residuals[0].item()


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_block_equilibria_are_fixed_points_of_the_euler_map(topology):
    """Every equilibrium block settling stops at (free, and nudged with MSE of either sign and cross-entropy) is a
    fixed point of the Euler dynamics: one Euler step from it moves no unit by more than the tolerance."""
    x, y = batch()
    for seed in range(3):
        net = net64(topology=topology, seed=seed, gain=3.0)
        for name, force in forces(y).items():
            for tolerance in (1e-6, 1e-10):
                with torch.no_grad():
                    block = net.settle(x, force=force, tolerance=tolerance)
                assert block.steps < 5000 and block.residuals[-1] < tolerance, (name, block.steps)
                assert euler_residual(net, x, block.state, force) <= tolerance, (topology, seed, name, tolerance)
                assert block.state.min() >= 0 and block.state.max() <= 1


@pytest.mark.parametrize("topology", TOPOLOGIES)
@pytest.mark.parametrize("omega", [1.0, 1.7, 1.95])
def test_every_block_sweep_lowers_the_energy(topology, omega):
    """Each class update sets (ω = 1) or over-relaxes (ω < 2) a layer toward its exact minimiser, so E never
    rises along the sweeps, and neither does F = E + βC in a nudged phase."""
    net = net64(topology=topology, gain=3.0, omega=omega)
    x, y = batch()
    target = F.one_hot(y, 3).double()
    for force, beta, cost in [
        (None, 0.0, "mse"),
        (Nudge("mse", 0.5, target), 0.5, "mse"),
        (Nudge("ce", 1.0, target), 1.0, "ce"),
    ]:
        state, values = None, []
        with torch.no_grad():
            for _ in range(40):
                state = net.settle(x, state=state, steps=1, tolerance=0, force=force).state
                out = state[:, net.layer_slice(net.num_layers)]
                c = torch.stack([cost_value(cost, out[i : i + 1], target[i : i + 1]) for i in range(len(x))])
                values.append(net.energy(state, x) + beta * c)
        values = torch.stack(values)  # (sweeps, N)
        assert (values[1:] <= values[:-1] + 1e-12).all(), (force, omega)
        assert (values[-1] < values[0]).any()


def test_block_sweeps_follow_the_layer_colouring():
    layered = net64(hidden=(6, 5, 4, 4))
    assert layered.colour_classes() == [[1, 3, 5], [2, 4]]  # odd layers from the even ones, then the even ones
    assert net64(hidden=(6, 5, 4), topology="dense").colour_classes() == [[1], [2], [3], [4]]
    skip = net64(hidden=(6, 5, 4, 4), topology="skip", p=0.5)
    classes = skip.colour_classes()
    assert sorted(l for c in classes for l in c) == [1, 2, 3, 4, 5] and len(classes) > 2
    joined = {(c.lower, c.upper) for c in skip.connections.values() if c.lower > 0 and c.count()}
    assert all((a, b) not in joined for cls in classes for a in cls for b in cls)
    skip.remove_skip_connections()
    assert skip.colour_classes() == [[1, 3, 5], [2, 4]]


@pytest.mark.parametrize("topology", TOPOLOGIES)
@pytest.mark.parametrize("cost", ["mse", "ce"])
def test_ep_at_the_block_equilibrium_matches_bptt_at_that_equilibrium(topology, cost):
    """The oracle is the gradient of the loss at the equilibrium block settling found: by the implicit function
    theorem it depends on that equilibrium only, not on the method that found it. Backprop through Euler
    dynamics started at it (it stays there, and the unrolled chain sums the Neumann series of the implicit
    derivative) computes it, and so does backprop through the block sweeps started at it. Backprop through Euler
    dynamics from zero would be the wrong oracle where those dynamics end in another of the energy's minima."""
    net = net64(topology=topology)
    x, y = batch()
    with torch.no_grad():
        star = net.settle(x).state  # block settling from zero, as EP's free phase does

    def loss_gradient(method, steps):
        net.zero_grad(set_to_none=True)
        state = net.settle(x, state=star, steps=steps, tolerance=0, method=method).state
        out = state[:, net.layer_slice(net.num_layers)]
        cost_value(cost, out, F.one_hot(y, 3).double()).backward()
        grads = torch.cat([p.grad.flatten() for p in net.parameters()])
        net.zero_grad(set_to_none=True)
        return grads

    g_euler, g_block = loss_gradient("euler", 800), loss_gradient("block", 300)
    assert g_euler.norm() > 1e-3
    torch.testing.assert_close(g_block, g_euler, rtol=0, atol=1e-6 * g_euler.abs().max().item())
    rule = create_rule("ep", beta=1e-3, nudging="symmetric", cost=cost)
    rule.prepare(net)
    g_ep = torch.cat([g.flatten() for g in rule.estimate(net, x, y)[0].values()])
    assert F.cosine_similarity(g_ep, g_euler, dim=0) >= 0.999
    torch.testing.assert_close(g_ep, g_euler, rtol=0, atol=1e-3 * g_euler.abs().max().item())


def test_block_settling_takes_far_fewer_steps_than_euler():
    x, _ = batch(16)
    for seed in range(3):
        net = net64(hidden=(16, 16, 16), seed=seed, tolerance=1e-6)
        with torch.no_grad():
            euler, block = net.settle(x, method="euler"), net.settle(x)
        assert euler.residuals[-1] < 1e-6 and block.residuals[-1] < 1e-6
        assert block.steps * 4 <= euler.steps, (seed, block.steps, euler.steps)


@pytest.mark.parametrize("nudging", ["one-sided", "random-sign", "symmetric"])
def test_sgd_with_block_settling_lowers_the_loss(nudging, sgd_steps):
    torch.manual_seed(0)
    net = create_arch("energy-net", (4,), 3, hidden_sizes=(16,))  # the defaults: block settling
    g = torch.Generator().manual_seed(0)
    x = torch.rand(24, 4, generator=g)
    y = (x[:, 0] > x[:, 1]).long() + (x[:, 2] > 0.5).long()  # a tiny learnable 3-class problem
    rule = create_rule("ep", beta=0.5, nudging=nudging)
    rule.prepare(net)
    records = sgd_steps(rule, net, x, y)
    assert all(r["free_unsettled"] == 0 and r["nudged_unsettled"] == 0 for r in records)
    losses = [r["loss"] for r in records]
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("method", ["euler", "block"])
def test_denormal_flushing_is_scoped_to_the_settling(method):
    """Settling flushes denormals (a decaying state would turn denormal and slow 50×), but only inside: the
    process's mode is what it was, in both directions."""
    net = net64()
    x, y = batch()
    seen = []

    def force(out):  # called inside the settling: records the mode there
        seen.append(flushing_denormals())
        return -0.1 * (out - F.one_hot(y, 3).double())

    initial = flushing_denormals()
    try:
        for mode in (False, True):
            torch.set_flush_denormal(mode)
            with torch.no_grad():
                net.settle(x, steps=3, force=force, method=method)
            assert seen and all(seen)
            assert flushing_denormals() == mode
            assert ((torch.tensor([1e-40]) * 1.0).item() == 0.0) == mode
            seen.clear()
        torch.set_flush_denormal(False)
        with pytest.raises(RuntimeError), flush_denormal():
            raise RuntimeError
        assert not flushing_denormals()
    finally:
        torch.set_flush_denormal(initial)


def step_metrics(net, rule, x, y, steps=1):
    rule.prepare(net)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(steps):
            metrics = rule.step(net, x, y)
            net.zero_grad(set_to_none=True)
    return metrics, [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


def test_a_phase_ending_at_its_cap_is_counted_and_warned_about_once():
    x, y = batch()
    capped = net64(hidden=(16, 16), gain=2.0, settle="euler", free_steps=20, nudged_steps=5, tolerance=1e-4)
    metrics, messages = step_metrics(capped, create_rule("ep", beta=0.5, nudging="symmetric"), x, y, steps=3)
    assert set(metrics) == {
        "loss",
        "accuracy",
        "free_steps",
        "nudged_steps",
        "settle_residual",
        "nudged_residual",
        "free_unsettled",
        "nudged_unsettled",
        "nudged_shift",
    }
    assert metrics["free_unsettled"] == 1 and metrics["nudged_unsettled"] == 1
    assert metrics["settle_residual"] >= 1e-4 and metrics["free_steps"] == 20
    assert len(messages) == 2, messages  # one per kind of phase, once per rule instance
    assert "free phase stopped at its cap of 20 steps" in messages[0] and "--settle block" in messages[0]
    assert "--nudged-steps" in messages[1]
    settled = net64(hidden=(16, 16), gain=2.0, tolerance=1e-4)  # the defaults: block settling, 500 / 100 sweeps
    metrics, messages = step_metrics(settled, create_rule("ep", beta=0.5, nudging="symmetric"), x, y)
    assert metrics["free_unsettled"] == 0 and metrics["nudged_unsettled"] == 0 and not messages
    assert metrics["settle_residual"] < 1e-4 and metrics["nudged_residual"] < 1e-4
    block_capped = net64(hidden=(16, 16), gain=2.0, free_steps=2, nudged_steps=5, tolerance=1e-4)
    _, messages = step_metrics(block_capped, create_rule("ep", beta=0.5, persistent=True), x, y)
    assert messages[0].endswith("raise --free-steps (metric train/free_unsettled counts such phases; warned once)")
    # a fixed number of steps (tolerance 0) is not "unsettled"; near an equilibrium it is not warned about either
    # (far from one it is: tests/test_ep_health.py)
    fixed = net64(hidden=(16, 16), settle="euler", free_steps=300, nudged_steps=5, tolerance=0)
    metrics, messages = step_metrics(fixed, create_rule("ep"), x, y)
    assert metrics["free_unsettled"] == 0 and metrics["settle_residual"] < 0.1 and not messages
    probes = create_rule("ep").probe(capped, x, y)
    assert probes["probe/ep_free_unsettled"] == 1.0 and probes["probe/ep_free_steps"] == 20


def test_default_settling_settles_where_the_old_defaults_gave_a_wrong_update():
    """A 20-16-16-5 net: 100 Euler steps (the old default) leave a residual near 1e-2 and an EP update unrelated
    to the gradient; the defaults now settle (block sweeps) and EP matches the gradient per weight matrix."""
    torch.manual_seed(0)
    x, y = torch.rand(32, 20, dtype=torch.float64), torch.arange(32) % 5
    old = create_arch("energy-net", (20,), 5, hidden_sizes=(16, 16), settle="euler", free_steps=100).double()
    metrics, _ = step_metrics(old, create_rule("ep", beta=0.01, nudging="symmetric"), x, y)
    assert metrics["free_unsettled"] == 1 and metrics["settle_residual"] > 1e-3
    new = create_arch("energy-net", (20,), 5, hidden_sizes=(16, 16)).double()
    new.load_state_dict(old.state_dict())
    rule = create_rule("ep", beta=1e-3, nudging="symmetric", cost="mse")
    rule.prepare(new)
    grads, free, nudged, _ = rule.estimate(new, x, y)
    assert not free.unsettled and not any(s.unsettled for s in nudged.values())
    new.zero_grad(set_to_none=True)
    state = new.settle(x, state=free.state, steps=1500, tolerance=0, method="euler").state  # BPTT at that state
    cost_value("mse", state[:, new.layer_slice(new.num_layers)], F.one_hot(y, 5).double()).backward()
    for name, p in new.named_parameters():
        if name.endswith("weight"):
            assert F.cosine_similarity(grads[name].flatten(), p.grad.flatten(), dim=0) > 0.99, name


def test_a_settling_that_blows_up_is_reported():
    net = net64(hidden=(6,), tolerance=1e-6)
    with torch.no_grad():
        net.connections["1-2"].weight[0, 0] = float("nan")
    x, y = batch()
    metrics, messages = step_metrics(net, create_rule("ep"), x, y)
    assert not torch.isfinite(metrics["settle_residual"])
    assert metrics["free_unsettled"] == 1  # a non-finite residual never counts as settled
    assert len(messages) == 1 and "produced non-finite states" in messages[0]  # not also the cap warnings


def test_removing_skip_connections_leaves_the_layered_net():
    """After remove_skip_after epochs the skip net settles and learns exactly as the layered net with its
    adjacent weights: the layer-skipping connections neither act nor learn, also after a checkpoint reload."""
    skip = net64(hidden=(6, 5, 4), topology="skip", p=0.3, seed=3)
    x, y = batch()
    rule = create_rule("ep", beta=0.1, nudging="symmetric", remove_skip_after=2)
    rule.prepare(skip)
    skips = [c for c in skip.connections.values() if c.upper - c.lower >= 2]
    assert sum(c.count() for c in skips) > 0
    rule.start_epoch(1)
    assert sum(c.count() for c in skips) > 0
    rule.start_epoch(2)
    assert all(c.count() == 0 and not c.weight.any() and not c.weight.requires_grad for c in skips)
    layered = net64(hidden=(6, 5, 4))
    with torch.no_grad():
        for key, c in layered.connections.items():
            c.weight.copy_(skip.connections[key].effective())
    torch.testing.assert_close(skip.settle(x).state, layered.settle(x).state, rtol=0, atol=1e-12)
    optimizer = torch.optim.SGD([p for p in skip.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    before = {k: c.weight.clone() for k, c in skip.connections.items()}
    for _ in range(2):
        optimizer.zero_grad(set_to_none=True)
        rule.step(skip, x, y)
        optimizer.step()
    for key, c in skip.connections.items():
        moved = not torch.equal(c.weight, before[key])
        assert moved == (c.upper - c.lower == 1), key
    fresh = net64(hidden=(6, 5, 4), topology="skip", p=0.3, seed=3)
    fresh.load_state_dict(skip.state_dict())
    assert fresh.colour_classes() == [[1, 3], [2, 4]]
    torch.testing.assert_close(fresh.settle(x).state, skip.settle(x).state, rtol=0, atol=0)


def test_remove_skip_after_through_the_engine(tiny_config, tmp_path):
    from bioplausible.engine import fit

    options = {
        "rule": "ep",
        "arch": "energy-net",
        "dataset": "digits",
        "loss": "mse",
        "optimizer": "sgd",
        "batch_size": 50,
        "max_batches": 2,
        "rule_options": {"remove_skip_after": 1},
        "arch_options": {"hidden_sizes": [12, 12, 12], "topology": "skip", "p": 0.2, "free_steps": 60},
    }
    run = fit(tiny_config(epochs=2, out=str(tmp_path / "run"), **options), quiet=True)
    state = torch.load(run / "checkpoint.pt", weights_only=False)["model"]
    masks = {k.split(".")[1]: v for k, v in state.items() if k.endswith(".mask")}  # "connections.1-3.mask"
    skipping = {k for k in masks if int(k.split("-")[1]) - int(k.split("-")[0]) >= 2}
    assert skipping and all(not masks[k].any() for k in skipping)
    assert all(masks[k].any() for k in set(masks) - skipping)


def test_remove_skip_after_on_a_net_without_skip_connections_says_so_in_words():
    from bioplausible.archs import create_arch
    from bioplausible.errors import IncompatibleError

    conv = create_arch("conv-energy-net", (1, 8, 8), 10, conv_channels=[2], kernel_sizes=[3], paddings=[1])
    with pytest.raises(IncompatibleError, match=r"^remove_skip_after: ConvEnergyNet has no layer-skipping .*at 0$"):
        create_rule("ep", remove_skip_after=1).prepare(conv)


def test_removed_skip_connections_stay_removed_in_a_resumed_run(tiny_config, tmp_path):
    """A run resumed after the removal removes them again: their weights stay zero and frozen (Adam's momentum from
    before the removal used to move them again) and the run ends as the one trained straight through."""
    from bioplausible.engine import fit

    options = {
        "rule": "ep", "arch": "energy-net", "dataset": "digits", "loss": "mse", "optimizer": "adam", "lr": 1e-3,
        "batch_size": 50, "max_batches": 2, "rule_options": {"remove_skip_after": 1},
        "arch_options": {"hidden_sizes": [12, 12, 12], "topology": "skip", "p": 0.2, "free_steps": 60},
    }  # fmt: skip
    straight = fit(tiny_config(epochs=3, out=str(tmp_path / "straight"), **options), quiet=True)
    fit(tiny_config(epochs=2, out=str(tmp_path / "resumed"), **options), quiet=True)
    resumed = fit(tiny_config(epochs=3, out=str(tmp_path / "resumed"), resume=True, **options), quiet=True)
    states = [torch.load(r / "checkpoint.pt", weights_only=False)["model"] for r in (straight, resumed)]
    skipping = [k for k in states[0] if k.endswith(".weight") and k.count("-")
                and int(k.split(".")[1].split("-")[1]) - int(k.split(".")[1].split("-")[0]) >= 2]  # fmt: skip
    assert skipping and all(not states[1][k].any() for k in skipping)
    for key in states[0]:
        torch.testing.assert_close(states[1][key], states[0][key], rtol=0, atol=0, msg=key)


def test_nudged_phases_can_settle_by_another_method():
    """``nudged_settle``: Gammell's truncated Euler nudged phase after a block free phase."""
    net = net64(nudged_settle="euler")
    x, y = batch()
    force = forces(y)["mse +0.5"]
    with torch.no_grad():
        torch.testing.assert_close(net.settle(x).state, net.settle(x, method="block").state, rtol=0, atol=0)
        nudged = net.settle(x, steps=12, force=force)
        torch.testing.assert_close(nudged.state, net.settle(x, steps=12, force=force, method="euler").state)
        assert not torch.equal(nudged.state, net.settle(x, steps=12, force=force, method="block").state)


def test_two_signed_nudging_at_large_beta_with_settled_nudged_phases_is_warned_about():
    """Under MSE, -β with β >= 1 has no nudged equilibrium; settled (block) nudged phases then train badly."""
    for options, nudged_settle, warned in [
        ({"nudging": "random-sign", "beta": 1.0}, "same", True),
        ({"nudging": "symmetric", "beta": 2.0}, "same", True),
        ({"nudging": "random-sign", "beta": 1.0}, "euler", False),  # Gammell's truncated nudged phase
        ({"nudging": "one-sided", "beta": 1.0}, "same", False),
        ({"nudging": "random-sign", "beta": 1.0, "cost": "ce"}, "same", False),
        ({"nudging": "random-sign", "beta": 0.5}, "same", False),
    ]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            create_rule("ep", **options).prepare(net64(nudged_settle=nudged_settle))
        messages = [str(w.message) for w in caught if "no nudged equilibrium" in str(w.message)]
        assert bool(messages) == warned, (options, nudged_settle)
        if warned:
            assert "--nudging one-sided" in messages[0] and "--nudged-settle euler" in messages[0]
    assert create_rule("ep").config.nudging == "one-sided"


def test_block_sweeps_with_sparse_links_equal_the_masked_matrices(monkeypatch):
    """Sparse skip pairs up to BLOCK_SPARSE_DENSITY are gathered and scattered per class, denser ones multiplied:
    both give the same sweeps (tiny nets are dense by that measure, so both are forced here)."""
    import bioplausible.archs.energy as energy

    net = net64(hidden=(6, 5, 4, 4), topology="skip", p=0.4, gain=2.0)
    assert any(c.sparse for c in net.connections.values())
    x, y = batch()
    results = {}
    for density in (1.0, 0.0):
        monkeypatch.setattr(energy, "BLOCK_SPARSE_DENSITY", density)
        with torch.no_grad():
            results[density] = [net.settle(x, steps=25, tolerance=0, force=f).state for f in forces(y).values()]
    for a, b in zip(results[1.0], results[0.0]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "topology, p, epochs, message",
    [("layered", 0.0, 3, "no layer-skipping connections"), ("skip", 0.0, 3, "no layer-skipping connections"),
     ("skip", 0.2, 2, "would never be removed")],
)  # fmt: skip
def test_remove_skip_after_that_could_not_take_effect_is_refused(tiny_config, tmp_path, topology, p, epochs, message):
    """A removal on a net without skip connections, or at an epoch the run never reaches, used to train the
    unchanged net without a word."""
    from bioplausible.engine import fit
    from bioplausible.errors import ConfigError

    options = {
        "rule": "ep", "arch": "energy-net", "dataset": "digits", "loss": "mse", "optimizer": "sgd", "batch_size": 50,
        "max_batches": 1, "rule_options": {"remove_skip_after": 2},
        "arch_options": {"hidden_sizes": [12, 12, 12], "topology": topology, "p": p, "free_steps": 20},
    }  # fmt: skip
    with pytest.raises(ConfigError, match=message):
        fit(tiny_config(epochs=epochs, out=str(tmp_path / "run"), **options), quiet=True)


def perturb(net, seed):
    """An optimizer step's worth of change to every present weight and bias, in place."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g, dtype=p.dtype) * (p != 0))


@pytest.mark.parametrize("topology", [*TOPOLOGIES, "skip, sparse links"])
def test_kept_sweeps_equal_the_eager_sweeps_from_call_to_call(topology, monkeypatch):
    """With check_every > 1 the free phase sweeps from buffers kept between settlings (the CUDA graph path's
    buffers): the same states, bit for bit, as the eager sweeps run for as many sweeps, after the weights change,
    for another batch size, from a given start, and after the skip connections are removed. The stop is tested
    every check_every sweeps."""
    import bioplausible.archs.energy as energy

    monkeypatch.setattr(energy, "BLOCK_SPARSE_DENSITY", 1.0 if topology.endswith("links") else 0.0)
    kept = net64(hidden=(6, 5, 4, 4), topology=topology.split(",")[0], gain=2.0, tolerance=1e-9, check_every=4)
    eager = net64(hidden=(6, 5, 4, 4), topology=topology.split(",")[0], gain=2.0, tolerance=1e-9)
    eager.load_state_dict(kept.state_dict())
    x, _ = batch(n=8)
    starts = [None, None, torch.rand(8, kept.offsets[-1], dtype=torch.float64), None, None]
    with torch.no_grad():
        for call, start in enumerate(starts):
            if call == 3:
                for net in (kept, eager):
                    net.remove_skip_connections()
            xb = x if call != 1 else x[:5]
            s = None if start is None else start[: len(xb)]
            a = kept.settle(xb, s)
            b = eager.settle(xb, s, steps=a.steps, tolerance=0)
            assert a.steps % 4 == 0 and not a.unsettled and a.residuals[-1] < 1e-9, (call, a.steps)
            assert torch.equal(a.state, b.state) and torch.equal(a.residuals[3::4], b.residuals[3::4]), call
            assert a.residuals.isnan().sum() == a.steps - a.steps // 4, call  # only the tested sweeps are measured
            perturb(kept, call)
            eager.load_state_dict(kept.state_dict())
    assert len(kept._kept) == (2 if topology == "layered" else 3)  # batches of 8 and 5; 8 without the skips
    assert any(c.sparse for c in kept.connections.values()) == topology.startswith("skip")


def test_kept_sweeps_follow_a_reload_that_moves_the_sparse_links(monkeypatch):
    """Loading another rewiring with as many links per pair (the same shapes) must not settle on the old links'
    positions: the kept buffers are made anew after a mask is re-read."""
    import bioplausible.archs.energy as energy

    monkeypatch.setattr(energy, "BLOCK_SPARSE_DENSITY", 1.0)
    x, _ = batch()
    a = net64(hidden=(6, 5, 4, 4), topology="skip", gain=2.0, check_every=4)
    a.load_state_dict(a.state_dict())  # the masks re-read as float64 first: the shift below is the only change
    state = a.state_dict()
    moved = [k for k, c in a.connections.items() if c.sparse and 0 < c.count() < c.mask.shape[1]]
    for k in moved:  # each unit's links shifted to other units of the layer above: as many links, elsewhere
        for name in ("mask", "weight"):
            state[f"connections.{k}.{name}"] = state[f"connections.{k}.{name}"].roll(1, dims=1)
    assert moved and any(not torch.equal(state[f"connections.{k}.mask"], a.connections[k].mask) for k in moved)
    eager = net64(hidden=(6, 5, 4, 4), topology="skip", gain=2.0)
    with torch.no_grad():
        a.settle(x)
        a.load_state_dict(state)
        eager.load_state_dict(state)
        kept = a.settle(x)
        assert torch.equal(kept.state, eager.settle(x, steps=kept.steps, tolerance=0).state)


def test_kept_sweeps_after_inference_mode_from_threads_and_after_a_move():
    """A settling under torch.inference_mode, then ones outside it; two threads settling one net at once; and
    ``.float()`` (which must drop the float64 buffers): each as the eager sweeps."""
    import threading

    x, _ = batch()
    kept, eager = net64(check_every=4), net64()
    with torch.inference_mode():
        kept.settle(x)
    with torch.no_grad():
        first = kept.settle(x)
        expected = eager.settle(x, steps=first.steps, tolerance=0).state
        assert torch.equal(first.state, expected)
        results = []

        def settle():
            with torch.no_grad():
                results.extend(kept.settle(x).state for _ in range(10))

        threads = [threading.Thread(target=settle) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(results) == 20 and all(torch.equal(r, expected) for r in results)
        kept.float()
        assert len(kept._kept) == 0 and kept.settle(x.float()).state.dtype == torch.float32


def test_check_every_beyond_the_free_steps_is_refused_in_one_line(run_cli):
    result = run_cli(
        "train", "--rule", "ep", "--arch", "energy-net", "--dataset", "synthetic", "--free-steps", "50",
        "--check-every", "64", "--epochs", "1", "--no-progress",
    )  # fmt: skip
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "check_every (64) exceeds free_steps (50)" in result.stderr


@pytest.mark.parametrize("method", ["euler", "block"])
def test_check_every_tests_the_tolerance_every_k_steps(method):
    """Free and nudged phases, both methods: the settling stops at the first multiple of check_every whose step
    is below the tolerance, exactly where the per-step test would stop if it also skipped the others."""
    x, y = batch()
    every = net64(check_every=5, settle=method, tolerance=1e-8)
    one = net64(settle=method, tolerance=1e-8)
    with torch.no_grad():
        for force in forces(y).values():
            a = every.settle(x, force=force)
            residuals = one.settle(x, force=force, steps=a.steps, tolerance=0).residuals
            below = [i + 1 for i, r in enumerate(residuals) if r < 1e-8 and (i + 1) % 5 == 0]
            assert a.steps % 5 == 0 and below and below[0] == a.steps


@pytest.mark.parametrize("method", ["euler", "block"])
def test_with_check_every_only_the_tested_steps_and_the_last_are_measured(method):
    """Without autograd and with check_every = K, the residual is measured at every K-th step and at the cap (so
    ``unsettled`` always reads a measured one), NaN elsewhere; the measured values and the states are those of
    the settling that measures every step. Free (kept sweeps for block) and nudged phases; a cap that is not a
    multiple of K."""
    x, y = batch()
    every = net64(check_every=4, settle=method, tolerance=1e-8, gain=2.0)
    one = net64(settle=method, tolerance=1e-8, gain=2.0)
    with torch.no_grad():
        for name, force in forces(y).items():
            a = every.settle(x, force=force, steps=11)
            b = one.settle(x, force=force, steps=11, tolerance=0)
            assert a.steps == 11 and a.unsettled, name  # gain 2: 11 steps do not settle
            measured = [3, 7, 10]
            assert torch.equal(a.state, b.state) and torch.equal(a.residuals[measured], b.residuals[measured]), name
            assert a.residuals.isnan().tolist() == [i not in measured for i in range(11)], name


def test_a_copied_or_pickled_energy_net_starts_without_kept_sweeps():
    """The kept buffers (and on CUDA a captured graph, which cannot be copied) belong to one network."""
    import copy
    import pickle

    net = net64(check_every=4)
    with torch.no_grad():
        net.settle(batch()[0])
    assert len(net._kept) == 1
    assert len(copy.deepcopy(net)._kept) == 0 and len(pickle.loads(pickle.dumps(net))._kept) == 0


def test_ep_trains_with_check_every(sgd_steps):
    """The ep rule with the tolerance tested every 8 sweeps (kept free-phase sweeps) lowers the loss."""
    net = net64(hidden=(8,), check_every=8, tolerance=1e-6)
    x, y = batch(n=16)
    records = sgd_steps(create_rule("ep", beta=0.5, nudging="symmetric"), net, x, y, steps=30, lr=0.2)
    assert records[-1]["loss"] < 0.8 * records[0]["loss"]
