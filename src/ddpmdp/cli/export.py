"""The ``ddpmdp export`` subcommand.

    ddpmdp export dp.json:16 --to diffusers [--model diffusers:DIR] [--out FILE] [--json]
    ddpmdp export dp.json:16 --to iddpm
    ddpmdp export dp.json:16 --to k-diffusion

Prints (or writes to ``--out``) the path in the target's format with a short code snippet, the notes
on the decoder step and DDIM, and every variance rule the target cannot express
(:mod:`ddpmdp.export`). A trajectory schedule (solved for DDIM η = 0) is exported for the
deterministic sampler: diffusers' EulerDiscreteScheduler, k-diffusion's sample_euler,
improved-diffusion's ddim_sample_loop; ``--sampler ddim`` does the same for an ELBO schedule. The solved-schedule file names its noise schedule and holds ᾱ on its grid,
so k-diffusion's σ need nothing else. ``--model`` is checked against the file's model (another one
only with ``--other-model``) and ``diffusers:DIR`` fills the snippet's folder; ``--noise-schedule``
alone is checked against the file's noise schedule. Files written before format version 2 take
the noise schedule from ``--model``, ``--noise-schedule`` or their table's metadata.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ddpmdp.cli import args as common
from ddpmdp.cli.registry import command
from ddpmdp.errors import require

__all__ = ["add_parser"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``export`` subcommand to an ``argparse`` subparsers object; returns its parser."""
    p = subparsers.add_parser(
        "export", help=command("export").summary,
        description="Export one budget of a solved-schedule file (ddpmdp solve --out FILE) for another sampler: "
        "diffusers' DDPMScheduler.set_timesteps(timesteps=...) list (descending, 0-based = node - 1), "
        "improved-diffusion's SpacedDiffusion use_timesteps set, or k-diffusion's descending sigma list ending in "
        "0, each with a code snippet. Variance rules the target cannot express are named in the output. "
        "A trajectory schedule (solved for DDIM eta = 0) is exported for the deterministic sampler: diffusers' "
        "EulerDiscreteScheduler with a loop that passes it the eps of the clipped x0_hat, k-diffusion's sample_euler, "
        "improved-diffusion's ddim_sample_loop; --sampler ddim does the same for an ELBO schedule.")
    p.add_argument("solved", metavar="SOLVED.json:K", help="a file written by `ddpmdp solve --out` and a budget K")
    p.add_argument("--to", required=True, choices=["diffusers", "iddpm", "k-diffusion"], help="target sampler")
    p.add_argument("--out", default=None, help="write the export here instead of stdout (refused if it exists, "
                   "unless --overwrite)")
    common.add_overwrite(p)
    common.add_json(p, "the export as one JSON line instead of a commented Python snippet")
    common.add_other_model(p)
    common.add_sampler_args(p, eta=False)
    p.add_argument("--clip", dest="clip", action="store_true", default=None,
                   help="for a DDIM export: clip x0_hat to [-1, 1] (default: the schedule's recorded flag, else clip)")
    p.add_argument("--no-clip", dest="clip", action="store_false", help="for a DDIM export: do not clip x0_hat")
    common.add_model_args(p, required=False)  # --model: checked against the file; diffusers:DIR fills the snippet
    common.add_data_dir(p)
    p.set_defaults(func=run)
    return p


def _table_meta(table: str | None) -> dict[str, Any]:
    if not table or not Path(table).is_file():
        return {}
    from ddpmdp.table import load_table

    return dict(load_table(table).meta)


def _legacy_schedule(path, schedule):
    """The noise schedule of a file without identity (before version 2): ``schedule`` if given, else
    its table's recorded one; checked against the table's metadata when the table is still there."""
    from ddpmdp.schedules import parse_schedule

    meta = _table_meta(path.table)
    if schedule is None and meta.get("schedule"):
        try:
            schedule = parse_schedule(str(meta["schedule"]))
        except Exception:  # noqa: BLE001 - a schedule without a spec string (diffusers, custom): ask for it
            schedule = None
    if schedule is not None and meta.get("schedule_hash"):
        require(schedule.fingerprint() == meta["schedule_hash"], f"{path.table} was built on schedule "
                f"{meta.get('schedule')}, not {schedule.describe()}; pass the model the table was built with")
    return schedule


def run(args: argparse.Namespace) -> int:
    from ddpmdp.export import export_path, read_solved, render_text
    from ddpmdp.schedules import parse_schedule

    common.check_outputs(args.out, overwrite=args.overwrite, nothing="nothing was exported")
    path = read_solved(args.solved)
    model, schedule = None, None
    if args.model:
        model = common.load_model(args)  # with --noise-schedule for gaussian: and module:callable specs
    elif args.noise_schedule:
        schedule = parse_schedule(args.noise_schedule)
    if path.identity is None:
        schedule = _legacy_schedule(path, model.schedule if model is not None else schedule)
    model_dir, pipeline = None, False
    if args.model and args.model.startswith("diffusers:"):
        model_dir = args.model.partition(":")[2]
        pipeline = (Path(model_dir) / "model_index.json").is_file()
    result = export_path(path, args.to, schedule=schedule, model=model, allow_other_model=args.other_model,
                         model_dir=model_dir, pipeline=pipeline, sampler=args.sampler, clip=args.clip,
                         allow_other_sampler=args.other_sampler)
    line = json.dumps(result)
    if args.out:
        from ddpmdp.fileio import atomic_write_text

        atomic_write_text(args.out, line + "\n" if args.json else render_text(result))
    elif not args.json:
        sys.stdout.write(render_text(result))
    for m in result["not_expressible"]:
        print(f"ddpmdp export: warning: not expressible in {args.to}: {m}", file=sys.stderr)
    if args.json and not args.out:
        print(line, flush=True)
    else:
        common.print_summary("export_done", source=result["source"], to=args.to, out=args.out, K=result["K"],
                             sampler=result["sampler"], not_expressible=len(result["not_expressible"]))
    return 0
