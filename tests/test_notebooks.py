"""The book's notebooks: thin jupytext sources, executed copies that match them, and nbval.

* every ``notebooks/*.py`` has exactly one cell tagged ``parameters`` (papermill), every
  parameter there is documented by a comment that papermill can read, no function or class is
  defined (logic lives in the package), and every code cell is followed by prose;
* ``notebooks/smoke/NAME.ipynb`` (the nbval references, executed with ``params/smoke``) and,
  when present, ``notebooks/executed/NAME.ipynb`` (the book's default run) hold the current
  source code with outputs;
* (slow) nbval re-executes the smoke copies and compares their outputs, sanitised by
  ``tests/nbval_sanitize.cfg`` (which rounds no number: every printed digit counts);
* (slow) the same holds with perturbed numerics (another batch split, thread count, oneDNN off,
  another ATen kernel ISA), and a reference with one changed digit fails.

The smoke references run their networks in float64 (``dtype: float64`` in ``params/smoke``), so
that their printed digits do not depend on the CPU; ``tests/README.md`` explains the mechanism and
the measurements behind it.

Refresh the smoke copies after editing a notebook with ``ddpmdp reproduce --smoke`` (one notebook:
``ddpmdp reproduce --smoke NAME``).
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
    from ddpmdp.book.runtime.runner import notebook_parameters, prepare

    nb = jupytext.read(ROOT / "notebooks" / f"{name}.py")
    params = [c for c in nb.cells if "parameters" in _tags(c)]
    assert len(params) == 1, f"{name}: expected exactly one cell tagged 'parameters', found {len(params)}"
    for c in nb.cells:
        if c.cell_type == "code":
            found = DEFINITION.search(c.source)
            assert found is None, f"{name}: defines {found.group(0).strip()!r}; move it into a ddpmdp.book module"
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
    from ddpmdp.book.runtime.runner import load_params

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


def _nbval(paths, *, env_extra: dict[str, str] | None = None, timeout: int = 1800) -> subprocess.CompletedProcess:
    """Run nbval (sanitised by ``tests/nbval_sanitize.cfg``) on notebooks/folders in a subprocess."""
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env["DDPMDP_REPO"] = str(ROOT)  # copies outside the checkout still resolve runs/ and the data notes
    env.update(env_extra or {})
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval", "--nbval-current-env",
           "--nbval-sanitize-with", str(ROOT / "tests" / "nbval_sanitize.cfg"), "-o", "addopts=",
           *[str(p) for p in paths]]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def _other_cpu_capability() -> str:
    """An ATen kernel ISA other than the one torch picked here (AVX-512 → AVX2, else the portable
    ``default``): as if the notebooks ran on another CPU model."""
    import torch

    return "avx2" if torch.backends.cpu.get_cpu_capability() == "AVX512" else "default"


PERTURBED_CODE = """
# --- perturbed numerics (tests/test_notebooks.py): other summation orders, same mathematics ---
batch_size = max(1, batch_size - 1)  # another split; keyed noise: every image sees the same noise
num_threads = 2  # intra-op parallel reductions split differently
cache_dir = None  # recompute every table under the perturbation
import torch
torch.backends.mkldnn.enabled = False  # oneDNN convolutions off: ATen's own kernels
"""


def perturbed_copy(name: str, dst: Path) -> Path:
    """``notebooks/smoke/NAME.ipynb`` copied to ``dst`` with :data:`PERTURBED_CODE` appended to its
    injected parameters; the stored outputs (the references) are untouched."""
    nb = nbformat.read(ROOT / "notebooks" / "smoke" / f"{name}.ipynb", as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in _tags(c)]
    assert len(injected) == 1, f"{name}: no injected parameters in the smoke copy; {REFRESH}"
    injected[0].source += "\n" + PERTURBED_CODE
    if "proxy_cache" in nb.metadata.get("papermill", {}).get("parameters", {}):
        injected[0].source += f"proxy_cache = {str(dst / 'fid')!r}  # train the FID proxy afresh\n"
    dst.mkdir(parents=True, exist_ok=True)
    out = dst / f"{name}.ipynb"
    nbformat.write(nb, out)
    return out


def plant_change(path: Path, old: str, new: str) -> int:
    """Replace the first ``old`` in a stored output of the notebook at ``path`` by ``new`` (a
    reference number that is now wrong); returns nbval's number of that cell (its code-cell index)."""
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    for k, c in enumerate(code):
        for o in c.get("outputs", []):
            slots = ([(o, "text")] if "text" in o else []) + [(o["data"], key) for key in o.get("data", {})]
            for holder, key in slots:
                if isinstance(holder[key], str) and old in holder[key]:
                    holder[key] = holder[key].replace(old, new, 1)
                    nbformat.write(nb, path)
                    return k
    raise AssertionError(f"{old!r} is not in any stored output of {path}")


