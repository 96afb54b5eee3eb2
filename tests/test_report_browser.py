"""The HTML report renders in headless Chromium with no console errors, and its figures decode.

Skipped with a reason where Chromium is not installed (CI installs Debian's `chromium`, see .ci/run).
"""

import re
import shutil
import subprocess

import pytest

from bioplausible.report.html import write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# A script appended to the page: it reports every <img> that failed to decode as a console error.
CHECK = """<script>window.addEventListener('load', () => {
  for (const img of document.images) {
    if (!img.complete || img.naturalWidth === 0) console.error('figure did not decode: ' + img.alt);
  }
  console.log('figures decoded: ' + [...document.images].filter(i => i.naturalWidth > 0).length);
});</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(tiny_config, tmp_path):
    from bioplausible.engine import fit

    fit(tiny_config(epochs=2, out=str(tmp_path / "runs" / "a")), quiet=True)
    fit(tiny_config(epochs=2, rule="fa", out=str(tmp_path / "runs" / "b")), quiet=True)
    page = write_report(tmp_path / "runs")
    checked = tmp_path / "checked.html"
    checked.write_text(page.read_text().replace("</body>", CHECK + "</body>"))
    result = subprocess.run(
        [
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
            "--dump-dom",
            checked.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if "CONSOLE" in line]
    errors = [line for line in console if "ERROR" in line or "did not decode" in line]
    assert not errors, errors
    decoded = [int(n) for line in console for n in re.findall(r"figures decoded: (\d+)", line)]
    images = result.stdout.count("<img")
    assert images >= 2 and decoded == [images], (images, console)
