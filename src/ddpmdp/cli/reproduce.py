"""``ddpmdp reproduce``: run every notebook and build the book.

::

    ddpmdp reproduce                          the default run: notebook defaults (embedded models)
                                              → notebooks/executed/, tables and figures → book/_generated/,
                                              then jupyter-book build --all -W -n --keep-going .
    ddpmdp reproduce --params-dir params/paper   the paper's run (public checkpoints, GPU), same outputs
    ddpmdp reproduce --smoke                  params/smoke → notebooks/smoke/ (the nbval references);
                                              outputs under runs/smoke/, no book build
    ddpmdp reproduce --only cifar10_nll,mc_ablation --no-build

The book renders the committed ``notebooks/executed/*.ipynb`` with execution off, so the build
needs neither a kernel nor the models. A failing notebook stops the run with exit status 2 and a
message naming the notebook and the cell.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ddpmdp.errors import DdpmdpError, require
from ddpmdp.book.locations import repo_root

__all__ = ["add_parser", "build_book", "run_reproduce", "SMOKE_PARAMS", "SMOKE_OUT"]

SMOKE_PARAMS = "params/smoke"
SMOKE_OUT = "notebooks/smoke"


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``reproduce`` subcommand to the ``ddpmdp`` parser's subparsers."""
    p = subparsers.add_parser("reproduce", help="run every notebook with papermill and build the book",
                              description=__doc__.split("\n\n")[0].replace("``", ""))
    p.add_argument("--smoke", action="store_true",
                   help=f"tiny parameter set {SMOKE_PARAMS}/ into {SMOKE_OUT}/ (nbval references); no book build")
    p.add_argument("--params-dir", default=None, help="folder of NAME.yaml parameter files (e.g. params/paper)")
    p.add_argument("--only", default=None, help="comma-separated notebook names (default: all)")
    p.add_argument("--out", default=None, help="folder for the executed notebooks (default: notebooks/executed, "
                   f"or {SMOKE_OUT} with --smoke)")
    p.add_argument("--no-build", action="store_true", help="run the notebooks only")
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
    root = root or repo_root()
    cmd = [_jupyter_book(), "build", "--all"] + (["-W", "-n", "--keep-going"] if strict else []) + [str(root)]
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    print("reproduce: " + " ".join(cmd[1:]), flush=True)
    return subprocess.call(cmd, cwd=root, env=env)


def run_reproduce(args: argparse.Namespace) -> int:
    """The ``reproduce`` command (see the module docstring)."""
    from ddpmdp.book.runner import notebook_names, run_all

    root = repo_root()
    names = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else notebook_names(root)
    unknown = sorted(set(names) - set(notebook_names(root)))
    require(not unknown, f"--only: unknown notebook(s) {', '.join(unknown)}; "
            f"available: {', '.join(notebook_names(root))}")
    if args.smoke:
        require(args.params_dir is None, "--smoke uses params/smoke; drop --params-dir")
        params_dir, out = SMOKE_PARAMS, args.out or SMOKE_OUT
    else:
        params_dir, out = args.params_dir, args.out or "notebooks/executed"
    t0 = time.perf_counter()
    run_all(names, params_dir=params_dir, out_dir=out, root=root)
    print(f"reproduce: {len(names)} notebook(s) in {time.perf_counter() - t0:.1f} s", flush=True)
    if args.no_build:
        return 0
    if args.smoke:
        print(f"reproduce: smoke notebooks are the nbval references in {out}/; the book renders "
              "notebooks/executed/ (run without --smoke to rebuild it)", flush=True)
        return 0
    t1 = time.perf_counter()
    rc = build_book(root)
    print(f"reproduce: book build exited with {rc} after {time.perf_counter() - t1:.1f} s; "
          f"HTML in {root / '_build' / 'html'}", flush=True)
    if rc != 0:
        raise DdpmdpError(f"the book build failed (exit status {rc}); see the Sphinx messages above")
    return 0
