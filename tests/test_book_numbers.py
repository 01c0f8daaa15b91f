"""No hand-typed result numbers in the book's prose.

A bits/dim or FID number typed into a chapter or a notebook's Markdown goes stale with the next run.
Numbers must come from files the notebooks write (``{include}`` / ``{csv-table} :file:`` of
``book/_generated/``), from MyST substitutions (``{{ name }}``; the paper's numbers come from
:mod:`ddpmdp.book.reporting.paper` through ``book/_ext/ddpmdp_sphinx.py``) or from the ``{paper-table}``
directive. This module checks that rule.

**The rule.** Scanned: every chapter ``book/*.md`` and the Markdown cells of every notebook source
``notebooks/*.py`` (jupytext percent format). Not scanned: fenced code, ``{code-cell}`` /
``{eval-rst}`` / ``{math}`` / ``{csv-table}`` / ``{include}`` blocks (their numbers come from
files), directive option lines (``:name: …``), inline code, substitutions ``{{ … }}``, and link
targets. In the rest, a **result number** is

1. a decimal number (``3.17``, ``-0.51``, ``±0.01``) in a *unit* that also contains a metric word
   — ``bits/dim``, ``bit/dim``, ``bpd``, ``FID``, ``nats``, ``NLL`` or ``±``. A unit is a sentence
   of a paragraph, or a row of a Markdown table (a table whose header row holds a metric word, or
   that follows a paragraph ending in ":" that holds one, makes every body row such a unit);
2. an integer written directly against a metric: ``FID 313``, ``FID of 313``, ``4 bits/dim``,
   ``4 bpd``.

A result number is allowed only in a block (lines up to the next blank line) preceded by a MyST
comment line ``% hand-typed: <reason>``, for numbers that are not results of this project's runs
and have no source file (a third-party figure, a tolerance). ``book/results.md`` may not use that
escape at all.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
NOTEBOOKS = ROOT / "notebooks"

METRIC = re.compile(r"bits?/dim|\bbpd\b|\bFID\b|\bnats?\b|\bNLL\b|±", re.I)
DECIMAL = re.compile(r"(?<![\w.])[-+−±]?\d+\.\d+(?!\w|\.\d)")
INTEGER_AT_METRIC = re.compile(r"\bFID\s*(?:of|=|:|is|was)?\s*(\d+)\b(?![.,]\d)|(?<![\w.])(\d+)\s*(?:bits?/dim|bpd)\b",
                               re.I)
EXEMPT = re.compile(r"^\s*%\s*hand-typed:\s*\S")
SKIP_DIRECTIVES = ("code-cell", "code-block", "code", "eval-rst", "math", "csv-table", "include", "literalinclude",
                   "paper-table", "bibliography", "raw")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(*_$])")


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    number: str
    text: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.number!r} in: {self.text.strip()[:120]}"


def _clean(line: str) -> str:
    line = re.sub(r"\{\{.*?\}\}", " ", line)                 # substitutions
    line = re.sub(r"``.*?``|`[^`]*`", " ", line)             # inline code and role targets
    line = re.sub(r"\]\([^)]*\)", "]", line)                 # link targets
    return line


def _prose_blocks(lines: list[str]):
    """Yield (first line number, [(line number, text)], exempt) for each block of scanned prose;
    a table is one block whose rows are separate units."""
    fence: str | None = None
    skip = False
    block: list[tuple[int, str]] = []
    exempt_next = False
    exempt = False
    for i, raw in enumerate(lines, 1):
        stripped = raw.strip()
        m = re.match(r"^(`{3,}|~{3,}|:{3,})\s*(\{([\w-]+)\})?", stripped)
        if fence is None and m:
            if block:
                yield block, exempt
                block, exempt = [], False
            fence = m.group(1)
            name = m.group(3)
            skip = m.group(1)[0] in "`~" and (name is None or name in SKIP_DIRECTIVES)
            continue
        if fence is not None and stripped.startswith(fence) and stripped.rstrip(fence[0]) == "":
            if block:
                yield block, exempt
                block, exempt = [], False
            fence, skip = None, False
            continue
        if skip:
            continue
        if fence is not None and re.match(r"^:[\w-]+:", stripped):
            continue  # directive option
        if EXEMPT.match(raw):
            exempt_next = True
            continue
        if not stripped:
            if block:
                yield block, exempt
            block, exempt = [], False
            continue
        if not block:
            exempt, exempt_next = exempt_next, False
        block.append((i, raw))
    if block:
        yield block, exempt


def _is_table(block: list[tuple[int, str]]) -> bool:
    return all(t.lstrip().startswith("|") for _, t in block)


def _units(block: list[tuple[int, str]], lead_metric: bool = False):
    """Sentences of a paragraph, or rows of a table (with the metric words of its header or lead-in)."""
    if _is_table(block):
        header_metric = lead_metric or bool(METRIC.search(_clean(block[0][1])))
        for n, t in block:
            yield n, _clean(t), header_metric
        return
    text = " ".join(_clean(t) for _, t in block)
    starts = []
    pos = 0
    for n, t in block:
        starts.append((pos, n))
        pos += len(_clean(t)) + 1
    offset = 0
    for sentence in SENTENCE_END.split(text):
        at = text.find(sentence, offset)
        offset = at + len(sentence)
        line = max((n for p, n in starts if p <= at), default=block[0][0])
        yield line, sentence, False


def find_hand_typed(text: str, path: str = "<text>", honour_exemptions: bool = True) -> list[Finding]:
    """Result numbers in Markdown ``text`` that break the rule in this module's docstring."""
    out: list[Finding] = []
    lead_metric = False
    for block, exempt in _prose_blocks(text.splitlines()):
        lead = lead_metric
        last = _clean(block[-1][1]).rstrip()
        lead_metric = not _is_table(block) and last.endswith(":") and bool(
            METRIC.search(" ".join(_clean(t) for _, t in block)))
        if exempt and honour_exemptions:
            continue
        for line, unit, header_metric in _units(block, lead):
            if header_metric or METRIC.search(unit):
                for m in DECIMAL.finditer(unit):
                    out.append(Finding(path, line, m.group(0), unit))
            for m in INTEGER_AT_METRIC.finditer(unit):
                out.append(Finding(path, line, m.group(1) or m.group(2), unit))
    return out


