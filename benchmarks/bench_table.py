"""Table estimation wall time ÷ wall time of the bare forward passes, measured in one run.

Targets (issue: core library): ≤ 1.10 for fixed variances, ≤ 1.30 for learned_range, on a small
improved-diffusion UNet (preset ``cifar10-small``: 2.8M parameters, T = 1000, random weights) on
the CPU. Both timings run the same network on the same number of (batch, node) inputs; the
bare loop does nothing but call the network. Run: ``python benchmarks/bench_table.py``
(``--device cuda`` on a GPU machine; ``--grid-stride 10`` for a quicker look).

Issue "scale and reliability": table throughput ÷ bare forward throughput for the public CIFAR-10
improved-diffusion architecture (random weights) ≥ 0.9 — on a GPU:
``python benchmarks/bench_table.py --model iddpm:cifar10-hybrid --device cuda --batch-size 256 --grid-stride 40``
(``--bf16``: the network under bfloat16 autocast in both loops, as ``ddpmdp table --bf16``; ``scripts/gpu_check.sh``);
on this CPU: ``--model iddpm:cifar10-hybrid --batch-size 4 --grid-stride 400``.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ddpmdp.data.images import ImageSet
from ddpmdp.grids import make_grid
from ddpmdp.models import Numerics
from ddpmdp.models.specs import load_model
from ddpmdp.table_estimation import run_table


def bare(model, x, grid):
    for t in grid[1:]:
        model(x, int(t))
    if x.is_cuda:
        torch.cuda.synchronize()


def main() -> None:
    torch.set_flush_denormal(True)  # as the ddpmdp command line does (see cli._flush_denormals)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--grid-stride", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", default=None, help="run one rule: fixed_large, fixed_small or learned_range")
    ap.add_argument("--model", default=None, help="another model spec, e.g. iddpm:cifar10-hybrid (the public "
                    "CIFAR-10 architecture, random weights); runs learned_range if it has a v output, else fixed_large")
    ap.add_argument("--bf16", action="store_true", help="run the network under bfloat16 autocast (both loops)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    images = ImageSet(rng.integers(0, 256, size=(args.batch_size, 3, 32, 32), dtype=np.uint8), "random", "train")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}, "
          f"batch {args.batch_size}, grid stride {args.grid_stride}{', bf16' if args.bf16 else ''}")
    cases = [("iddpm:cifar10-small-fixed", "fixed_large", 1.10), ("iddpm:cifar10-small-fixed", "fixed_small", 1.10),
             ("iddpm:cifar10-small", "learned_range", 1.30)]
    if args.model:
        learned = load_model(args.model).learned_variance
        cases = [(args.model, "learned_range" if learned else "fixed_large", 1 / 0.9)]
    for spec, rule, target in cases:
        if args.only and rule != args.only:
            continue
        model = load_model(spec, device=args.device, numerics=Numerics(bf16=args.bf16))
        grid = make_grid(model.schedule.T, args.grid_stride)
        x = torch.randn(args.batch_size, 3, 32, 32, device=args.device)
        bare(model, x, grid[:5])  # warm-up: first calls, fingerprint, imports
        run_table(model, images, variance=rule, out=None, nodes=grid[[0, 1, 2, -1]], batch_size=args.batch_size,
                  device=args.device, progress=False)
        t_bare, t_table = [], []
        for _ in range(args.repeats):  # interleaved pairs
            t0 = time.perf_counter()
            bare(model, x, grid)
            t_bare.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            run_table(model, images, variance=rule, out=None, grid_stride=args.grid_stride,
                      batch_size=args.batch_size, device=args.device, progress=False)
            t_table.append(time.perf_counter() - t0)
        ratio = float(np.median(np.array(t_table) / np.array(t_bare)))  # median of paired ratios
        print(f"{spec:28s} {rule:14s} G={len(grid):5d}  bare {min(t_bare):7.2f} s  table {min(t_table):7.2f} s  "
              f"ratio {ratio:.3f}  throughput table/bare {1 / ratio:.3f}  "
              f"(target ratio <= {target:.2f}: {'ok' if ratio <= target else 'MISSED'})")


if __name__ == "__main__":
    main()
