"""A rule and an architecture from outside the package, registered through the ``bioplausible.plugins`` entry
point with no edit to the package: both appear in ``list``, ``train --help``, a ``train`` run and its report. The
toy rule's option is named ``epsilon`` like the energy net's and the toy net's own: scoped flags keep them apart."""

from __future__ import annotations

import json
import os
import textwrap

PLUGIN = textwrap.dedent(
    '''
    """A toy plugin: a rule, a probe kind and an architecture, each declared the library's way."""
    from dataclasses import dataclass

    import torch
    from torch import nn

    from bioplausible.archs.base import Architecture, arch_options
    from bioplausible.config import option
    from bioplausible.probes.spec import ProbeSpec
    from bioplausible.registry import ARCHS, RULES
    from bioplausible.rules.base import Rule


    @dataclass
    class ToyRuleConfig:
        epsilon: float = option(0.5, "scale of the backprop gradient", above=0)


    @RULES.register("toy-rule")
    class ToyRule(Rule):
        """Backprop with its gradient scaled by epsilon (a toy)."""

        Config = ToyRuleConfig
        probes = (ProbeSpec("toy_weight_norm", "‖W‖", scale="log", title="Toy: weight norm per layer"),)

        def step(self, model, x, y, index=None):
            metrics = super().step(model, x, y, index)
            for p in model.parameters():
                p.grad.mul_(self.config.epsilon)
            return metrics

        def probe(self, model, x, y):
            return {f"probe/toy_weight_norm/{n}": p.norm().item() for n, p in model.named_parameters() if p.dim() == 2}


    @dataclass
    class ToyNetConfig:
        epsilon: float = option(1.0, "gain of the hidden pre-activation", above=0)
        width: int = option(8, "hidden units", min=1)


    @ARCHS.register("toy-net")
    class ToyNet(Architecture):
        """One hidden tanh layer with a gain (a toy)."""

        Config = ToyNetConfig

        def __init__(self, input_shape, num_classes, config=None, **options):
            super().__init__()
            self.c = arch_options(type(self), config, options)
            self.hidden = nn.Linear(int(torch.tensor(input_shape).prod()), self.c.width)
            self.out = nn.Linear(self.c.width, num_classes)

        def forward(self, x):
            return self.out(torch.tanh(self.c.epsilon * self.hidden(x.flatten(1))))
    '''
)


def install_plugin(folder) -> dict[str, str]:
    """The plugin module and a dist-info folder declaring its entry point, on PYTHONPATH."""
    (folder / "toy_plugin.py").write_text(PLUGIN)
    info = folder / "toy_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[bioplausible.plugins]\ntoy = toy_plugin\n")
    return {"PYTHONPATH": os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")])}


def test_a_plugin_rule_and_arch_appear_in_list_help_train_and_report(run_cli, tmp_path):
    env = install_plugin(tmp_path)
    listed = run_cli("list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "toy-rule" in listed.stdout and "toy-net" in listed.stdout

    helped = run_cli("train", "--rule", "toy-rule", "--arch", "toy-net", "--help", env=env)
    assert "--rule.epsilon" in helped.stdout and "--arch.epsilon" in helped.stdout
    assert "\n  --epsilon" not in helped.stdout  # shared by two owners: only the qualified flags
    assert "--width" in helped.stdout  # unique: the short flag too

    flags = ["--rule", "toy-rule", "--arch", "toy-net", "--rule.epsilon", "0.25", "--arch.epsilon", "2", "--width", "6"]
    trained = run_cli("train", *flags, "--dataset", "synthetic", "--epochs", "2", "--threads", "1", "--out", "run",
                      env=env)  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["rule_options"] == {"epsilon": 0.25}
    assert config["arch_options"] == {"epsilon": 2.0, "width": 6}
    probes = json.loads((tmp_path / "run" / "probes.json").read_text())
    assert "toy_weight_norm" in [p["kind"] for p in probes]
    metrics = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert "probe/toy_weight_norm/hidden.weight" in metrics

    reported = run_cli("report", "run", env=env)
    assert reported.returncode == 0, reported.stderr
    page = (tmp_path / "run" / "report.md").read_text()
    assert "Toy: weight norm per layer" in page and "toy-rule" in page and "toy-net" in page
