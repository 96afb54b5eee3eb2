"""No fault may be silent: the situations researchers meet when they bring their own models, precisions, training
loops and settings (issue 11), each tested over the whole kind it belongs to (every rule, layer type, topology)."""

from __future__ import annotations

import copy
import math
import re
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import bioplausible
from bioplausible.archs import create_arch
from bioplausible.errors import ConfigError, IncompatibleError
from bioplausible.layers import KeptOnBackpropWarning, feedback_layers
from bioplausible.registry import ARCHS, RULES
from bioplausible.rules import create_rule

FEEDBACK = ["fa", "dfa", "usf", "frsf", "brsf", "kp", "wm"]
TP = ["dtp", "sdtp", "aosdtp"]
# one small net per layer type: Linear, Conv2d, locally connected
NETS = {
    "linear": ("mlp", (1, 8, 8), {"depth": 2, "width": 16}),
    "conv": ("convnet", (1, 8, 8), {"depth": 2, "channels": 4}),
    "local": ("lc-net", (1, 8, 8), {"hidden": 16, "width_multiplier": 0.125}),
}
ENERGY = ("energy-net", (1, 8, 8), {"hidden_sizes": (12,), "free_steps": 40, "nudged_steps": 8})


def make(net: str, seed: int = 0, dtype=torch.float32):
    arch, shape, options = NETS.get(net, ENERGY)
    torch.manual_seed(seed)
    model = create_arch(arch, shape, 10, **options).to(dtype)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(8, *shape, generator=g).to(dtype)
    return model, x, torch.arange(8) % 10


def pairs():
    """(rule, net) for every rule on every net it trains: feedback rules and TP on each layer type, EP on energy."""
    out = [(r, n) for r in ["bp", *FEEDBACK, *TP] for n in NETS]
    return [*out, ("ep", "energy"), ("bp", "energy")]


def weight_grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


# ------------------------------------------------------------------------- 1. mixed precision, 2. dtypes
@pytest.mark.parametrize(("rule_name", "net"), pairs())
def test_every_rule_trains_under_cpu_bf16_autocast(rule_name, net):
    model, x, y = make(net)
    rule = create_rule(rule_name)
    model = rule.prepare(model, x[:2])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        metrics = rule.step(model, x, y)
    assert math.isfinite(metrics["loss"].item())
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.dtype == p.dtype and torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("net", NETS)
def test_fa_with_b_equal_w_is_bp_under_autocast(net):
    """Under bf16 autocast, FA with B = W gives backprop's gradients (to bf16 precision) on each layer type."""
    model, x, y = make(net)
    reference = copy.deepcopy(model)
    model, rule = bioplausible.convert(model, "fa", example_input=x[:1])
    for layer in feedback_layers(model).values():
        layer.feedback.copy_(layer.weight.detach())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        rule.step(model, x, y)
        F.cross_entropy(reference(x).float(), y).backward()
    got, want = weight_grads(model), weight_grads(reference)
    for name, g in want.items():
        cos = F.cosine_similarity(got[name].flatten(), g.flatten(), dim=0)
        assert cos > 0.999, (name, cos.item())


@pytest.mark.parametrize(("rule_name", "net"), pairs())
def test_every_rule_steps_a_float64_model(rule_name, net):
    """A rule's own tensors (B, noise, inverses, states) follow the model's dtype."""
    model, x, y = make(net, dtype=torch.float64)
    rule = create_rule(rule_name)
    model = rule.prepare(model, x[:2])
    rule.step(model, x, y)
    assert all(t.dtype == torch.float64 for t in [*model.state_dict().values(), *rule.state_dict().values()]
               if torch.is_tensor(t) and t.is_floating_point())  # fmt: skip
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.dtype == torch.float64, name


# ------------------------------------------------------------------------- 3. the output layer is found, not guessed
class OutFirst(nn.Module):
    """Registers the output layer before the hidden one: module order is not forward order."""

    def __init__(self):
        super().__init__()
        self.out = nn.Linear(4, 3)
        self.hid = nn.Linear(6, 4)

    def forward(self, x):
        return self.out(torch.tanh(self.hid(x)))


