"""Wall time of an ``optimal``/``analytic`` table ÷ a ``fixed_large`` table on the same model, one run.

Issue 13 target: ≤ 1.10. Both tables run the same network on the same (batch, node) inputs; the
``optimal`` pass adds Γ_t and the decoder NLL of the 8 decoder candidates per node (no extra
forward pass). Timings are interleaved pairs; the ratio printed is the median of the paired ratios.
On a shared, loaded machine the pairs scatter widely: use an idle machine and several repeats.
The extra arithmetic is 8 discretised-Gaussian NLLs per (image, node) in float64 (in-place, one log
per pixel). Measured on 2 busy CPU cores, cifar10-simple, batch 32, grid stride 25, 5 pairs:
median 1.050 (pairs 0.905–1.134). On the same 2 cores idle (nothing else running), same arguments:
optimal 1.087 (pairs 1.044–1.191), analytic 1.097 (pairs 1.006–1.118).
Run: ``python benchmarks/bench_variance_table.py`` (``--model cifar10-simple --grid-stride 20``
for a trained embedded model; ``--device cuda`` on a GPU).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ddpmdp.data.images import ImageSet
from ddpmdp.models.specs import load_model
from ddpmdp.table_estimation import run_table


def main() -> None:
    torch.set_flush_denormal(True)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="iddpm:cifar10-small-fixed")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--grid-stride", type=int, default=25)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rules", default="optimal,analytic")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    images = ImageSet(rng.integers(0, 256, size=(args.batch_size, 3, 32, 32), dtype=np.uint8), "random", "train")
    model = load_model(args.model, device=args.device)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}, model {args.model}, "
          f"batch {args.batch_size}, grid stride {args.grid_stride}")
    base = "learned_range" if model.learned_variance else "fixed_large"

    def timed(rule):
        t0 = time.perf_counter()
        run_table(model, images, variance=rule, out=None, grid_stride=args.grid_stride, batch_size=args.batch_size,
                  device=args.device, progress=False)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    run_table(model, images, variance="optimal", out=None, nodes=np.array([0, 1, 2, model.schedule.T]),
              batch_size=args.batch_size, device=args.device, progress=False)  # warm-up
    for rule in args.rules.split(","):
        ratios = []
        for _ in range(args.repeats):
            t_base, t_rule = timed(base), timed(rule)
            ratios.append(t_rule / t_base)
        ratio = float(np.median(ratios))
        print(f"{rule:10s} / {base:14s} wall-time ratio {ratio:.3f} (paired ratios "
              f"{', '.join(f'{r:.3f}' for r in ratios)}; target <= 1.10: {'ok' if ratio <= 1.10 else 'MISSED'})")


if __name__ == "__main__":
    main()
