"""The benchmark scripts refuse bad arguments in one line with exit status 2 before they time anything (a typo in
the tenth rule must not surface after the first nine were timed)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BAD = {
    "unknown part": ("ep_settling.py", ["--parts", "z"], "--parts takes letters among a, b, c, g"),
    "zero rounds": ("ep_settling.py", ["--rounds", "0"], "--rounds must be at least 1"),
    "nan tolerance": ("ep_settling.py", ["--tolerance", "nan"], "must be finite and not negative"),
    "unknown rule": ("lc_patches.py", ["--rules", "bp,nope"], "unknown rule 'nope'"),
    "rule that cannot train the net": ("lc_patches.py", ["--rules", "ep"], "needs a symmetric energy network"),
}


@pytest.mark.parametrize("case", BAD)
def test_a_bad_argument_is_one_line_and_exit_2(case):
    script, args, expected = BAD[case]
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True, text=True, timeout=300
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and expected in lines[0], (done.returncode, done.stderr)
    assert done.stdout == ""
