"""Sphinx helpers for the API reference (loaded through ``_config.yml`` ``local_extensions``).

ddpmdp's docstrings are written for readers of the source: plain-text formulas with Unicode
symbols (|x|, ‖x‖², β̃_{t,s}), Google-style sections, and short cross-references such as
:class:`DdpmdpError`. Three adjustments let a strict (``-W -n``) build render them faithfully:

1. **Verbatim fallback.** After napoleon has run, each docstring is parsed once with docutils;
   if it is not valid reStructuredText (e.g. an indented formula without a blank line, or
   ``|Δ|`` read as a substitution), the docstring is shown as a literal block, exactly as
   written, instead of failing the build. The affected objects are listed in
   ``_build/api_verbatim.txt`` so the docstrings can be fixed at the source.
2. **No attribute types from prose.** napoleon would read "β̃_{2,1} = …: the smallest …" in a
   property or data docstring as a type annotation; for ``data``, ``attribute`` and
   ``property`` entries the original docstring is kept.
3. **Short references.** A ``py`` reference that Sphinx cannot resolve (``DdpmdpError``,
   ``ImageSet``, ``ElboTable.mse``) is linked to the unique documented object whose qualified
   name ends with it, preferring the referring module. A reference to a ddpmdp object that
   exists but is not documented (outside ``__all__``, or a constant without a docstring) is
   shown as code without a link; a reference to nothing still fails the nitpicky build.
4. **Book sections for spec references.** Docstrings cite the project's internal spec as
   "``method.md`` §5.2", which readers of the book do not have. Each such citation is shown as a
   link to the book section that covers it (:data:`SPEC_SECTIONS`), or, in a docstring shown
   verbatim, as the section's title.

The extension also provides, for the chapters:

* **Compact result cells.** A table cell that reads "mean ± SE" (``7.166 ± 0.020``, with an
  optional mark such as ‡) is split into the mean and the SE, which ``book/_static/ddpmdp.css``
  shows as a smaller second line, so a table of nine such columns fits the page; numeric cells
  keep to one line, text cells wrap, identifiers in them after ``:``, ``_`` or ``/``
  (:func:`compact_cells`).
* **No machine paths.** Text that holds an absolute path of the machine that builds the book (a
  module constant such as ``WEIGHTS_DIR`` rendered as its value, a path printed by a notebook) shows
  it relative to the installed package (``<ddpmdp>/…``), the repository (``<repository>/…``) or the
  home directory (``~/…``) instead (:func:`portable_text`).
* **Wide pages.** The results chapter and the executed notebooks (:data:`WIDE_PAGES`) get the body
  class ``ddpmdp-wide`` (``book/_templates/layout.html``): their article takes the full content
  width and the page's contents move into the header's list button.

* **The paper's numbers as substitutions.** ``{{ paper_t3_L_vlb_dp_32 }}`` (Table 3: objective,
  stride, K or ``all``), ``{{ paper_t4_dp_32 }}`` (Table 4, L_hybrid) and ``{{ paper_t5_dp_ELBO_32 }}``
  (Table 5, FID) come from :mod:`ddpmdp.book.reporting.paper`, so no chapter types them by hand; and
  ``{{ repository_url }}`` comes from ``_config.yml`` ``repository.url`` (set in one place); and
  ``{{ run_headline }}``, one sentence of this run's own results, from the CSVs the notebooks wrote
  (:func:`ddpmdp.book.reporting.headline.run_headline`); and ``{{ figcaption_NAME }}``, the
  provenance sentence a notebook wrote with figure NAME (:func:`figure_captions`).
* **The** ``rerun-box`` **directive** (```` ```{rerun-box} NAME ```` in a notebook's first cell): how to
  re-run notebook NAME (install from the repository, ``data_dir``, ``params/paper/NAME.yaml``,
  ``device: cuda``, the cost on CPU and GPU), from :func:`ddpmdp.book.runtime.rerun.rerun_markdown`
  with the repository URL of ``_config.yml``.
* **The** ``paper-table`` **directive** (```` ```{paper-table} 3 ````): the paper's Table 3, 4 or 5 from
  :mod:`ddpmdp.book.reporting.paper`, in a box labelled as the paper's numbers, never mixed with this run's.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from docutils import nodes, utils
from docutils.frontend import get_default_settings
from docutils.parsers.rst import Directive, Parser
from docutils.parsers.rst import directives as rst_directives
from docutils.parsers.rst import roles as rst_roles
from docutils.statemachine import StringList
from sphinx.util.nodes import make_refnode
import re

_DOCUTILS_DIRECTIVE = rst_directives.directive  # docutils' own lookups, before Sphinx patches them per document
_DOCUTILS_ROLE = rst_roles.role
_ORIGINAL: dict[tuple[str, str], list[str]] = {}
_VERBATIM: list[str] = []
_PLAIN_KINDS = ("data", "attribute", "property")


def _keep_original(app, what: str, name: str, obj: Any, options, lines: list[str]) -> None:
    if what in _PLAIN_KINDS:
        _ORIGINAL[(what, name)] = list(lines)


class _Collect:
    def __init__(self) -> None:
        self.messages: list[nodes.system_message] = []

    def __call__(self, msg: nodes.system_message) -> None:
        self.messages.append(msg)


_IGNORED = ("Unknown interpreted text role", "Unknown directive type", 'No role entry for', 'No directive entry for',
            "Trying", "Unknown target name")


def _rst_problems(text: str) -> list[str]:
    parser = Parser()
    settings = get_default_settings(Parser)
    settings.report_level = 2
    settings.halt_level = 5
    settings.warning_stream = False
    doc = utils.new_document("<docstring>", settings)
    collect = _Collect()
    doc.reporter.attach_observer(collect)
    # plain docutils: hide the roles and directives Sphinx registered (they need a build environment)
    saved = rst_directives._directives, rst_roles._roles, rst_directives.directive, rst_roles.role
    rst_directives._directives, rst_roles._roles = {}, {}
    rst_directives.directive, rst_roles.role = _DOCUTILS_DIRECTIVE, _DOCUTILS_ROLE
    try:
        parser.parse(text, doc)
    finally:
        rst_directives._directives, rst_roles._roles, rst_directives.directive, rst_roles.role = saved
    out = []
    # docstrings define no substitutions: |x| is an absolute value, not a substitution reference
    for ref in doc.findall(nodes.substitution_reference):
        out.append(f"|{ref.astext()}| would be read as an undefined substitution")
    for m in collect.messages:
        if int(m.get("level", 0)) >= 2:
            msg = m.astext()
            if not any(s in msg for s in _IGNORED):
                out.append(msg.splitlines()[0] if msg else "")
    return out


def _check_rst(app, what: str, name: str, obj: Any, options, lines: list[str]) -> None:
    if (what, name) in _ORIGINAL:
        lines[:] = _ORIGINAL.pop((what, name))
    text = "\n".join(lines)
    if not text.strip():
        return
    problems = _rst_problems(_spec_refs(text, link=False))
    if not problems:
        lines[:] = _spec_refs(text, link=True).split("\n")
    else:
        lines[:] = _spec_refs(text, link=False).split("\n")
        _VERBATIM.append(f"{what} {name}: {problems[0]}")
        body = [("    " + ln) if ln.strip() else "" for ln in lines]
        lines[:] = ["::", ""] + body + [""]


def _short_reference(app, env, node, contnode):
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "").lstrip(".~")
    if not target or not target[0].isalpha() and target[0] != "_":
        return None
    objects = env.get_domain("py").objects
    cands = [k for k in objects if k == target or k.endswith("." + target)]
    if len(cands) > 1:
        module = node.get("py:module") or ""
        local = [k for k in cands if module and k.startswith(module + ".")]
        cands = local if len(local) == 1 else [k for k in cands if not objects[k].aliased]
    if len(cands) == 1:
        entry = objects[cands[0]]
        return make_refnode(app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, cands[0])
    if _exists(target, node.get("py:module"), node.get("py:class")):
        return contnode  # a real object outside the documented API (not in __all__, or undocumented data)
    return None


def _exists(target: str, module: str | None, cls: str | None) -> bool:
    """Whether ``target`` names an importable ddpmdp object, absolutely or relative to the
    referring module or class."""
    import importlib

    prefixes = [""] + ([f"{module}."] if module else []) + ([f"{module}.{cls}."] if module and cls else [])
    for full in (p + target for p in prefixes):
        if not full.startswith("ddpmdp"):
            continue
        parts = full.split(".")
        for i in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:i]))
            except ImportError:
                continue
            try:
                for attr in parts[i:]:
                    obj = getattr(obj, attr)
            except AttributeError:
                break
            return True
    return False


def _write_report(app, exception) -> None:
    if exception is None and app.builder is not None:
        path = Path(app.outdir).parent / "api_verbatim.txt"
        path.write_text("".join(line + "\n" for line in sorted(set(_VERBATIM))))


def setup(app) -> dict[str, Any]:
    app.setup_extension("sphinx.ext.napoleon")
    app.connect("autodoc-process-docstring", _keep_original, priority=100)
    app.connect("autodoc-process-docstring", _check_rst, priority=900)
    app.connect("missing-reference", _short_reference)
    app.connect("build-finished", _write_report)
    app.connect("config-inited", _add_substitutions)
    app.add_directive("paper-table", PaperTable)
    app.add_directive("rerun-box", RerunBox)
    app.connect("doctree-resolved", _compact_cells)
    app.connect("doctree-resolved", _portable_paths)
    app.connect("html-page-context", _page_context)
    return {"parallel_read_safe": False, "parallel_write_safe": True}


# ---- spec section numbers -> book sections ------------------------------------------------------------
SPEC_SECTIONS: dict[str, str] = {
    "1": "method-notation", "2": "method-notation", "2.1": "method-notation", "2.2": "method-row",
    "2.3": "respacing", "3": "method-elbo", "3.1": "method-elbo", "3.2": "method-row", "3.3": "method-decoder",
    "3.4": "method-elbo", "3.5": "respacing-decoder", "4": "method-decoder", "5": "method-row", "5.1": "method-row",
    "5.2": "method-scalar", "5.2a": "method-scalar", "5.3": "method-learned", "5.4": "method-decoder",
    "5.5": "usage", "6": "method-dp", "6.1": "method-dp", "6.2": "method-dp", "6.3": "method-dp",
    "6.4": "method-other-costs", "7": "method-strides", "7.1": "method-strides", "7.2": "method-strides",
    "7.3": "method-strides", "8": "method-evaluation", "9": "public-checkpoints", "10": "results-paper",
    "10.1": "results-paper", "10.2": "results-paper", "10.3": "results-paper", "10.4": "results",
    "13": "method-trajectory",
}
"""Spec section (``method.md`` §x.y, the project's internal spec) → label of the book section that
covers it."""
SECTION_TITLES: dict[str, str] = {
    "method-notation": "Notation", "respacing": "Respacing",
    "method-elbo": "The ELBO of a K-step path", "method-row": "One forward pass fills a row",
    "method-decoder": "The decoder edge", "respacing-decoder": "The decoder on a respaced chain",
    "method-scalar": "Scalar variances", "method-learned": "Learned variances", "usage": "Using ddpmdp",
    "method-dp": "The dynamic program", "method-other-costs": "Other decomposable costs",
    "method-strides": "The strides it is compared with", "method-evaluation": "Selection and evaluation",
    "public-checkpoints": "Reproducing the paper", "results-paper": "The paper's numbers", "results": "Results",
    "method-trajectory": "Beyond the paper: schedules for sample fidelity",
}
_SEC = r"§[0-9]+[a-z]?(?:\.[0-9]+[a-z]?)?"
_SPEC_REF = re.compile(r"(?:``method\.md``|method\.md)\s*(" + _SEC + r"(?:(?:,\s*|\s+and\s+)" + _SEC + r")*)")


def _spec_refs(text: str, link: bool) -> str:
    """Replace "``method.md`` §3, §4 and §5" by links (``link``) to, or titles of, the book sections."""
    def one(num: str) -> str:
        label = SPEC_SECTIONS.get(num) or SPEC_SECTIONS.get(num.split(".")[0])
        if label is None:
            return f"§{num}"
        return f":ref:`{label}`" if link else f"book section '{SECTION_TITLES[label]}'"

    def repl(m: re.Match) -> str:
        seen: list[str] = []
        for n in re.findall(_SEC, m.group(1)):
            r = one(n[1:])
            if r not in seen:
                seen.append(r)
        return seen[0] if len(seen) == 1 else ", ".join(seen[:-1]) + " and " + seen[-1]

    return _SPEC_REF.sub(repl, text)


# ---- the paper's numbers --------------------------------------------------------------------------------
def _key(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z]+", "_", str(text)).strip("_")


def _paper_tables() -> dict[int, dict]:
    from ddpmdp.book.reporting import paper

    return {3: paper.PAPER_TABLE3, 4: paper.PAPER_TABLE4, 5: paper.PAPER_TABLE5}


def paper_substitutions() -> dict[str, str]:
    """``paper_t3_L_vlb_dp_32`` → "3.17" (Table 3), ``paper_t4_dp_32`` (Table 4, one objective),
    ``paper_t5_dp_ELBO_32`` (Table 5: the sampler name, objective dropped)."""
    out: dict[str, str] = {}
    for num, table in _paper_tables().items():
        for (obj, stride), row in table.items():
            for K, v in row.items():
                parts = [f"paper_t{num}"] + ([_key(obj)] if num == 3 else []) + [_key(stride), _key(K)]
                out["_".join(parts)] = f"{v:.2f}"
    return out


def _add_substitutions(app, config) -> None:
    from ddpmdp.book.reporting.headline import run_headline

    subs = dict(paper_substitutions())
    subs["repository_url"] = (config.html_theme_options or {}).get("repository_url", "")
    subs["run_headline"] = run_headline(Path(app.srcdir) / "book" / "_generated")
    subs.update(figure_captions(Path(app.srcdir) / "book" / "_generated"))
    subs.update(config.myst_substitutions or {})
    config.myst_substitutions = subs


_PAPER_CAPTIONS = {
    3: "CIFAR-10 test bits/dim by objective, stride and budget K; All: the full chain "
       "(T = 1000 for L_simple, 4000 otherwise)",
    4: "ImageNet 64×64 test bits/dim of the authors' L_hybrid model (3M steps, T = 4000); All: the full chain",
    5: "CIFAR-10 FID of L_simple samples (50,000 samples, Inception-v3 features); All: the full chain",
}


def figure_captions(generated: Path) -> dict[str, str]:
    """``figcaption_NAME`` → the one-line provenance a notebook wrote with figure NAME
    (``NAME_figcaption.md``: models with hashes, held-out and selection images)."""
    return {"figcaption_" + _key(p.name[:-len("_figcaption.md")]): p.read_text().strip()
            for p in sorted(generated.glob("*_figcaption.md"))}


class RerunBox(Directive):
    """```{rerun-box} NAME``` — notebook NAME's re-run box (:mod:`ddpmdp.book.runtime.rerun`)."""

    required_arguments = 1
    has_content = False

    def run(self):
        from ddpmdp.book.runtime.rerun import RERUN, rerun_markdown

        name = self.arguments[0]
        if name not in RERUN:
            raise self.error(f"rerun-box: no notebook {name!r} in ddpmdp.book.runtime.rerun.RERUN ({sorted(RERUN)})")
        config = self.state.document.settings.env.config
        url = (config.html_theme_options or {}).get("repository_url", "")
        branch = (config.html_theme_options or {}).get("repository_branch", "main") or "main"
        node = nodes.container(classes=["rerun-box"])
        root = Path(self.state.document.settings.env.srcdir)
        text = rerun_markdown(name, url, branch, root=root)
        self.state.nested_parse(StringList(text.splitlines(), source="rerun-box"), self.content_offset, node)
        return [node]


class PaperTable(Directive):
    """```{paper-table} N``` — the paper's Table N (3, 4 or 5) from :mod:`ddpmdp.book.reporting.paper`, in a box
    titled as a reference so it is never read as this run's result."""

    required_arguments = 1
    has_content = False

    def run(self):
        num = int(self.arguments[0])
        tables = _paper_tables()
        if num not in tables:
            raise self.error(f"paper-table: no Table {num} in ddpmdp.book.reporting.paper (have {sorted(tables)})")
        table = tables[num]
        Ks = sorted({K for row in table.values() for K in row if K != "all"})
        has_all = any("all" in row for row in table.values())
        first = "Objective" if num != 5 else "Model"
        head = [first, "Stride" if num != 5 else "Sampler"] + [f"K={K}" for K in Ks] + (["All"] if has_all else [])
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        seen = set()
        for (obj, stride), row in table.items():
            cells = [obj.replace("_", "\\_") if obj not in seen else "", stride]
            cells += [f"{row[K]:.2f}" if K in row else "—" for K in Ks]
            if has_all:
                cells.append(f"{row['all']:.2f}" if "all" in row else "")
            seen.add(obj)
            lines.append("| " + " | ".join(cells) + " |")
        text = [f":::{{admonition}} Reference: Watson et al. (2021), Table {num} (the paper's numbers, not this run's)",
                ":class: paper-reference", ""]
        text += [f"{_PAPER_CAPTIONS[num]}; copied from the paper (`ddpmdp.book.reporting.paper.PAPER_TABLE{num}`), no SE given.",
                 "Different models, data and sample counts from this run: compare the shape of the rows, not the values.",
                 ""]
        text += lines + [":::"]
        node = nodes.container(classes=["paper-reference-box"])
        self.state.nested_parse(StringList(text, source="paper-table"), self.content_offset, node)
        return [node]


# ---- compact "mean ± SE" cells and wide pages -------------------------------------------------------------
_PM_CELL = re.compile(r"^\s*(<\s*\d+\.\d+|[-+−]?\d[\d,]*(?:\.\d+)?)\s*([‡†*≈]*)\s*±\s*(\d+(?:\.\d+)?|n/a)\s*([‡†*≈]*)\s*$")
_NUM_CELL = re.compile(r"^\s*(?:[<>≤≥]\s*)?[-+−]?\d[\d,]*(?:\.\d+)?\s*(?:%|[‡†*≈]+)?\s*$")
WIDE_PAGES = re.compile(r"^(book/results|notebooks/executed/.+)$")
"""Pages (Sphinx page names) laid out at the full content width."""


def compact_cells(doctree: nodes.Node) -> int:
    """Split every table cell reading "mean ± SE" into a mean and a ``ddpmdp-se`` part (class
    ``ddpmdp-pm`` on the cell) and mark plain numeric cells ``ddpmdp-num``; returns how many
    cells were split."""
    n = 0
    for entry in list(doctree.findall(nodes.entry)):
        if any(isinstance(a, nodes.thead) for a in _ancestors(entry)):
            continue
        if list(entry.findall(nodes.literal)) or len(entry.children) != 1:
            continue
        text = entry.astext()
        m = _PM_CELL.match(text)
        if m:
            mean, mark1, se, mark2 = m.groups()
            para = nodes.paragraph()
            para += nodes.inline(text=mean + (mark1 or mark2), classes=["ddpmdp-mean"])
            para += nodes.Text(" ")
            para += nodes.inline(text=f"± {se}", classes=["ddpmdp-se"])
            entry.children = []
            entry += para
            entry["classes"].append("ddpmdp-pm")
            n += 1
        elif _NUM_CELL.match(text):
            entry["classes"].append("ddpmdp-num")
        else:
            _break_opportunities(entry)
    return n


_BREAK_AFTER = re.compile(r"(?<=[:_/])(?=\w)")


def _break_opportunities(entry: nodes.Element) -> None:
    """Let long identifiers in a text cell (``tiny-imagenet64:test``; over 14 characters) wrap after
    ``:``, ``_`` or ``/`` (an HTML ``<wbr>``; copied text is unchanged) instead of widening the table."""
    for text in list(entry.findall(nodes.Text)):
        if any(isinstance(a, (nodes.literal, nodes.math, nodes.reference)) for a in _ancestors(text)):
            continue
        words = re.split(r"(\s+)", str(text))
        parts = [""]
        for w in words:  # only long identifiers get break opportunities ("L_simple" stays whole)
            pieces = _BREAK_AFTER.split(w) if len(w) > 14 else [w]
            parts[-1] += pieces[0]
            parts += pieces[1:]
        if len(parts) < 2:
            continue
        new: list[nodes.Node] = []
        for i, part in enumerate(parts):
            if i:
                new.append(nodes.raw("", "<wbr>", format="html"))
            new.append(nodes.Text(part))
        parent = text.parent
        idx = parent.index(text)
        parent[idx:idx + 1] = new


def _ancestors(node: nodes.Node):
    p = node.parent
    while p is not None:
        yield p
        p = p.parent


def _compact_cells(app, doctree, docname) -> None:
    compact_cells(doctree)


def _page_context(app, pagename: str, templatename: str, context: dict, doctree) -> None:
    context["ddpmdp_wide"] = bool(WIDE_PAGES.match(pagename))


# ---- no absolute paths of the build machine -----------------------------------------------------------
def _machine_paths(srcdir: str) -> list[tuple[str, str]]:
    """(absolute prefix, portable name), longest first: the installed package, the repository
    being built, the home directory."""
    import os

    import ddpmdp

    pairs = [(str(Path(ddpmdp.__file__).resolve().parent), "<ddpmdp>"),
             (str(Path(ddpmdp.__file__).parent), "<ddpmdp>"),
             (str(Path(srcdir).resolve()), "<repository>"), (str(Path(srcdir)), "<repository>")]
    home = os.path.expanduser("~")
    if home not in ("", "/", "~"):
        pairs.append((home, "~"))
    return sorted(set(pairs), key=lambda p: -len(p[0]))


def portable_text(text: str, pairs: list[tuple[str, str]]) -> str:
    """``text`` with every absolute prefix of ``pairs`` replaced by its portable name."""
    for prefix, name in pairs:
        text = text.replace(prefix, name)
    return text


def _portable_paths(app, doctree, docname) -> None:
    pairs = _machine_paths(app.srcdir)
    for text in list(doctree.findall(nodes.Text)):
        new = portable_text(str(text), pairs)
        if new != str(text):
            text.parent.replace(text, nodes.Text(new))
    for raw in doctree.findall(nodes.raw):
        new = portable_text(raw.astext(), pairs)
        if new != raw.astext():
            raw.children = [nodes.Text(new)]