def test_the_output_layer_is_the_one_whose_output_is_the_models():
    torch.manual_seed(0)
    x, y = torch.randn(5, 6), torch.tensor([0, 1, 2, 0, 1])
    model, rule = bioplausible.convert(OutFirst(), "dfa", example_input=x[:1])
    rule.step(model, x, y)  # B sized from the traced shapes: no shape error
    assert model.out.feedback.shape == (3, 4) and model.hid.feedback.shape == (3, 6)
    for name in FEEDBACK:
        model, rule = bioplausible.convert(OutFirst(), name, example_input=x[:1], bp_layers=("last",))
        assert type(model.out) is nn.Linear and "hid" in rule.layers, name


def test_an_output_computed_after_the_last_layer_asks_for_the_layers_name():
    model = nn.Sequential(nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 3), nn.Softmax(dim=1))
    with pytest.raises(ConfigError, match="name the layer"):
        bioplausible.convert(model, "fa", example_input=torch.randn(1, 6), bp_layers=("last",))
    with pytest.raises(ConfigError, match="example input"):
        bioplausible.convert(nn.Sequential(nn.Linear(6, 3)), "fa", bp_layers=("last",))


# ------------------------------------------------------------------------- 4. learned feedback must learn
def test_kp_with_an_optimizer_built_before_convert_says_what_to_do():
    model, x, y = make("linear")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)  # B does not exist yet
    model, rule = bioplausible.convert(model, "kp", example_input=x[:1])
    optimizer.zero_grad()
    rule.step(model, x, y)
    optimizer.step()
    with pytest.raises(ConfigError, match="B is in no optimizer.*after bioplausible.convert"):
        rule.step(model, x, y)


@pytest.mark.parametrize("plain_loop", [False, True])
def test_kp_feedback_learns_with_the_optimizer_built_after_convert(plain_loop):
    model, x, y = make("linear")
    model, rule = bioplausible.convert(model, "kp", example_input=x[:1])
    before = {n: layer.feedback.detach().clone() for n, layer in feedback_layers(model).items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward() if plain_loop else rule.step(model, x, y)
        optimizer.step()
    assert all(not torch.equal(layer.feedback, before[n]) for n, layer in feedback_layers(model).items())


# ------------------------------------------------------------------------- 5. a plain training loop is the same rule
@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("rule_name", FEEDBACK)
def test_a_plain_loss_backward_loop_trains_the_same_rule_as_rule_step(rule_name, net):
    """Three SGD steps with ``loss.backward()`` end with exactly the weights (and B) of three ``rule.step``s:
    sign(W) is fresh, brsf redraws, wm mirrors, kp learns B, dfa gets e — inside the layers."""
    states = []
    for plain in (False, True):
        model, x, y = make(net)
        model, rule = bioplausible.convert(model, rule_name, example_input=x[:1])
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        torch.manual_seed(7)
        for _ in range(3):
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward() if plain else rule.step(model, x, y)
            optimizer.step()
        states.append(model.state_dict())
    for key, value in states[0].items():
        torch.testing.assert_close(states[1][key], value, rtol=0, atol=0, msg=key)


# ------------------------------------------------------------------------- 9. fixed feedback is fixed
def test_dfa_state_dict_loads_into_a_fresh_twin_before_any_forward():
    model, x, y = make("conv")
    model, _ = bioplausible.convert(model, "dfa", example_input=x[:1])
    twin, _ = bioplausible.convert(make("conv", seed=3)[0], "dfa", example_input=x[:1])
    twin.load_state_dict(model.state_dict())  # no size mismatch: B exists from prepare on
    for name, layer in feedback_layers(model).items():
        assert torch.equal(twin.get_submodule(name).feedback, layer.feedback)


def test_dfa_refuses_an_input_size_its_feedback_was_not_drawn_for():
    conv = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Tanh(), nn.Conv2d(2, 2, 3, padding=1), nn.Tanh(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3))  # fmt: skip
    model, rule = bioplausible.convert(conv, "dfa", example_input=torch.randn(1, 1, 5, 5))
    before = {n: layer.feedback.clone() for n, layer in feedback_layers(model).items()}
    with torch.no_grad():
        model.eval()(torch.randn(2, 1, 6, 6))  # an eval forward at another size draws nothing
    assert all(torch.equal(layer.feedback, before[n]) for n, layer in feedback_layers(model).items())
    with pytest.raises(IncompatibleError, match="drawn for inputs of 50 numbers; this input has 72"):
        rule.step(model, torch.randn(2, 1, 6, 6), torch.tensor([0, 1]))

    class Sequence(nn.Module):  # (N, T, in) inputs: the first layer sees T·in numbers per example
        def __init__(self):
            super().__init__()
            self.embed, self.step, self.out = nn.Linear(4, 4), nn.Linear(4, 5), nn.Linear(5, 3)

        def forward(self, x):
            return self.out(torch.tanh(self.step(torch.tanh(self.embed(x)))).mean(1))

    model, rule = bioplausible.convert(Sequence(), "dfa", example_input=torch.randn(1, 3, 4))
    rule.step(model, torch.randn(2, 3, 4), torch.tensor([0, 1]))
    with pytest.raises(IncompatibleError, match="drawn for inputs of 12 numbers; this input has 16"):
        rule.step(model, torch.randn(2, 4, 4), torch.tensor([0, 1]))


