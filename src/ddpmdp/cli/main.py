"""The ``ddpmdp`` command line.

    ddpmdp table    --model SPEC --data SPEC --out TABLE.npz [--grid SPEC]   estimate L(t, s) (selection: train)
    ddpmdp table    --objective trajectory --model SPEC --n-seeds N --out T.npz   C(t, s) of DDIM steps (teacher)
    ddpmdp solve    TABLE.npz --budgets 8,16,32 --out dp.json                optimal paths (ELBO: per-edge σ²)
    ddpmdp rescore  TABLE.npz --variance RULE --out NEW.npz                  another rule's table, no network
    ddpmdp evaluate TABLE.npz --schedule PATH [--json]                       bpd ± SE from a held-out table
    ddpmdp evaluate --model SPEC --data SPEC --schedule PATH                 direct K-pass evaluation, fresh noise
    ddpmdp evaluate --metric teacher --model SPEC --n-seeds N --schedule PATH   DDIM distance from the teacher
    ddpmdp sample   --model SPEC --schedule PATH --n N --out X.png           samples along a path
    ddpmdp export   dp.json:K --to diffusers|iddpm|k-diffusion              a path for other samplers
    ddpmdp models [--json] [--csv FILE]                                      the embedded models and their cards
    ddpmdp model-info SPEC [--json]                                          architecture facts and fingerprints
    ddpmdp download cifar10 [--data-dir DIR]                                 a data set, checksum-verified
    ddpmdp train    --name NAME --data SPEC --objective simple|hybrid|vlb --out DIR   small DDPMs
    ddpmdp reproduce                                                         every notebook, then the book

Path specs: ``even:K``, ``quadratic:K``, ``dp:SOLVED.json:K``, ``nodes:0,5,…,T``. Every command ends
with a JSON summary line on stdout (with ``--json``, the JSON document is that line). An existing
output file is refused unless ``--overwrite``. User errors, and operating-system errors such as a
file name too long, print one line and exit with status 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from ddpmdp.cli import registry
from ddpmdp.errors import DdpmdpError
from ddpmdp.version import __version__

__all__ = ["main", "build_parser", "one_line_warning"]


def _chosen(argv: Sequence[str]) -> str | None:
    """The command named on the command line (the first argument that is not an option), if known."""
    for a in argv:
        if not a.startswith("-"):
            return a if a in {c.name for c in registry.COMMANDS} else None
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``ddpmdp`` parser. With ``argv``, only the command it names is built in full (its module
    imported); the others are listed with their summaries. Without, every command is built."""
    p = argparse.ArgumentParser(prog="ddpmdp", description="ELBO-optimal inference schedules for pretrained DDPMs "
                                "(Watson, Ho, Norouzi & Chan 2021).",
                                epilog="Every command ends with a JSON summary line on stdout; an existing output "
                                "file is refused unless --overwrite; user errors exit with status 2.")
    p.add_argument("--version", action="version", version=f"ddpmdp {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = _chosen(argv) if argv is not None else None
    for cmd in registry.COMMANDS:
        if argv is None or cmd.name == chosen:
            registry.load(cmd.name).add_parser(sub)
        else:
            sub.add_parser(cmd.name, help=cmd.summary)
    return p


def _flush_denormals() -> None:
    """Treat float32 denormals as zero on the CPU: activations of diffusion UNets drift into the
    denormal range along a sampling chain and then cost up to 10× per operation on x86. Values
    below 1.2e-38 cannot change any bits/dim or pixel the commands report."""
    import torch

    torch.set_flush_denormal(True)


def one_line_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings as one line, ``ddpmdp: UserWarning: …`` (Python's default adds a line of source)."""
    return f"ddpmdp: {category.__name__}: {message}\n"


def _os_error(exc: OSError) -> str:
    """An operating-system error as one line: what failed and on which file."""
    what = exc.strerror or str(exc)
    name = exc.filename if exc.filename is not None else ""
    return f"{what}: {name}" if name else what


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 for user and operating-system errors, with one line on
    stderr)."""
    import warnings

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    warnings.formatwarning = one_line_warning
    cmd = registry.command(args.command)
    try:
        if cmd.name in registry.NETWORK_COMMANDS:
            _flush_denormals()
        status = int(args.func(args) or 0)
        if not cmd.own_summary and status == 0:
            print(json.dumps({"event": f"{cmd.name}_done", "exit_status": 0}), flush=True)
        return status
    except DdpmdpError as exc:
        print(f"ddpmdp {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a name too long, permission denied, disk full, …: no traceback
        print(f"ddpmdp {args.command}: error: {_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ddpmdp {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