def _failed_cells(stdout: str) -> list[int]:
    """nbval's numbers of the failed cells in a pytest summary."""
    return [int(n) for n in re.findall(r"^FAILED \S*::Cell (\d+)", stdout, re.MULTILINE)]


def _need_data() -> None:
    if not os.environ.get("DDPMDP_DATA"):
        pytest.skip("DDPMDP_DATA is not set: the smoke notebooks read CIFAR-10 and Tiny-ImageNet from it")


@pytest.mark.slow
def test_nbval_on_smoke_notebooks():
    _need_data()
    proc = _nbval([ROOT / "notebooks" / "smoke"])
    assert proc.returncode == 0, f"nbval failed on notebooks/smoke:\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"


#: The perturbed re-execution runs these four. The two NLL notebooks cover every smoke code path
#: that prints a network-derived number (fixed_large and learned_range tables with float64 direct
#: tiles, 32×32 and 64×64 networks with attention, evaluation, paired SEs, the DP) and are the two
#: that failed on a newcomer's machine with float32 references; sample_quality adds the samplers
#: and the FID proxy, trained afresh (in float32 its retraining under these perturbations changed
#: the proxy-FIDs, 24.77 → 24.73); sampling_schedules adds the trajectory table, the DDIM teacher and
#: KID. The other four smoke notebooks were checked the same way by hand (tests/README.md; last on
#: 2026-12-05, all 58 cells passed); they reuse these code paths.
PERTURBED = ("cifar10_nll", "imagenet64_nll", "sample_quality", "sampling_schedules")


@pytest.mark.slow
def test_smoke_references_hold_under_perturbed_numerics(tmp_path):
    """Another CPU in miniature: other thread count, another batch split, oneDNN off and another
    ATen kernel ISA change float summation orders; every compared output must still match."""
    _need_data()
    copies = [perturbed_copy(n, tmp_path) for n in PERTURBED]
    proc = _nbval(copies, env_extra={"ATEN_CPU_CAPABILITY": _other_cpu_capability()})
    assert proc.returncode == 0, (f"smoke outputs changed under perturbed numerics:\n{proc.stdout[-6000:]}\n"
                                  f"{proc.stderr[-2000:]}")
    assert "passed" in proc.stdout and not _failed_cells(proc.stdout)


@pytest.mark.slow
def test_changed_reference_number_fails(tmp_path):
    """The check can fail: one stored digit changed (the last one of a standard error) is reported,
    at that cell only (the sanitiser hides no printed digit)."""
    _need_data()
    nb = nbformat.read(ROOT / "notebooks" / "smoke" / "cifar10_nll.ipynb", as_version=4)
    text = next(c.outputs[0]["data"]["text/markdown"] for c in nb.cells
                if c.cell_type == "code" and c.source.startswith("table = nll_table("))
    m = re.search(r"± (\d+\.\d+)", text)
    assert m, "no '± SE' in the stored bits/dim table"
    old = m.group(0)
    new = old[:-1] + str((int(old[-1]) + 1) % 10)
    copy = tmp_path / "cifar10_nll.ipynb"
    nbformat.write(nb, copy)
    cell = plant_change(copy, old, new)
    proc = _nbval([copy])
    assert proc.returncode != 0, f"nbval passed although {old!r} was changed to {new!r} in a stored output"
    assert _failed_cells(proc.stdout) == [cell], proc.stdout[-4000:]


def test_sanitiser_keeps_every_printed_digit():
    """``tests/nbval_sanitize.cfg`` must not map two different printed results to the same text."""
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "tests" / "nbval_sanitize.cfg")
    rules = [(re.compile(cfg[s]["regex"]), cfg[s]["replace"]) for s in cfg.sections()]

    def clean(text: str) -> str:
        for rx, rep in rules:
            text = rx.sub(rep, text)
        return text

    pairs = [("-536.928 ± 9.029", "-536.929 ± 9.029"), ("| 563.642 ± 8.666 |", "| 563.643 ± 8.665 |"),
             ("0.1234567", "0.1234568"), ("proxy classifier test accuracy: 0.171", "... accuracy: 0.172"),
             ("K = 4: 0, 10, 32, 100, 1000", "K = 4: 0, 3, 32, 100, 1000")]
    for a, b in pairs:
        assert clean(a) != clean(b), f"the sanitiser makes {a!r} and {b!r} equal"
    assert clean("table 0.2 s, dp 1.0 s") == clean("table 0.3 s, dp 1.1 s")  # wall times are not results
    assert clean("<Figure at 0x7f12ab34cd56>") == clean("<Figure at 0x7f00ffeeddcc>")
