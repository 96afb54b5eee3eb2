"""Target propagation (dtp, sdtp, aosdtp) and the layered protocol it reads architectures through.

Oracles: targets on an invertible linear net with exact inverses against their closed form, dtp against a gradient
step, transposed operations against autograd's adjoint; plus detachment, schedules, dense nets, bad input, resume.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from bioplausible.archs import ARCHS, create_arch
from bioplausible.data import load_dataset
from bioplausible.engine import fit
from bioplausible.errors import ConfigError, IncompatibleError
from bioplausible.layered import LayerSpec, compose
from bioplausible.layers import LocalTranspose, exact_gradients
from bioplausible.layers.local import LocallyConnected2d
from bioplausible.probes import angle_deg
from bioplausible.rules import create_rule
from bioplausible.rules.target_prop import lift

TP_RULES = ["dtp", "sdtp", "aosdtp"]
LAYERED = {
    "mlp": ((1, 8, 8), {"depth": 2, "width": 16}),
    "dense-mlp": ((1, 8, 8), {"depth": 3, "width": 16}),
    "convnet": ((1, 12, 12), {"depth": 3, "channels": 4, "pool_every": 1}),
    "dense-convnet": ((3, 14, 14), {"depth": 5, "channels": 4, "pool_every": 2}),
    "lc-net": ((1, 8, 8), {"hidden": 16, "width_multiplier": 0.125}),
    "shared-conv-net": ((3, 16, 16), {"hidden": 16, "width_multiplier": 0.125}),
}


def batch(shape, n=16, classes=10, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g), torch.randint(0, classes, (n,), generator=g)


def prepared(rule_name, arch="mlp", shape=(1, 8, 8), seed=0, **options):
    """A small model of ``arch`` and a rule prepared on it, with the inverses built (one forward pass)."""
    torch.manual_seed(seed)
    model = create_arch(arch, shape, 10, **LAYERED.get(arch, (None, {}))[1])
    rule = create_rule(rule_name, **options)
    rule.prepare(model, torch.zeros(2, *shape))
    return model, rule


# ------------------------------------------------------------------------------------------- layered protocol
def test_every_layered_arch_is_covered():
    layered = {name for name in ARCHS.list() if hasattr(ARCHS.get(name), "layers_spec")}
    assert layered == set(LAYERED)


@pytest.mark.parametrize("arch", sorted(LAYERED))
def test_composing_the_specs_reproduces_forward_exactly(arch):
    shape, options = LAYERED[arch]
    torch.manual_seed(0)
    model = create_arch(arch, shape, 10, **options)
    x = torch.randn(5, *shape)
    specs = model.layers_spec()
    assert all(isinstance(s, LayerSpec) for s in specs) and specs[-1].activation is None
    assert torch.equal(compose(specs, x)[-1], model(x))


# -------------------------------------------------------------------------------- invertible linear net oracle
class LinearNet(nn.Module):
    """Square Linear layers with identity activations: every layer is invertible, h_l = W_l h_{l−1} + b_l."""

    def __init__(self, n=6, depth=3, orthogonal=False):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(n, n, dtype=torch.float64) for _ in range(depth + 1))
        with torch.no_grad():
            for layer in self.layers:
                if orthogonal:
                    layer.weight.copy_(torch.linalg.qr(torch.randn(n, n, dtype=torch.float64))[0])
                else:
                    layer.weight.copy_(torch.eye(n) + 0.3 * torch.randn(n, n))  # well conditioned

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

    def layers_spec(self):
        return [LayerSpec(layer, None, [l]) for l, layer in enumerate(self.layers)]


def exact_inverses(model, rule):
    """V_l = W_l⁻¹, c_l = −W_l⁻¹ b_l, so g_l = f_l⁻¹."""
    with torch.no_grad():
        for reader in rule.readers:
            if reader.inverse is not None:
                layer, op = model.layers[reader.index], rule.inverses[reader.inverse].op
                op.weight.copy_(torch.linalg.inv(layer.weight))
                op.bias.copy_(-op.weight @ layer.bias)


def linear_setup(rule_name, orthogonal=False, loss="ce", **options):
    torch.manual_seed(0)
    model = LinearNet(orthogonal=orthogonal)
    rule = create_rule(rule_name, loss=loss, **options)
    x = torch.randn(8, 6, dtype=torch.float64)
    y = torch.arange(8) % 6
    rule.prepare(model, x)  # builds the inverses
    exact_inverses(model, rule)
    return model, rule, x, y


def test_sdtp_targets_with_exact_inverses_are_preimages_of_the_label():
    """With g_l = f_l⁻¹ the difference correction is exact: for an affine f_l,
    ĥ_{l−1} = h_{l−1} + f_l⁻¹(ĥ_l) − f_l⁻¹(h_l) = h_{l−1} + W_l⁻¹(ĥ_l − h_l) = f_l⁻¹(ĥ_l)   (as h_{l−1} = f_l⁻¹(h_l)),
    so every target is the exact pre-image of the top target: ĥ_{L−1} = f_L⁻¹(y), ĥ_{l−1} = W_l⁻¹(ĥ_l − b_l). With the
    mse loss the output layer's inverse reads ŷ itself and the top target is the one-hot label y."""
    model, rule, x, y = linear_setup("sdtp", loss="mse")
    with torch.no_grad():
        features, inputs = rule.forward_layers(x)
        targets = rule.targets(features, inputs, y, None)
        expected = nn.functional.one_hot(y, 6).double()
        for l in range(len(model.layers) - 1, 0, -1):
            layer = model.layers[l]
            expected = torch.linalg.solve(layer.weight, (expected - layer.bias).t()).t()  # W_l⁻¹(ĥ_l − b_l)
            torch.testing.assert_close(targets[l], expected, rtol=1e-9, atol=1e-9)
        image = targets[1]  # the forward image of the lowest target is the label
        for layer in model.layers[1:]:
            image = layer(image)
        torch.testing.assert_close(image, nn.functional.one_hot(y, 6).double())


