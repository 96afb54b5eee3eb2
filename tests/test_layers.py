"""Oracles for convolutional and locally connected feedback layers, convert(), and the learned-feedback rules."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import bioplausible
from bioplausible.errors import ConfigError, IncompatibleError
from bioplausible.layers import (
    FeedbackConv2d,
    FeedbackLocallyConnected2d,
    FeedbackMode,
    LocallyConnected2d,
    feedback_layers,
)
from bioplausible.probes import angle_deg, feedback_angles

FEEDBACK_RULES = ["fa", "dfa", "usf", "frsf", "brsf", "kp", "wm"]


def conv_net(local: bool = False, seed: int = 0) -> nn.Module:
    """(1, 8, 8) -> conv/LC 3x3 stride 2 -> tanh -> conv/LC -> tanh -> linear 10."""
    torch.manual_seed(seed)
    if local:
        first, second = LocallyConnected2d(1, 4, (8, 8), 3, 2, 1), LocallyConnected2d(4, 6, (4, 4), 3, 1, 1)
    else:
        first, second = nn.Conv2d(1, 4, 3, 2, 1), nn.Conv2d(4, 6, 3, 1, 1)
    return nn.Sequential(first, nn.Tanh(), second, nn.Tanh(), nn.Flatten(), nn.Linear(6 * 16, 10))


def batch(n=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


def grads_of(model, x, y, rule=None):
    model.zero_grad()
    if rule is None:
        F.cross_entropy(model(x), y).backward()
    else:
        rule.step(model, x, y)
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None and "feedback" not in n}


@pytest.mark.parametrize("local", [False, True], ids=["conv", "lc"])
def test_fa_with_feedback_equal_to_weights_is_backprop(local):
    x, y = batch()
    model = conv_net(local)
    reference = grads_of(copy.deepcopy(model), x, y)
    model, rule = bioplausible.convert(model, "fa")
    expected_type = FeedbackLocallyConnected2d if local else FeedbackConv2d
    assert isinstance(model[0], expected_type) and isinstance(model[2], expected_type)
    for layer in feedback_layers(model).values():
        layer.feedback.copy_(layer.weight.detach())
    for name, g in grads_of(model, x, y, rule).items():
        torch.testing.assert_close(g, reference[name], rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("local", [False, True], ids=["conv", "lc"])
@pytest.mark.parametrize("rule_name", FEEDBACK_RULES)
def test_feedback_rules_differ_from_backprop_on_conv_and_lc(rule_name, local):
    x, y = batch()
    model = conv_net(local)
    reference = grads_of(copy.deepcopy(model), x, y)
    model, rule = bioplausible.convert(model, rule_name, example_input=x[:1])
    got = grads_of(model, x, y, rule)
    assert angle_deg(got["0.weight"], reference["0.weight"]) > 5.0
    expected = reference["5.weight"]  # the output layer sees the true error (kp adds its weight decay)
    if rule_name == "kp":
        expected = expected + rule.config.kp_decay * model[5].weight.detach()
    torch.testing.assert_close(got["5.weight"], expected)


def test_locally_connected_with_shared_weights_equals_conv():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, 3, stride=2, padding=1)
    local = LocallyConnected2d(3, 5, (9, 7), 3, stride=2, padding=1)
    with torch.no_grad():
        local.weight.copy_(conv.weight.reshape(1, 5, -1).expand_as(local.weight))
        local.bias.copy_(conv.bias.view(5, 1, 1).expand_as(local.bias))
    x = torch.randn(4, 3, 9, 7)
    assert local(x).shape == conv(x).shape == (4, 5, 5, 4)
    torch.testing.assert_close(local(x), conv(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("in_size", "kernel", "stride", "padding"),
    [((9, 7), 3, 2, 1), ((8, 8), 5, 2, 2), ((6, 5), (3, 2), (1, 2), (1, 0)), ((4, 4), 1, 1, 0)],
)
def test_locally_connected_patches_are_unfolds_and_fold_is_their_adjoint(in_size, kernel, stride, padding):
    """The patches, gathered from strided views for speed, are exactly F.unfold's (L, N, C·k·k) and contiguous;
    ``fold`` is their adjoint (<patches(h), P> = <h, fold(P)>), which the feedback layers' backward relies on."""
    torch.manual_seed(0)
    layer = LocallyConnected2d(3, 4, in_size, kernel, stride=stride, padding=padding)
    h = torch.randn(2, 3, *in_size, dtype=torch.float64)
    patches = layer.patches(h)
    unfolded = F.unfold(h, layer.kernel_size, padding=layer.padding, stride=layer.stride).permute(2, 0, 1)
    assert patches.is_contiguous() and torch.equal(patches, unfolded)
    other = torch.randn_like(patches)
    torch.testing.assert_close((patches * other).sum(), (h * layer.fold(other)).sum())