# ------------------------------------------------------------------------- 12. any model, said plainly
def test_a_bare_layer_converts():
    layer, rule = bioplausible.convert(nn.Linear(8, 4), "fa")
    assert type(layer).__name__ == "FeedbackLinear" and list(rule.layers) == [""]
    rule.step(layer, torch.randn(3, 8), torch.tensor([0, 1, 2]))
    assert layer.weight.grad is not None


def test_modules_that_use_weights_functionally_keep_backprop_with_a_warning():
    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(4, 8)
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
            self.head = nn.Linear(8, 3)

        def forward(self, x):
            h = self.embed(x)
            return self.head(self.attn(h, h, h)[0].mean(1))

    with pytest.warns(KeptOnBackpropWarning, match="attn \\(MultiheadAttention: uses its weights functionally\\)"):
        model, rule = bioplausible.convert(Attention(), "fa", example_input=torch.randn(1, 5, 4))
    assert "attn" in rule.unchanged and set(rule.layers) == {"embed", "head"}
    assert type(model.attn.out_proj) is nn.modules.linear.NonDynamicallyQuantizableLinear  # not swapped
    with warnings.catch_warnings():
        warnings.simplefilter("error", KeptOnBackpropWarning)  # named in bp_layers: intended, nothing to warn about
        _, rule = bioplausible.convert(Attention(), "fa", example_input=torch.randn(1, 5, 4), bp_layers=("attn",))
    assert "attn" in rule.unchanged and set(rule.layers) == {"embed", "head"}


def test_a_custom_module_with_vector_parameters_is_named_but_norm_layers_are_not():
    """A module the rule cannot swap transports its own weights in the backward pass, whatever their shape (u vᵀ
    from two vectors here); normalisation layers and PReLU act unit by unit and keep their gradient by convention."""

    class LowRank(nn.Module):
        def __init__(self):
            super().__init__()
            self.u, self.v = nn.Parameter(torch.randn(6)), nn.Parameter(torch.randn(6))

        def forward(self, x):
            return x @ torch.outer(self.u, self.v)

    def make():
        norms = (nn.BatchNorm1d(6), nn.LayerNorm(6), nn.PReLU())
        return nn.Sequential(nn.Linear(4, 6), *norms, LowRank(), nn.Tanh(), nn.Linear(6, 3))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, rule = bioplausible.convert(make(), "fa", example_input=torch.randn(2, 4))
    kept = [str(w.message) for w in caught if issubclass(w.category, KeptOnBackpropWarning)]
    assert len(kept) == 1 and "4 u, v (LowRank: no feedback version)" in kept[0]
    assert not any(f"{i} " in kept[0].split(": ", 1)[1] for i in (1, 2, 3))  # the norm layers and PReLU: not named
    assert {"1", "2", "3", "4"} <= set(rule.unchanged)
    no_module = r"'5', which is not a module of the model holding weights; .* \(last, 0, 6\), .*warning \(4\), or"
    with pytest.raises(ConfigError, match=no_module):  # 5 is the Tanh
        bioplausible.convert(make(), "fa", example_input=torch.randn(2, 4), bp_layers=("5",))
    with warnings.catch_warnings():
        warnings.simplefilter("error", KeptOnBackpropWarning)
        _, rule = bioplausible.convert(make(), "fa", example_input=torch.randn(2, 4), bp_layers=("4",))
    assert "4" in rule.unchanged and list(rule.layers) == ["0", "6"]
    with pytest.raises(IncompatibleError, match="found no Linear or Conv layer to train"):  # not BP in FA's name
        bioplausible.convert(nn.Sequential(LowRank()), "fa", example_input=torch.randn(2, 6), bp_layers=("0",))