def test_dtp_targets_with_exact_inverses_are_the_gradient_step_mapped_down():
    """dtp: ĥ_{L−1} = h_{L−1} − α g with g = ∂ℓ/∂h_{L−1} per example (ℓ the per-example loss). With exact inverses,
    ĥ_{l−1} − h_{l−1} = W_l⁻¹(ĥ_l − h_l), hence for every hidden layer l < L−1
        ĥ_l − h_l = −α (W_{L−1} ⋯ W_{l+1})⁻¹ g,
    while the backprop gradient is ∂ℓ/∂h_l = (W_{L−1} ⋯ W_{l+1})ᵀ g: the two differ unless the W are orthogonal
    (then W⁻¹ = Wᵀ and the target step is exactly −α times the per-example gradient; next test)."""
    alpha = 0.1
    model, rule, x, y = linear_setup("dtp", alpha=alpha)
    with exact_gradients(model):  # the true gradient, asked for: dtp's layers refuse anyone else's backward
        h = compose(model.layers_spec(), x.requires_grad_())
        loss = nn.functional.cross_entropy(h[-1], y, reduction="sum")
        grads = torch.autograd.grad(loss, h[1:-1])  # per-example ∂ℓ/∂h_l for l = 1..L−1
    with torch.no_grad():
        features, inputs = rule.forward_layers(x.detach())
        targets = rule.targets(features, inputs, y, grads[-1])
        step = -alpha * grads[-1]  # at h_{L−1}, as row vectors: Δ_{l−1} = Δ_l W_l⁻ᵀ
        for l in range(len(model.layers) - 1, 0, -1):
            torch.testing.assert_close(targets[l] - features[l], step, rtol=1e-9, atol=1e-12)
            step = step @ torch.linalg.inv(model.layers[l - 1].weight).t()  # W_l produces h_l
        assert angle_deg(targets[1] - features[1], -grads[0]) > 1.0  # not W orthogonal: not the gradient


