"""``ddpmdp table``: estimate the L(t, s) table of a model on the selection (training) split.

    ddpmdp table --model SPEC --data cifar10:train --n-images 256 --grid log:200 --out train_table.npz

One forward pass per (image, grid node) fills a row of the table (:mod:`ddpmdp.table_estimation`);
progress is saved atomically every ``--save-every`` batches and ``--resume`` continues a run.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ddpmdp.cli import args as common
from ddpmdp.cli.registry import command
from ddpmdp.errors import DdpmdpError

__all__ = ["add_parser", "run", "full_chain_summary"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("table", help=command("table").summary, description=common.describe(__doc__))
    common.add_model_args(p)
    common.add_data_args(p, split=True)
    common.add_grid_args(p)
    common.add_run_args(p)
    o = p.add_argument_group("output")
    o.add_argument("--out", required=True, help="the table .npz (refused if it exists, unless --overwrite or --resume)")
    common.add_overwrite(o)
    o.add_argument("--resume", action="store_true", help="continue from OUT.progress.npz if present (an existing "
                   "OUT is then replaced)")
    o.add_argument("--save-every", type=int, default=10, help="batches between progress checkpoints (default 10)")
    o.add_argument("--float32", action="store_true", help="store L and L_se as float32")
    p.set_defaults(func=run)
    return p


def full_chain_summary(table) -> dict[str, Any]:
    """The full chain's bits/dim on this table (incl. the prior) when its grid holds every node
    (:func:`ddpmdp.evaluate.full_chain_bpd`); for a rule whose σ² were chosen on these images
    (analytic, optimal, best) no number, and the reason."""
    from ddpmdp.evaluate import full_chain_bpd

    bpd, why = full_chain_bpd(table)
    return {"full_chain_bpd": bpd} if why is None else {"full_chain_bpd": None, "full_chain_note": why}


def run(args: argparse.Namespace) -> int:
    from ddpmdp.data.specs import load_images
    from ddpmdp.table_estimation import run_table

    common.check_outputs(args.out, overwrite=args.overwrite, resume=args.resume, nothing="nothing was computed")
    model = common.load_model(args)
    data_spec = args.data
    if ":" not in data_spec and not data_spec.endswith(".npz"):
        data_spec = f"{data_spec}:{args.split or 'train'}"  # selection tables default to the training split
    data = load_images(data_spec, args.data_dir)
    if args.split and data.split not in (args.split, "unspecified"):
        raise DdpmdpError(f"--split {args.split} but the data spec {args.data!r} is the {data.split} split")
    data = data.subset(args.n_images)
    nodes, spec = common.grid_nodes(args, model.schedule)
    table = run_table(model, data, variance=args.variance, clip=args.clip, nodes=nodes, grid_spec=spec,
                      batch_size=args.batch_size, seed=args.seed, device=args.device, out=Path(args.out),
                      resume=args.resume, save_every=args.save_every, float32=args.float32,
                      progress=not args.quiet)
    common.print_summary("table_done", out=args.out, grid=spec, grid_size=int(len(table.nodes)), T=table.T,
                         n_images=int(table.meta["n_images"]), variance=table.meta["variance"],
                         **full_chain_summary(table), wall_seconds=table.meta.get("wall_seconds"))
    return 0