@pytest.mark.parametrize("rule_name", FEEDBACK)
def test_a_layer_registered_under_two_names_is_swapped_under_both(rule_name):
    """``self.b = self.a``: the second name kept the plain layer, whose calls then took the true gradient."""

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.out = nn.Linear(4, 4), nn.Linear(4, 3)
            self.b = self.a

        def forward(self, x):
            return self.out(torch.tanh(self.b(torch.tanh(self.a(x)))))

    model, rule = bioplausible.convert(Twice(), rule_name, example_input=torch.randn(2, 4))
    assert model.a is model.b and model.a in feedback_layers(model).values() and list(rule.layers) == ["a", "out"]


@pytest.mark.parametrize("rule_name", FEEDBACK)
def test_a_module_named_in_bp_layers_keeps_its_whole_subtree_and_keeping_everything_is_refused(rule_name):
    """Naming a custom module kept its own parameters on backprop while its child Linear went to the rule; naming
    every layer trained the whole model by backprop under the rule's name, without a word."""

    class Scaled(nn.Module):  # a custom module holding a swappable layer
        def __init__(self):
            super().__init__()
            self.scale, self.lin = nn.Parameter(torch.ones(8)), nn.Linear(8, 8)

        def forward(self, x):
            return self.lin(x) * self.scale

    def make():
        return nn.Sequential(nn.Linear(6, 8), nn.Sequential(Scaled(), nn.Tanh()), nn.Linear(8, 3))

    x = torch.randn(2, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("error", KeptOnBackpropWarning)
        for kept in ("1.0", "1"):  # the custom module, or the block holding it
            model, rule = bioplausible.convert(make(), rule_name, example_input=x, bp_layers=(kept,))
            assert list(rule.layers) == ["0", "2"] and type(model[1][0].lin) is nn.Linear, kept
    everything = r"would train no layer: bp_layers keeps every one \(0, 1.0.lin, 2\) on backprop"
    with pytest.raises(IncompatibleError, match=everything):
        bioplausible.convert(make(), rule_name, example_input=x, bp_layers=("0", "1", "last"))
    with pytest.raises(IncompatibleError, match=r"keeps every one \(the model itself\)"):
        bioplausible.convert(nn.Linear(6, 3), rule_name, example_input=x, bp_layers=("last",))
    assert (
        create_rule(rule_name, bp_layers=("stages",)).describe({"bp_layers": ["stages"]}) == f"{rule_name} (stages bp)"
    )


@pytest.mark.parametrize("arch", [a for a in ARCHS.list() if "energy" not in a])
def test_no_built_in_architecture_keeps_a_weight_on_backprop_unasked(arch):
    model = create_arch(arch, (3, 32, 32), 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error", KeptOnBackpropWarning)
        _, rule = bioplausible.convert(model, "fa", example_input=torch.randn(2, 3, 32, 32))
    assert rule.layers


REPARAMETRIZED = {
    "weight_norm": lambda m: nn.utils.parametrizations.weight_norm(m),
    "spectral_norm": lambda m: nn.utils.parametrizations.spectral_norm(m),
    "orthogonal": lambda m: nn.utils.parametrizations.orthogonal(m),
    "legacy weight_norm": lambda m: nn.utils.weight_norm(m),
    "legacy spectral_norm": lambda m: nn.utils.spectral_norm(m),
}


@pytest.mark.parametrize("kind", REPARAMETRIZED)
def test_a_reparametrized_layer_kept_on_backprop_is_listed_as_itself_and_not_warned_about(kind):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = nn.Sequential(REPARAMETRIZED[kind](nn.Linear(4, 6)), nn.Tanh(), nn.Linear(6, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error", KeptOnBackpropWarning)  # asked for: nothing to warn about
        _, rule = bioplausible.convert(model, "fa", example_input=torch.randn(1, 4), bp_layers=("0",))
    assert rule.unchanged == ["0"] and list(rule.layers) == ["2"]


def test_a_layer_whose_weights_are_used_functionally_stays_unswapped_and_is_listed_unchanged():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.fc, self.b = nn.Linear(4, 6), nn.Linear(6, 6), nn.Linear(6, 3)

        def forward(self, x):
            return self.b(torch.tanh(F.linear(torch.tanh(self.a(x)), self.fc.weight, self.fc.bias)))

    for rule_name in ("fa", "dfa", "usf", "frsf", "brsf", "kp", "wm"):  # every rule that swaps layers
        with pytest.warns(KeptOnBackpropWarning, match="fc \\(never ran on the example input\\)"):
            model, rule = bioplausible.convert(Functional(), rule_name, example_input=torch.randn(1, 4))
        assert "fc" not in rule.layers and "fc" in rule.unchanged and type(model.fc) is nn.Linear


@pytest.mark.parametrize("kind", REPARAMETRIZED)
@pytest.mark.parametrize("rule_name", ["fa", "dfa", "usf", "kp", "wm"])
def test_a_reparametrized_weight_is_refused_in_one_line_not_trained_as_a_copy(rule_name, kind):
    layers = [nn.Linear(4, 6), nn.Conv2d(1, 2, 3, padding=1)]
    for layer in layers:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # the legacy helpers are deprecated
            wrapped = REPARAMETRIZED[kind](layer)
        if isinstance(layer, nn.Linear):
            model, x = nn.Sequential(wrapped, nn.Tanh(), nn.Linear(6, 3)), torch.randn(1, 4)
        else:
            model, x = nn.Sequential(wrapped, nn.Tanh(), nn.Flatten(), nn.Linear(32, 3)), torch.randn(1, 1, 4, 4)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", KeptOnBackpropWarning)
            with pytest.raises(IncompatibleError, match="'0' has a reparametrized weight .*remove it first"):
                bioplausible.convert(model, rule_name, example_input=x)


@pytest.mark.parametrize("rule_name", ["fa", "dfa", "dtp"])
def test_an_example_input_without_a_batch_dimension_is_refused_in_one_line(rule_name):
    model = nn.Sequential(nn.Linear(20, 16), nn.Tanh(), nn.Linear(16, 5))
    with pytest.raises(ConfigError, match=r"example_input must be a batch.*\(20,\).*x\[:1\]"):
        bioplausible.convert(model, rule_name, example_input=torch.randn(20))


@pytest.mark.parametrize("rule_name", ["fa", "dfa", "kp", "dtp"])
def test_an_unbatched_image_is_refused_but_a_model_that_adds_the_channel_axis_is_not(rule_name):
    class AddsChannel(nn.Module):  # takes (N, H, W): the rank alone cannot tell a batch from one image
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(1, 2, 3, padding=1), nn.Linear(2 * 6 * 6, 3)

        def forward(self, x):
            return self.fc(torch.tanh(self.conv(x.unsqueeze(1))).flatten(1))

    images = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(2 * 6 * 6, 3))
    with pytest.raises(ConfigError, match=r"convolution '0' received an unbatched input of shape \(1, 6, 6\).*x\[:1\]"):
        bioplausible.convert(images, rule_name, example_input=torch.randn(1, 6, 6))
    signals = nn.Sequential(nn.Conv1d(1, 2, 3), nn.Tanh(), nn.Flatten(), nn.Linear(2 * 4, 3))
    with pytest.raises(ConfigError, match=r"convolution '0' received an unbatched input of shape \(1, 6\)"):
        bioplausible.convert(signals, rule_name, example_input=torch.randn(1, 6))
    if rule_name == "dtp":  # it takes an nn.Sequential of layers and activations only
        return
    model, rule = bioplausible.convert(AddsChannel(), rule_name, example_input=torch.randn(1, 6, 6))
    assert rule.step(model, torch.randn(4, 6, 6), torch.tensor([0, 1, 2, 0]))["loss"] > 0


def test_an_unused_layer_neither_crashes_kp_nor_passes_unnoticed():
    class Unused(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.spare = nn.Linear(4, 4), nn.Linear(4, 2), nn.Linear(4, 4)

        def forward(self, x):
            return self.b(torch.tanh(self.a(x)))

    with pytest.warns(KeptOnBackpropWarning, match="spare \\(never ran on the example input\\)"):
        model, rule = bioplausible.convert(Unused(), "kp", example_input=torch.randn(1, 4))
    assert set(rule.layers) == {"a", "b"} and "spare" in rule.unchanged  # listed as what it is: not the rule's
    assert type(model.spare) is nn.Linear
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):
        optimizer.zero_grad()
        rule.step(model, torch.randn(3, 4), torch.tensor([0, 1, 0]))
        optimizer.step()


# ------------------------------------------------------------------------- 10. measuring changes nothing
@pytest.mark.parametrize("rule_name", RULES.list())
def test_a_step_draws_random_numbers_only_if_the_rule_says_so(rule_name):
    """The ``stochastic`` declaration is what decides which rules the probe-isolation test covers: check it."""
    net = "energy" if rule_name == "ep" else "linear"
    model, x, y = make(net)
    rule = create_rule(rule_name)
    model = rule.prepare(model, x[:2])
    state = torch.get_rng_state()
    rule.step(model, x, y)
    drew = not torch.equal(state, torch.get_rng_state())
    assert drew == type(rule).stochastic or (drew is False and rule_name == "ep"), rule_name


def stochastic_pairs():
    return [(r, "energy" if r == "ep" else "linear") for r in RULES.list() if RULES.get(r).stochastic]


@pytest.mark.parametrize(("rule_name", "net"), stochastic_pairs())
def test_probes_leave_every_random_stream_as_they_found_it(rule_name, net, tiny_config, tmp_path):
    arch, shape, options = NETS.get(net, ENERGY)
    finals = []
    for probe_every in (0, 1):
        config = tiny_config(
            rule=rule_name, arch=arch, arch_options=options, dataset="digits", epochs=2, max_batches=2,
            probe_every=probe_every, out=str(tmp_path / f"p{probe_every}"),
        )  # fmt: skip
        finals.append(torch.load(bioplausible_fit(config) / "checkpoint.pt", weights_only=False)["model"])
    for key, value in finals[0].items():
        assert torch.equal(finals[1][key], value), key


def bioplausible_fit(config):
    from bioplausible.engine import fit

    return fit(config, quiet=True)


# ------------------------------------------------------------------------- 8. an exploding run is reported
def test_a_run_huge_from_its_first_step_ends_diverged(tiny_config):
    """Divergence is judged against the chance-level loss, not only the first loss: a loss of 6e10 at the first
    step is divergence, a NaN anywhere in the metrics too, and the run ends ``diverged`` with the reason."""
    from bioplausible.engine import Diverged, check_divergence
    from bioplausible.runs import read_json

    rule = create_rule("bp")
    reference = rule.reference_loss(10)
    assert reference == pytest.approx(math.log(10))
    with pytest.raises(Diverged, match="over 100× the chance-level loss"):
        check_divergence(6e10, {"loss": 6e10}, reference, tiny_config(), rule, 1)
    with pytest.raises(Diverged, match="settle_residual became nan"):
        check_divergence(1.0, {"loss": 1.0, "settle_residual": math.nan}, reference, tiny_config(), rule, 1)
    path = bioplausible_fit(tiny_config(lr=1e4, optimizer="sgd", loss="mse", epochs=2))
    summary = read_json(path / "summary.json")
    assert summary["status"] == "diverged" and "at step" in summary["reason"], summary
    # on the CPU every step is checked: the run ends at the step it blew up, not up to 24 steps later
    step = int(summary["reason"].split("at step ")[1].split()[0])
    assert step <= 3, summary["reason"]


# ------------------------------------------------------------------------- warnings are errors here
def test_converting_the_library_archs_warns_about_nothing():
    for net in NETS:
        model, x, _ = make(net)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            bioplausible.convert(model, "fa", example_input=x[:1])


# ------------------------------------------------------------------------- 7. resume takes effect or refuses
def test_resume_with_more_epochs_replans_the_schedule_and_refuses_other_changes(tiny_config, tmp_path):
    from bioplausible.runs import RunFolder

    config = tiny_config(lr_schedule="cosine", epochs=1, lr=1e-3, probe_every=0)
    bioplausible_fit(config)
    bioplausible_fit(tiny_config(lr_schedule="cosine", epochs=3, lr=1e-3, probe_every=0, resume=True))
    lrs = [r["train/lr"] for r in RunFolder(config.out).read_metrics()]
    assert lrs == pytest.approx([1e-3, 0.75e-3, 0.25e-3])  # epoch 2 learns (it got 0 before)
    with pytest.raises(ConfigError, match=r"lr: saved 0\.001, given 0\.002"):
        bioplausible_fit(tiny_config(lr_schedule="cosine", epochs=4, lr=2e-3, probe_every=0, resume=True))
    with pytest.raises(ConfigError, match=r"constant: epoch 2 of the 3 done trained at lr 0\.00075 \(cosine\)"):
        bioplausible_fit(tiny_config(epochs=4, lr=1e-3, probe_every=0, resume=True))


# ------------------------------------------------------------------------- 15. one writer per run folder
def test_a_second_writer_is_refused_and_a_failed_start_leaves_no_folder(tiny_config, tmp_path):
    import subprocess
    import sys

    held = tmp_path / "held"
    held.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from filelock import FileLock; lock = FileLock(sys.argv[1]); "
         "lock.acquire(); print('held', flush=True); time.sleep(600)", str(held / ".lock")],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match="in use by another process"):
            bioplausible_fit(tiny_config(out=str(held)))
    finally:
        holder.kill()
    assert not (held / "config.json").exists()
    missing = tmp_path / "never"
    with pytest.raises(bioplausible.errors.DataError):
        bioplausible_fit(tiny_config(dataset="mnist", data_dir=str(tmp_path), download=False, out=str(missing)))
    assert not missing.exists()  # nothing blocks a corrected retry, nothing to clean up
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        bioplausible_fit(tiny_config(out=str(a_file)))


# ------------------------------------------------------------------------- 17. threads that do not collapse
def test_small_models_train_on_one_thread_by_default():
    from bioplausible.build import auto_threads

    model, x, _ = make("linear")
    assert auto_threads(model, x) == 1


def test_early_stopping_is_announced_only_when_it_stops_early(tiny_config, capsys):
    from bioplausible.runs import read_json

    path = bioplausible_fit(tiny_config(epochs=2, patience=5, val_fraction=0.2))
    assert read_json(path / "summary.json")["epochs"] == 2
    assert "early stop" not in capsys.readouterr().err


# ------------------------------------------------------------------------- 13. memory-light DFA for convolutions
def test_kernel_shaped_dfa_feedback_sends_the_broadcast_error_through_the_transposed_convolution():
    """dfa_feedback=kernel: B (n_e, C, k, k); the second conv's input gradient is conv_transpose(e ⊗ 1, B), and B
    costs n_e·C·k² numbers instead of n_e·C·H·W."""

    def net():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(1, 4, 3, 2, 1), nn.Tanh(), nn.Conv2d(4, 6, 3, 1, 1), nn.Tanh(),
                             nn.Flatten(), nn.Linear(6 * 16, 10))  # fmt: skip

    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    model, rule = bioplausible.convert(net(), "dfa", example_input=x[:1], dfa_feedback="kernel")
    B = model[2].feedback
    assert B.shape == (10, 4, 3, 3) and model[5].feedback.shape == (10, 96)  # the Linear keeps the dense form
    seen = {}

    def grab(module, args):
        if args[0].requires_grad:  # the training forward, not the no-grad one below
            args[0].register_hook(lambda g: seen.setdefault("g", g))

    model[2].register_forward_pre_hook(grab)
    rule.step(model, x, y)
    with torch.no_grad():
        e = (model(x).softmax(-1) - F.one_hot(y, 10)) / len(y)
        spread = e[:, :, None, None].expand(-1, -1, 4, 4)
        expected = F.conv_transpose2d(spread, B, stride=1, padding=1)
    torch.testing.assert_close(seen["g"], expected, rtol=1e-4, atol=1e-6)
    dense, _ = bioplausible.convert(net(), "dfa", example_input=x[:1])
    assert dense[2].feedback.numel() == 10 * 4 * 4 * 4 and B.numel() == 10 * 4 * 9


