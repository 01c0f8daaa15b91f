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
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from docutils import nodes, utils
from docutils.frontend import get_default_settings
from docutils.parsers.rst import Parser
from docutils.parsers.rst import directives as rst_directives
from docutils.parsers.rst import roles as rst_roles
from sphinx.util.nodes import make_refnode

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
    problems = _rst_problems(text)
    if problems:
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
    return {"parallel_read_safe": False, "parallel_write_safe": True}
