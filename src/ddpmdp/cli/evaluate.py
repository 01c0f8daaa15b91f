"""``ddpmdp evaluate``: held-out scores of inference paths: bits/dim ± SE (``--metric bpd``, the
default) or the teacher distance of DDIM η = 0 samples (``--metric teacher``).

    ddpmdp evaluate test_table.npz --schedule dp:dp.json:32 --schedule even:32       from a held-out table
    ddpmdp evaluate --model SPEC --data cifar10:test --schedule dp:dp.json:32 …      directly, fresh noise
    ddpmdp evaluate --metric teacher --model SPEC --n-seeds 256 --schedule dp:traj.json:16 --schedule even:16

A ``dp:FILE:K`` schedule must have been solved for the model (or the held-out table's model) and
its noise schedule; ``--other-model`` transfers it deliberately to another model of the same noise
schedule. Several paths evaluated directly share their images or seeds and get paired differences
against the first. The teacher distance is E(z) = ‖x̂(z) − x_teacher(z)‖/√d (RMS per dimension,
data in [−1, 1]) from fresh seeds (never a trajectory table's), with NFE = K beside each number.
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
    p.add_argument("table", nargs="?", default=None, help="a held-out table .npz (else --model and --data, or "
                   "--metric teacher --model … --n-seeds N)")
    p.add_argument("--metric", choices=["bpd", "teacher"], default="bpd",
                   help="bpd: held-out bits/dim (default); teacher: RMS distance of each path's DDIM (eta = 0) "
                   "sample from the teacher's, over fresh seeds (with a held-out trajectory table TABLE: the sum "
                   "of its local errors along the path instead)")
    p.add_argument("--schedule", action="append", required=True, metavar="PATH",
                   help="path spec: even:K, quadratic:K, dp:SOLVED.json:K or nodes:0,…,T; repeat for several")
    common.add_other_model(p)
    common.add_model_args(p, required=False)
    common.add_data_args(p, required=False, help="held-out data for a direct evaluation (a data spec)")
    common.add_trajectory_args(p, "--metric teacher")
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
    paths = {spec: parse_schedule_spec(spec, model.schedule.T, allow_other_model=args.other_model)
             for spec in args.schedule}
    data = load_images(args.data, args.data_dir).subset(args.n_images)
    return evaluate_paths(model, data, paths, variance=args.variance, clip=args.clip,
                          batch_size=args.batch_size, seed=args.seed, device=args.device, progress=not args.quiet)


def _paired(args: argparse.Namespace, scores: dict, diff_of) -> dict[str, dict]:
    """Per path after the first: its paired difference against the first, with the 2-SE flag."""
    first = args.schedule[0]
    out = {}
    for spec in args.schedule[1:]:
        diff, se = diff_of(scores[spec], scores[first])
        out[spec] = {"minus": first, "diff": diff, "diff_se": se, "within_2se": abs(diff) <= 2 * se}
    return out


def _teacher(args: argparse.Namespace) -> int:
    from ddpmdp.path_specs import parse_schedule_spec
    from ddpmdp.trajectory import paired_teacher_difference, teacher_distance

    common.refuse_given(args, "does not apply to --metric teacher: its x_T are keyed seeds (--n-seeds), it needs "
                        "no images", "--data", "--n-images")
    common.refuse_given(args, "does not apply to --metric teacher: DDIM eta = 0 uses no variance", "--variance")
    require(args.model is not None and args.n_seeds is not None,
            "--metric teacher needs --model and --n-seeds N (fresh seeds; the teacher and every path start from "
            "the same z)")
    model = common.load_model(args)
    paths = {spec: parse_schedule_spec(spec, model.schedule.T, allow_other_model=args.other_model)
             for spec in args.schedule}
    scores = teacher_distance(model, paths, args.n_seeds, teacher_grid=args.teacher_grid, clip=args.clip,
                              seed=args.seed, batch_size=args.batch_size, shape=common.image_shape(args),
                              device=args.device, progress=not args.quiet)
    paired = _paired(args, scores, paired_teacher_difference)
    result = {spec: dict(s.as_dict(), **({"paired_vs_first": paired[spec]} if spec in paired else {}))
              for spec, s in scores.items()}
    if args.json:
        print(json.dumps(result), flush=True)
        return 0
    for spec, s in scores.items():
        extra = ""
        if spec in paired:
            p = paired[spec]
            extra = (f"  [{p['diff']:+.5f} ± {p['diff_se']:.5f} vs {p['minus']}, paired"
                     f"{', within 2 SE' if p['within_2se'] else ''}]")
        print(f"{spec:<24s} K={s.K:<5d} NFE={s.nfe:<5d} {s.mean:.5f} ± {s.se:.5f} RMS/dim from the teacher "
              f"({s.n_seeds} seeds, teacher {s.teacher_grid_size} nodes){extra}")
    common.print_summary("evaluate_done", route="direct", metric="teacher",
                         scores={spec: {"K": s.K, "NFE": s.nfe, "teacher_distance": s.mean,
                                        "teacher_distance_se": s.se} for spec, s in scores.items()})
    return 0


def _local_error_table(args: argparse.Namespace) -> int:
    """--metric teacher with a held-out trajectory table: Σ C along each path (not E(z))."""
    from ddpmdp.path_specs import parse_schedule_spec
    from ddpmdp.table import load_table, require_objective
    from ddpmdp.trajectory import path_local_error

    require(args.model is None, "give either TABLE.npz or --model (direct evaluation), not both")
    table = load_table(args.table)
    require_objective(table, "trajectory", "evaluate --metric teacher TABLE", args.table)
    result = {}
    for spec in args.schedule:
        sch = parse_schedule_spec(spec, table.T, allow_other_model=args.other_model)
        cost, bound = path_local_error(table, sch)
        result[spec] = {"K": sch.K, "NFE": sch.K, "nodes": [int(n) for n in sch.nodes], "local_error_sum": cost,
                        "local_error_sum_se_bound": bound, "n_seeds": table.meta["n_seeds"],
                        "units": table.meta["units"]}
    if args.json:
        print(json.dumps(result), flush=True)
        return 0
    for spec, r in result.items():
        print(f"{spec:<24s} K={r['K']:<5d} NFE={r['NFE']:<5d} Σ local error {r['local_error_sum']:.5f} "
              f"(SE ≤ {r['local_error_sum_se_bound']:.5f}; trajectory table {args.table}, {r['n_seeds']} seeds; "
              "not the teacher distance)")
    common.print_summary("evaluate_done", route="table", metric="teacher",
                         scores={spec: {"K": r["K"], "local_error_sum": r["local_error_sum"]}
                                 for spec, r in result.items()})
    return 0


def run(args: argparse.Namespace) -> int:
    if args.metric == "teacher":
        return _local_error_table(args) if args.table else _teacher(args)
    common.refuse_given(args, "applies to --metric teacher only", "--n-seeds", "--teacher-grid")
    if args.table:
        from ddpmdp.evaluate import path_from_table
        from ddpmdp.path_specs import parse_schedule_spec
        from ddpmdp.table import load_table, require_objective

        require(args.model is None, "give either TABLE.npz or --model/--data (direct evaluation), not both")
        table = load_table(args.table)
        require_objective(table, "elbo", "evaluate --metric bpd TABLE", args.table)
        scores = {spec: path_from_table(table, parse_schedule_spec(spec, table.T, allow_other_model=args.other_model))
                  for spec in args.schedule}
    else:
        scores = _direct(args)
    result = {spec: s.as_dict() for spec, s in scores.items()}
    paired = {}
    if not args.table and len(scores) > 1:  # same images, shared forward passes: paired differences
        from ddpmdp.evaluate import paired_difference

        paired = {spec: {"minus": p["minus"], "bpd_diff": p["diff"], "bpd_diff_se": p["diff_se"],
                         "within_2se": p["within_2se"]}
                  for spec, p in _paired(args, scores, paired_difference).items()}
        for spec, p in paired.items():
            result[spec]["paired_vs_first"] = p
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
