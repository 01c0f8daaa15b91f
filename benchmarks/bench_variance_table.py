"""Cost of an ``optimal``/``analytic`` table ÷ a ``fixed_large`` table on the same model: paired runs.

Issue 18 target: median ratio ≤ 1.05. Both tables run the same network on the same (batch, node)
inputs; the ``optimal`` pass adds Γ_t and the decoder NLL of the 8 decoder candidates per node (no
extra forward pass), evaluated as one batched (B, 8, d) float64 operation in cache-sized tiles
(:func:`ddpmdp.gaussians.discretized_gaussian_nll`), with the summed rule's own decoder cell taken
from its candidate's column instead of being computed again. Timings are interleaved pairs
(fixed_large, rule); the ratio printed is the median of the paired ratios, with their range, for
wall time and for the process's CPU time (on a shared machine other processes inflate wall time
but not CPU time; run single-threaded, e.g. under ``taskset -c 1``, so that CPU time is the work).

Measured 2026-12-05 on the 2-core AMD EPYC CPU, nothing else running, ``taskset -c 1`` (CPU-time
ratios, median of the pairs, their range in brackets):

* ``--model cifar10-simple --grid-stride 25 --batch-size 32 --repeats 5``: optimal 1.026
  [0.982–1.055], analytic 1.010 [0.990–1.075]; a second run optimal 1.030 [1.012–1.093], analytic
  1.032 [1.007–1.056];
* the defaults with ``--repeats 7`` (``iddpm:cifar10-small-fixed``, batch 16): optimal 1.041
  [0.961–1.053], analytic 1.006 [0.989–1.034].

Before (same machine and commands): cifar10-simple optimal 1.062 [0.987–1.072], analytic 1.071
[1.051–1.137]; defaults optimal 1.077 [1.040–1.138], analytic 1.061 [1.009–1.098]; and before the
candidates were batched, 1.10–1.14.

What changed: Φ̃, improved-diffusion's ½(1 + tanh a), is evaluated as the logistic σ(2a) — the same
function — and float64 sigmoid costs about a seventh of float64 tanh here (0.42 against 2.97 ms for
786k elements). The 8 candidates went from 9.3 to 5.2 ms per node (B = 32, d = 3072; one candidate
1.35 ms), and because bins above the mean are mirrored into the lower tail the bin masses are also
right to 1e-12 in both tails (``tests/test_variance_rules.py``, against 60-digit arithmetic), which
the 1 + tanh form was not (up to 2.5e-8 off there). Against the 1 + tanh form the decoder NLL per
image moved by at most 0.003 nats (about 1e-6 bits/dim; cifar10-simple on CIFAR-10, all 8 candidates
at its 40 nodes), and ``make demo`` printed the same numbers to 15 significant digits. float32 stays out: its tail bins lose all digits
(measured with the tanh form on cifar10-simple and CIFAR-10 images: up to 88 nats per image on the
chosen candidate). Skipping the saturated element-candidates (3 % of them at t = 25, 45 % at
t = 825) by compacting the rest was measured slower than computing them (11.6–15.6 ms against 9.5
with the tanh form).

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
