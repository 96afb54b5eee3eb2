"""The convolutional energy network (Laborieux et al. 2021) under the ep rule: EP against backprop through time as
β → 0 for both readouts, fixed points of s = σ(∂Φ/∂s), energy descent of the alternating sweeps, the state layout the
rule slices, training steps, the engine, and bad options."""

import pytest
import torch
import torch.nn.functional as F

from bioplausible.archs import create_arch
from bioplausible.errors import ConfigError
from bioplausible.rules import create_rule
from bioplausible.rules.ep import cost_value

SHAPE, CLASSES = (1, 8, 8), 3


def tiny_net(seed=0, **options):
    """Two 3×3 convolutions (3 and 4 maps, 8×8 → 4×4 → 2×2 after pooling), a 5-unit dense layer, 3 classes."""
    torch.manual_seed(seed)
    settings = {
        "conv_channels": (3, 4),
        "kernel_sizes": (3,),
        "paddings": (1,),
        "hidden_sizes": (5,),
        "free_steps": 3000,
        "nudged_steps": 3000,
        "tolerance": 1e-13,
        **options,
    }
    return create_arch("conv-energy-net", SHAPE, CLASSES, **settings).double()


def batch(n=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *SHAPE, generator=g, dtype=torch.float64), torch.arange(n) % CLASSES


def flat(grads):
    return torch.cat([g.flatten() for g in grads.values()])


def onehot(y):
    return F.one_hot(y, CLASSES).double()


def bptt_grad(net, x, y, cost, steps=400):
    """The cost's gradient at the free fixed point, by autograd through the unrolled settling sweeps."""
    net.zero_grad(set_to_none=True)
    state = net.settle(x, steps=steps, tolerance=0).state
    cost_value(cost, state[:, net.layer_slice(net.num_layers)], onehot(y)).backward()
    grads = {n: p.grad.clone() for n, p in net.named_parameters()}
    net.zero_grad(set_to_none=True)
    return flat(grads)


def ep_grad(net, x, y, beta, nudging, cost):
    rule = create_rule("ep", beta=beta, nudging=nudging, cost=cost)
    rule.prepare(net)
    return flat(rule.estimate(net, x, y)[0])


READOUTS = [("linear", "ce"), ("energy", "mse")]  # Laborieux's softmax readout, and the output layer in the energy


@pytest.mark.parametrize(("readout", "cost"), READOUTS)
def test_symmetric_ep_approaches_bptt_and_one_sided_is_biased_at_first_order(readout, cost):
    net = tiny_net(readout=readout)
    x, y = batch()
    g_bptt = bptt_grad(net, x, y, cost)
    assert g_bptt.norm() > 1e-3, "a vanishing reference gradient would make the comparison empty"
    g_ep = ep_grad(net, x, y, 1e-3, "symmetric", cost)
    assert F.cosine_similarity(g_ep, g_bptt, dim=0) >= 0.99
    torch.testing.assert_close(g_ep, g_bptt, rtol=0, atol=1e-3 * g_bptt.abs().max().item())
    # At larger β a max-pooling switch may flip between the phases, a jump of ∂Φ/∂W that the estimate divides by β
    # (here at β = 0.01 for the ce readout): the bias orders show only below that.
    errors = {n: (ep_grad(net, x, y, 0.005, n, cost) - g_bptt).norm().item() for n in ("one-sided", "symmetric")}
    assert errors["symmetric"] < errors["one-sided"] / 20, errors


