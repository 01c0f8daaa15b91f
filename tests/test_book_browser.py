"""The built book in a headless browser, without network access (toolchain.md §6).

- **layout, every page, two widths**: each page of the table of contents is laid out at 1280 px
  (a desk) and at 400 px (a phone) and measured in the browser (``tests/_layout.py``: Chromium
  driven over the DevTools protocol; widths of tables, equations, scroll boxes and the right-hand
  contents as the browser computed them). At 1280 px no table or equation is wider than its
  container and nothing but a code block scrolls sideways; at 400 px nothing but a table scrolls
  sideways; at both, nothing sticks out of the text column and the page never scrolls sideways. A
  too-wide table planted into a page must fail that check (``test_layout_check_fails_on_a_planted_wide_table``);
- the results page shows its tables (captions visible above their scroll boxes), a figure, the
  paper's reference tables and math typeset by the vendored MathJax;
- **every notebook page** shows no raw pipe-table text (``| a | b |`` or ``|---|`` outside code
  cells), at least as many HTML ``<table>`` elements in its outputs as the notebook printed
  Markdown tables, and rendered math (MathJax ``<mjx-container>`` elements wherever the notebook
  has ``$…$`` math, and no raw TeX anywhere);
- screenshots of every page at 1280 px and at 400 px are kept in ``_build/screenshots/``
  (``results_1280.png``, ``results_400.png``, ``cifar10_nll_1280.png``, …) for a person to look at.

Needs Debian's ``chromium`` (``apt-get install -y chromium``); skipped with a reason otherwise.
Uses ``_build/html`` (or ``$DDPMDP_BOOK_HTML``) when it exists and builds it (``jupyter-book build
--all -W -n --keep-going .``) when it does not.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

import _layout

ROOT = Path(__file__).resolve().parents[1]
HTML = Path(os.environ.get("DDPMDP_BOOK_HTML", ROOT / "_build" / "html"))  # another build can be checked
PAGE = HTML / "book" / "results.html"
SHOTS = HTML.parent / "screenshots"
_TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
PAGES = [_TOC["root"]] + [ch["file"] for part in _TOC["parts"] for ch in part["chapters"]]
NOTEBOOKS = [p for p in PAGES if p.startswith("notebooks/")]
WIDTHS = (1280, 400)  # a desk, a phone
PIPE_ROW = re.compile(r"^\s*\|[^|\n]*\|[^|\n]*\|", re.M)
PIPE_RULE = re.compile(r"\|\s*:?(?:-{3,}|[—–]+-*):?\s*\|")  # smartquotes turn --- into —

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


@pytest.fixture(scope="module")
def browser():
    _chromium()
    b = _layout.Browser()
    yield b
    b.close()


class _Text(HTMLParser):
    """Visible text of a page outside code-cell inputs, scripts, styles and MathJax's own markup,
    plus the number of <table> elements inside cell outputs."""

    _VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, bool, bool]] = []  # (tag, hidden, in cell output)
        self.parts: list[str] = []
        self.output_tables = 0

    def handle_starttag(self, tag, attrs):
        if tag in self._VOID:
            return
        cls = dict(attrs).get("class") or ""
        hidden_parent = self.stack[-1][1] if self.stack else False
        out_parent = self.stack[-1][2] if self.stack else False
        hidden = hidden_parent or tag in ("script", "style", "mjx-container", "mjx-assistive-mml", "head") or (
            "cell_input" in cls.split())
        in_out = out_parent or "cell_output" in cls.split()
        if tag == "table" and in_out:
            self.output_tables += 1
        self.stack.append((tag, hidden, in_out))

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                break

    def handle_data(self, data):
        if not (self.stack and self.stack[-1][1]):
            self.parts.append(data)

    @property
    def text(self) -> str:
        return "".join(self.parts)


def _visible(dom: str) -> _Text:
    p = _Text()
    p.feed(dom)
    return p


def _printed_tables(nb: Path) -> int:
    """How many Markdown outputs of the executed notebook hold a pipe table."""
    cells = json.loads(nb.read_text())["cells"]
    n = 0
    for c in cells:
        for o in c.get("outputs", []):
            md = "".join(o.get("data", {}).get("text/markdown", ""))
            if PIPE_RULE.search(md):
                n += 1
    return n


def _has_math(nb: Path) -> bool:
    """Whether the notebook's Markdown (cells or outputs) holds $…$ math."""
    cells = json.loads(nb.read_text())["cells"]
    texts = ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]
    texts += ["".join(o.get("data", {}).get("text/markdown", "")) for c in cells for o in c.get("outputs", [])]
    return any(re.search(r"\$[^$\n]+\$", t) for t in texts)


