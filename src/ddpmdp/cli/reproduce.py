"""``ddpmdp reproduce``: run the book's notebooks with papermill and build the book.

::

    ddpmdp reproduce                          the default run: every notebook with its own defaults (embedded
                                              models) → notebooks/executed/, tables and figures →
                                              book/_generated/, then jupyter-book build --all -W -n --keep-going .
    ddpmdp reproduce --params-dir params/paper   the paper's run (public checkpoints, GPU), same outputs
    ddpmdp reproduce --smoke                  params/smoke → notebooks/smoke/ (the nbval references);
                                              outputs under runs/smoke/, no book build
    ddpmdp reproduce cifar10_nll mc_ablation --no-build     only these notebooks
    ddpmdp reproduce cifar10_nll -f my.yaml -p budgets '[8, 16]' --out /tmp/nb   one notebook, own parameters
    ddpmdp reproduce --list [NAME ...]        the notebooks and their parameters, with help text; runs nothing

``-f FILE`` (one notebook) or ``--params-dir DIR`` (``DIR/NAME.yaml`` where present) give YAML
parameter mappings; ``-p NAME VALUE`` (VALUE parsed as YAML, repeatable) overrides them; a name the
notebook does not have is an error. The book is built after a run into ``notebooks/executed/``
unless ``--no-build``; it renders the committed ``notebooks/executed/*.ipynb`` with execution
off, so the build needs neither a kernel nor the models. A failing notebook stops the run with
exit status 2 and a message naming the notebook and the cell.

This module imports only the standard library at load time (``ddpmdp --help`` stays fast); the
papermill runner (:mod:`ddpmdp.book.runtime.runner`) is imported when the command runs.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ddpmdp.cli.registry import command
from ddpmdp.errors import DdpmdpError, require

__all__ = ["add_parser", "build_book", "run_reproduce", "SMOKE_PARAMS", "SMOKE_OUT", "BOOK_OUT"]

SMOKE_PARAMS = "params/smoke"
SMOKE_OUT = "notebooks/smoke"
BOOK_OUT = "notebooks/executed"


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``reproduce`` subcommand to the ``ddpmdp`` parser's subparsers."""
    p = subparsers.add_parser("reproduce", help=command("reproduce").summary,
                              description=__doc__.split("\n\n")[0].replace("``", ""),
                              epilog="Examples: ddpmdp reproduce --smoke; ddpmdp reproduce cifar10_nll -f my.yaml "
                                     "--out /tmp/nb; ddpmdp reproduce --list")
    p.add_argument("names", nargs="*", metavar="NAME", help="notebooks to run (default: all, in the book's order)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("-f", "--params", dest="params_file", default=None,
                   help="YAML parameter file (exactly one NAME)")
    g.add_argument("--params-dir", default=None, help="folder of NAME.yaml parameter files (e.g. params/paper)")
    g.add_argument("--smoke", action="store_true",
                   help=f"tiny parameter set {SMOKE_PARAMS}/ into {SMOKE_OUT}/ (nbval references); no book build")
    p.add_argument("-p", "--parameter", dest="overrides", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="override one parameter (VALUE is YAML, e.g. -p budgets '[2, 4]'); repeatable")
    p.add_argument("--out", default=None, help=f"folder for the executed notebooks (default: {BOOK_OUT}, "
                   f"or {SMOKE_OUT} with --smoke)")
    p.add_argument("--no-build", action="store_true", help="run the notebooks only")
    p.add_argument("--list", action="store_true", help="list the notebooks and their parameters; run nothing")
    p.set_defaults(func=run_reproduce)
    return p


def _jupyter_book() -> str:
    here = Path(sys.executable).parent / "jupyter-book"
    found = str(here) if here.is_file() else shutil.which("jupyter-book")
    require(found is not None, "jupyter-book is not installed: pip install 'ddpmdp[book]' (Jupyter Book 1.x)")
    return found  # type: ignore[return-value]


