"""Execute the book's notebooks: jupytext sources → papermill → normalised ``.ipynb``. The command
line is ``ddpmdp reproduce`` (:mod:`ddpmdp.cli.reproduce`)::

    ddpmdp reproduce [NAME ...] [-f PARAMS.yaml | --params-dir DIR] [-p NAME VALUE ...] [--out DIR] [--list]

For each notebook ``notebooks/NAME.py`` (jupytext percent format, the reviewed source;
``toolchain.md`` §4.1):

1. read it with ``jupytext.read`` and drop the ``jupytext`` metadata, so the executed copy is
   not paired with the source;
2. set the ``python3`` kernelspec and write ``OUT/NAME.ipynb``;
3. check the parameter names against the notebook's cell tagged ``parameters`` (a typo in a
   parameter file is an error, not a silently ignored value) and run
   ``papermill.execute_notebook(OUT/NAME.ipynb, OUT/NAME.ipynb, cwd=OUT)``;
4. normalise the result: cell ids become ``cell-000``, ``cell-001``, …; papermill's and the
   kernel's timestamps are dropped (the injected parameters are kept in the notebook metadata).

Parameters: ``-f FILE`` (one notebook) or ``--params-dir DIR`` (``DIR/NAME.yaml`` where present)
give YAML mappings; ``-p NAME VALUE`` (VALUE parsed as YAML) overrides them. Without either the
notebook's own defaults apply (the book's default run). ``MPLBACKEND`` is removed from the
kernel's environment, so that figures are embedded, and ``DDPMDP_REPO`` points at the
repository, so that the output folder may lie anywhere.

A failing notebook raises :class:`NotebookFailed` (the message names the notebook, the cell and
the error; the partially executed notebook is kept); ``ddpmdp reproduce`` then exits with status 2.
"""
from __future__ import annotations

import contextlib
import copy
import os
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ddpmdp.errors import DdpmdpError, require
from ddpmdp.book.runtime.locations import repo_root

__all__ = ["NOTEBOOKS", "BOOK_OUTPUTS", "NotebookFailed", "NotebookRun", "notebook_names", "load_params", "prepare",
           "notebook_parameters", "normalise", "execute", "run_all"]

NOTEBOOKS: tuple[str, ...] = ("embedded_models", "cifar10_nll", "imagenet64_nll", "mc_ablation", "sample_quality",
                              "samples_and_schedules", "optimal_variance", "sampling_schedules")
"""The book's notebooks in execution order (further ``notebooks/*.py`` files run after them)."""

KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


class NotebookFailed(DdpmdpError):
    """A notebook raised: ``name``, ``cell`` (1-based position in the executed notebook, markdown
    cells and the injected parameters included), ``exec_count`` (the ``In [n]`` number),
    ``ename``/``evalue`` (the exception) and ``output`` (the partially executed notebook)."""

    def __init__(self, name: str, cell: int | None, exec_count: int | None, ename: str, evalue: str, source: str,
                 output: Path) -> None:
        self.name, self.cell, self.exec_count, self.ename, self.evalue = name, cell, exec_count, ename, evalue
        self.output = output
        first = next((ln.strip() for ln in source.splitlines() if ln.strip() and not ln.startswith("#")), "")
        where = f"cell {cell}" + (f" (In [{exec_count}])" if exec_count is not None else "")
        super().__init__(f"notebook {name} failed in {where}: {ename}: {evalue}"
                         + (f"\n  cell starts with: {first[:100]}" if first else "")
                         + f"\n  the partially executed notebook is {_show(output)}")


@dataclass
class NotebookRun:
    """One executed notebook: its name, output file, parameters and wall seconds."""

    name: str
    output: Path
    parameters: dict[str, Any]
    seconds: float


def _show(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(repo_root()))
    except (ValueError, DdpmdpError):
        return str(path)


def notebook_names(root: Path | None = None) -> list[str]:
    """Every ``notebooks/*.py`` name: :data:`NOTEBOOKS` first, in order, then the others sorted."""
    folder = (root or repo_root()) / "notebooks"
    found = {p.stem for p in folder.glob("*.py")}
    return [n for n in NOTEBOOKS if n in found] + sorted(found - set(NOTEBOOKS))


def load_params(path: str | os.PathLike) -> dict[str, Any]:
    """A YAML parameter file as a dict (an empty file is ``{}``)."""
    import yaml

    p = Path(path)
    require(p.is_file(), f"parameter file {str(p)!r} does not exist")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise DdpmdpError(f"{p}: not valid YAML ({exc})") from None
    data = {} if data is None else data
    require(isinstance(data, dict), f"{p}: expected a mapping of parameter names to values")
    return data


def prepare(source: str | os.PathLike):
    """The jupytext notebook ``source`` as an unpaired nbformat notebook with the python3 kernel."""
    import jupytext

    nb = jupytext.read(str(source))
    nb.metadata.pop("jupytext", None)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    n_param = sum("parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells)
    require(n_param == 1, f"{source}: expected exactly one cell tagged 'parameters', found {n_param}")
    return nb


def notebook_parameters(nb) -> dict[str, dict[str, Any]]:
    """The parameters papermill infers from the cell tagged ``parameters``:
    ``{name: {default, inferred_type_name, help}}``."""
    import nbformat
    import papermill

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "nb.ipynb"
        nbformat.write(nb, path)
        return {k: dict(v) for k, v in papermill.inspect_notebook(str(path)).items()}


def normalise(nb):
    """Deterministic metadata: cell ids ``cell-NNN``, no execution timestamps, papermill's notebook
    metadata reduced to the injected ``parameters``."""
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:03d}"
        md = cell.get("metadata", {})
        md.pop("papermill", None)
        md.pop("execution", None)
    pm = nb.metadata.pop("papermill", None) or {}
    if pm.get("parameters"):
        nb.metadata["papermill"] = {"parameters": pm["parameters"]}
    nb.metadata.pop("widgets", None)
    nb["nbformat"], nb["nbformat_minor"] = 4, max(int(nb.get("nbformat_minor", 5)), 5)
    return nb


