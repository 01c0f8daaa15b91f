"""``ddpmdp rescore TABLE --variance RULE --out NEW``: any variance rule's table from a table's node
statistics (M(t), Γ_t, decoder-candidate sums), without the network (:mod:`ddpmdp.rescore`)."""
from __future__ import annotations

import argparse
from typing import Any

from ddpmdp.cli import args as common
from ddpmdp.cli.registry import command

__all__ = ["add_parser", "run"]


def run(args: argparse.Namespace) -> int:
    from ddpmdp.rescore import rescore
    from ddpmdp.table import load_table, require_objective

    common.check_outputs(args.out, overwrite=args.overwrite, nothing="nothing was rescored")
    table = load_table(args.table)
    require_objective(table, "elbo", "rescore", args.table)
    table = rescore(table, args.variance)
    table.save(args.out)
    common.print_summary("rescore_done", out=args.out, variance=args.variance,
                         sums_variance=table.meta.get("sums_variance"), n_images=table.meta["n_images"])
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    r = subparsers.add_parser("rescore", help=command("rescore").summary,
                              description="Derive the table of any variance rule from TABLE's node statistics. Scalar "
                              "rules (fixed_small, fixed_large, analytic, optimal) need M(t) (and Γ_t, and the "
                              "decoder-candidate sums of a table built with --variance analytic, optimal or best for "
                              "non-fixed decoders); learned_range and best need a table of a learned-variance model.")
    r.add_argument("table", help="a table .npz of ddpmdp table")
    r.add_argument("--variance", required=True, choices=common.VARIANCE_NAMES,
                   help="optimal: per-edge KL-optimal σ² = β̃ + c²M(t)/d; analytic: Analytic-DPM; best: per edge "
                   "the better of learned_range and optimal")
    r.add_argument("--out", required=True, help="the new table .npz (refused if it exists, unless --overwrite)")
    common.add_overwrite(r)
    r.set_defaults(func=run)
    return r