def test_results_page_is_self_contained(html):
    text = PAGE.read_text()
    assert "mathjax/tex-mml-chtml.js" in text, "MathJax must come from book/_static/mathjax (offline)"
    assert not re.search(r"<script[^>]+src=\"https?://", text), "the page loads a script from the web"
    for img in re.findall(r'<img[^>]+src="([^"]+)"', text):
        assert (PAGE.parent / img).resolve().is_file(), f"missing image {img}"
    nb = html / "notebooks" / "executed" / "cifar10_nll.html"
    assert nb.is_file() and "_sources/notebooks/executed/cifar10_nll.ipynb" in nb.read_text(), (
        "notebook pages must offer their .ipynb for download")
    assert "source-repository-button" in text and "source-file-button" in text, "repository and source buttons"


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("doc", PAGES, ids=lambda d: Path(d).name)
def test_layout_fits(html, browser, doc, width):
    """Measured in the browser: see the module docstring and :func:`_layout.problems`."""
    page = html / f"{doc}.html"
    assert page.is_file(), f"{doc}.html was not built"
    browser.open(page, width)
    m = browser.measure()
    browser.screenshot(SHOTS / f"{Path(doc).name}_{width}.png", width)
    assert m["viewport"] == width, f"the viewport is {m['viewport']} px, not {width} px"
    found = _layout.problems(m, strict=width >= 1000)
    assert not found, f"{doc} at {width} px:\n" + "\n".join(found[:20])


def test_layout_check_fails_on_a_planted_wide_table(html, browser):
    """The checker itself: a table of 14 "mean ± SE" cells planted into the results page is found
    at 1280 px (and the same page without it is clean, which test_layout_fits shows)."""
    browser.open(PAGE, 1280)
    browser.evaluate(_layout.PLANT_JS)
    found = _layout.problems(browser.measure(), strict=True)
    assert any("planted-wide-table" in f and "wider than its container" in f for f in found), found
    # and on a phone a too-wide equation (not a table) may not scroll
    browser.open(PAGE, 400)
    browser.evaluate("document.querySelectorAll('.bd-article mjx-container[display=\"true\"]')"
                     ".forEach(function (m) { m.style.fontSize = '400%'; })")
    found = _layout.problems(browser.measure(), strict=False)
    assert any("equation wider than its box" in f for f in found), found


def test_results_page_renders_table_figure_and_math(html, browser):
    browser.open(PAGE, 1280)
    dom = browser.dom()
    table = re.search(r'<table[^>]*id="tab-cifar10-nll".*?</table>', dom, re.S)
    assert table is not None, "the CIFAR-10 csv-table is not on the page"
    assert "K=8" in table.group(0) or "K=2" in table.group(0), "the table has no budget columns"
    assert "±" in table.group(0), "table cells should read 'bpd ± SE'"
    caption = re.search(r'class="ddpmdp-table-caption"[^>]*>(.*?)</div>', dom, re.S)
    assert caption and "Table" in caption.group(1), "table captions must sit above the scroll box (ddpmdp.js)"
    assert re.search(r'<img[^>]+cifar10_nll_L_simple[^>]*\.png', dom), "the bits/dim figure is missing"
    assert dom.count("paper-reference") >= 3, "the paper's Tables 3, 4 and 5 must appear as reference boxes"
    assert "<mjx-container" in dom, "MathJax did not typeset the math (vendored MathJax not loaded?)"
    vis = _visible(dom).text
    assert not re.search(r"\\\(|\\\[|\$\$", vis), "raw TeX left on the page (MathJax did not run)"
    assert not PIPE_RULE.search(vis) and not PIPE_ROW.search(vis), "raw pipe-table text on the results page"


@pytest.mark.parametrize("doc", NOTEBOOKS, ids=lambda d: Path(d).name)
def test_notebook_page_renders_tables_and_math(html, browser, doc):
    page = html / f"{doc}.html"
    assert page.is_file(), f"{doc}.html was not built"
    browser.open(page, 1280)
    dom = browser.dom()
    vis = _visible(dom)
    raw = PIPE_RULE.findall(vis.text) + PIPE_ROW.findall(vis.text)
    assert not raw, f"{doc}: raw pipe-table text outside code cells (Markdown output not parsed as MyST?): {raw[:3]}"
    printed = _printed_tables(ROOT / f"{doc}.ipynb")
    assert vis.output_tables >= printed, (
        f"{doc}: the notebook printed {printed} Markdown table(s) but the page shows {vis.output_tables} HTML table(s)")
    if printed:
        assert vis.output_tables >= 1
    if _has_math(ROOT / f"{doc}.ipynb"):
        assert "<mjx-container" in dom, f"{doc}: no math typeset by MathJax"
    assert not re.search(r"\\\(|\\\[|\$\$", vis.text), f"{doc}: raw TeX left on the page"


def test_raw_pipe_detector_flags_commonmark_output():
    """What the page looked like before (CommonMark renders a pipe table as a paragraph of text)."""
    before = ('<div class="cell_output"><p>| Objective | Stride | K=8 |\n|---|---|---|\n'
              '| L_simple | even | 7.162 ± 0.017 |</p></div>')
    vis = _visible(before)
    assert PIPE_RULE.search(vis.text) and PIPE_ROW.search(vis.text) and vis.output_tables == 0
    after = ('<div class="cell_output"><table><tr><th>Objective</th></tr><tr><td>7.162 ± 0.017</td></tr></table></div>'
             '<div class="cell_input"><pre>x = "| a | b |"\n"|---|---|"</pre></div>')
    vis = _visible(after)
    assert not PIPE_RULE.search(vis.text) and not PIPE_ROW.search(vis.text) and vis.output_tables == 1