@pytest.mark.parametrize("order", ["synchronous", "alternating"])
@pytest.mark.parametrize(("pooling", "activation"), [("max", "hard-sigmoid"), ("avg", "half-hard-sigmoid")])
def test_settled_state_is_a_fixed_point_of_sigma_of_dphi(order, pooling, activation):
    """s = σ(∂Φ/∂s) with ∂Φ/∂s from autograd of ``phi`` (the energy's Φ), not from the hand-written transposed
    convolutions and unpooling that settle uses; in the nudged phase s_L = σ(∂Φ/∂s_L − β W_outᵀ ∂C/∂ŷ)."""
    net = tiny_net(settle_order=order, pooling=pooling, activation=activation, tolerance=1e-12)
    x, y = batch()
    with torch.no_grad():
        free = net.settle(x)
    assert free.steps < 3000 and free.residuals[-1] < 1e-12
    hidden = slice(0, net.layer_slice(net.num_layers - 1).stop)  # s_1 … s_L (g and ŷ follow from s_L)

    def dphi(state, beta=0.0):
        s = state.clone().requires_grad_()
        out = net.connections[f"{net.num_layers - 1}-{net.num_layers}"].bottom_up(net.split(s)[-1])[0]
        objective = net.phi(s, x).sum() - beta * len(x) * cost_value("ce", out, onehot(y))
        return torch.autograd.grad(objective, s)[0][:, hidden]

    torch.testing.assert_close(free.state[:, hidden], net.sigma(dphi(free.state)), rtol=0, atol=1e-10)
    force = lambda out: -0.5 * (out.softmax(1) - onehot(y))  # noqa: E731  (−β ∂C/∂ŷ for β = 0.5, cross-entropy)
    with torch.no_grad():
        nudged = net.settle(x, state=free.state, force=force)
    assert not torch.allclose(nudged.state, free.state)
    torch.testing.assert_close(nudged.state[:, hidden], net.sigma(dphi(nudged.state, 0.5)), rtol=0, atol=1e-10)
    again = net.settle(x, state=nudged.state, force=force, steps=1)  # the fixed point stays put
    assert again.residuals[0] < 1e-11


@pytest.mark.parametrize("pooling", ["max", "avg", "none"])
def test_alternating_sweeps_never_increase_the_energy(pooling):
    """With the other layers fixed, E is ½‖s_l‖² minus a function of s_l that is linear (avg, none) or convex (max
    pooling: a max of linear terms times s_{l+1} >= 0); the update s_l = σ(∂Φ/∂s_l) minimises the linearisation on
    [0, 1], which bounds E from above, so each half sweep can only lower E."""
    net = tiny_net(pooling=pooling, readout="energy", settle_order="alternating")
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3.0)  # strong couplings, where the synchronous order need not descend
    x, _ = batch()
    state, energies = None, []
    with torch.no_grad():
        for _ in range(25):
            state = net.settle(x, state=state, steps=1, tolerance=0).state
            energies.append(net.energy(state, x))
    energies = torch.stack(energies)  # (sweeps, N)
    assert (energies[1:] <= energies[:-1] + 1e-12).all()
    assert (energies[-1] < energies[0]).all()


def test_graph_free_settling_equals_differentiable_settling():
    net = tiny_net(tolerance=1e-6)
    x, y = batch()
    force = lambda out: -0.3 * (out.softmax(1) - onehot(y))  # noqa: E731
    start = net.feedforward_state(x).detach()
    with torch.no_grad():
        fast = net.settle(x, state=start, force=force, steps=60)
    slow = net.settle(x, state=start, force=force, steps=60)
    assert slow.state.requires_grad and not fast.state.requires_grad
    assert fast.steps == slow.steps < 60
    torch.testing.assert_close(fast.state, slow.state.detach(), rtol=0, atol=1e-12)


def test_state_layout_matches_what_the_rule_slices():
    net = tiny_net()
    x, y = batch()
    assert net.shapes == [(3, 4, 4), (4, 2, 2), (5,)]
    assert net.num_layers == 4  # three layers with weights into them, and the readout
    with torch.no_grad():
        state = net.settle(x).state
    assert state.shape == (8, 48 + 16 + 5 + 2 * CLASSES)
    out = net.layer_slice(net.num_layers)
    assert out.stop == state.shape[1] and out.stop - out.start == CLASSES  # the rule's one_hot width
    layers = net.split(state)
    torch.testing.assert_close(layers[1].flatten(1), state[:, net.layer_slice(2)])
    readout = net.connections["3-4"]
    torch.testing.assert_close(state[:, out], readout.bottom_up(layers[-1])[0])
    assert set(net.parameter_layers()) == {n for n, _ in net.named_parameters()}
    assert net.parameter_layers()["connections.3-4.weight"] == 4
    with torch.no_grad():
        torch.testing.assert_close(net(x), state[:, out])
    energy = create_arch("conv-energy-net", SHAPE, CLASSES, conv_channels=(2,), kernel_sizes=(3,), readout="energy")
    assert energy.num_layers == 2 and energy.layer_slice(2) == slice(18, 21)


def test_persistent_states_restart_each_example_from_its_last_equilibrium():
    net = tiny_net(tolerance=1e-10)
    x, y = batch()
    rule = create_rule("ep", beta=0.1, nudging="symmetric", cost="ce", persistent=True)
    rule.prepare(net)
    index = torch.arange(5, 5 + len(x))
    free, _, _ = rule.equilibria(net, x, y, index)
    assert free.steps > 5
    torch.testing.assert_close(rule.memory[index], free.state)
    again, _, _ = rule.equilibria(net, x, y, index)  # same weights: it starts at its fixed point
    assert again.steps == 1
    torch.testing.assert_close(again.state, free.state)