@pytest.mark.parametrize("rule_name", [*TP, "ep"])
def test_rules_that_are_not_a_backward_pass_refuse_a_plain_loop(rule_name):
    """Target propagation and EP do not train by a backward pass through the model: ``loss.backward()`` on their
    model's output would silently be backprop (BPTT for EP), so it raises; the true-gradient probes still work."""
    from bioplausible.layers import exact_gradients

    model, x, y = make("energy" if rule_name == "ep" else "linear")
    model, rule = bioplausible.convert(model, rule_name, example_input=x[:2])
    with pytest.raises(IncompatibleError, match="trains with rule.step"):
        F.cross_entropy(model(x), y).backward()
    if rule_name != "ep":  # nor through its layers called one by one, bypassing the model's forward
        with pytest.raises(IncompatibleError, match="trains with rule.step"):
            F.cross_entropy(model.out(torch.tanh(model.hidden[1](model.hidden[0](x.flatten(1))))), y).backward()
    model.zero_grad()
    with exact_gradients(model):
        F.cross_entropy(model(x), y).backward()
    rule.step(model, x, y)  # and the rule itself trains


@pytest.mark.parametrize("first", ["fa", "dfa", "dtp", "aosdtp", "ep"])
def test_a_second_convert_is_refused_whichever_rule_converted_first(first):
    model, x, y = make("energy" if first == "ep" else "linear")
    model, _ = bioplausible.convert(model, first, example_input=x[:1])
    for rule_name in ("ep",) if first == "ep" else ("usf", "fa", "dtp", "sdtp"):
        with pytest.raises(IncompatibleError, match="already converted .* convert a fresh copy"):
            bioplausible.convert(model, rule_name, example_input=x[:1])
        with pytest.raises(IncompatibleError, match="already converted"):
            bioplausible.convert(copy.deepcopy(model), rule_name, example_input=x[:1])  # a copy carries the rule


