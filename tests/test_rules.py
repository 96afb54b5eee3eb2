"""Oracle tests for the feedback-alignment family: each rule against the gradient it must (or must not) equal."""

import copy
import dataclasses
import math

import pytest
import torch
from torch import nn

from bioplausible.archs import ARCHS, create_arch
from bioplausible.data import load_dataset
from bioplausible.errors import ConfigError, IncompatibleError, UnknownNameError
from bioplausible.layers import FeedbackLinear, feedback_layers
from bioplausible.probes import angle_deg
from bioplausible.rules import RULES, create_rule

FEEDBACK_RULES = ["fa", "dfa", "usf", "frsf", "brsf"]
TARGET_PROP = {"dtp", "sdtp", "aosdtp"}  # need an architecture whose layers can be inverted (layers_spec)


def make(arch="mlp", depth=3, width=32, activation="tanh", seed=0):
    torch.manual_seed(seed)
    return create_arch(arch, (1, 8, 8), 10, depth=depth, width=width, activation=activation)


def batch(n=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


def grads(model):
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def rule_grads(rule_name, model, x, y, **options):
    rule = create_rule(rule_name, **options)
    rule.prepare(model, x[:2])
    model.zero_grad()
    rule.step(model, x, y)
    return rule, grads(model)


def autograd_grads(model, x, y):
    model.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    return grads(model)


@pytest.mark.parametrize("arch", ["mlp", "dense-mlp"])
def test_bp_equals_autograd(arch):
    x, y = batch()
    model = make(arch)
    reference = autograd_grads(copy.deepcopy(model), x, y)
    _, got = rule_grads("bp", model, x, y)
    for name in reference:
        assert torch.equal(got[name], reference[name]), name


@pytest.mark.parametrize("arch", ["mlp", "dense-mlp"])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_fa_with_feedback_equal_to_weights_is_backprop(arch, activation):
    """B = Wᵀ (stored as B = W) turns feedback alignment into backprop, exactly."""
    x, y = batch()
    model = make(arch, activation=activation)
    reference = autograd_grads(copy.deepcopy(model), x, y)
    rule = create_rule("fa")
    rule.prepare(model)
    for layer in feedback_layers(model).values():
        layer.feedback.copy_(layer.weight.detach())
    model.zero_grad()
    rule.step(model, x, y)
    for name, g in grads(model).items():
        torch.testing.assert_close(g, reference[name], rtol=0, atol=1e-7, msg=name)


@pytest.mark.parametrize("arch", ["mlp", "dense-mlp"])
@pytest.mark.parametrize("rule_name", FEEDBACK_RULES)
def test_feedback_rules_differ_from_backprop(arch, rule_name):
    """With generic feedback, every hidden layer's gradient points elsewhere than backprop's; the output layer's
    own weight gradient is exact (it sees the true error)."""
    x, y = batch()
    model = make(arch)
    reference = autograd_grads(copy.deepcopy(model), x, y)
    _, got = rule_grads(rule_name, model, x, y)
    for name in ["hidden.0.weight", "hidden.1.weight"]:
        assert angle_deg(got[name], reference[name]) > 5.0, name
    torch.testing.assert_close(got["out.weight"], reference["out.weight"])


def test_dfa_hidden_update_matches_hand_computation():
    """ΔW_l = δ_lᵀ h_{l−1} with δ_l = (e B) ⊙ f'(a_l), where B is the matrix on the layer that reads h_l."""
    x, y = batch()
    model = make("mlp", depth=2, width=8)
    rule, got = rule_grads("dfa", model, x, y)
    with torch.no_grad():
        h0 = x.flatten(1)
        a1 = model.hidden[0](h0)
        h1 = torch.tanh(a1)
        a2 = model.hidden[1](h1)
        h2 = torch.tanh(a2)
        out = model.out(h2)
        e = (out.softmax(-1) - nn.functional.one_hot(y, 10)) / len(y)  # ∂L/∂ŷ for mean cross-entropy
        delta2 = (e @ model.out.feedback) * (1 - h2**2)
        delta1 = (e @ model.hidden[1].feedback) * (1 - h1**2)
    torch.testing.assert_close(got["hidden.1.weight"], delta2.t() @ h1)
    torch.testing.assert_close(got["hidden.0.weight"], delta1.t() @ h0)
    torch.testing.assert_close(got["out.weight"], e.t() @ h2)
    assert model.hidden[1].feedback.shape == (10, 8)


@pytest.mark.parametrize("plain_loop", [False, True], ids=["rule.step", "loss.backward"])
@pytest.mark.parametrize("rule_name", ["usf", "frsf", "brsf"])
def test_sign_symmetry_feedback_follows_sign_of_weights(rule_name, plain_loop):
    """After SGD steps have flipped signs of W, the backward uses sign(current W) ⊙ M: the gradient equals fa's
    with B set to that by hand — in rule.step and in a plain loss.backward() loop alike."""
    x, y = batch()
    model = make()
    rule = create_rule(rule_name)
    rule.prepare(model, x[:2])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    signs = {n: torch.sign(layer.weight.detach()) for n, layer in feedback_layers(model).items()}
    for _ in range(3):
        optimizer.zero_grad()
        if plain_loop:
            nn.functional.cross_entropy(model(x), y).backward()
        else:
            rule.step(model, x, y)
        optimizer.step()
    flipped = sum((torch.sign(layer.weight.detach()) != signs[n]).sum().item() for n, layer in model.named_modules()
                  if n in signs)  # fmt: skip
    assert flipped > 0, "large SGD steps must flip some signs"
    model.zero_grad()
    torch.manual_seed(1)
    rule.step(model, x, y)  # brsf redraws M in this forward; M is then fixed until the next one
    got = grads(model)
    twin = make()
    twin.load_state_dict({k: v for k, v in model.state_dict().items() if "feedback" not in k})
    twin = create_rule("fa").prepare(twin)
    for name, layer in feedback_layers(twin).items():
        source = model.get_submodule(name)
        layer.feedback.copy_(torch.sign(source.weight.detach()) * source.feedback_magnitude)
    twin.zero_grad()
    nn.functional.cross_entropy(twin(x), y).backward()
    for name, p in twin.named_parameters():
        if name in got:
            torch.testing.assert_close(p.grad, got[name], rtol=1e-6, atol=1e-7, msg=name)
    if rule_name == "usf":
        layer = model.hidden[1]
        assert layer.feedback_magnitude.dim() == 0
        assert layer.feedback_magnitude.item() == pytest.approx(1 / (32**0.5 * 3**0.5))


def test_brsf_redraws_magnitudes_every_batch_and_frsf_does_not():
    x, y = batch()
    for rule_name, should_change in [("brsf", True), ("frsf", False)]:
        model = make()
        rule = create_rule(rule_name)
        rule.prepare(model, x[:2])
        first = model.hidden[1].feedback_magnitude.clone()
        rule.step(model, x, y)
        assert (not torch.equal(first, model.hidden[1].feedback_magnitude)) == should_change, rule_name


def test_bp_layers_last_keeps_output_layer_exact():
    """With the output layer on backprop, the last hidden layer gets the true gradient; earlier ones do not."""
    x, y = batch()
    model = make("mlp", depth=2)
    reference = autograd_grads(copy.deepcopy(model), x, y)
    _, got = rule_grads("fa", model, x, y, bp_layers=("last",))
    assert type(model.out) is nn.Linear and isinstance(model.hidden[1], FeedbackLinear)
    torch.testing.assert_close(got["hidden.1.weight"], reference["hidden.1.weight"])
    assert angle_deg(got["hidden.0.weight"], reference["hidden.0.weight"]) > 5.0


def test_feedback_scale_scales_feedback():
    norms = []
    for scale in (1.0, 3.0):
        model = make()
        torch.manual_seed(0)
        create_rule("fa", feedback_scale=scale).prepare(model)
        norms.append(model.hidden[1].feedback.norm().item())
    assert norms[1] == pytest.approx(3 * norms[0], rel=1e-5)


# Small settings per architecture for the rule × architecture matrix. Registering an architecture without adding
# it here fails test_matrix_covers_every_architecture, so the matrix always spans the whole registry.
SMALL_ARCHS = {
    "mlp": ((1, 8, 8), {"depth": 2, "width": 16}),
    "dense-mlp": ((1, 8, 8), {"depth": 2, "width": 16}),
    "convnet": ((1, 8, 8), {"depth": 2, "channels": 4}),
    "dense-convnet": ((1, 8, 8), {"depth": 3, "channels": 4}),
    "lc-net": ((1, 8, 8), {"hidden": 16, "width_multiplier": 0.125}),
    "shared-conv-net": ((1, 8, 8), {"hidden": 16, "width_multiplier": 0.125}),
    "resnet18": ((3, 8, 8), {"width_multiplier": 0.125}),
    "resnet20": ((3, 8, 8), {"width_multiplier": 0.25}),
    "alexnet": ((3, 16, 16), {"width_multiplier": 0.05, "dropout": 0.0}),
    "energy-net": ((1, 8, 8), {"hidden_sizes": (16,), "free_steps": 30, "nudged_steps": 8}),
    "conv-energy-net": ((1, 8, 8), {"conv_channels": (4,), "kernel_sizes": (3,), "hidden_sizes": (8,)}),
}
ENERGY_ARCHS = {"energy-net", "conv-energy-net"}  # symmetric energy networks, the only ones EP trains
ENERGY_RULES = {"ep"}
WORKS_ON_ENERGY_NETS = {"bp"}  # backprop through time of the settling dynamics


def refusal(rule_name: str, arch: str) -> str | None:
    """The message pattern of an IncompatibleError the pair must raise, or None if the pair must train: read from
    the declarations (a rule's ``requires``, an architecture's ``provides``), which test_declarations checks."""
    rule, provides = RULES.get(rule_name), set(ARCHS.get(arch).provides)
    missing = [p for p in rule.requires if p.name not in provides]
    if missing:
        return "needs " + missing[0].needs.split(" (")[0]
    if "energy" in provides and rule_name not in ENERGY_RULES | WORKS_ON_ENERGY_NETS:
        return "no Linear or Conv layer"
    return None


def test_matrix_covers_every_architecture():
    assert set(SMALL_ARCHS) == set(ARCHS.list())


@pytest.mark.parametrize("rule_name", RULES.list())
@pytest.mark.parametrize("arch", ARCHS.list())
def test_every_rule_fills_every_grad_on_every_arch(rule_name, arch):
    """The registry matrix: each rule trains each architecture with any torch optimizer."""
    shape, options = SMALL_ARCHS[arch]
    torch.manual_seed(0)
    model = create_arch(arch, shape, 10, **options)
    x, y = torch.randn(16, *shape, generator=torch.Generator().manual_seed(1)), torch.arange(16) % 10
    rule = create_rule(rule_name)
    message = refusal(rule_name, arch)
    if message:
        with pytest.raises(IncompatibleError, match=message):
            rule.prepare(model, x[:2])  # the pairings allowed to refuse, and they must say why
        return
    model = rule.prepare(model, x[:2])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = copy.deepcopy(model.state_dict())
    losses = []
    for _ in range(15):
        optimizer.zero_grad(set_to_none=True)
        metrics = rule.step(model, x, y)
        for name, p in model.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
        optimizer.step()
        losses.append(metrics["loss"].item())
    assert losses[-1] < losses[0], "15 steps on one batch must lower its loss"
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_state_dict_roundtrip_keeps_feedback():
    model = make()
    create_rule("frsf").prepare(model)
    clone = make(seed=5)
    create_rule("frsf").prepare(clone)
    clone.load_state_dict(model.state_dict())
    assert torch.equal(clone.hidden[0].feedback_magnitude, model.hidden[0].feedback_magnitude)
    for rule_name in ("fa", "dfa", "kp", "wm"):  # fixed, direct, learned and mirrored B travel with the model
        model, clone = make(), make(seed=5)
        x = batch()[0][:2]
        create_rule(rule_name).prepare(model, x)
        create_rule(rule_name).prepare(clone, x)
        clone.load_state_dict(model.state_dict())
        assert torch.equal(clone.hidden[0].feedback, model.hidden[0].feedback), rule_name


def test_unknown_rule_lists_known_rules():
    with pytest.raises(UnknownNameError, match="Known rules: aosdtp, bp, brsf, dfa, dtp, ep, fa"):
        create_rule("fb")


def test_unknown_rule_option_lists_valid_options():
    with pytest.raises(ConfigError, match="feedback_scale"):
        create_rule("fa", feedback_scael=2.0)
    with pytest.raises(ConfigError, match="feedback_scale must be > 0"):
        create_rule("fa", feedback_scale=0.0)


def test_rule_on_model_without_layers_says_why():
    with pytest.raises(IncompatibleError, match="no Linear or Conv layer"):
        create_rule("fa").prepare(nn.Sequential(nn.Tanh()))


def test_bp_layers_unknown_name_lists_layers():
    with pytest.raises(ConfigError, match="hidden.0"):
        create_rule("fa", bp_layers=("nope",)).prepare(make())


@pytest.mark.parametrize("rule_name", ["wm", "brsf", "dtp"])
def test_alignment_probes_leave_model_and_rule_unchanged(rule_name):
    """wm updates B, brsf redraws magnitudes, dtp trains its inverses inside step(): a probe must undo all that."""
    from bioplausible.probes import alignment_probes

    x, y = batch()
    model = make("mlp", depth=2, width=16)
    rule = create_rule(rule_name)
    rule.prepare(model, x[:2])
    before_model = copy.deepcopy(model.state_dict())
    before_rule = copy.deepcopy(rule.state_dict())
    metrics = alignment_probes(model, rule, x, y)
    assert any(k.startswith("probe/grad_angle/") for k in metrics)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before_model[k]), k
    assert all(p.grad is None for p in model.parameters())
    assert same_state(rule.state_dict(), before_rule)