def test_dtp_with_exact_inverses_on_an_orthogonal_linear_net_is_a_gradient_step():
    """Orthogonal W: every hidden target is h_l − α ∂ℓ/∂h_l, so the local loss ½‖h_l − ĥ_l‖² (batch mean) has
    gradient α ∂L/∂W_l for the mean loss L: dtp equals backprop scaled by α below the output, and backprop at the
    output layer (trained on the loss itself)."""
    alpha = 0.05
    model, rule, x, y = linear_setup("dtp", orthogonal=True, alpha=alpha)
    reference = copy.deepcopy(model)
    with exact_gradients(reference):  # the true gradient, asked for: the copy carries dtp's guard
        nn.functional.cross_entropy(reference(x), y).backward()
    rule.step(model, x, y)
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        scale = 1.0 if name.startswith("layers.3") else alpha
        torch.testing.assert_close(p.grad, scale * q.grad, rtol=1e-8, atol=1e-12, msg=name)


# ------------------------------------------------------------------------------------------ locality, signals
def test_sdtp_builds_no_graph_across_layers():
    """Every layer input seen during step is detached from the layers below: no gradient path crosses layers."""
    model, rule = prepared("sdtp", "mlp")
    seen = []
    for layer in [*model.hidden, model.out]:
        layer.register_forward_pre_hook(lambda m, args: seen.append((args[0].requires_grad, args[0].grad_fn)))
    x, y = batch((1, 8, 8))
    rule.step(model, x, y)
    assert len(seen) >= len(model.hidden) + 1
    assert all(requires_grad is False and grad_fn is None for requires_grad, grad_fn in seen)
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("rule_name", TP_RULES)
def test_tp_gradients_differ_from_backprop(rule_name):
    """Targets are not gradients: the first layer's update points elsewhere than backprop's. In dtp the
    penultimate layer's target is a gradient step, so its update is α times backprop's."""
    model, rule = prepared(rule_name, "mlp")
    x, y = batch((1, 8, 8))
    reference = copy.deepcopy(model)
    with exact_gradients(reference):  # the true gradient, asked for (a plain backward on a TP model refuses)
        nn.functional.cross_entropy(reference(x), y).backward()
    rule.step(model, x, y)
    assert angle_deg(model.hidden[0].weight.grad, reference.hidden[0].weight.grad) > 10.0
    torch.testing.assert_close(model.out.weight.grad, reference.out.weight.grad)
    if rule_name == "dtp":
        torch.testing.assert_close(model.hidden[1].weight.grad, 0.2 * reference.hidden[1].weight.grad)
    else:
        assert angle_deg(model.hidden[1].weight.grad, reference.hidden[1].weight.grad) > 10.0


@pytest.mark.parametrize("rule_name", TP_RULES)
def test_tp_trains_on_synthetic_data(rule_name, tiny_config):
    run = fit(tiny_config(rule=rule_name, epochs=5, probe_every=5), quiet=True)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["test_accuracy"] > 0.8  # chance: 0.25
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert 0 < last["probe/tp_inverse_error/hidden.1"] < 1.0  # the inverse learned something
    assert last["probe/tp_target_angle/hidden.0"] < 80.0  # the target step points downhill


def test_dtp_with_one_hidden_layer_needs_no_inverse():
    """The only hidden layer's target is the gradient step: its update is α times backprop's."""
    torch.manual_seed(0)
    model = create_arch("mlp", (1, 8, 8), 10, depth=1, width=16)
    reference = copy.deepcopy(model)
    rule = create_rule("dtp")
    x, y = batch((1, 8, 8))
    rule.prepare(model, x)
    rule.step(model, x, y)
    assert len(rule.inverses) == 0 and rule.optimizer is None
    nn.functional.cross_entropy(reference(x), y).backward()
    torch.testing.assert_close(model.hidden[0].weight.grad, 0.2 * reference.hidden[0].weight.grad)


def test_aosdtp_adds_untrained_auxiliary_outputs():
    model, rule = prepared("aosdtp", "mlp", aux_outputs=7)
    inverse = rule.inverses[rule.readers[-1].inverse]
    assert inverse.op.in_features == 10 + 7 and rule.aux.shape == (7, 16)
    assert not any(p is rule.aux for p in model.parameters())
    aux = rule.aux.clone()
    x, y = batch((1, 8, 8))
    rule.step(model, x, y)
    assert torch.equal(rule.aux, aux)
    assert torch.equal(rule.state_dict()["aux"], rule.aux)  # A is saved with the rule