def test_a_model_whose_output_is_not_a_tensor_is_refused():

    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(x), x

    with pytest.raises(IncompatibleError, match="returns one output tensor"):
        bioplausible.convert(Pair(), "fa", example_input=torch.randn(1, 4))
    with pytest.raises(IncompatibleError, match="returns one output tensor"):
        create_rule("bp").step(Pair(), torch.randn(2, 4), torch.tensor([0, 1]))


@pytest.mark.parametrize("rule_name", ["brsf", "wm"])
def test_a_layer_used_twice_in_one_forward_does_its_per_batch_work_once(rule_name):
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp, self.shared, self.out = nn.Linear(4, 6), nn.Linear(6, 6), nn.Linear(6, 3)

        def forward(self, x):
            h = torch.tanh(self.inp(x))
            return self.out(torch.tanh(self.shared(torch.tanh(self.shared(h)))))

    torch.manual_seed(0)
    model, rule = bioplausible.convert(Shared(), rule_name, example_input=torch.randn(1, 4))
    x, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    state = torch.get_rng_state()
    rule.step(model, x, y)  # no "modified by an inplace operation" error
    once = torch.get_rng_state()
    torch.set_rng_state(state)
    rule.clock.tick += 1  # a new batch: each layer's per-batch work once, in the order the forward runs them
    for name in ("inp", "shared", "out"):
        getattr(model, name).feedback_mode.before_forward(getattr(model, name))
    assert torch.equal(once, torch.get_rng_state()), "the shared layer did its per-batch work once, not twice"