@pytest.mark.parametrize("rule_name", ["fa", "usf", "kp", "wm"])
def test_the_feedback_angle_leaves_out_a_fixed_feedback_fed_by_the_data(rule_name):
    """The first layer's B would carry the error to the input, which nothing uses: under fa W never aligns with it
    there and it read as a layer that fails to (about 90° at every epoch). A B that follows W (usf) or learns it
    (kp, wm) still shows whether the rule does that, so it stays."""
    from bioplausible.probes import alignment_probes

    x, y = batch()
    model = make("mlp", depth=2, width=16)
    rule = create_rule(rule_name)
    rule.prepare(model, x[:2])
    angles = {k.rsplit("/", 1)[1] for k in alignment_probes(model, rule, x, y) if "feedback_angle" in k}
    assert angles == ({"hidden.1", "out"} if rule_name == "fa" else {"hidden.0", "hidden.1", "out"})
    grads = {k.rsplit("/", 1)[1] for k in alignment_probes(model, rule, x, y) if "grad_angle" in k}
    assert "hidden.0" in grads  # its update is the rule's all the same


def same_state(a, b) -> bool:
    """Exact equality of nested state (dicts, lists, tensors, plain values)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same_state(x, z) for x, z in zip(a, b))
    return a == b


@pytest.mark.parametrize("rule_name", RULES.list())
@pytest.mark.parametrize("arch", ARCHS.list())
def test_every_rule_steps_every_arch_in_float64(rule_name, arch):
    """The same matrix in float64: a rule's own tensors (B, noise, inverses, states) follow the model's dtype."""
    if refusal(rule_name, arch):
        return  # refused in float32 too (the test above)
    shape, options = SMALL_ARCHS[arch]
    torch.manual_seed(0)
    model = create_arch(arch, shape, 10, **options).double()
    x, y = torch.randn(4, *shape, dtype=torch.float64), torch.arange(4) % 10
    rule = create_rule(rule_name)
    model = rule.prepare(model, x[:2])
    metrics = rule.step(model, x, y)
    assert math.isfinite(metrics["loss"].item())
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.dtype == torch.float64 and torch.isfinite(p.grad).all(), name


ENERGY_RUNS = {
    "ep": {"arch": "energy-net", "arch_options": {"hidden_sizes": [8], "free_steps": 20, "nudged_steps": 4}},
    "ep@conv-energy-net": {
        "arch": "conv-energy-net",
        "dataset": "digits",
        "arch_options": {"conv_channels": [2], "kernel_sizes": [3], "paddings": [1], "free_steps": 10},
    },
}


@pytest.mark.parametrize("rule_name", [*RULES.list(), "ep@conv-energy-net"])
def test_every_rule_runs_under_precision_bf16_on_the_cpu(rule_name, tiny_config):
    """``--precision bf16`` end to end (engine, autocast, probes) for every rule (EP on both energy nets)."""
    from bioplausible.engine import fit
    from bioplausible.runs import read_json

    setup = ENERGY_RUNS.get(rule_name, {})
    config = tiny_config(rule=rule_name.split("@")[0], precision="bf16", epochs=1, max_batches=2, **setup)
    if RULES.get(config.rule).full_precision:  # EP: the run would be fp32 recorded as bf16
        with pytest.raises(ConfigError, match=r"rule 'ep' computes in the parameters' dtype .*drop --precision"):
            fit(config, quiet=True)
        with pytest.raises(ConfigError, match=rf"architecture '{config.arch}' computes in the parameters' dtype"):
            fit(dataclasses.replace(config, rule="bp"), quiet=True)  # backprop through its settling: the same
        data = load_dataset(config.dataset)  # under a user's own autocast it still trains, in fp32
        model = create_arch(config.arch, data.input_shape, data.num_classes, **config.arch_options)
        rule = create_rule(config.rule)
        model = rule.prepare(model)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            metrics = rule.step(model, data.train_x[:4], data.train_y[:4])
        assert math.isfinite(float(metrics["loss"]))
        assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters())
        return
    run = fit(config, quiet=True)
    summary, saved = read_json(run / "summary.json"), read_json(run / "config.json")
    assert summary["status"] == "ok" and saved["precision"] == "bf16", summary