def test_locally_connected_backward_matches_autograd():
    """The feedback LC layer with B = W reproduces autograd through unfold + bmm, input gradient included."""
    torch.manual_seed(0)
    plain = LocallyConnected2d(2, 3, (6, 6), 3, stride=1, padding=0)
    layer = FeedbackLocallyConnected2d.from_module(copy.deepcopy(plain), FeedbackMode())
    layer.register_buffer("feedback", layer.weight.detach().clone())  # B = W: backprop
    x = torch.randn(5, 2, 6, 6, requires_grad=True)
    (gx_ref,) = torch.autograd.grad(plain(x).pow(2).sum(), x)
    (gx,) = torch.autograd.grad(layer(x).pow(2).sum(), x)
    torch.testing.assert_close(gx, gx_ref)


def test_dfa_conv_input_gradient_is_projected_output_error():
    """The gradient reaching h_1 (the second conv's input) is e B, reshaped to h_1's (C, H, W)."""
    x, y = batch()
    model, rule = bioplausible.convert(conv_net(), "dfa", example_input=x[:1])
    seen = {}

    def grab(module, inputs):
        if inputs[0].requires_grad:  # the training forward, not the no-grad one below
            seen["h"] = inputs[0]
            inputs[0].register_hook(lambda g: seen.setdefault("g", g))

    model[2].register_forward_pre_hook(grab)
    rule.step(model, x, y)
    with torch.no_grad():
        e = (model(x).softmax(-1) - F.one_hot(y, 10)) / len(y)
    assert model[2].feedback.shape == (10, 4 * 4 * 4)
    torch.testing.assert_close(seen["g"], (e @ model[2].feedback).view_as(seen["h"]), rtol=1e-4, atol=1e-6)


def resnet_block_model():
    """A small torchvision-style residual net written here, with batch norm and a projection shortcut."""

    class Block(nn.Module):
        def __init__(self, c_in, c_out, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(c_out)
            self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(c_out)
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

        def forward(self, x):
            out = F.relu(self.bn1(self.conv1(x)))
            return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(8)
            self.layer1 = Block(8, 16, 2)
            self.fc = nn.Linear(16, 10)

        def forward(self, x):
            x = self.layer1(F.relu(self.bn1(self.conv1(x))))
            return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))

    torch.manual_seed(0)
    return ResNet()


def test_convert_resnet_usf_changes_conv_and_linear_gradients_but_not_batch_norm():
    x, y = torch.randn(6, 3, 8, 8), torch.randint(0, 10, (6,))
    model = resnet_block_model()
    reference = grads_of(copy.deepcopy(model), x, y)
    usf, rule = bioplausible.convert(copy.deepcopy(model), "usf")
    assert set(rule.layers) == {"conv1", "layer1.conv1", "layer1.conv2", "layer1.shortcut.0", "fc"}
    assert set(rule.unchanged) == {"bn1", "layer1.bn1", "layer1.bn2", "layer1.shortcut.1"}
    assert all(type(m) is nn.BatchNorm2d for n, m in usf.named_modules() if n in rule.unchanged)
    got = grads_of(usf, x, y, rule)
    for name in ["conv1.weight", "layer1.conv1.weight", "layer1.conv2.weight", "layer1.shortcut.0.weight"]:
        assert angle_deg(got[name], reference[name]) > 1.0, name
    torch.testing.assert_close(got["fc.weight"], reference["fc.weight"])  # the output layer sees the true error

    # Batch norm backpropagates truly: with the output layer on backprop, the batch norms right below it (and the
    # convolutions feeding them) get exactly backprop's gradient; everything below a sign-feedback layer does not.
    usf, rule = bioplausible.convert(copy.deepcopy(model), "usf", example_input=x[:1], bp_layers=("last",))
    got = grads_of(usf, x, y, rule)
    for name in ["layer1.bn2.weight", "layer1.bn2.bias", "layer1.shortcut.1.weight", "layer1.conv2.weight"]:
        torch.testing.assert_close(got[name], reference[name], rtol=1e-4, atol=1e-6, msg=name)
    for name in ["layer1.bn1.weight", "layer1.conv1.weight"]:
        assert angle_deg(got[name], reference[name]) > 1.0, name


