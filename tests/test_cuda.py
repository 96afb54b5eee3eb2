"""GPU checks: skipped on machines without CUDA (CI); run on a GPU machine with `pytest tests/test_cuda.py`."""

import pytest
import torch

from bioplausible.archs import create_arch
from bioplausible.config import TrainConfig
from bioplausible.engine import fit
from bioplausible.errors import IncompatibleError
from bioplausible.rules import RULES, create_rule
from bioplausible.runs import load_run

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


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
        rule.prepare(model)
    except IncompatibleError as err:  # e.g. target propagation on a residual net; tests/test_rules.py checks these
        pytest.skip(str(err))
    with torch.no_grad():
        model.eval()(torch.zeros(2, *shape))  # draws DFA's lazy B on the CPU, identically for both copies
    return model.train().to(device), rule  # .to() moves W, B and every rule buffer in place


@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("rule_name", RULES.list())
def test_rule_gradients_on_cuda_match_cpu(rule_name, arch):
    """The same rule, weights and batch give the same gradients on the GPU as on the CPU (brsf and wm draw random
    numbers from the device's own generator, so only their finiteness is compared)."""
    shape, _ = ARCHS[arch]
    x, y = torch.randn(32, *shape), torch.randint(0, 4, (32,))
    (cpu, rule_cpu), (gpu, rule_gpu) = build(rule_name, arch, "cpu"), build(rule_name, arch, "cuda")
    rule_cpu.step(cpu, x, y)
    rule_gpu.step(gpu, x.cuda(), y.cuda())
    for (name, p), q in zip(cpu.named_parameters(), gpu.parameters()):
        assert q.grad.is_cuda and torch.isfinite(q.grad).all()
        if rule_name not in ("brsf", "wm"):
            torch.testing.assert_close(q.grad.cpu(), p.grad, rtol=1e-3, atol=1e-4, msg=name)


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