def test_a_plugin_cannot_take_a_built_in_name():
    from bioplausible.registry import RULES as registry

    with pytest.raises(ValueError, match="rule 'fa' is already registered .* choose another name"):

        @registry.register("fa")
        class Impostor(bioplausible.rules.Rule):
            """Backprop in disguise."""


def test_options_of_the_wrong_type_or_unknown_losses_are_one_config_error():
    model = nn.Sequential(nn.Linear(4, 3))
    x = torch.randn(1, 4)
    for options, message in [
        ({"feedback_scale": "2"}, "feedback_scale must be a number; got '2'"),
        ({"bp_layers": "last"}, "bp_layers takes a list"),
        ({"loss": "mae"}, "loss must be one of ce, mse"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            bioplausible.convert(copy.deepcopy(model), "fa", example_input=x, **options)


def test_early_stopping_asks_for_the_validation_split_it_stops_on(tiny_config):
    from bioplausible.build import resolve_config

    with pytest.raises(ConfigError, match="patience needs a validation split"):
        resolve_config(tiny_config(patience=2))
    assert resolve_config(tiny_config(patience=2, val_fraction=0.2)).val_fraction == 0.2


def test_dfa_without_an_example_input_says_what_it_assumed():
    """Without an example input DFA cannot trace which layer is the output: it says which one it took."""
    model = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))
    with pytest.warns(UserWarning, match="takes the last registered layer \\('2', 2 outputs\\)"):
        bioplausible.convert(model, "dfa")