def notebook_markdown(source: str) -> str:
    """The Markdown cells of a jupytext percent-format notebook, line numbers kept (other lines blank)."""
    out, in_md = [], False
    for line in source.splitlines():
        if line.startswith("# %%"):
            in_md = "[markdown]" in line
            out.append("")
            continue
        if in_md and (line.startswith("# ") or line == "#"):
            out.append(line[2:])
        else:
            out.append("")
    return "\n".join(out)


def scan_file(path: Path, honour_exemptions: bool = True) -> list[Finding]:
    text = path.read_text()
    if path.suffix == ".py":
        text = notebook_markdown(text)
    return find_hand_typed(text, str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path),
                           honour_exemptions)


CHAPTERS = sorted(BOOK.glob("*.md"))
NOTEBOOK_SOURCES = sorted(NOTEBOOKS.glob("*.py"))

# Hand-typed numbers allowed in the notebook sources: none. A new finding fails the test below; so
# does an entry here that no longer occurs, so that this list can only shrink.
KNOWN_NOTEBOOK_FINDINGS: set[tuple[str, str]] = set()


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapters_have_no_hand_typed_results(path):
    found = scan_file(path)
    assert not found, ("hand-typed bits/dim or FID numbers (include a book/_generated/ file or a substitution "
                       "instead; see tests/test_book_numbers.py):\n" + "\n".join(map(str, found)))


def test_results_chapter_uses_no_exemption():
    text = (BOOK / "results.md").read_text()
    assert not [ln for ln in text.splitlines() if EXEMPT.match(ln)], "results.md must not exempt any number"
    assert scan_file(BOOK / "results.md", honour_exemptions=False) == []


