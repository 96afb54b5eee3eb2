"""Architectures: shapes, parameter counts, declarations, defaults written once, initialisations, bad options."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

from bioplausible.archs import ARCHS, create_arch
from bioplausible.archs.init import initialize
from bioplausible.config import build_options
from bioplausible.errors import ConfigError
from bioplausible.layers.local import LocallyConnected2d

MNIST, CIFAR = (1, 28, 28), (3, 32, 32)

# Small settings of every architecture this file covers, so that each test runs in well under a second.
SMALL = {
    "convnet": {"depth": 3, "channels": 4},
    "dense-convnet": {"depth": 3, "channels": 4},
    "lc-net": {"width_multiplier": 0.125, "hidden": 16},
    "shared-conv-net": {"width_multiplier": 0.125, "hidden": 16},
    "resnet18": {"width_multiplier": 0.125},
    "resnet20": {"width_multiplier": 0.25},
    "alexnet": {"width_multiplier": 1 / 16},
}
NEW_ARCHS = sorted(SMALL)

CASES = [(name, shape, {}) for name in NEW_ARCHS for shape in (MNIST, CIFAR)] + [
    ("resnet18", (3, 64, 64), {"stem": "imagenet"}),
    ("alexnet", (3, 64, 64), {"stem": "imagenet"}),
]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tensors are tiny: one thread is fastest, and avoids the multi-second stalls of a batched matmul's
    thread barriers (LocallyConnected2d) on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build(name: str, input_shape, num_classes: int = 10) -> nn.Module:
    """``create_arch`` with the SMALL options."""
    return create_arch(name, input_shape, num_classes, **SMALL[name])


@pytest.mark.parametrize("name", ARCHS.list())
def test_defaults_are_written_once_in_the_config(name):
    """An architecture's constructor takes its Config (or keyword options checked against it): no default is
    written a second time in a signature, so config.json's resolved options are exactly what was built."""
    cls = ARCHS.get(name)
    params = inspect.signature(cls).parameters
    assert list(params) == ["input_shape", "num_classes", "config", "options"], name
    shape = MNIST if name != "alexnet" else (3, 32, 32)
    torch.manual_seed(0)
    a = cls(shape, 10, build_options(cls.Config, SMALL.get(name, {}), name))
    torch.manual_seed(0)
    b = create_arch(name, shape, 10, **SMALL.get(name, {}))
    assert [p.shape for p in a.parameters()] == [p.shape for p in b.parameters()]


@pytest.mark.parametrize("name", ARCHS.list())
def test_declared_protocols_match_the_model(name):
    """What an architecture declares (``provides``) is what the protocol checks find on a built model."""
    from test_rules import SMALL_ARCHS

    from bioplausible.protocols import PROTOCOLS

    shape, options = SMALL_ARCHS[name]
    model = create_arch(name, shape, 10, **options)
    for protocol in PROTOCOLS.values():
        if protocol.name in ("layered", "energy"):
            assert protocol(model) == (protocol.name in ARCHS.get(name).provides), (name, protocol.name)


@pytest.mark.parametrize(
    ("name", "shape", "extra"),
    CASES,
    ids=["-".join([name, "x".join(map(str, shape)), *extra.values()]) for name, shape, extra in CASES],
)
def test_forward_and_backward_fill_every_grad(name, shape, extra):
    torch.manual_seed(0)
    model = create_arch(name, shape, 7, **{**SMALL[name], **extra})
    x = torch.randn(3, *shape)
    out = model(x)  # (N, C, H, W) -> (N, classes)
    assert out.shape == (3, 7)
    out.square().sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    # The output layer is a Linear and the last module with parameters.
    with_params = [m for m in model.modules() if any(True for _ in m.parameters(recurse=False))]
    assert isinstance(with_params[-1], nn.Linear) and with_params[-1].out_features == 7


def test_dense_convnet_inputs_concatenate_all_earlier_maps():
    model = create_arch("dense-convnet", CIFAR, 10, depth=5, channels=4, pool_every=2)
    # conv l reads the input's 3 channels plus 4 from each earlier conv; pooling passes the whole concatenation on.
    assert [c.in_channels for c in model.convs] == [3, 7, 11, 15, 19]
    assert all(c.out_channels == 4 for c in model.convs)
    assert model.out.in_features == 23
    assert model(torch.randn(2, *CIFAR)).shape == (2, 10)
    plain = create_arch("convnet", CIFAR, 10, depth=5, channels=4, pool_every=2)
    assert [c.in_channels for c in plain.convs] == [3, 4, 4, 4, 4] and plain.out.in_features == 4