def test_probe_reports_every_layer_and_changes_nothing():
    model, rule = prepared("dtp", "mlp")
    x, y = batch((1, 8, 8))
    before = copy.deepcopy((model.state_dict(), rule.inverses.state_dict()))
    metrics = rule.probe(model, x, y)
    assert set(metrics) == {
        *(f"probe/tp_{kind}/hidden.{l}" for kind in ("target_angle", "target_norm") for l in (0, 1)),
        "probe/tp_inverse_error/hidden.1",
    }
    assert metrics["probe/tp_target_angle/hidden.1"] == pytest.approx(0.0, abs=1e-3)  # dtp: a gradient step
    assert all(p.grad is None for p in [*model.parameters(), *rule.inverses.parameters()])
    after = (model.state_dict(), rule.inverses.state_dict())
    for saved, now in zip(before, after):
        assert all(torch.equal(saved[k], now[k]) for k in saved)


@pytest.mark.parametrize(("rule_name", "preserving"), [("dtp", True), ("sdtp", False)])
def test_inverse_loss_is_noise_preserving_for_dtp_and_denoising_for_sdtp(rule_name, preserving):
    """½‖g(f(h + ε)) − (h + ε)‖² (dtp) or ½‖g(f(h + ε)) − h‖² (sdtp), per example, summed over the inverses
    (sdtp also trains the output layer's inverse, which reads softmax(ŷ))."""
    model, rule = prepared(rule_name, "mlp", noise=0.3)
    x, _ = batch((1, 8, 8))
    with torch.no_grad():
        features, inputs = rule.forward_layers(x)
    torch.manual_seed(7)
    got = rule.inverse_loss(inputs)
    torch.manual_seed(7)
    expected = 0.0
    with torch.no_grad():
        for reader in rule.readers:
            if reader.inverse is None:
                continue
            h = inputs[reader.index]
            noisy = h + 0.3 * torch.randn_like(h)
            out = rule.specs[reader.index].layer_output(noisy)
            if reader.index == len(rule.specs) - 1:
                out = out.softmax(-1)
            reconstruction = rule.inverses[reader.inverse](out)
            expected += 0.5 * (reconstruction - (noisy if preserving else h)).pow(2).sum() / len(x)
    torch.testing.assert_close(got.detach(), expected)
    assert got.requires_grad


@pytest.mark.parametrize(
    "pre",
    [
        lambda h: h.flatten(1),
        lambda h: h.mean(dim=(2, 3)),
        nn.MaxPool2d(2),
        lambda h: nn.functional.max_pool2d(h, 2).mean(dim=(2, 3)),
    ],
    ids=["flatten", "global-average", "max-pool", "max-pool-then-average"],
)
def test_lift_is_a_right_inverse_of_the_read_map(pre):
    """A target difference Δ for pre(h) is mapped to h's space so that pre(h + lift(Δ)) = pre(h) + Δ (for max-pool,
    with Δ ≥ 0 the arg-max stays put), and it touches nothing pre does not read."""
    h = torch.randn(3, 4, 6, 6)
    delta = torch.rand_like(pre(h))
    lifted = lift(delta, pre, h)
    assert lifted.shape == h.shape
    torch.testing.assert_close(pre(h + lifted), pre(h) + delta)
    if isinstance(pre, nn.MaxPool2d):
        assert (lifted != 0).sum() == delta.numel()  # one arg-max per window


# ------------------------------------------------------------------------------------------------- schedules
def test_alternating_schedule_trains_inverses_then_forward_weights():
    model, rule = prepared("sdtp", "mlp", schedule="alternating")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = batch((1, 8, 8))

    def snapshot():
        return copy.deepcopy(model.state_dict()), copy.deepcopy(rule.inverses.state_dict())

    for epoch, trains in [(0, "inverses"), (1, "forward"), (2, "inverses")]:
        rule.start_epoch(epoch)
        forward_before, inverse_before = snapshot()
        optimizer.zero_grad(set_to_none=True)
        rule.step(model, x, y)
        if trains == "inverses":
            assert all(p.grad is None for p in model.parameters())
        optimizer.step()
        forward_after, inverse_after = snapshot()
        forward_same = all(torch.equal(forward_before[k], forward_after[k]) for k in forward_before)
        inverse_same = all(torch.equal(inverse_before[k], inverse_after[k]) for k in inverse_before)
        assert (forward_same, inverse_same) == ((True, False) if trains == "inverses" else (False, True)), epoch