@pytest.mark.parametrize("nudging", ["one-sided", "symmetric", "random-sign"])
def test_sgd_steps_lower_the_loss_and_settling_stops_at_the_tolerance(nudging, sgd_steps):
    torch.manual_seed(0)
    options = {"conv_channels": (4,), "kernel_sizes": (3,), "paddings": (1,), "hidden_sizes": (8,)}
    net = create_arch("conv-energy-net", SHAPE, CLASSES, free_steps=100, nudged_steps=20, tolerance=1e-4, **options)
    g = torch.Generator().manual_seed(0)
    y = torch.arange(24) % CLASSES
    x = torch.rand(24, *SHAPE, generator=g)
    x[y == 1, :, :4] += 1.0  # class 1: a bright upper half, class 2: a bright left half
    x[y == 2, :, :, :4] += 1.0
    rule = create_rule("ep", beta=0.5, nudging=nudging, cost="ce")
    rule.prepare(net)
    records = sgd_steps(rule, net, x, y)
    losses = [r["loss"] for r in records]
    assert losses[-1] < 0.8 * losses[0], losses
    assert 1 <= records[-1]["free_steps"].item() < 100  # stopped at the tolerance, not the cap
    probes = rule.probe(net, x, y)
    norms = [f"probe/ep_update_norm/{pair}" for pair in ("0-1", "1-2", "2-3")]  # convolution, dense, readout
    assert set(probes) == {*norms, "probe/ep_free_steps", "probe/ep_residual_last", "probe/ep_free_unsettled"}
    assert probes["probe/ep_update_norm/0-1"] > 0 and probes["probe/ep_residual_last"] < 1e-4


def test_engine_trains_it_with_persistent_states(tiny_config, tmp_path):
    from bioplausible.engine import fit

    config = tiny_config(
        rule="ep",
        arch="conv-energy-net",
        dataset="digits",
        optimizer="sgd",
        lr=0.05,
        epochs=1,
        batch_size=50,
        max_batches=3,
        rule_options={"persistent": True, "nudging": "symmetric", "cost": "ce"},
        arch_options={"conv_channels": [4], "kernel_sizes": [3], "paddings": [1], "free_steps": 30},
    )
    run = fit(config, quiet=True)
    memory = torch.load(run / "checkpoint.pt", weights_only=False)["rule"]["_extra_state"]
    assert int(memory["seen"].sum()) == 150


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"conv_channels": (0,)}, "conv_channels must be"),
        ({"conv_channels": (2, 2, 2), "kernel_sizes": (3, 3)}, "kernel_sizes needs 1 or 3"),
        ({"paddings": (-1,)}, "paddings must be >= 0"),
        ({"pooling": "min"}, "pooling must be one of"),
        ({"readout": "softmax"}, "readout must be one of"),
        ({"activation": "tanh"}, "activation must be one of"),
        ({"settle_order": "random"}, "settle_order must be one of"),
        ({"free_steps": 0}, "free_steps must be >= 1"),
        ({"input_scale": 0.0}, "input_scale must be > 0"),
        ({"conv_channels": (2, 2, 2), "kernel_sizes": (3,)}, "convolution 2 .* leaves no output on a 8×8 input"),
    ],
)
def test_bad_options_are_config_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        create_arch("conv-energy-net", SHAPE, CLASSES, **options)


def test_flat_input_is_refused():
    with pytest.raises(ConfigError, match=r"needs an image input \(C, H, W\)"):
        create_arch("conv-energy-net", (64,), CLASSES)


def test_persistent_evaluation_works_on_the_conv_energy_net():
    """EP's persistent_eval reads the model through the energy-network protocol only: the conv net's evaluation
    states (layers and readout) are kept like the MLP's, and the first evaluation equals its forward."""
    torch.manual_seed(0)
    net = create_arch("conv-energy-net", (1, 8, 8), 3, conv_channels=(4,), hidden_sizes=(), free_steps=5)
    x = torch.rand(4, 1, 8, 8)
    rule = create_rule("ep", persistent_eval=True)
    torch.testing.assert_close(rule.predict(net, x, "test", 0), net(x))
    assert rule.eval_memory["test"].shape == (4, net.settle(x, steps=1).state.shape[1])
