"""GPU checks: run on a GPU machine with `pytest tests/test_cuda.py` (scripts/gpu_checks.sh does).

The checks that compare the GPU with the CPU also run with the CPU in the GPU's place, so that CI, which has no GPU,
runs their set-up and catches a change of the API they use (the first GPU call after a month without one found 12
such failures in this file, none of them in the library)."""

import pytest
import torch

from bioplausible.archs import create_arch
from bioplausible.config import TrainConfig
from bioplausible.engine import fit
from bioplausible.errors import IncompatibleError
from bioplausible.rules import RULES, create_rule
from bioplausible.runs import load_run

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
DEVICES = ["cpu", pytest.param("cuda", marks=needs_cuda)]  # the CPU in the GPU's place: the checks' own set-up


@pytest.fixture(autouse=True)
def _full_precision_convolutions():
    """cuDNN convolutions default to TF32 on recent GPUs (~1e-3 relative error); compare in full float32."""
    saved = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = saved


ARCHS = {
    "dense-mlp": ((20,), {"depth": 2, "width": 16}),
    "lc-net": ((1, 8, 8), {"hidden": 16, "width_multiplier": 0.125}),
    "resnet20": ((3, 8, 8), {"width_multiplier": 0.25}),
}


def build(rule_name, arch, device):
    shape, options = ARCHS[arch]
    torch.manual_seed(0)
    model = create_arch(arch, shape, 4, **options)
    rule = create_rule(rule_name)
    try:
        rule.prepare(model, torch.zeros(1, *shape))  # DFA and the TP family size B and the inverses from it
    except IncompatibleError as err:  # e.g. target propagation on a residual net; tests/test_rules.py checks these
        pytest.skip(str(err))
    with torch.no_grad():
        model.eval()(torch.zeros(2, *shape))  # any lazily drawn state on the CPU, identically for both copies
    return model.train().to(device), rule  # .to() moves W, B and every rule buffer in place


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("rule_name", RULES.list())
def test_rule_gradients_on_cuda_match_cpu(rule_name, arch, device):
    """The same rule, weights and batch give the same gradients on the GPU as on the CPU (brsf and wm draw random
    numbers from the device's own generator, so only their finiteness is compared)."""
    shape, _ = ARCHS[arch]
    x, y = torch.randn(32, *shape), torch.randint(0, 4, (32,))
    (cpu, rule_cpu), (gpu, rule_gpu) = build(rule_name, arch, "cpu"), build(rule_name, arch, device)
    rule_cpu.step(cpu, x, y)
    rule_gpu.step(gpu, x.to(device), y.to(device))
    for (name, p), q in zip(cpu.named_parameters(), gpu.parameters()):
        assert q.grad.device.type == device and torch.isfinite(q.grad).all()
        if rule_name not in ("brsf", "wm"):
            torch.testing.assert_close(q.grad.cpu(), p.grad, rtol=1e-3, atol=1e-4, msg=name)


@needs_cuda
def test_fit_on_cuda(tmp_path):
    config = TrainConfig(
        rule="fa",
        arch="mlp",
        dataset="synthetic",
        epochs=5,
        lr=1e-2,
        device="cuda",
        progress=False,
        out=str(tmp_path / "run"),
        arch_options={"depth": 2, "width": 32},
    )
    run = load_run(fit(config))
    assert run["config"]["device_used"].startswith("cuda")
    assert run["summary"]["status"] == "ok" and run["summary"]["test_accuracy"] > 0.5


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("topology, p", [("layered", 0.0), ("skip", 0.1), ("skip", 0.004), ("dense", 0.0)])
def test_free_phase_sweeps_replay_as_a_cuda_graph_and_match_the_eager_sweeps(topology, p, device):
    """With check_every > 1 the free phase's block sweeps are captured once as a CUDA graph and replayed: the same
    states as the eager sweeps run for as many sweeps, from call to call while the weights change (the graph reads
    kept buffers, so stale weights would show here), and for a second batch size. At p = 0.004 the skip pairs
    are sparse links (gathered and scattered inside the graph), at p = 0.1 masked matrices. On the CPU the kept
    buffers are used without a graph."""
    torch.manual_seed(0)
    options = {"hidden_sizes": (100,) * 5, "topology": topology, "p": p, "a": 0.168, "tolerance": 1e-4}
    graphed = create_arch("energy-net", (784,), 10, check_every=8, **options).to(device)
    eager = create_arch("energy-net", (784,), 10, **options).to(device)
    eager.load_state_dict(graphed.state_dict())
    x = torch.rand(20, 784, device=device)
    with torch.no_grad():
        for call in range(4):
            xb = x if call != 2 else x[:7]
            a = graphed.settle(xb)
            b = eager.settle(xb, steps=a.steps, tolerance=0)
            assert a.steps % 8 == 0 and not a.unsettled
            torch.testing.assert_close(a.state, b.state, rtol=0, atol=1e-5)
            for w in graphed.parameters():
                w.add_(0.01 * torch.randn_like(w) * (w != 0))
            eager.load_state_dict(graphed.state_dict())
    assert graphed._kept and all((kept.graph is not None) == (device == "cuda") for kept in graphed._kept.values())
    assert any(c.sparse and c.density <= 0.003 for c in graphed.connections.values()) == (p == 0.004)


@needs_cuda
def test_ep_trains_on_cuda_with_graphed_free_phases(tmp_path):
    config = TrainConfig(
        rule="ep",
        arch="energy-net",
        dataset="synthetic",
        epochs=2,
        lr=0.05,
        device="cuda",
        progress=False,
        out=str(tmp_path / "run"),
        arch_options={"hidden_sizes": (32, 32), "topology": "skip", "p": 0.2, "check_every": 8},
    )
    run = load_run(fit(config))
    assert run["summary"]["status"] == "ok" and run["summary"]["test_accuracy"] > 0.3