def test_convnet_defaults_halve_resolution_twice():
    model = create_arch("convnet", MNIST, 10)
    sizes = []
    model.convs[-1].register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[1:])))
    model(torch.randn(2, *MNIST))
    assert len(model.convs) == 4 and sizes == [(32, 14, 14)]  # 28 → conv, conv, pool 14 → conv, conv, pool 7


def output_shapes(model: nn.Module, shape) -> list[tuple[int, ...]]:
    """Output shapes (without the batch) of the spatial layers and Linears, in forward order."""
    shapes = []
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, LocallyConnected2d)):
            m.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[1:])))
    model(torch.randn(2, *shape))
    return shapes


@pytest.mark.parametrize(
    ("name", "layer_type", "count"),
    [("lc-net", LocallyConnected2d, 4_191_562), ("shared-conv-net", nn.Conv2d, 3_241_354)],
)
def test_bartunov_mnist_shapes(name, layer_type, count):
    model = create_arch(name, MNIST, 10)
    assert model.variant == "mnist"
    spatial = [m for m in model.modules() if isinstance(m, (nn.Conv2d, LocallyConnected2d))]
    assert all(type(m) is layer_type for m in spatial) and len(spatial) == 2
    assert [(m.kernel_size, m.stride, m.padding) for m in spatial] == [((3, 3), (2, 2), (1, 1))] * 2
    assert output_shapes(model, MNIST) == [(32, 14, 14), (64, 7, 7), (1024,), (10,)]
    assert n_params(model) == count


@pytest.mark.parametrize("name", ["lc-net", "shared-conv-net"])
def test_bartunov_cifar_shapes(name):
    model = create_arch(name, CIFAR, 10, width_multiplier=0.25, hidden=32)
    assert model.variant == "cifar"
    spatial = [m for m in model.modules() if isinstance(m, (nn.Conv2d, LocallyConnected2d))]
    assert [(m.kernel_size, m.stride, m.padding) for m in spatial] == [
        ((5, 5), (2, 2), (2, 2)),
        ((5, 5), (2, 2), (2, 2)),
        ((3, 3), (1, 1), (1, 1)),
    ]
    assert output_shapes(model, CIFAR) == [(16, 16, 16), (32, 8, 8), (64, 8, 8), (32,), (10,)]


def test_resnet18_matches_torchvision_parameter_count():
    model = create_arch("resnet18", (3, 224, 224), 1000)
    assert model.stem_kind == "imagenet"
    assert n_params(model) == 11_689_512  # torchvision.models.resnet18()
    assert n_params(create_arch("resnet18", (3, 64, 64), 1000, stem="imagenet")) == 11_689_512
    assert create_arch("resnet18", CIFAR, 10, width_multiplier=0.125).stem_kind == "cifar"


def test_resnet20_parameter_count():
    # Option-B shortcuts (1×1 conv + BN where the shape changes): 269,722 of the paper's option A + 2,752.
    assert n_params(create_arch("resnet20", CIFAR, 10)) == 272_474


def test_alexnet_matches_torchvision_parameter_count():
    model = create_arch("alexnet", (3, 224, 224), 1000)
    assert model.stem_kind == "imagenet"
    assert n_params(model) == 61_100_840  # torchvision.models.alexnet()


@pytest.mark.parametrize(
    ("name", "shape", "options", "message"),
    [
        ("convnet", MNIST, {"depth": 0}, "depth"),
        ("dense-convnet", MNIST, {"channels": 0}, "channels"),
        ("convnet", MNIST, {"pool_every": -1}, "pool_every"),
        ("convnet", MNIST, {"activation": "swish"}, "activation"),
        ("convnet", MNIST, {"depth": 6, "pool_every": 1}, "too small"),
        ("dense-convnet", (784,), {}, "image input"),
        ("lc-net", MNIST, {"variant": "imagenet"}, "variant"),
        ("shared-conv-net", (2, 28, 28), {}, "variant=auto"),
        ("lc-net", MNIST, {"width_multiplier": 0.0}, "width_multiplier"),
        ("lc-net", MNIST, {"hidden": 0}, "hidden"),
        ("resnet18", CIFAR, {"stem": "tiny"}, "stem"),
        ("resnet20", CIFAR, {"width_multiplier": -1.0}, "width_multiplier"),
        ("resnet20", CIFAR, {"stem": "cifar"}, "no option stem"),
        ("alexnet", CIFAR, {"dropout": 1.0}, "dropout"),
        ("alexnet", CIFAR, {"stem": "imagenet"}, "at least 63×63"),
        ("alexnet", (3, 12, 12), {}, "at least 15×15"),
    ],
)
def test_bad_options_raise_config_error(name, shape, options, message):
    with pytest.raises(ConfigError, match=message):
        create_arch(name, shape, 10, **options)


