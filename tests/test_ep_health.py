"""The EP step's settling health (rules/ep_health.py): a dead network is called dead and a live one is not, on the
dense and the convolutional energy nets, with the output inside the energy and behind a linear readout; the
far-from-equilibrium, capped and blown-up warnings name only options the model has; data-parallel processes judge
on the maxima over all of them."""

import math
import warnings

import pytest
import torch

from bioplausible.archs import create_arch
from bioplausible.distributed import Distributed
from bioplausible.rules import create_rule
from bioplausible.rules.ep_health import DEAD_BATCHES, DEAD_EXAMPLES

CONV_SHAPE = (1, 8, 8)


def dense_net(**options):
    torch.manual_seed(0)
    options = {"hidden_sizes": (6, 5), "free_steps": 500, "nudged_steps": 200, "tolerance": 1e-6, **options}
    return create_arch("energy-net", (4,), 3, **options).double()


def conv_net(**options):
    torch.manual_seed(0)
    settings = {"conv_channels": (3, 4), "kernel_sizes": (3,), "paddings": (1,), "hidden_sizes": (5,)}
    settings |= {"free_steps": 300, "nudged_steps": 100, "tolerance": 1e-6, **options}
    return create_arch("conv-energy-net", CONV_SHAPE, 3, **settings).double()


def batches(shape, n=8, count=DEAD_BATCHES + 2):
    """Different examples each batch, three classes."""
    g = torch.Generator().manual_seed(1)
    return [(torch.rand(n, *shape, generator=g, dtype=torch.float64), torch.arange(n) % 3) for _ in range(count)]


def kill(net, keep_readout=False):
    """Drive every unit far below 0 (the readout, when kept, stays as it is and goes on learning)."""
    with torch.no_grad():
        for name, p in net.named_parameters():
            readout = keep_readout and name.startswith(f"connections.{net.num_layers - 1}-")
            if "bias" in name and not readout:
                p.fill_(-50.0)


