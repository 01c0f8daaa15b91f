"""The ``ddpmdp export`` subcommand (wired into :mod:`ddpmdp.cli.main` with :func:`add_parser`).

    ddpmdp export solved.json:16 --to diffusers [--model diffusers:DIR] [--out FILE] [--json]
    ddpmdp export solved.json:16 --to iddpm
    ddpmdp export solved.json:16 --to k-diffusion [--noise-schedule cosine:4000 | --model SPEC]

Prints (or writes to ``--out``) the path in the target's format with a short code snippet, the notes
on the decoder step and DDIM, and every variance rule the target cannot express
(:mod:`ddpmdp.export`). The noise schedule, needed for k-diffusion's σ, comes from ``--model``,
``--noise-schedule`` or the solved table's metadata; it must be the schedule the table was built on.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ddpmdp.errors import require

__all__ = ["add_parser"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``export`` subcommand to an ``argparse`` subparsers object; returns its parser."""
    p = subparsers.add_parser(
        "export", help="a solved path as diffusers timesteps, improved-diffusion use_timesteps or k-diffusion sigmas",
        description="Export one budget of `ddpmdp solve --json` for another sampler: diffusers' "
        "DDPMScheduler.set_timesteps(timesteps=...) list (descending, 0-based = node - 1), improved-diffusion's "
        "SpacedDiffusion use_timesteps set, or k-diffusion's descending sigma list ending in 0, each with a "
        "code snippet. Variance rules the target cannot express are named in the output. diffusers' "
        "DDIMScheduler cannot take custom timesteps: use `ddpmdp sample --sampler ddim`.")
    p.add_argument("solved", metavar="SOLVED.json:K", help="a file written by `ddpmdp solve --json` and a budget K")
    p.add_argument("--to", required=True, choices=["diffusers", "iddpm", "k-diffusion"], help="target sampler")
    p.add_argument("--out", default=None, help="write here instead of stdout")
    p.add_argument("--json", action="store_true", help="JSON instead of a commented Python snippet")
    p.add_argument("--model", default=None, help="model spec whose noise schedule to use (diffusers:DIR also "
                   "fills the snippet's folder)")
    p.add_argument("--noise-schedule", default=None, help="linear:T, cosine:T or a .npy of ᾱ (for k-diffusion)")
    p.add_argument("--data-dir", default=None)
    p.set_defaults(func=run)
    return p


def _table_meta(table: str | None) -> dict[str, Any]:
    if not table or not Path(table).is_file():
        return {}
    from ddpmdp.table import load_table

    return dict(load_table(table).meta)


def run(args: argparse.Namespace) -> int:
    from ddpmdp.export import export_path, read_solved, render_text
    from ddpmdp.schedules import parse_schedule

    path = read_solved(args.solved)
    meta = _table_meta(path.table)
    require(not (args.model and args.noise_schedule), "give either --model or --noise-schedule, not both")
    schedule = None
    if args.model:
        from ddpmdp.models.specs import load_model

        schedule = load_model(args.model, data_dir=args.data_dir).schedule
    elif args.noise_schedule:
        schedule = parse_schedule(args.noise_schedule)
    elif meta.get("schedule"):
        try:
            schedule = parse_schedule(str(meta["schedule"]))
        except Exception:  # noqa: BLE001 - a schedule without a spec string (diffusers, custom): ask for it
            schedule = None
    if schedule is not None and meta.get("schedule_hash"):
        require(schedule.fingerprint() == meta["schedule_hash"], f"{path.table} was built on schedule "
                f"{meta.get('schedule')}, not {schedule.describe()}; pass the model the table was built with")
    model_dir, pipeline = None, False
    if args.model and args.model.startswith("diffusers:"):
        model_dir = args.model.partition(":")[2]
        pipeline = (Path(model_dir) / "model_index.json").is_file()
    result = export_path(path, args.to, schedule=schedule, model_dir=model_dir, pipeline=pipeline)
    text = json.dumps(result, indent=1) + "\n" if args.json else render_text(result)
    if args.out:
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)
    for m in result["not_expressible"]:
        print(f"ddpmdp export: warning: not expressible in {args.to}: {m}", file=sys.stderr)
    return 0