# ------------------------------------------------------------------------------------------------- --init


def test_lecun_init_draws_unit_fan_in_variance_and_zero_biases():
    torch.manual_seed(0)
    model = initialize(create_arch("mlp", (1, 28, 28), 10, depth=2, width=512), "lecun")
    first = model.hidden[0]
    assert first.weight.std().item() == pytest.approx(1 / 784**0.5, rel=0.03)
    assert first.weight.abs().max().item() <= 2 / 784**0.5 / 0.8796 + 1e-6  # truncated at two (pre-) std
    assert all(m.bias.abs().max().item() == 0 for m in [*model.hidden, model.out])


def test_orthogonal_and_xavier_inits():
    torch.manual_seed(0)
    model = initialize(create_arch("mlp", (64,), 10, depth=1, width=32), "orthogonal")
    w = model.hidden[0].weight  # (32, 64): orthonormal rows
    assert torch.allclose(w @ w.t(), torch.eye(32), atol=1e-5)
    model = initialize(create_arch("mlp", (64,), 10, depth=1, width=32), "xavier")
    assert model.hidden[0].weight.abs().max().item() <= (6 / (64 + 32)) ** 0.5


@pytest.mark.parametrize(
    ("layer", "fan_in", "fan_out"),
    [
        (nn.Linear(64, 32), 64, 32),
        (nn.Conv2d(16, 16, 3), 144, 144),
        (nn.Conv2d(3, 64, (5, 3), stride=2), 45, 960),
        (LocallyConnected2d(3, 8, (12, 12), 5), 75, 200),
    ],
    ids=["linear", "conv-3x3", "conv-5x3-stride", "locally-connected"],
)
def test_xavier_counts_fans_as_pytorch_and_keras_do(layer, fan_in, fan_out):
    """Xavier's bound √(6 / (fan_in + fan_out)) with fan_out = out_channels·k·k for a convolution (PyTorch's
    xavier_uniform_, Keras's glorot_uniform; BioTorch's and Bartunov et al.'s recipes): until 0.2.1 a convolution's
    fan_out was out_channels, a bound 1.34× too large on a 3×3 16→16 convolution."""
    if isinstance(layer, nn.Conv2d):
        assert nn.init._calculate_fan_in_and_fan_out(layer.weight) == (fan_in, fan_out)  # PyTorch's own count
    torch.manual_seed(0)
    initialize(nn.Sequential(layer), "xavier")
    bound, w = (6 / (fan_in + fan_out)) ** 0.5, layer.weight
    assert 0.95 * bound < w.abs().max().item() <= bound  # filled up to the bound, not past it
    assert w.std().item() == pytest.approx(bound / 3**0.5, rel=0.1)


def test_init_reaches_locally_connected_layers_per_position():
    torch.manual_seed(0)
    layer = LocallyConnected2d(3, 64, (12, 12), 5)
    initialize(nn.Sequential(layer), "lecun")
    per_position = layer.weight.std(dim=(1, 2))  # fan-in 3·5·5 at every output position
    assert torch.allclose(per_position, torch.full_like(per_position, 1 / 75**0.5), rtol=0.15)


def test_lecun_init_keeps_a_deep_tanh_signal_that_the_default_shrinks():
    """Why --init exists: PyTorch's default shrinks each tanh layer's spread by about √3 (see archs/init.py)."""
    x = torch.randn(2000, 784)

    def top_std(scheme: str) -> float:
        torch.manual_seed(0)
        model = initialize(create_arch("mlp", (784,), 10, depth=5, width=256), scheme)
        h = x
        for layer in model.hidden:
            h = torch.tanh(layer(h))
        return h.std().item()

    assert top_std("default") < 0.1 < 0.2 < top_std("lecun")


def test_init_is_seeded_and_refuses_what_it_cannot_draw():
    def draw() -> torch.Tensor:
        torch.manual_seed(3)
        return initialize(create_arch("mlp", (16,), 4, depth=1, width=8), "lecun").hidden[0].weight

    assert torch.equal(draw(), draw())
    with pytest.raises(ConfigError, match="choose from"):
        initialize(nn.Linear(2, 2), "he")
    with pytest.raises(ConfigError, match="energy networks set their own"):
        initialize(create_arch("energy-net", (16,), 4, hidden_sizes=(8,)), "lecun")
