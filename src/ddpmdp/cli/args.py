"""Argument groups shared by the ``ddpmdp`` commands, each defined once with its help, and the
helpers every command uses: loading the model, the grid, budgets, the output-file rule and the
JSON summary line.

Nothing here imports torch at module level: building any parser stays light.
"""
from __future__ import annotations

import argparse
import json
import os
import warnings
from pathlib import Path
from typing import Any

from ddpmdp.errors import DdpmdpError, require
from ddpmdp.variances import VARIANCE_RULES

__all__ = ["VARIANCE_NAMES", "add_model_args", "add_data_args", "add_data_dir", "add_grid_args", "add_run_args",
           "add_overwrite", "add_json", "add_other_model", "add_sampler_args", "sampler_args", "add_trajectory_args",
           "load_model", "budgets", "grid_nodes", "image_shape", "refuse_given", "check_outputs", "describe",
           "print_summary"]

VARIANCE_NAMES = VARIANCE_RULES
"""The variance rules' names for ``--variance``: the registry's (:mod:`ddpmdp.variances` imports no torch)."""


def add_model_args(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    """``--model`` and how to run it: noise schedule, output heads, time input, device, numerics."""
    g = p.add_argument_group("model")
    g.add_argument("--model", required=required, default=None,
                   help="model spec: an embedded model name (ddpmdp models), gaussian:DATA, iddpm:PRESET[:PATH], "
                   "ho[:PATH], diffusers:DIR, or module:callable")
    g.add_argument("--noise-schedule", dest="noise_schedule", default=None,
                   help="the noise schedule of a gaussian: or module:callable model: linear:T, cosine:T or a .npy "
                   "of ᾱ (embedded, iddpm:, ho: and diffusers: models know theirs)")
    g.add_argument("--output", choices=["eps", "eps+v"], default=None, help="for an nn.Module model: ε, or ε and v")
    g.add_argument("--time-input", choices=["iddpm", "ho", "node"], default=None,
                   help="for an nn.Module model: the network's time input at node n ((n−1)·1000/T, n−1 or n)")
    g.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default cpu)")
    g.add_argument("--bf16", action="store_true", help="run the network under bfloat16 autocast (ELBO math stays fp64)")
    g.add_argument("--channels-last", action="store_true", help="NHWC activations for the network")


def add_data_dir(p: argparse.ArgumentParser | Any) -> None:
    """``--data-dir`` (default ``$DDPMDP_DATA``)."""
    p.add_argument("--data-dir", default=None, help="dataset folder (default: $DDPMDP_DATA)")


def add_data_args(p: argparse.ArgumentParser, *, required: bool = True, split: bool = False,
                  help: str = "") -> None:
    """``--data`` (a data spec), ``--n-images``, ``--data-dir`` (and ``--split`` for ``table``)."""
    g = p.add_argument_group("data")
    g.add_argument("--data", required=required, default=None,
                   help=help or "data spec: cifar10:train|test, cifar10-lossless:train|test, "
                   "tiny-imagenet64:train|test, imagenet64:PATH or FILE.npz (images uint8 N×C×H×W)")
    if split:
        g.add_argument("--split", choices=["train", "test"], default=None,
                       help="split for dataset specs without one (default: train)")
    g.add_argument("--n-images", type=int, default=None, help="use only the first N images (default: all)")
    add_data_dir(g)


def add_grid_args(p: argparse.ArgumentParser) -> None:
    """One grid option, ``--grid SPEC`` (``ddpmdp.grids.parse_grid``)."""
    g = p.add_argument_group("grid")
    g.add_argument("--grid", default=None, metavar="SPEC",
                   help="the nodes the table holds and the DP searches: all (default), stride:k, log:G, "
                   "even:K1,K2,…, quadratic:…, ddim-quadratic:…, logsnr:…, edm:… (the nodes of those baselines), "
                   "nodes:a,b,…, joined with + (e.g. log:120+even:8,16,32+edm:8,16,32); 0 and T are always included")
    g.add_argument("--grid-stride", type=int, default=None, help=argparse.SUPPRESS)  # deprecated: --grid stride:k