def test_alternating_schedule_restarts_the_inverse_optimizer_each_inverse_epoch():
    """Regression: Adam's moments kept from the last inverse epoch are stale after a forward epoch (small second
    moments against new, large gradients), which made the first inverse steps up to √(1/(1−β₂))·(1−β₁) ≈ 3.2 times
    inverse_lr and collapsed sdtp on MNIST. A fresh Adam's every step is at most inverse_lr per weight."""
    lr = 1e-2
    model, rule = prepared("sdtp", "mlp", schedule="alternating", inverse_lr=lr)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    x, y = batch((1, 8, 8), n=64)
    for epoch, steps in [(0, 300), (1, 30), (2, 1)]:
        rule.start_epoch(epoch)
        before = copy.deepcopy(rule.inverses.state_dict())
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            rule.step(model, x, y)
            optimizer.step()
    assert all(s["step"] == 1 for s in rule.optimizer.state.values())
    largest = max((rule.inverses.state_dict()[k] - v).abs().max().item() for k, v in before.items())
    assert largest <= lr * (1 + 1e-4)


def test_parallel_schedule_trains_both():
    model, rule = prepared("dtp", "mlp")
    rule.start_epoch(1)
    inverse_before = copy.deepcopy(rule.inverses.state_dict())
    x, y = batch((1, 8, 8))
    rule.step(model, x, y)
    assert all(p.grad is not None for p in model.parameters())
    assert not torch.equal(inverse_before["0.op.weight"], rule.inverses.state_dict()["0.op.weight"])


# ------------------------------------------------------------------------------------- dense and spatial nets
def test_dense_mlp_feature_read_twice_gets_the_mean_of_both_targets():
    """dense-mlp depth 2: h_1 is read by layer 2 (x_2 = [h_0; h_1]) and the output (x_3 = [h_0; h_1; h_2]). Each
    reader sends h_1 the difference correction of its own inverse (on the h_1 block), and h_1 takes their mean."""
    torch.manual_seed(0)
    model = create_arch("dense-mlp", (1, 8, 8), 10, depth=2, width=16)
    rule = create_rule("sdtp")
    x, y = batch((1, 8, 8))
    rule.prepare(model, x)
    with torch.no_grad():
        features, inputs = rule.forward_layers(x)
        targets = rule.targets(features, inputs, y, None)
        h1, h2, out = features[1], features[2], features[3]
        g2, g3 = (rule.inverses[rule.readers[k].inverse] for k in (1, 2))
        assert g2.op.out_features == 16 and g3.op.out_features == 32  # hidden blocks only: no inverse to h_0
        n = len(x)
        both = g3(torch.cat([nn.functional.one_hot(y, 10).float(), out.softmax(-1)]))  # g_3(ĥ_3), g_3(h_3)
        d3 = both[:n] - both[n:]  # (N, [h_1 block; h_2 block])
        h2_target = h2 + d3[:, 16:]
        both = g2(torch.cat([h2_target, h2]))
        from_layer2 = both[:n] - both[n:]
        torch.testing.assert_close(targets[2], h2_target)
        torch.testing.assert_close(targets[1], h1 + 0.5 * (d3[:, :16] + from_layer2))
        assert angle_deg(d3[:, :16], from_layer2) > 1.0  # two different targets were averaged


