"""``ddpmdp table``: estimate the L(t, s) table of a model on the selection (training) split, or
the trajectory table C(t, s) of its deterministic DDIM steps from teacher runs.

    ddpmdp table --model SPEC --data cifar10:train --n-images 256 --grid log:200 --out train_table.npz
    ddpmdp table --objective trajectory --model SPEC --n-seeds 256 --out traj_table.npz

One forward pass per (image, grid node) fills a row of the ELBO table (:mod:`ddpmdp.table_estimation`);
one teacher run per seed, |teacher grid| − 1 forward passes, fills the trajectory table
(:mod:`ddpmdp.trajectory`: the DP grid --grid, default log:200 snapped to the teacher grid, must
lie in the teacher grid --teacher-grid, default every node). Progress is saved atomically every
``--save-every`` batches and ``--resume`` continues a run.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ddpmdp.cli import args as common
from ddpmdp.cli.registry import command
from ddpmdp.errors import DdpmdpError, require

__all__ = ["add_parser", "run", "full_chain_summary"]

ELBO_BATCH = 32
"""The ELBO table's default images per batch."""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("table", help=command("table").summary, description=common.describe(__doc__))
    p.add_argument("--objective", choices=["elbo", "trajectory"], default="elbo",
                   help="elbo: L(t, s) in nats per image over images (default); trajectory: C(t, s), the RMS "
                   "distance per dimension of one DDIM (eta = 0) step from a teacher, over seeds (no data)")
    common.add_model_args(p)
    common.add_data_args(p, required=False, split=True)
    common.add_trajectory_args(p, "--objective trajectory")
    common.add_grid_args(p)
    common.add_run_args(p, batch_help="images per forward pass (default 32); trajectory tables: seeds per batch "
                        "(default: as many as keep the kept DDIM states within 1 GiB, at most 64)")
    p.set_defaults(batch_size=None)  # ELBO: 32 images; trajectory: chosen from the memory of the kept states
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


def _trajectory(args: argparse.Namespace) -> int:
    from ddpmdp.trajectory import run_trajectory_table

    why = "does not apply to a trajectory table: its x_T are keyed seeds (--n-seeds), it needs no images"
    common.refuse_given(args, why, "--data", "--n-images", "--split")
    common.refuse_given(args, "does not apply to a trajectory table: its steps are deterministic DDIM (eta = 0), "
                        "which use no variance", "--variance")
    require(args.n_seeds is not None, "--objective trajectory needs --n-seeds N (the number of teacher runs)")
    model = common.load_model(args)
    spec = common.grid_spec(args) if (args.grid or args.grid_stride) else None
    table = run_trajectory_table(model, n_seeds=args.n_seeds, out=Path(args.out), shape=common.image_shape(args),
                                 teacher_grid=args.teacher_grid, grid=spec, clip=args.clip,
                                 batch_size=args.batch_size, seed=args.seed, device=args.device, resume=args.resume,
                                 save_every=args.save_every, float32=args.float32, progress=not args.quiet)
    m = table.meta
    common.print_summary("table_done", out=args.out, objective="trajectory", grid=m["grid"],
                         grid_size=int(len(table.nodes)), teacher_grid=m["teacher_grid"],
                         teacher_grid_size=m["teacher_grid_size"], T=table.T, n_seeds=int(m["n_seeds"]),
                         clip=m["clip"], batch_size=m["batch_size"], units=m["units"],
                         wall_seconds=m.get("wall_seconds"))
    return 0


def run(args: argparse.Namespace) -> int:
    from ddpmdp.data.specs import load_images
    from ddpmdp.table_estimation import run_table

    common.check_outputs(args.out, overwrite=args.overwrite, resume=args.resume, nothing="nothing was computed")
    if args.objective == "trajectory":
        return _trajectory(args)
    common.refuse_given(args, "applies to --objective trajectory only (an ELBO table averages over images: "
                        "--data, --n-images)", "--n-seeds", "--teacher-grid")
    require(args.data is not None, "table needs --data (the selection images of an ELBO table), or --objective "
            "trajectory --n-seeds N")
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
                      batch_size=args.batch_size or ELBO_BATCH, seed=args.seed, device=args.device,
                      out=Path(args.out), resume=args.resume, save_every=args.save_every, float32=args.float32,
                      progress=not args.quiet)
    common.print_summary("table_done", out=args.out, grid=spec, grid_size=int(len(table.nodes)), T=table.T,
                         n_images=int(table.meta["n_images"]), variance=table.meta["variance"],
                         **full_chain_summary(table), wall_seconds=table.meta.get("wall_seconds"))
    return 0