def torchvision_style_resnet18(width: int = 8, classes: int = 10) -> nn.Module:
    """ResNet-18 laid out as torchvision lays it out (conv1/bn1/relu/maxpool, layer1..4 of 2 BasicBlocks with a
    ``downsample`` Sequential where the shape changes, avgpool, fc), written here independently of our archs."""

    class BasicBlock(nn.Module):
        def __init__(self, c_in, c_out, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(c_out)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(c_out)
            self.downsample = None
            if stride != 1 or c_in != c_out:
                self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            return self.relu(self.bn2(self.conv2(out)) + identity)

    class ResNet18(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            widths = [width, 2 * width, 4 * width, 8 * width]
            c_in = width
            for i, c in enumerate(widths):
                stride = 1 if i == 0 else 2
                setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock(c_in, c, stride), BasicBlock(c, c, 1)))
                c_in = c
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(8 * width, classes)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(self.avgpool(x).flatten(1))

    torch.manual_seed(0)
    return ResNet18()


@pytest.mark.parametrize("rule_name", ["usf", "fa", "dfa", "kp"])
def test_convert_torchvision_style_resnet18(rule_name):
    model = torchvision_style_resnet18()
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    model, rule = bioplausible.convert(model, rule_name, example_input=x[:1])
    assert len(rule.layers) == 21  # 1 stem + 16 block + 3 downsample convolutions, and fc
    assert len(rule.unchanged) == 20 and all("bn" in n or "downsample.1" in n for n in rule.unchanged)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        losses.append(rule.step(model, x, y)["loss"].item())
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
        optimizer.step()
    assert losses[-1] < losses[0]


def test_convert_errors_are_clear():
    with pytest.raises(IncompatibleError, match="no Linear or Conv layer"):
        bioplausible.convert(nn.Sequential(nn.ReLU(), nn.MaxPool2d(2)), "fa")
    with pytest.raises(ConfigError, match="its options are"):
        bioplausible.convert(conv_net(), "fa", mirror_lr=0.1)
    with pytest.raises(ConfigError, match="kp_decay must be > 0"):
        bioplausible.convert(conv_net(), "kp", kp_decay=0.0)


def train_small_task(rule_name: str, steps: int, **options) -> nn.Module:
    """A 2-layer net learning a fixed random linear map from 20 to 5 dimensions, by SGD."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 30), nn.Tanh(), nn.Linear(30, 5))
    model, rule = bioplausible.convert(model, rule_name, loss="mse", **options)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    teacher = torch.randn(20, 5)
    for _ in range(steps):
        x = torch.randn(32, 20)
        y = (x @ teacher).argmax(-1)
        optimizer.zero_grad()
        rule.step(model, x, y)
        optimizer.step()
    return model


@pytest.mark.parametrize("rule_name, options", [("kp", {"kp_decay": 0.5}), ("wm", {})])
def test_learned_feedback_aligns_with_weights(rule_name, options):
    start = feedback_angles(train_small_task(rule_name, 0, **options))
    end = feedback_angles(train_small_task(rule_name, 300, **options))
    assert all(a > 80 for a in start.values()), start
    assert all(a < 10 for a in end.values()), end


def test_fa_feedback_does_not_learn():
    model = train_small_task("fa", 300)
    assert all(a > 45 for a in feedback_angles(model).values())