def add_run_args(p: argparse.ArgumentParser, *, batch_help: str = "images per forward pass (default 32)") -> None:
    """Variance rule, clipping, batch size, seed, progress bars."""
    g = p.add_argument_group("run")
    g.add_argument("--variance", choices=VARIANCE_NAMES, default=None,
                   help="variance rule (default: learned_range for learned-variance models, else fixed_large); "
                   "analytic, optimal and best are estimated by `table` and then travel with dp:SOLVED.json:K "
                   "schedules, whose per-edge σ² evaluate and sample use")
    g.add_argument("--clip", dest="clip", action="store_true", default=True, help="clip x̂₀ to [-1, 1] (default)")
    g.add_argument("--no-clip", dest="clip", action="store_false", help="do not clip x̂₀")
    g.add_argument("--batch-size", type=int, default=32, help=batch_help)
    g.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    g.add_argument("--quiet", action="store_true", help="no progress bars")


def add_overwrite(p: argparse.ArgumentParser) -> None:
    """``--overwrite``: the one switch that lets a command replace an existing output file."""
    p.add_argument("--overwrite", action="store_true", help="replace existing output files (default: refuse)")


def add_json(p: argparse.ArgumentParser, help: str = "print the result as one JSON line") -> None:
    p.add_argument("--json", action="store_true", help=help)


def add_other_model(p: argparse.ArgumentParser) -> None:
    """``--other-model``: use dp: schedules solved for another model (never another noise schedule)."""
    p.add_argument("--other-model", action="store_true",
                   help="use dp:FILE:K schedules solved for another model of the same noise schedule "
                   "(refused without this flag; another noise schedule is always refused)")


def add_sampler_args(p: argparse.ArgumentParser | Any, *, eta: bool = True) -> None:
    """``--sampler`` (default: the one each schedule was solved for), ``--eta``, ``--other-sampler``."""
    p.add_argument("--sampler", choices=["ancestral", "ddim"], default=None,
                   help="ancestral or ddim (default: the sampler the schedule was solved for: DDIM eta = 0 for a "
                   "trajectory schedule, ancestral for an ELBO schedule and for even:K, edm:K, … paths)")
    if eta:
        p.add_argument("--eta", type=float, default=None, help="DDIM's eta with --sampler ddim (default 0: "
                       "deterministic)")
    p.add_argument("--other-sampler", action="store_true",
                   help="use a sampler the schedule was not solved for (a trajectory schedule is solved for DDIM "
                   "eta = 0 with its clip flag; anything else is refused without this flag)")


def sampler_args(args: argparse.Namespace) -> tuple[str | None, float]:
    """(``--sampler`` or None, η) after checking that ``--eta`` comes with ``--sampler ddim``."""
    eta = getattr(args, "eta", None)
    require(eta is None or args.sampler == "ddim", f"--eta {eta} applies to --sampler ddim only")
    require(eta is None or eta >= 0, f"--eta must be >= 0, got {eta}")
    return args.sampler, float(eta or 0.0)


def add_trajectory_args(p: argparse.ArgumentParser, when: str) -> None:
    """The teacher's options (``method.md`` §13): ``--n-seeds``, ``--teacher-grid``, ``--shape``;
    ``when`` names the option that selects them (for the help texts)."""
    g = p.add_argument_group(f"teacher ({when})")
    g.add_argument("--n-seeds", type=int, default=None, metavar="N",
                   help="seeds z (x_T = z, keyed noise): one teacher run of DDIM eta = 0 each")
    g.add_argument("--teacher-grid", default=None, metavar="SPEC",
                   help="the nodes the teacher steps through (grid spec, default all: every node T, T-1, …, 0)")
    g.add_argument("--shape", default=None, metavar="C,H,W", help="image shape if the model does not declare it")


