"""Cost and memory of the trajectory table (method.md §13), and of DDIM sampling, in one run.

1. Trajectory table ÷ the teacher's forward passes alone (issue 19 target ≤ 1.10 on CPU): the table
   runs exactly the teacher (|𝒯| − 1 forward passes per batch of seeds) plus the float64 state
   arithmetic and the costing of every kept edge t → s. Interleaved pairs (bare passes, table);
   the median of the paired ratios for wall and CPU time.
2. DDIM (η = 0) sampling along the even K-step path ÷ K bare forward passes (target ≤ 1.05).
3. Peak memory (``ru_maxrss`` of a child process per case, and the kept-state bytes
   2·(|𝒢| − 1)·B·d·8 the design predicts) at the default batch size (``default_batch_size``: the kept
   states within 1 GiB): ``imagenet64-hybrid`` on 64×64 with teacher = DP grid = ``log:300`` (180 nodes
   at T = 1000; memory does not depend on the teacher's length), and a 4000-node teacher (T = 4000,
   every node) on 64×64 with a few-hundred-node DP grid (``log:400``), whose network is a cheap
   stand-in (one 3×3 convolution; the state memory is the table's own).

Run single-threaded (``--threads 1``, the default): on a shared 2-core machine torch's intra-op
threads otherwise wait on each other and inflate every element-wise operation (measured: 87 s
instead of 1.2 s for the same 16-seed table with a cheap network).
Run: ``python benchmarks/bench_trajectory.py [--repeats 2] [--skip-memory]``.

Measured (issue 19) on the 2-core AMD EPYC CPU while other jobs kept its load at 4–5, torch 2.13 CPU,
one thread; medians of paired ratios, the pairs in brackets:

* ``python benchmarks/bench_trajectory.py`` (cifar10-simple, teacher every node = 1000 passes, DP grid
  131 nodes, 8 seeds): table / teacher passes CPU 1.045 [1.028, 1.063], wall 1.050 [1.034, 1.065];
  DDIM K = 32 / 32 passes CPU 0.992 [0.992, 1.067, 0.984], wall 0.984 [0.957, 1.058, 0.984].
  Outside the network the table spends 0.67 s of 27.9 s (2.4 %): the float64 steps and the
  costing of the 131·130/2 edges per seed.
* ``--teacher-grid stride:10 --repeats 3 --skip-memory`` (100 passes, 65-node DP grid: the costing
  weighs (|𝒢|²/2)/|𝒯| = 21 against 8.5 above): CPU 0.974 [0.973, 1.135, 0.974], wall 0.967;
  before the costing reused its tile buffers (allocating 2 MiB tiles per edge group) it was
  CPU 1.138 [1.174, 1.102].
* idle machine (2026-12-05, ``taskset -c 1 python benchmarks/bench_trajectory.py --skip-memory``): table /
  teacher passes CPU 0.998 [0.972, 1.024]; DDIM K = 32 / 32 passes CPU 1.010 [1.014, 1.010, 1.006].
* memory, ``imagenet64-hybrid`` 64×64, teacher = DP grid = log:300 (180 nodes), default batch 30:
  kept states 1007 MiB, peak RSS 1467 and 1562 MiB in two runs (before and after the tile buffers;
  284–340 MiB after imports and model loading); T = 4000 teacher of 4001 nodes on 64×64, DP grid
  log:400 (261 nodes), default batch 21 (stand-in network): kept states 1024 MiB, peak RSS 1307 and
  1311 MiB. Both ≤ 2 GB.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch


def paired(bare, work, repeats: int) -> dict[str, list[float]]:
    """Interleaved (bare, work) timings: paired wall and CPU ratios."""
    out: dict[str, list[float]] = {"wall": [], "cpu": []}
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        bare()
        wb, cb = time.perf_counter() - w0, time.process_time() - c0
        w0, c0 = time.perf_counter(), time.process_time()
        work()
        out["wall"].append((time.perf_counter() - w0) / wb)
        out["cpu"].append((time.process_time() - c0) / cb)
    return out


def report(name: str, ratios: dict[str, list[float]], target: float) -> None:
    for kind, r in ratios.items():
        med = float(np.median(r))
        print(f"{name:34s} {kind:4s}-time ratio {med:.3f} (pairs {', '.join(f'{x:.3f}' for x in r)}; target <= "
              f"{target}: {'ok' if med <= target else 'MISSED'})", flush=True)


def ratios(args) -> None:
    from ddpmdp.models.specs import load_model
    from ddpmdp.sampling import sample_ddim
    from ddpmdp.strides import even_stride
    from ddpmdp.trajectory import estimate_trajectory_table, teacher_grids

    model = load_model(args.model)
    shape = model.image_shape
    x = torch.randn(args.n, *shape)
    teacher, grid, *_ = teacher_grids(model.schedule.T, args.teacher_grid, None)
    print(f"{args.model}: T {model.schedule.T}, teacher {args.teacher_grid} ({len(teacher)} nodes), DP grid "
          f"{len(grid)} nodes, {args.n} seeds in one batch", flush=True)

    def bare_teacher():
        for t in teacher[:0:-1]:
            model(x, int(t))

    def table():
        estimate_trajectory_table(model, args.n, teacher_grid=args.teacher_grid, batch_size=args.n)

    bare_teacher()  # warm-up
    report("trajectory table / teacher passes", paired(bare_teacher, table, args.repeats), 1.10)
    nodes = even_stride(model.schedule.T, args.K)

    def bare_k():
        for t in nodes[:0:-1]:
            model(x, int(t))

    report(f"DDIM K={args.K} / K passes", paired(bare_k, lambda: sample_ddim(model, nodes, args.n, shape),
                                                  args.repeats + 1), 1.05)


def child(case: str) -> None:
    """One memory case in this (fresh) process: prints a JSON line."""
    from ddpmdp.trajectory import default_batch_size, estimate_trajectory_table, teacher_grids

    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    if case == "imagenet64":
        from ddpmdp.models.specs import load_model

        model = load_model("imagenet64-hybrid")
        teacher_grid = grid = "log:300"
    else:
        from ddpmdp.models.adapter import TorchModelAdapter
        from ddpmdp.schedules import cosine_schedule

        class StandIn(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)

            def forward(self, x, t):
                return self.conv(x) * 0.1

        model = TorchModelAdapter(StandIn(), cosine_schedule(4000), image_shape=(3, 64, 64), identity="stand-in")
        teacher_grid, grid = None, "log:400"
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    teacher, nodes, *_ = teacher_grids(model.schedule.T, teacher_grid, grid)
    d = int(np.prod(model.image_shape))
    B = default_batch_size(len(nodes), d)
    w0 = time.perf_counter()
    tab = estimate_trajectory_table(model, B, teacher_grid=teacher_grid, grid=grid)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"case": case, "T": model.schedule.T, "teacher_nodes": len(teacher), "grid_nodes": len(nodes),
                      "batch": B, "seeds": int(tab.meta["n_seeds"]), "kept_MiB": 2 * (len(nodes) - 1) * B * d * 8 / 2**20,
                      "baseline_MiB": base, "peak_MiB": peak, "wall_s": time.perf_counter() - w0}), flush=True)


def memory() -> None:
    for case in ("imagenet64", "teacher4000"):
        proc = subprocess.run([sys.executable, __file__, "--child", case], capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"memory case {case} failed:\n{proc.stderr[-2000:]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"memory {r['case']:11s} T={r['T']} teacher {r['teacher_nodes']} nodes, DP grid {r['grid_nodes']} "
              f"nodes, default batch {r['batch']} seeds: kept states {r['kept_MiB']:.0f} MiB, peak RSS "
              f"{r['peak_MiB']:.0f} MiB (after imports and model {r['baseline_MiB']:.0f} MiB; target <= 2048: "
              f"{'ok' if r['peak_MiB'] <= 2048 else 'MISSED'}), {r['wall_s']:.0f} s", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="cifar10-simple")
    ap.add_argument("--n", type=int, default=8, help="seeds (one batch)")
    ap.add_argument("--teacher-grid", default="all")
    ap.add_argument("--K", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child)
        return
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # as the ddpmdp command line does
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}", flush=True)
    ratios(args)
    if not args.skip_memory:
        memory()


if __name__ == "__main__":
    main()
