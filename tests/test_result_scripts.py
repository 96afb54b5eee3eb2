"""The run scripts under results/ that choose a configuration by an environment variable (RULE, RUNS, NUDGING,
CONFIG, TOPOLOGY) refuse an unknown value in one line with exit status 2, instead of silently doing nothing."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHOICE = re.compile(r'case "\$\{?([A-Z_]+)|\$\{(RUNS):-')  # one choice (RULE=...) or a list (RUNS="bp fa")
CHOOSERS = [  # (script, variable): every choice of every script
    (script, next(name for name in match.groups() if name))
    for script in sorted((ROOT / "results").glob("*/run.sh"))
    for match in CHOICE.finditer(script.read_text())
]


def test_the_scripts_that_choose_by_a_variable_are_found():
    variables = {variable for _, variable in CHOOSERS}
    assert len({script for script, _ in CHOOSERS}) >= 7 and {"RUNS", "EVAL", "CONFIG"} <= variables, CHOOSERS


@pytest.mark.parametrize(("script", "variable"), CHOOSERS, ids=lambda s: s if isinstance(s, str) else s.parent.name)
def test_an_unknown_choice_is_refused_in_one_line(script, variable, tmp_path):
    fake = tmp_path / "bioplausible"  # a script that fell through to training would run this, not train
    fake.write_text("#!/bin/sh\necho 'trained' ; exit 0\n")
    fake.chmod(0o755)
    env = {**os.environ, variable: "bogus", "PATH": f"{tmp_path}:{os.environ['PATH']}", "LR": "1e-3"}
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "trained" not in done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{variable} must be" in lines[0] and "bogus" in lines[0], lines


def test_the_gammell_500x3_diagnosis_runs_small():
    """results/mnist-ep-gammell-500x3/diagnose.py (the README's 500×3 finding), on a tiny net for 50 batches."""
    data = ROOT.parent / "shared" / "data"
    if not (data / "mnist").exists() and not any(data.glob("*mnist*")):
        pytest.skip("the real data in ../shared/data is not on this machine")
    script = ROOT / "results" / "mnist-ep-gammell-500x3" / "diagnose.py"
    args = ["--hidden", "8,8", "--batches", "50", "--data-dir", str(data)]
    done = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("784-8-8-10") and lines[1].startswith("  batch 0: accuracy")
    assert lines[2].startswith("  batch 50:") and "stalled of the 50: +β" in lines[2]