def build_book(root: Path | None = None, *, strict: bool = True) -> int:
    """``jupyter-book build --all -W -n --keep-going ROOT`` (strict: warnings are errors, nitpicky
    references); returns its exit status. Output: ``ROOT/_build/html``."""
    from ddpmdp.book.runtime.locations import repo_root

    root = root or repo_root()
    cmd = [_jupyter_book(), "build", "--all"] + (["-W", "-n", "--keep-going"] if strict else []) + [str(root)]
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    print("reproduce: " + " ".join(cmd[1:]), flush=True)
    return subprocess.call(cmd, cwd=root, env=env)


def _overrides(pairs: Sequence[Sequence[str]] | None) -> dict[str, Any]:
    """``-p NAME VALUE`` pairs as ``{NAME: value}``, each VALUE parsed as YAML (kept as text when it
    is not valid YAML)."""
    import yaml

    out: dict[str, Any] = {}
    for name, value in pairs or []:
        try:
            out[name] = yaml.safe_load(value)
        except yaml.YAMLError:
            out[name] = value
    return out


def _list(names: Sequence[str], root: Path) -> None:
    from ddpmdp.book.runtime.runner import notebook_parameters, prepare

    for name in names:
        params = notebook_parameters(prepare(root / "notebooks" / f"{name}.py"))
        print(f"{name}:")
        for k, v in params.items():
            print(f"  {k} = {v['default']}" + (f"  # {v['help']}" if v.get("help") else ""))


def _default_book_run(args: argparse.Namespace, target: Path, root: Path) -> bool:
    """Whether this run is the book's default run (the notebooks' own parameters into
    ``notebooks/executed/``), the only run whose wall times the re-run boxes quote."""
    return (target.resolve() == (root / BOOK_OUT).resolve() and args.params_file is None and args.params_dir is None
            and not args.smoke and not args.overrides)


def run_reproduce(args: argparse.Namespace) -> int:
    """The ``reproduce`` command (see the module docstring)."""
    from ddpmdp.book.runtime.locations import repo_root
    from ddpmdp.book.runtime.runner import BOOK_OUTPUTS, notebook_names, run_all

    root = repo_root()
    available = notebook_names(root)
    names = list(args.names) or available
    unknown = [n for n in names if n not in available]
    require(not unknown, f"unknown notebook(s) {', '.join(unknown)}; available: {', '.join(available)}")
    if args.list:
        _list(names, root)
        return 0
    require(args.params_file is None or len(args.names) == 1, "-f/--params applies to one notebook: name exactly "
            "one NAME, or use --params-dir for several")
    params_dir = SMOKE_PARAMS if args.smoke else args.params_dir
    out = args.out or (SMOKE_OUT if args.smoke else BOOK_OUT)
    fresh = not any((root / BOOK_OUTPUTS["cache_dir"]).glob("*"))  # no cached tables: each notebook pays its own
    t0 = time.perf_counter()
    runs = run_all(names, params_file=args.params_file, params_dir=params_dir,
                   overrides=_overrides(args.overrides), out_dir=out, root=root)
    print(f"reproduce: {len(names)} notebook(s) in {time.perf_counter() - t0:.1f} s", flush=True)
    target = Path(out) if Path(out).is_absolute() else root / out
    if _default_book_run(args, target, root):
        from ddpmdp.book.runtime.rerun import record_runtimes

        path = record_runtimes({r.name: r.seconds for r in runs}, root, full_run=names == available and fresh)
        print(f"reproduce: wall times recorded in {path.relative_to(root)} (the re-run boxes read them)", flush=True)
    if args.no_build:
        return 0
    if target.resolve() != (root / BOOK_OUT).resolve():
        print(f"reproduce: executed notebooks are in {out}/; the book renders {BOOK_OUT}/, so it is not rebuilt",
              flush=True)
        return 0
    t1 = time.perf_counter()
    rc = build_book(root)
    print(f"reproduce: book build exited with {rc} after {time.perf_counter() - t1:.1f} s; "
          f"HTML in {root / '_build' / 'html'}", flush=True)
    if rc != 0:
        raise DdpmdpError(f"the book build failed (exit status {rc}); see the Sphinx messages above")
    return 0
