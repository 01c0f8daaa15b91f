"""``ddpmdp sample``: samples along an inference path, as a PNG grid (and optionally an .npz).

    ddpmdp sample --model SPEC --schedule dp:dp.json:32 --n 16 --out samples.png [--npz x.npz]

Each schedule is sampled with the sampler it was solved for: an ELBO schedule (and even:K, edm:K,
… paths) ancestrally with any variance rule (a ``dp:`` schedule brings each edge's σ²), a trajectory
schedule with DDIM η = 0 and its clip flag. ``--sampler ddim --eta E`` or ``--sampler ancestral``
choose another; a trajectory schedule refuses anything but its own without ``--other-sampler``. A
``dp:FILE:K`` schedule must have been solved for this model and its noise schedule
(``--other-model`` transfers it to another model of the same noise schedule).
"""
from __future__ import annotations

import argparse
from typing import Any

from ddpmdp.cli import args as common
from ddpmdp.cli.registry import command
from ddpmdp.errors import require

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("sample", help=command("sample").summary, description=common.describe(__doc__))
    common.add_model_args(p)
    p.add_argument("--schedule", required=True, metavar="PATH",
                   help="path spec: even:K, quadratic:K, ddim-quadratic:K, logsnr:K, edm:K, dp:SOLVED.json:K or "
                   "nodes:0,…,T")
    common.add_other_model(p)
    p.add_argument("--n", type=int, default=16, help="number of samples (default 16)")
    common.add_sampler_args(p)
    p.add_argument("--shape", default=None, help="C,H,W if the model does not declare it")
    common.add_run_args(p)
    p.set_defaults(clip=None)  # --clip/--no-clip, else the schedule's recorded flag (else clip)
    common.add_data_dir(p)
    o = p.add_argument_group("output")
    o.add_argument("--out", required=True, help="the PNG grid (refused if it exists, unless --overwrite)")
    o.add_argument("--npz", default=None, help="also save the uint8 images and the path's nodes to this .npz")
    common.add_overwrite(o)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ddpmdp.data.image_io import save_grid
    from ddpmdp.path_specs import parse_schedule_spec
    from ddpmdp.sampling import sample

    require(args.n >= 1, f"--n must be >= 1, got {args.n}")
    common.check_outputs(args.out, args.npz, overwrite=args.overwrite, nothing="nothing was sampled")
    model = common.load_model(args)
    method, eta = common.sampler_args(args)
    schedule = parse_schedule_spec(args.schedule, model.schedule, allow_other_model=args.other_model,
                                   allow_other_sampler=args.other_sampler)
    shape = tuple(int(x) for x in args.shape.split(",")) if args.shape else model.image_shape
    require(shape is not None and len(shape) == 3, "give --shape C,H,W (the model does not declare its image shape)")
    assert shape is not None
    chw = (int(shape[0]), int(shape[1]), int(shape[2]))
    from ddpmdp.inference_schedule import check_schedule_identity, resolve_sampler

    used = resolve_sampler(schedule, method, eta, args.clip)
    check_schedule_identity(schedule, model=model, sampler=used)  # before any work: one line, exit 2
    imgs = sample(model, schedule, args.n, chw, method="ddim" if used.kind == "ddim" else "ancestral",
                  variance=args.variance,
                  eta=used.eta, clip=used.clip, seed=args.seed, device=args.device, batch_size=args.batch_size,
                  progress=not args.quiet)
    save_grid(imgs, args.out)
    if args.npz:
        np.savez(args.npz, images=imgs, nodes=schedule.nodes)
    common.print_summary("samples_done", out=args.out, n=int(args.n), K=schedule.K, sampler=used.to_json(),
                         objective=schedule.identity.objective if schedule.identity is not None else None)
    return 0
