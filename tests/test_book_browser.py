"""The built book in a headless browser: the CIFAR-10 results page shows its table, a figure and
math typeset by the vendored MathJax, without network access (toolchain.md §6).

Needs Debian's ``chromium`` (``apt-get install -y chromium``); skipped with a reason otherwise.
Uses ``_build/html`` when it exists and builds it (``jupyter-book build --all -W -n
--keep-going .``) when it does not. The screenshot is kept as ``_build/screenshots/results.png``.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
PAGE = HTML / "book" / "results.html"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--virtual-time-budget=10000"]

pytestmark = pytest.mark.slow


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium); the browser check needs it")
    return exe


@pytest.fixture(scope="module")
def html() -> Path:
    if not PAGE.is_file():
        jb = Path(sys.executable).parent / "jupyter-book"
        if not jb.is_file():
            pytest.skip("no _build/html and jupyter-book is not installed (pip install 'ddpmdp[book]')")
        env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
        proc = subprocess.run([str(jb), "build", "--all", "-W", "-n", "--keep-going", str(ROOT)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"the strict book build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
    assert PAGE.is_file(), f"{PAGE.relative_to(ROOT)} was not built"
    return HTML


def _run(args: list[str], timeout: int = 120) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        cmd = [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def test_results_page_is_self_contained(html):
    text = PAGE.read_text()
    assert "mathjax/tex-mml-chtml.js" in text, "MathJax must come from book/_static/mathjax (offline)"
    assert not re.search(r"<script[^>]+src=\"https?://", text), "the page loads a script from the web"
    for img in re.findall(r'<img[^>]+src="([^"]+)"', text):
        assert (PAGE.parent / img).resolve().is_file(), f"missing image {img}"
    nb = html / "notebooks" / "executed" / "cifar10_nll.html"
    assert nb.is_file() and "_sources/notebooks/executed/cifar10_nll.ipynb" in nb.read_text(), (
        "notebook pages must offer their .ipynb for download")


def test_results_page_renders_table_figure_and_math(html):
    shot = ROOT / "_build" / "screenshots" / "results.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    shot.unlink(missing_ok=True)
    url = PAGE.as_uri()
    proc = _run(["--window-size=1280,2200", f"--screenshot={shot}", url])
    assert shot.is_file() and shot.stat().st_size > 20_000, f"no screenshot:\n{proc.stderr[-2000:]}"
    dom = _run(["--dump-dom", url]).stdout
    table = re.search(r'<table[^>]*id="tab-cifar10-nll".*?</table>', dom, re.S)
    assert table is not None, "the CIFAR-10 csv-table is not on the page"
    assert "K=8" in table.group(0) or "K=2" in table.group(0), "the table has no budget columns"
    assert "±" in table.group(0), "table cells should read 'bpd ± SE'"
    assert re.search(r'<img[^>]+cifar10_nll_L_simple[^>]*\.png', dom), "the bits/dim figure is missing"
    assert "<mjx-container" in dom, "MathJax did not typeset the math (vendored MathJax not loaded?)"
    visible = re.sub(r"<(script|style)\b.*?</\1>", "", dom, flags=re.S)
    assert not re.search(r"\\\(|\\\[|\$\$", visible), "raw TeX left on the page (MathJax did not run)"
