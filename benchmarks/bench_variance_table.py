"""Cost of an ``optimal``/``analytic`` table ÷ a ``fixed_large`` table on the same model: paired runs.

Issue 18 target: median ratio ≤ 1.05. Both tables run the same network on the same (batch, node)
inputs; the ``optimal`` pass adds Γ_t and the decoder NLL of the 8 decoder candidates per node (no
extra forward pass), evaluated as one batched (B, 8, d) float64 operation in cache-sized tiles
(:func:`ddpmdp.gaussians.discretized_gaussian_nll`), with the summed rule's own decoder cell taken
from its candidate's column instead of being computed again. Timings are interleaved pairs
(fixed_large, rule); the ratio printed is the median of the paired ratios, with their range, for
wall time and for the process's CPU time (on a shared machine other processes inflate wall time
but not CPU time; run single-threaded, e.g. under ``taskset -c 1``, so that CPU time is the work).

Measured (issue 18) with ``taskset -c 1 python benchmarks/bench_variance_table.py --model cifar10-simple
--grid-stride 25 --batch-size 32 --repeats 5`` on the 2-core AMD EPYC CPU while other jobs kept its
load at 4.5–7, alternating the tree before the change and after it, two rounds each (median of 5
paired ratios, range in brackets):

* before, optimal: CPU 1.106 [1.100–1.193] and 1.100 [1.087–1.120]; wall 1.151 [1.094–1.240] and 1.100 [1.009–1.140]
* before, analytic: CPU 1.096 [1.048–1.134] and 1.137 [1.092–1.157]; wall 1.121 [1.058–1.199] and 1.136 [1.085–1.589]
* after, optimal: CPU 1.072 [1.015–1.148] and 1.057 [1.025–1.087]; wall 1.031 [0.806–1.145] and 1.021 [0.869–1.069]
* after, analytic: CPU 1.082 [1.010–1.128] and 1.041 [1.038–1.104]; wall 1.070 [1.018–1.294] and 1.036 [0.848–1.102]

On the otherwise idle machine (2026-12-05, same command, nothing else running): optimal CPU 1.062
[0.987–1.072], analytic CPU 1.071 [1.051–1.137]: the 1.05 target is missed by 1–2 %.

Per node (B = 32, d = 3072) the candidates now cost ≈ 10 ms of CPU against ≈ 2 ms for the one
decoder NLL every table computes (before, the candidates took ≈ 16.6 ms on top of that one NLL, and
on the idle machine the ratios were 1.087 and 1.097), i.e. ≈ 8 ms more per forward
pass of ≈ 150 ms. What remains is 16 float64 tanh and 8 logs per pixel and image (≈ 75 % of the
time), which bitwise equality with the reference does not let us avoid; float32 is not exact
enough (measured on cifar10-simple and CIFAR-10 images: up to 88 nats per image on the chosen
candidate, see :func:`ddpmdp.gaussians.discretized_gaussian_nll`).
Where the floor is (2026-12-05, one thread, cifar10-simple, 32 lossless training images, its 40
nodes every 25 steps; scripts in the closing note of issue 18): the 8 candidates cost 9.2–9.5 ms per
node, of which tanh 5.7 ms and log 1.3 ms; one candidate (what every table computes) 1.5 ms. The 7
extra candidates therefore cost ≥ 7.4 ms per node of ≈ 125 ms, a ratio floor of ≈ 1.06 for this
network while the decoder stays bitwise the float64 reference. Skipping the element-candidates whose
tanh arguments are saturated (|a| ≥ 20, where float64 tanh is exactly ±1 and the bin probability is
exactly clamped: 3 % of them at t = 25, 45 % at t = 825, up to 94 % for the smallest σ²) by
compacting the rest gives the same floats but was slower (11.6–15.6 ms against 9.5: the gather and
scatter cost more than the transcendental functions they save). A larger network pays the same
7.4 ms against a longer forward pass: ``--model iddpm:cifar10-small-fixed --batch-size 16`` (the
default) measured optimal 1.042 (CPU, pairs 1.033–1.068) and analytic 1.075 (1.049–1.093) in one
idle run of 3 pairs.

Run: ``python benchmarks/bench_variance_table.py`` (``--device cuda`` on a GPU).
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

    def timed(rule) -> tuple[float, float]:
        w0, c0 = time.perf_counter(), time.process_time()
        run_table(model, images, variance=rule, out=None, grid_stride=args.grid_stride, batch_size=args.batch_size,
                  device=args.device, progress=False)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - w0, time.process_time() - c0

    run_table(model, images, variance="optimal", out=None, nodes=np.array([0, 1, 2, model.schedule.T]),
              batch_size=args.batch_size, device=args.device, progress=False)  # warm-up
    for rule in args.rules.split(","):
        wall, cpu = [], []
        for _ in range(args.repeats):
            (wb, cb), (wr, cr) = timed(base), timed(rule)
            wall.append(wr / wb)
            cpu.append(cr / cb)
        for name, ratios in (("wall", wall), ("cpu", cpu)):
            ratio = float(np.median(ratios))
            print(f"{rule:10s} / {base:14s} {name:4s}-time ratio {ratio:.3f} (range {min(ratios):.3f}–{max(ratios):.3f}; "
                  f"pairs {', '.join(f'{r:.3f}' for r in ratios)}; target <= 1.05: "
                  f"{'ok' if ratio <= 1.05 else 'MISSED'})")


if __name__ == "__main__":
    main()
