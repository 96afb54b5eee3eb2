"""GPU checks: skipped on machines without CUDA (CI); run on a GPU machine with `pytest tests/test_cuda.py`."""

import pytest
import torch

from bioplausible.archs import create_arch
from bioplausible.config import TrainConfig
from bioplausible.engine import fit
from bioplausible.rules import RULES, create_rule
from bioplausible.runs import load_run

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def build(rule_name, device):
    torch.manual_seed(0)
    model = create_arch("dense-mlp", (20,), 4, depth=2, width=16)
    rule = create_rule(rule_name)
    rule.prepare(model)
    return model.to(device), rule  # .to() moves W, B and every rule buffer in place


@pytest.mark.parametrize("rule_name", RULES.list())
def test_rule_gradients_on_cuda_match_cpu(rule_name):
    """The same rule, weights and batch give the same gradients on the GPU as on the CPU (brsf redraws its
    magnitudes from the device's own generator, so only its finiteness is compared)."""
    x, y = torch.randn(32, 20), torch.randint(0, 4, (32,))
    (cpu, rule_cpu), (gpu, rule_gpu) = build(rule_name, "cpu"), build(rule_name, "cuda")
    rule_cpu.step(cpu, x, y)
    rule_gpu.step(gpu, x.cuda(), y.cuda())
    for (name, p), q in zip(cpu.named_parameters(), gpu.parameters()):
        assert q.grad.is_cuda and torch.isfinite(q.grad).all()
        if rule_name != "brsf":
            torch.testing.assert_close(q.grad.cpu(), p.grad, rtol=1e-4, atol=1e-5, msg=name)


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