@contextlib.contextmanager
def _kernel_env(root: Path) -> Iterator[None]:
    """The kernel's environment: without ``MPLBACKEND`` (an Agg backend would stop figures being
    embedded), and with ``DDPMDP_REPO`` = ``root`` so that notebooks executed in a folder outside
    the repository still find it (:func:`ddpmdp.book.runtime.locations.repo_root`)."""
    saved = {k: os.environ.get(k) for k in ("MPLBACKEND", "DDPMDP_REPO")}
    os.environ.pop("MPLBACKEND", None)
    os.environ["DDPMDP_REPO"] = str(root)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def execute(name: str, *, parameters: Mapping[str, Any] | None = None, out_dir: str | os.PathLike,
            root: Path | None = None, kernel: str = "python3") -> NotebookRun:
    """Run ``notebooks/NAME.py`` into ``out_dir/NAME.ipynb`` (see the module docstring).

    Raises:
        DdpmdpError: unknown notebook or parameter names.
        NotebookFailed: a cell raised (the output notebook is written, normalised, anyway).
    """
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    root = root or repo_root()
    src = root / "notebooks" / f"{name}.py"
    require(src.is_file(), f"no notebook {name!r}: {_show(src)} does not exist "
            f"(available: {', '.join(notebook_names(root))})")
    out_dir = Path(out_dir)
    out_dir = out_dir if out_dir.is_absolute() else root / out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{name}.ipynb"
    nb = prepare(src)
    params = dict(parameters or {})
    known = notebook_parameters(nb)
    unknown = sorted(set(params) - set(known))
    require(not unknown, f"notebook {name}: unknown parameter(s) {', '.join(unknown)}; "
            f"its parameters are {', '.join(known)}")
    nbformat.write(nb, out)
    t0 = time.perf_counter()
    try:
        with _kernel_env(root):
            papermill.execute_notebook(str(out), str(out), parameters=params or None, kernel_name=kernel,
                                       cwd=str(out_dir), progress_bar=False, log_output=False)
    except PapermillExecutionError as exc:
        _rewrite(out)
        cell = exc.cell_index + 1 if exc.cell_index is not None else None
        raise NotebookFailed(name, cell, exc.exec_count, exc.ename, exc.evalue, exc.source or "", out) from None
    _rewrite(out)
    return NotebookRun(name, out, params, time.perf_counter() - t0)


def _rewrite(path: Path) -> None:
    import nbformat

    if path.is_file():
        nb = nbformat.read(path, as_version=4)
        nbformat.write(normalise(nb), path)


BOOK_OUTPUTS: dict[str, Any] = {"out_dir": "book/_generated", "write_book": True, "cache_dir": "runs/cache"}
"""What a run into ``notebooks/executed/`` (the book's run) passes to every notebook that has these
parameters and whose parameter file does not set them: a notebook's own default writes beside it
and never into the book (:mod:`ddpmdp.book.runtime.run_config`)."""


def run_all(names: Sequence[str] | None = None, *, params_file: str | os.PathLike | None = None,
            params_dir: str | os.PathLike | None = None, overrides: Mapping[str, Any] | None = None,
            out_dir: str | os.PathLike = "notebooks/executed", root: Path | None = None,
            log=print) -> list[NotebookRun]:
    """Run several notebooks in order, logging one line before and after each.

    ``params_file`` applies to a single notebook only; ``params_dir/NAME.yaml`` is used for each
    notebook that has one; ``overrides`` apply to every notebook (and must be parameters of each).
    Stops at the first failure (raises :class:`NotebookFailed`).
    """
    root = root or repo_root()
    names = list(names) if names else notebook_names(root)
    require(bool(names), f"no notebooks found under {_show(root / 'notebooks')}")
    require(params_file is None or len(names) == 1, "-f/--params applies to one notebook; use --params-dir for several")
    require(params_file is None or params_dir is None, "give either a parameter file or a parameter folder")
    pdir = None
    if params_dir is not None:
        pdir = Path(params_dir)
        pdir = pdir if pdir.is_absolute() else root / pdir
        require(pdir.is_dir(), f"parameter folder {_show(pdir)} does not exist")
    runs = []
    for i, name in enumerate(names, 1):
        params: dict[str, Any] = {}
        source = "notebook defaults"
        if params_file is not None:
            params, source = load_params(params_file), str(params_file)
        elif pdir is not None and (pdir / f"{name}.yaml").is_file():
            params, source = load_params(pdir / f"{name}.yaml"), _show(pdir / f"{name}.yaml")
        params.update(copy.deepcopy(dict(overrides or {})))
        if overrides:
            source += " + overrides"
        target_dir = Path(out_dir) if Path(out_dir).is_absolute() else root / out_dir
        if target_dir.resolve() == (root / "notebooks" / "executed").resolve():
            known = notebook_parameters(prepare(root / "notebooks" / f"{name}.py"))
            params = {**{k: v for k, v in BOOK_OUTPUTS.items() if k in known}, **params}
        target = (Path(out_dir) if Path(out_dir).is_absolute() else root / out_dir) / f"{name}.ipynb"
        log(f"[{i}/{len(names)}] {name}: parameters from {source} -> {_show(target)}", flush=True)
        run = execute(name, parameters=params, out_dir=out_dir, root=root)
        log(f"[{i}/{len(names)}] {name}: done in {run.seconds:.1f} s", flush=True)
        runs.append(run)
    return runs
