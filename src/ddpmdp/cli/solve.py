"""``ddpmdp solve``: the optimal path for every budget from a (selection) table: ELBO-optimal from an
ELBO table, fidelity-optimal (least Σ C(t, s)) for DDIM η = 0 from a trajectory table.

    ddpmdp solve train_table.npz --budgets 8,16,32,64 --out dp.json      the solved-schedule file
    ddpmdp solve train_table.npz --budgets 8,16,32,64 --json             its document on stdout

The file (:mod:`ddpmdp.schedule_file`) records the model and noise schedule the table was built
for, the grid with ᾱ at its nodes, and per budget the nodes, the selection table's own (optimistic)
bits/dim and each edge's variance rule and σ² (a trajectory table: its own cost, RMS distance per
dimension, and the sampler DDIM η = 0 with the table's clip flag); ``dp:dp.json:K`` uses it in evaluate and sample,
``ddpmdp export dp.json:K`` hands it to other samplers. It is written atomically: a failed
command leaves an existing file unchanged.
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
    p = subparsers.add_parser("solve", help=command("solve").summary, description=common.describe(__doc__))
    p.add_argument("table", help="a table .npz of ddpmdp table (the selection split)")
    p.add_argument("--budgets", required=True, help="comma-separated budgets K (edges), e.g. 8,16,32")
    p.add_argument("--out", default=None, help="write the solved-schedule file here (atomically; refused if it "
                   "exists, unless --overwrite)")
    common.add_overwrite(p)
    common.add_json(p, "print the solved-schedule document as one JSON line (the summary line)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ddpmdp.dp import solve
    from ddpmdp.schedule_file import SolvedSchedules, write_schedule_file
    from ddpmdp.table import load_table, objective_of

    common.check_outputs(args.out, overwrite=args.overwrite, nothing="nothing was solved")
    ks = common.budgets(args.budgets)
    table = load_table(args.table)
    G = len(table.nodes)
    require(ks[0] >= 1 and ks[-1] <= G - 1, f"budgets must lie in 1..{G - 1} for this table's {G} grid nodes "
            f"(grid {table.meta.get('grid') or table.meta.get('grid_stride')}); got {ks[0] if ks[0] < 1 else ks[-1]}")
    sol = solve(table.L, ks[-1], table.nodes)
    solved = SolvedSchedules.from_table(table, sol, ks, table_path=args.table)
    if args.out:
        write_schedule_file(args.out, solved)
    if args.json:
        print(json.dumps(solved.to_json()), flush=True)
        return 0
    meta = table.meta
    objective = objective_of(meta)
    if objective == "elbo":
        print(f"# DP paths from {args.table} ({meta['split']} split, {meta['n_images']} images, "
              f"{meta['variance']}); bits/dim on the selection table incl. prior (optimistic)")
    else:
        print(f"# {objective} DP paths from {args.table} for DDIM eta = 0 ({'clip' if meta.get('clip') else 'no clip'}; "
              f"{meta.get('n_seeds')} seeds, teacher grid {meta.get('teacher_grid')} of {meta.get('teacher_grid_size')} "
              f"nodes); cost = sum of C(t, s) on the selection table, {meta.get('units')} (optimistic)")
    for K in ks:
        b = solved.budgets[K]
        value = f"bpd={b.bpd:.4f}" if b.bpd is not None else f"cost={b.cost:.6g}"
        print(f"K={K:<5d} {value}  nodes={','.join(map(str, b.nodes))}")
    selection = ({"selection_bpd": {str(K): solved.budgets[K].bpd for K in ks}} if objective == "elbo" else
                 {"selection_cost": {str(K): solved.budgets[K].cost for K in ks}, "cost_units": meta.get("units")})
    common.print_summary("solve_done", table=args.table, out=args.out, budgets=ks, objective=objective,
                         sampler=solved.sampler.to_json(), **selection, optimistic=True)
    return 0