def test_conv_inverse_is_the_adjoint_of_the_convolution():
    """ConvTranspose2d with the conv's own kernel is the adjoint of the conv (autograd's input gradient): the
    geometry, output_padding included, matches the strided forward layer."""
    conv = nn.Conv2d(3, 5, kernel_size=3, stride=2, padding=1)
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.first, self.conv, self.out = nn.Conv2d(2, 3, 3, padding=1), conv, nn.Linear(5 * 4 * 4, 4)

        def forward(self, x):
            return self.out(torch.tanh(self.conv(torch.tanh(self.first(x)))).flatten(1))

        def layers_spec(self):
            return [
                LayerSpec(self.first, nn.Tanh(), [0]),
                LayerSpec(self.conv, nn.Tanh(), [1]),
                LayerSpec(self.out, None, [2], lambda h: h.flatten(1)),
            ]

    model = Net()
    rule = create_rule("dtp")
    x = torch.randn(2, 2, 8, 8)
    rule.prepare(model, x)
    op = rule.inverses[rule.readers[1].inverse].op
    assert isinstance(op, nn.ConvTranspose2d) and op.output_padding == (1, 1)
    h = torch.randn(2, 3, 8, 8, requires_grad=True)
    g = torch.randn(2, 5, 4, 4)
    with exact_gradients(model):  # autograd through a dtp layer, asked for
        (adjoint,) = torch.autograd.grad(conv(h), h, g)
    with torch.no_grad():
        op.weight.copy_(conv.weight)
        op.bias.zero_()
        torch.testing.assert_close(op(g), adjoint)


def test_locally_connected_inverse_is_the_adjoint_of_the_layer():
    layer = LocallyConnected2d(3, 4, (7, 7), 3, stride=2, padding=1)
    inverse = LocalTranspose(layer, 3)
    assert inverse.weight.shape == (16, 4, 27) and inverse.bias.shape == (3, 7, 7)
    h = torch.randn(2, 3, 7, 7, requires_grad=True)
    g = torch.randn(2, 4, 4, 4)
    (adjoint,) = torch.autograd.grad(layer(h), h, g)
    with torch.no_grad():
        inverse.weight.copy_(layer.weight)
        inverse.bias.zero_()
        torch.testing.assert_close(inverse(g), adjoint)


@pytest.mark.parametrize(("arch", "spatial"), [("convnet", nn.ConvTranspose2d), ("lc-net", LocalTranspose)])
@pytest.mark.parametrize("rule_name", ["dtp", "sdtp"])
def test_spatial_nets_get_transposed_inverses_of_the_right_shapes(arch, spatial, rule_name):
    shape = LAYERED[arch][0]
    model, rule = prepared(rule_name, arch, shape)
    x, y = batch(shape)
    rule.step(model, x, y)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    kinds = [type(g.op) for g in rule.inverses]  # in sdtp the output layer's (Linear) inverse too
    assert spatial in kinds and set(kinds) <= {spatial, nn.Linear}
    with torch.no_grad():
        features, inputs = rule.forward_layers(x)
        for reader in rule.readers:
            if reader.inverse is not None:
                h = features[reader.index + 1]
                if reader.index == len(rule.specs) - 1:
                    h = rule.top_space(h, inputs[-1])
                assert rule.inverses[reader.inverse](h).shape == reader.hidden(inputs[reader.index]).shape
        targets = rule.targets(features, inputs, y, torch.randn_like(inputs[-1]))
        assert all(t.shape == f.shape for f, t in zip(features[1:-1], targets[1:-1]))


def test_dense_convnet_targets_pass_back_through_pooling():
    shape = LAYERED["dense-convnet"][0]
    model, rule = prepared("sdtp", "dense-convnet", shape)
    x, y = batch(shape)
    metrics = rule.step(model, x, y)
    assert torch.isfinite(metrics["loss"]) and all(p.grad is not None for p in model.parameters())


# ---------------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"noise": -0.1}, "noise must be >= 0"),
        ({"alpha": 0.0}, r"alpha must be > 0"),
        ({"alpha": 1.5}, r"alpha must be <= 1"),
        ({"schedule": "sometimes"}, "schedule must be one of parallel, alternating"),
        ({"inverse_optimizer": "lbfgs"}, "inverse_optimizer"),
        ({"aux_outputs": -1}, "aux_outputs must be >= 0"),
    ],
)
def test_bad_options_raise_config_error(options, message):
    with pytest.raises(ConfigError, match=message):
        create_rule("dtp", **options)