def dead_warnings(rule, net, data, lr=0.0):
    """Train on ``data`` (SGD at ``lr``); the batch numbers (1-based) at which a dead-network warning came, and the
    metrics of the last batch with the largest nudged shift of the run in ``largest_shift``."""
    seen, largest = [], 0.0
    for i, (x, y) in enumerate(data, 1):
        net.zero_grad(set_to_none=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            metrics = rule.step(net, x, y)
        seen += [i for w in caught if "dead network" in str(w.message)]
        largest = max(largest, float(metrics["nudged_shift"]))
        with torch.no_grad():
            for p in net.parameters():
                if p.grad is not None:
                    p -= lr * p.grad
    return seen, {**metrics, "largest_shift": largest}


CASES = {  # name: (net, shape, rule options, readout kept alive)
    "dense, one-sided": (dense_net, (4,), {"nudging": "one-sided"}, False),
    "dense, symmetric": (dense_net, (4,), {"nudging": "symmetric"}, False),
    "conv, output in the energy": (lambda: conv_net(readout="energy"), CONV_SHAPE, {"cost": "mse"}, False),
    "conv, linear readout": (
        lambda: conv_net(readout="linear"),
        CONV_SHAPE,
        {"cost": "ce", "nudging": "symmetric"},
        True,
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_a_dead_network_is_warned_about_once_after_enough_batches(case):
    """Every unit of the energy clipped at 0: the nudging moves nothing; warned once, at batch DEAD_BATCHES, with
    what to do. With a linear readout the readout still learns, and the net is dead all the same (the CIFAR-10
    one-sided CE run)."""
    make, shape, options, keep_readout = CASES[case]
    net = make()
    kill(net, keep_readout)
    rule = create_rule("ep", beta=0.5, **options)
    seen, metrics = dead_warnings(rule, net, batches(shape, n=DEAD_EXAMPLES // DEAD_BATCHES), lr=0.01)
    assert seen == [DEAD_BATCHES], seen
    assert metrics["nudged_shift"] < 1e-5
    energy_grads = [p.grad for n, p in net.named_parameters() if not n.startswith(f"connections.{net.num_layers - 1}-")]
    assert all(g is None or not g.any() for g in energy_grads)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("nudging", ["one-sided", "symmetric", "random-sign"])
def test_a_live_network_is_not_called_dead(case, nudging):
    """Live nets over more than DEAD_BATCHES batches, every nudging (random-sign's −β pushes clipped outputs
    further: its nudged shift may be 0 while the net learns), and one example a batch (trivially the same within
    the batch)."""
    make, shape, options, _ = CASES[case]
    options = {**options, "nudging": nudging}
    for n in (8, 1):
        seen, metrics = dead_warnings(create_rule("ep", beta=0.5, **options), make(), batches(shape, n=n), lr=0.05)
        assert seen == [] and metrics["largest_shift"] > 1e-5, (n, seen)  # the nudging moved the net


def messages(rule, net, x, y):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rule.step(net, x, y)
    return [str(w.message) for w in caught]


def test_a_free_phase_far_from_equilibrium_at_tolerance_0_is_warned_about_with_the_models_remedies():
    """Tolerance 0 asks for a fixed number of steps, not an equilibrium; a last step that still moves the states
    by 0.1 or more is no equilibrium at all (a synchronous conv settling that oscillates). The remedies are the
    model's: --settle block for Euler dynamics, --settle-order alternating for a synchronous conv net, never an
    option the model lacks."""
    (x, y), (xc, yc) = batches((4,), count=1)[0], batches(CONV_SHAPE, count=1)[0]
    rule = create_rule("ep", beta=0.5)
    dense = messages(rule, dense_net(free_steps=1, tolerance=0.0, settle="euler"), x, y)
    assert len([m for m in dense if "far from an equilibrium" in m]) == 1
    assert "use --settle block" in next(m for m in dense if "far from" in m)
    conv = messages(
        create_rule("ep", beta=0.5), conv_net(free_steps=1, tolerance=0.0, settle_order="synchronous"), xc, yc
    )
    far = next(m for m in conv if "far from" in m)
    assert "--settle-order alternating" in far and "--settle block" not in far
    settled = messages(create_rule("ep", beta=0.5), dense_net(free_steps=500, tolerance=0.0, settle="block"), x, y)
    assert not any("far from" in m for m in settled)


def test_far_from_equilibrium_is_judged_on_the_distance_to_the_fixed_point_not_on_an_euler_steps_move():
    """An Euler step moves ε of the way to the fixed-point map: at ε = 0.05, a last step of 0.025 leaves the states
    ~0.5 from the fixed point (a review's case: 5 steps of ε = 0.05 went unwarned)."""
    x, y = batches((4,), count=1)[0]
    net = dense_net(free_steps=5, tolerance=0.0, settle="euler", epsilon=0.05)
    rule = create_rule("ep", beta=0.5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = rule.step(net, x, y)
    far = [str(w.message) for w in caught if "far from an equilibrium" in str(w.message)]
    assert len(far) == 1 and "from the fixed point: Δs / ε, ε = 0.05" in far[0]
    assert float(metrics["settle_residual"]) < 0.1  # the raw move alone would not have warned


def warned_messages(net, shape, beta, kill_it=True, lr=0.0, **options):
    """The warnings over DEAD_BATCHES + 2 batches at ``beta`` (on a killed net unless ``kill_it`` is false)."""
    if kill_it:
        kill(net, keep_readout=getattr(net, "readout", None) == "linear")
    rule, found = create_rule("ep", beta=beta, **options), []
    for x, y in batches(shape, n=DEAD_EXAMPLES // DEAD_BATCHES):
        net.zero_grad(set_to_none=True)
        found += messages(rule, net, x, y)
        with torch.no_grad():
            for p in net.parameters():
                p -= lr * p.grad if p.grad is not None else 0
    return found


def test_a_dead_net_is_told_to_lower_the_learning_rate_even_at_a_small_beta():
    """A review's case: at tolerance 1e-3 (floor 2e-3) and β = 0.01 a killed net was told to raise β; the nudge
    (about 0.01) clears the floor, so the net is dead, and only a net with a linear readout is said to learn
    through it."""
    euler = dense_net(settle="euler", epsilon=0.5, free_steps=100, nudged_steps=20, tolerance=1e-3)
    found = warned_messages(euler, (4,), beta=0.01)
    dead = [m for m in found if "dead network" in m]
    assert len(dead) == 1 and "lower --lr" in dead[0] and "readout" not in dead[0]
    assert not any("raise --beta" in m for m in found), found
    conv = warned_messages(conv_net(readout="linear"), CONV_SHAPE, beta=0.5, cost="ce", nudging="symmetric")
    assert any("only the linear readout still learns" in m and "lower --lr" in m for m in conv)


@pytest.mark.parametrize(
    "options",
    [
        {"settle": "block", "tolerance": 0.0, "free_steps": 300, "nudged_steps": 10},  # settled: shift ~ 0
        {"settle": "euler", "epsilon": 0.5, "tolerance": 0.0, "free_steps": 100, "nudged_steps": 10},  # drifting
    ],
    ids=["settled", "drifting"],
)
def test_a_nudge_lost_in_the_settling_error_is_warned_about_on_a_live_net_and_never_called_dead(options):
    """A review's cases: β = 1e-8 on a settled free phase (the nudge moves nothing measurable) and β = 1e-6 on a
    free phase still drifting by more than that (the shift is the drift, above the dead floor): either way the
    update is the settling error over β, large and not the gradient. Warned as such, naming β; not called dead."""
    found = warned_messages(dense_net(**options), (4,), beta=1e-6, kill_it=False, lr=0.05)
    weak = [m for m in found if "no more than the settling error" in m]
    assert len(weak) == 1 and "β = 1e-06" in weak[0] and "raise --beta" in weak[0], found
    assert not any("dead network" in m for m in found)
    truncated = dense_net(settle="block", nudged_settle="euler", epsilon=0.05, nudged_steps=2, tolerance=1e-3)
    found = warned_messages(truncated, (4,), beta=0.02, kill_it=False)
    assert any("over 2 nudged steps of ε = 0.05" in m and "raise --nudged-steps" in m for m in found), found
    healthy = warned_messages(dense_net(settle="block"), (4,), beta=0.5, kill_it=False, lr=0.05)
    assert not any("settling error" in m for m in healthy)


def test_capped_phases_of_a_conv_net_do_not_advise_options_it_lacks():
    x, y = batches(CONV_SHAPE, count=1)[0]
    found = messages(create_rule("ep", beta=0.5), conv_net(free_steps=2, nudged_steps=2, tolerance=1e-9), x, y)
    capped = [m for m in found if "stopped at its cap" in m]
    assert len(capped) == 2 and all("--settle block" not in m and "--nudged-settle" not in m for m in capped)
    assert "2 sweeps" in capped[0]


def test_gammells_truncated_nudged_phase_is_reported_as_expected_not_to_be_settled():
    """β = 1 with the MSE cost, ± nudging: at −β the outputs run to 0 or 1 (``prepare`` warns against settling the
    nudged phases), so a capped nudged phase is reported as expected, without advising --nudged-settle block."""
    x, y = batches((4,), count=1)[0]
    net = dense_net(settle="block", nudged_settle="euler", nudged_steps=12, tolerance=1e-9)
    rule = create_rule("ep", beta=1.0, nudging="symmetric", cost="mse")
    nudged = [m for m in messages(rule, net, x, y) if "nudged phase (β" in m]
    assert len(nudged) == 1 and "expected with this recipe" in nudged[0] and "--nudged-settle block" not in nudged[0]
    plain = [m for m in messages(create_rule("ep", beta=0.5), dense_net(settle="euler", nudged_steps=2), x, y)]
    assert any("or use --nudged-settle block" in m for m in plain if "nudged phase (β" in m)


def test_non_finite_states_are_reported_as_such_without_the_cap_warnings():
    x, y = batches((4,), count=1)[0]
    x[0, 0] = math.nan
    found = messages(create_rule("ep", beta=0.5), dense_net(settle="block", free_steps=5, nudged_steps=5), x, y)
    assert len(found) == 1 and "non-finite states" in found[0] and "--settle block" not in found[0]


class OtherProcessUnsettled(Distributed):
    """A stand-in data-parallel context (one process, so the settling runs as usual) whose maximum over the
    processes says that another process's share of the batch did not settle."""

    def maximum(self, values):
        values = values.clone()
        values[0] = 1.0  # the largest free residual over the processes
        return values


def test_data_parallel_processes_judge_on_the_maxima_over_all_processes():
    """The settling stops on the largest residual over the processes; so is it judged: a process whose own share
    settled reports the free phase unsettled when another process's did not."""
    x, y = batches((4,), count=1)[0]
    rule = create_rule("ep", beta=0.5)
    rule.dist = OtherProcessUnsettled()
    with pytest.warns(RuntimeWarning, match="free phase stopped at its cap"):
        metrics = rule.step(dense_net(settle="block"), x, y)
    assert metrics["free_unsettled"] == 1


def test_batches_without_errors_neither_count_nor_break_a_dead_run():
    """A batch the net gets all right may have nothing the nudging can move (outputs fitted to the bounds: its shift
    is ~0 in a live net, under cross-entropy too, whose loss is then at its floor, not 0): it is skipped."""
    from types import SimpleNamespace

    from bioplausible.rules.ep_health import Reading, SettlingHealth

    health, config = SettlingHealth(), SimpleNamespace(cost="ce", nudging="symmetric", beta=0.5)
    phase = SimpleNamespace(tolerance=1e-6, steps=3)

    def warned(readings):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for r in readings:
                health.warn(None, config, phase, {0.5: phase}, r)
        return [str(w.message) for w in caught]

    # the free phase gets every example right: fitted to the bounds (MSE loss 0, or cross-entropy at its floor)
    fitted, stalled = Reading(0.0, [0.0], 0.0, 0.0, 32), Reading(0.0, [0.0], 1e-7, 3.0, 32)
    assert warned([fitted] * 3 * DEAD_BATCHES) == []
    assert warned([stalled] * (DEAD_BATCHES - 1) + [fitted] * 5) == []
    assert len(warned([stalled])) == 1  # the tenth stalled batch; the fitted ones in between did not reset it


def test_random_signs_lone_minus_beta_batches_neither_count_nor_break_a_dead_run():
    """A phase nudged by −β alone pushes outputs clipped at 0 further down: no move in a live net (12 of the first
    100 batches of Gammell's 784-500×3-10 recipe), so it is no evidence either way; +β batches decide."""
    from types import SimpleNamespace

    from bioplausible.rules.ep_health import Reading, SettlingHealth

    health, config = SettlingHealth(), SimpleNamespace(cost="mse", nudging="random-sign", beta=1.0)
    phase = SimpleNamespace(tolerance=1e-4, steps=8)
    stalled = Reading(0.0, [0.0], 1e-5, 3.0, 32)

    def warned(signs):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for sign in signs:
                health.warn(None, config, phase, {sign * 1.0: phase}, stalled)
        return [str(w.message) for w in caught]

    assert warned([-1] * 3 * DEAD_BATCHES) == []
    assert warned([+1] * (DEAD_BATCHES - 1) + [-1] * 5) == []
    assert len(warned([+1])) == 1  # the tenth +β stall; the −β ones in between did not reset the count


def test_a_probes_step_neither_uses_up_nor_feeds_the_warnings():
    """The alignment probes run the rule's step to measure it: its capped phases must not use up the warning the
    training step would give (which the metric it names would then contradict)."""
    from bioplausible.probes.alignment import alignment_probes

    x, y = batches((4,), count=1)[0]
    net, rule = dense_net(free_steps=2, nudged_steps=2, tolerance=1e-9), create_rule("ep", beta=0.5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        alignment_probes(net, rule, x, y)
    assert not caught and not rule.probing
    assert len([m for m in messages(rule, net, x, y) if "stopped at its cap" in m]) == 2


def test_the_shift_is_taken_over_the_layers_without_a_readouts_stored_force():
    """Adjacent layers merge into one slice; a linear readout's stored force (between s_L and ŷ) is left out."""
    from bioplausible.rules.ep_health import layer_columns

    dense = dense_net()
    assert layer_columns(dense) == [slice(0, dense.offsets[-1])]
    conv = conv_net(readout="linear")
    (layers, out) = layer_columns(conv)
    assert layers == slice(0, conv.offsets[conv.num_layers - 1]) and out == conv.layer_slice(conv.num_layers)
    assert out.start > layers.stop  # the force's columns lie between them


def test_a_net_dead_below_an_output_set_by_the_nudge_after_the_step_is_called_dead():
    """Under --nudge-after-step at ε = 0.5, β = 1 the +β phase sets the outputs to the target, so they always move;
    a net whose hidden units are all pinned is dead all the same (only the output biases learn): the shift is taken
    below the output, and the warning comes (a review's case: shift 1, no warning)."""
    net = dense_net(settle="euler", epsilon=0.5, nudged_steps=8, tolerance=1e-3, nudge_after_step=True)
    found = warned_messages(net, (4,), beta=1.0)  # one-sided: every batch is evidence
    assert len([m for m in found if "dead network" in m]) == 1, found
    live = dense_net(settle="euler", epsilon=0.5, nudged_steps=8, tolerance=1e-3, nudge_after_step=True)
    found = warned_messages(live, (4,), beta=1.0, kill_it=False, lr=0.05, nudging="random-sign")
    assert not any("dead network" in m or "settling error" in m for m in found), found


def test_the_nudge_reach_counts_the_nudge_after_the_steps_factor_two():
    from bioplausible.rules.ep_health import nudge_reach

    inside = dense_net(settle="euler", epsilon=0.5, nudged_steps=1)
    after = dense_net(settle="euler", epsilon=0.5, nudged_steps=1, nudge_after_step=True)
    rule = create_rule("ep", beta=3e-5)
    assert nudge_reach(after, rule.config) == pytest.approx(2 * nudge_reach(inside, rule.config))


def test_a_warning_points_at_the_code_that_called_the_rules_step():
    x, y = batches((4,), count=1)[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        create_rule("ep", beta=0.5).step(dense_net(free_steps=1, tolerance=0.0, settle="euler"), x, y)
    assert caught and all(w.filename == __file__ for w in caught), [w.filename for w in caught]