def test_notebook_sources_have_no_new_hand_typed_results():
    found = {(f.path, f.number): f for p in NOTEBOOK_SOURCES for f in scan_file(p)}
    new = [str(f) for k, f in found.items() if k not in KNOWN_NOTEBOOK_FINDINGS]
    assert not new, "hand-typed bits/dim or FID numbers in notebook Markdown:\n" + "\n".join(new)
    fixed = sorted(KNOWN_NOTEBOOK_FINDINGS - set(found))
    assert not fixed, f"fixed in the notebook sources, remove from KNOWN_NOTEBOOK_FINDINGS: {fixed}"


# ---- the checker itself, on planted defects ---------------------------------------------------------------
def test_planted_number_in_a_copy_of_results_is_flagged(tmp_path):
    copy = tmp_path / "results.md"
    text = (BOOK / "results.md").read_text()
    assert find_hand_typed(text) == []
    planted = text.replace("**Where the DP path wins and where it does not**",
                           "**Where the DP path wins and where it does not** At K = 8 the DP path scores 5.86 "
                           "bits/dim, 0.51 better than the quadratic stride.", 1)
    assert planted != text
    copy.write_text(planted)
    found = scan_file(copy)
    assert {f.number for f in found} == {"5.86", "0.51"}, found


def test_planted_number_in_a_notebook_markdown_cell_is_flagged(tmp_path):
    src = (NOTEBOOKS / "cifar10_nll.py").read_text()
    nb = tmp_path / "cifar10_nll.py"
    nb.write_text(src.replace("# ## Overview\n", "# ## Overview\n#\n# The DP path reaches FID 313 and 3.76 ± 0.05.\n", 1))
    before = {(f.line, f.number) for f in scan_file(NOTEBOOKS / "cifar10_nll.py")}
    after = {f.number for f in scan_file(nb) if (f.line, f.number) not in before}
    assert {"313", "3.76", "0.05"} <= after, after


@pytest.mark.parametrize("text, numbers", [
    ("The full chain scores 3.728 ± 0.046 bits/dim.", {"3.728", "0.046"}),
    ("Within ±0.01 bits/dim.", {"±0.01"}),
    ("| Sampler | FID |\n|---|---|\n| dp | 313.31 |", {"313.31"}),
    ("The rows follow within bits/dim:\n\n| Model | 8 |\n|---|---|\n| DP | 4.20 |", {"4.20"}),
    ("Rows by model:\n\n| Model | 8 |\n|---|---|\n| DP | 4.20 |", set()),
    ("DP is within 0.1 bits/dim of the full chain.", {"0.1"}),
    ("FID of 313 for the DP path.", {"313"}),
    ("The paper reaches 4 bits/dim.", {"4"}),
    # not results: no metric in the sentence, counts, budgets, code, substitutions, math-free ratios
    ("DDIM's rule ends at $0.8\\,T$. It is used for sampling.", set()),
    ("At K = 256 the even stride is 0.5 above it.", set()),
    ("It reaches {{ paper_t4_dp_32 }} bits/dim with 32 steps.", set()),
    ("Run `ddpmdp evaluate --bpd 3.2` to see bits/dim.", set()),
    ("```\nprint('3.17 bits/dim')\n```", set()),
    ("```{csv-table} Bits/dim\n:file: _generated/x.csv\n```", set()),
    ("% hand-typed: a third-party figure\nA bits-back coder reports 2.945 bits/dim.", set()),
    ("at K = 256 every path is within 0.03 bits/dim of the full chain", {"0.03"}),
])
def test_rule(text, numbers):
    assert {f.number for f in find_hand_typed(text)} == numbers


def test_exemption_covers_one_block_only():
    text = "% hand-typed: tolerance\nWithin ±0.01 bits/dim.\n\nThe DP path scores 3.2 bits/dim."
    assert [f.number for f in find_hand_typed(text)] == ["3.2"]
