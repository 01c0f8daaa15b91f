"""``ddpmdp evaluate``: held-out bits/dim ± SE of inference paths.

    ddpmdp evaluate test_table.npz --schedule dp:dp.json:32 --schedule even:32       from a held-out table
    ddpmdp evaluate --model SPEC --data cifar10:test --schedule dp:dp.json:32 …      directly, fresh noise

A ``dp:FILE:K`` schedule must have been solved for the model (or the held-out table's model) and
its noise schedule; ``--other-model`` transfers it deliberately to another model of the same noise
schedule. Several paths evaluated directly share forward passes and get paired differences
against the first.
"""
from __future__ import annotations

import argparse
import json
from typing import Any

from ddpmdp.cli import args as common
from ddpmdp.cli.registry import command
from ddpmdp.errors import require

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("evaluate", help=command("evaluate").summary, description=common.describe(__doc__))
    p.add_argument("table", nargs="?", default=None, help="a held-out table .npz (else --model and --data)")
    p.add_argument("--schedule", action="append", required=True, metavar="PATH",
                   help="path spec: even:K, quadratic:K, ddim-quadratic:K, logsnr:K, edm:K, dp:SOLVED.json:K or "
                   "nodes:0,…,T; repeat for several")
    common.add_other_model(p)
    common.add_model_args(p, required=False)
    common.add_data_args(p, required=False, help="held-out data for a direct evaluation (a data spec)")
    common.add_run_args(p)
    common.add_json(p, "print the scores as one JSON line (the summary line)")
    p.set_defaults(func=run)
    return p


def _direct(args: argparse.Namespace) -> dict:
    from ddpmdp.data.specs import load_images
    from ddpmdp.evaluate import evaluate_paths
    from ddpmdp.path_specs import parse_schedule_spec

    require(args.model is not None and args.data is not None,
            "evaluate needs TABLE.npz, or --model and --data for a direct evaluation")
    model = common.load_model(args)
    paths = {spec: parse_schedule_spec(spec, model.schedule, allow_other_model=args.other_model)
             for spec in args.schedule}
    data = load_images(args.data, args.data_dir).subset(args.n_images)
    return evaluate_paths(model, data, paths, variance=common.variance(args, model), clip=args.clip,
                          batch_size=args.batch_size, seed=args.seed, device=args.device, progress=not args.quiet)


def _table_schedule(table):
    """The table's noise schedule when its recorded name is a spec (linear:T, cosine:T) with the
    recorded hash (for logsnr:K and edm:K), else its T."""
    from ddpmdp.errors import DdpmdpError
    from ddpmdp.schedules import parse_schedule

    name, want = table.meta.get("schedule"), table.meta.get("schedule_hash")
    try:
        sched = parse_schedule(str(name)) if name else None
    except DdpmdpError:
        sched = None
    return sched if sched is not None and sched.T == table.T and (not want or sched.fingerprint() == want) \
        else table.T


def run(args: argparse.Namespace) -> int:
    if args.table:
        from ddpmdp.evaluate import path_from_table
        from ddpmdp.path_specs import parse_schedule_spec
        from ddpmdp.table import load_table

        require(args.model is None, "give either TABLE.npz or --model/--data (direct evaluation), not both")
        table = load_table(args.table)
        noise = _table_schedule(table)
        scores = {spec: path_from_table(table, parse_schedule_spec(spec, noise, allow_other_model=args.other_model))
                  for spec in args.schedule}
    else:
        scores = _direct(args)
    result = {spec: s.as_dict() for spec, s in scores.items()}
    paired = {}
    if not args.table and len(scores) > 1:  # same images, shared forward passes: paired differences
        from ddpmdp.evaluate import paired_difference

        first = args.schedule[0]
        for spec in args.schedule[1:]:
            diff, se = paired_difference(scores[spec], scores[first])
            paired[spec] = {"minus": first, "bpd_diff": diff, "bpd_diff_se": se, "within_2se": abs(diff) <= 2 * se}
            result[spec]["paired_vs_first"] = paired[spec]
    if args.json:
        print(json.dumps(result), flush=True)
        return 0
    for spec, s in scores.items():
        extra = ""
        if spec in paired:
            p = paired[spec]
            extra = f"  [{p['bpd_diff']:+.4f} ± {p['bpd_diff_se']:.4f} vs {p['minus']}, paired]"
        print(f"{spec:<24s} K={s.K:<5d} {s.bpd:.4f} ± {s.bpd_se:.4f} bits/dim  "
              f"({s.split} split, {s.n_images} images; SE {s.se_kind.split(':')[0]}){extra}")
    common.print_summary("evaluate_done", route="table" if args.table else "direct",
                         scores={spec: {"K": s.K, "bpd": s.bpd, "bpd_se": s.bpd_se} for spec, s in scores.items()})
    return 0