# ---- helpers ---------------------------------------------------------------------------------
def image_shape(args: argparse.Namespace) -> tuple[int, int, int] | None:
    """``--shape C,H,W`` as integers (None when not given)."""
    if not getattr(args, "shape", None):
        return None
    try:
        shape = tuple(int(x) for x in args.shape.split(","))
    except ValueError:
        raise DdpmdpError(f"--shape {args.shape!r}: expected C,H,W such as 3,32,32") from None
    require(len(shape) == 3 and min(shape) >= 1, f"--shape {args.shape!r}: expected C,H,W such as 3,32,32")
    return (shape[0], shape[1], shape[2])


def refuse_given(args: argparse.Namespace, why: str, *options: str) -> None:
    """One line naming the first of ``options`` (``--n-seeds`` …) given on the command line, with ``why``."""
    for opt in options:
        if getattr(args, opt.lstrip("-").replace("-", "_"), None) is not None:
            raise DdpmdpError(f"{opt} {why}")

def load_model(args: argparse.Namespace):
    """The model of the model group's arguments (``--device cuda`` refused where CUDA is missing)."""
    from ddpmdp.models.adapter import Numerics
    from ddpmdp.models.specs import load_model as load

    if args.device.startswith("cuda"):
        import torch

        require(torch.cuda.is_available(), f"--device {args.device}: CUDA is not available here; use --device cpu")
    numerics = Numerics(bf16=bool(args.bf16), channels_last=bool(args.channels_last))
    return load(args.model, device=args.device, data_dir=args.data_dir, schedule=args.noise_schedule,
                output=args.output, time_input=args.time_input, numerics=numerics)


def budgets(text: str) -> list[int]:
    """``--budgets 8,16,32`` → sorted distinct integers."""
    try:
        ks = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise DdpmdpError(f"--budgets {text!r}: expected comma-separated integers such as 8,16,32") from None
    require(bool(ks), "--budgets is empty")
    return ks


def grid_spec(args: argparse.Namespace) -> str:
    """The ``--grid`` spec (``all`` by default); the deprecated ``--grid-stride k`` becomes ``stride:k``."""
    if args.grid_stride is not None:
        require(args.grid is None, "give --grid only (--grid-stride k is the deprecated spelling of --grid stride:k)")
        warnings.warn(f"--grid-stride is deprecated: use --grid stride:{args.grid_stride}", FutureWarning,
                      stacklevel=2)
        return f"stride:{args.grid_stride}"
    return args.grid or "all"


def grid_nodes(args: argparse.Namespace, T):
    """(int64 grid nodes, spec) of ``--grid`` for a model with T steps (``T``: the model's noise
    schedule, which the logsnr and edm parts need, or T)."""
    from ddpmdp.grids import parse_grid

    spec = grid_spec(args)
    return parse_grid(spec, T), spec


def check_outputs(*targets: str | os.PathLike | None, overwrite: bool, resume: bool = False,
                  nothing: str = "nothing was done") -> None:
    """The rule for every file a command writes, checked before any work: the folder must exist and
    be writable, and an existing file is refused unless ``--overwrite`` (``table`` also takes
    ``--resume``). Operating-system errors (a name too long, …) propagate as ``OSError``."""
    for target in targets:
        if target is None:
            continue
        path = Path(target)
        folder = path.parent if str(path.parent) else Path(".")
        require(folder.is_dir(), f"output folder {str(folder)!r} of {target} does not exist; {nothing}")
        require(os.access(folder, os.W_OK), f"output folder {str(folder)!r} of {target} is not writable; {nothing}")
        if path.exists():  # a name too long for the file system raises OSError here, before any work
            require(not path.is_dir(), f"{target} is a folder; give a file name")
            require(overwrite or resume, f"{target} exists: pass --overwrite to replace it; {nothing}")


def describe(doc: str | None) -> str:
    """A command's ``--help`` description: the first paragraph of its module docstring, plain text."""
    return (doc or "").split("\n\n")[0].replace("``", "")


def print_summary(event: str, **fields: Any) -> None:
    """The JSON summary line every command ends with."""
    print(json.dumps({"event": event, **fields}), flush=True)
