"""The book's notebooks: thin jupytext sources, executed copies that match them, and nbval.

* every ``notebooks/*.py`` has exactly one cell tagged ``parameters`` (papermill), every
  parameter there is documented by a comment that papermill can read, no function or class is
  defined (logic lives in the package), and every code cell is followed by prose;
* ``notebooks/smoke/NAME.ipynb`` (the nbval references, executed with ``params/smoke``) and,
  when present, ``notebooks/executed/NAME.ipynb`` (the book's default run) hold the current
  source code with outputs;
* (slow) nbval re-executes the smoke copies and compares their outputs, sanitised by
  ``tests/nbval_sanitize.cfg``.

Refresh the smoke copies after editing a notebook with ``ddpmdp reproduce --smoke`` (or
``python -m ddpmdp.book.runner --params-dir params/smoke --out notebooks/smoke``).
"""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")
nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "notebooks").glob("*.py"))
NAMES = [p.stem for p in SOURCES]
DEFINITION = re.compile(r"^\s*(async\s+def|def|class)\s+\w+", re.MULTILINE)
REFRESH = "refresh with: ddpmdp reproduce --smoke"


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _code(nb, skip_injected: bool = True) -> list[str]:
    return [c.source.strip() for c in nb.cells
            if c.cell_type == "code" and not (skip_injected and "injected-parameters" in _tags(c))]


def test_there_are_notebooks():
    assert set(NAMES) >= {"cifar10_nll", "imagenet64_nll", "mc_ablation", "sample_quality", "samples_and_schedules"}


@pytest.mark.parametrize("name", NAMES)
def test_source_is_thin_and_parameterised(name):
    from ddpmdp.book.runner import notebook_parameters, prepare

    nb = jupytext.read(ROOT / "notebooks" / f"{name}.py")
    params = [c for c in nb.cells if "parameters" in _tags(c)]
    assert len(params) == 1, f"{name}: expected exactly one cell tagged 'parameters', found {len(params)}"
    for c in nb.cells:
        if c.cell_type == "code":
            found = DEFINITION.search(c.source)
            assert found is None, f"{name}: defines {found.group(0).strip()!r}; move it into ddpmdp.book"
    body = ast.parse(params[0].source).body
    untyped = [t.id for node in body if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)]
    assert not untyped, f"{name}: parameters without a type annotation (papermill --help-notebook shows them as " \
                        f"'Unknown type'): {untyped}"
    targets = [node.target.id for node in body if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)]
    inferred = notebook_parameters(prepare(ROOT / "notebooks" / f"{name}.py"))
    assert list(inferred) == targets, (f"{name}: papermill cannot read some parameter lines (no '=' is allowed "
                                       f"in the help comment): {sorted(set(targets) - set(inferred))}")
    undocumented = [k for k, v in inferred.items() if not v.get("help")]
    assert not undocumented, f"{name}: parameters without a help comment: {undocumented}"
    untyped_for_papermill = [k for k, v in inferred.items() if v.get("inferred_type_name") in (None, "None")]
    assert not untyped_for_papermill, f"{name}: papermill infers no type for {untyped_for_papermill}"
    for i, c in enumerate(nb.cells):
        if c.cell_type == "code" and "parameters" not in _tags(c):
            assert i + 1 < len(nb.cells) and nb.cells[i + 1].cell_type == "markdown", (
                f"{name}: code cell {i} is not followed by a markdown cell interpreting its output")


@pytest.mark.parametrize("name", NAMES)
def test_smoke_copy_is_current(name):
    from ddpmdp.book.runner import load_params

    path = ROOT / "notebooks" / "smoke" / f"{name}.ipynb"
    assert path.is_file(), f"{path.relative_to(ROOT)} is missing; {REFRESH}"
    stored = nbformat.read(path, as_version=4)
    source = jupytext.read(ROOT / "notebooks" / f"{name}.py")
    assert _code(stored) == _code(source), f"{path.relative_to(ROOT)} is stale; {REFRESH}"
    code = [c for c in stored.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") is not None for c in code), (
        f"{path.relative_to(ROOT)} has unexecuted cells (nbval would compare nothing); {REFRESH}")
    assert not any(o.get("output_type") == "error" for c in code for o in c.get("outputs", []))
    smoke_params = ROOT / "params" / "smoke" / f"{name}.yaml"
    if smoke_params.is_file():
        assert stored.metadata.get("papermill", {}).get("parameters") == load_params(smoke_params), (
            f"{path.relative_to(ROOT)} was not executed with {smoke_params.relative_to(ROOT)}; {REFRESH}")


@pytest.mark.parametrize("name", NAMES)
def test_executed_copy_is_current(name):
    path = ROOT / "notebooks" / "executed" / f"{name}.ipynb"
    if not path.is_file():
        pytest.skip(f"{path.relative_to(ROOT)} not produced yet (ddpmdp reproduce)")
    stored = nbformat.read(path, as_version=4)
    source = jupytext.read(ROOT / "notebooks" / f"{name}.py")
    assert _code(stored) == _code(source), (f"{path.relative_to(ROOT)} is stale (the book would show old code); "
                                            "rerun ddpmdp reproduce")
    assert not any(o.get("output_type") == "error" for c in stored.cells if c.cell_type == "code"
                   for o in c.get("outputs", []))


@pytest.mark.slow
def test_nbval_on_smoke_notebooks():
    if not os.environ.get("DDPMDP_DATA"):
        pytest.skip("DDPMDP_DATA is not set: the smoke notebooks read CIFAR-10 and Tiny-ImageNet from it")
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval", "--nbval-current-env",
           "--nbval-sanitize-with", "tests/nbval_sanitize.cfg", "notebooks/smoke"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"nbval failed ({' '.join(cmd[2:])}):\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"