@pytest.mark.parametrize("arch", ["resnet20", "alexnet"])
def test_non_layered_arch_says_why(arch):
    model = create_arch(arch, (3, 16, 16), 10, width_multiplier=0.25)
    with pytest.raises(IncompatibleError, match="needs a layered network.*offers no layers_spec"):
        create_rule("sdtp").prepare(model, torch.zeros(1, 3, 16, 16))


def test_a_plain_sequential_is_layered_and_what_is_not_says_why():
    """nn.Sequential(Linear, Tanh, Linear) is a layered net: TP trains it. A module it cannot invert is named."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 4))
    x, y = torch.randn(6, 4, 4), torch.arange(6) % 4
    rule = create_rule("dtp")
    rule.prepare(model, x)
    rule.step(model, x, y)
    assert all(p.grad is not None for p in model.parameters()) and len(rule.inverses) == 1
    with pytest.raises(IncompatibleError, match="'1' \\(BatchNorm1d\\) is not a weight layer"):
        create_rule("dtp").prepare(nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)), x[:1, 0])
    with pytest.raises(ConfigError, match="example input"):
        create_rule("dtp").prepare(nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2)))


# ------------------------------------------------------------------------------------------ state and resume
def test_inverses_follow_the_model_when_it_moves():
    """A model converted after the inverses were built (``model.to(...)``) takes them along at the next step."""
    model, rule = prepared("sdtp", "mlp")
    x, y = batch((1, 8, 8))
    rule.step(model, x, y)  # creates the inverses' Adam state
    model.double()
    rule.step(model, x.double(), y)
    assert all(p.dtype == torch.float64 for p in rule.inverses.parameters())
    assert all(v.dtype == torch.float64 for s in rule.optimizer.state.values() for v in s.values() if v.dim() > 0)


def test_state_dict_restores_the_inverses_aux_and_optimizer():
    model, rule = prepared("aosdtp", "mlp")
    x, y = batch((1, 8, 8))
    rule.step(model, x, y)
    state = copy.deepcopy(rule.state_dict())
    clone = copy.deepcopy(model)
    other = create_rule("aosdtp")
    torch.manual_seed(123)  # other inverses and A than the original's
    other.prepare(clone, x)
    other.load_state_dict(state)
    for k, v in rule.inverses.state_dict().items():
        assert torch.equal(other.inverses.state_dict()[k], v), k
    assert torch.equal(other.aux, rule.aux)
    assert other.optimizer.state_dict()["state"].keys() == rule.optimizer.state_dict()["state"].keys()


@pytest.mark.parametrize("rule_name", ["dtp", "aosdtp"])
def test_resume_matches_an_uninterrupted_run(rule_name, tiny_config, tmp_path):
    schedule = "alternating" if rule_name == "dtp" else "parallel"
    settings = {"rule": rule_name, "rule_options": {"schedule": schedule}}
    data = load_dataset("synthetic")
    straight = fit(tiny_config(**settings, epochs=3, out=str(tmp_path / "a")), data=data, quiet=True)
    fit(tiny_config(**settings, epochs=2, out=str(tmp_path / "b")), data=data, quiet=True)
    resumed = fit(tiny_config(**settings, epochs=3, out=str(tmp_path / "b"), resume=True), data=data, quiet=True)

    def metrics(run):
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in records]

    assert len(metrics(straight)) == 3
    assert metrics(resumed) == metrics(straight)


@pytest.mark.parametrize(("rule", "options"), [("sdtp", {}), ("aosdtp", {}), ("dtp", {"top_target": "label"})])
def test_alpha_under_the_label_target_is_refused_not_ignored(rule, options):
    """alpha sets the gradient step of the gradient top target; with the label as the top target it was read by
    nothing, so an --alpha given there changed nothing without a word."""
    from bioplausible.build import resolve_config, without_unread
    from bioplausible.config import TrainConfig

    config = TrainConfig(rule=rule, rule_options={**options, "alpha": 0.05}, dataset="digits")
    with pytest.raises(ConfigError, match=f"rule '{rule}': alpha is the gradient step.*drop --alpha"):
        resolve_config(config)
    assert "alpha" not in without_unread(config).rule_options  # a sweep drops the drawn value instead
    resolve_config(TrainConfig(rule="dtp", rule_options={"alpha": 0.05}, dataset="digits"))  # read there: fine
