"""Peak host memory of a T = 4000, full-grid (4001 × 4001) table run, measured in a child process.

The accumulators are two float64 (G, G) arrays (Σ L and Σ L², 128 MB each at G = 4001); the
finished table adds L and L_se; the learned-range row tile is bounded by
``elbo_terms.row_chunk_size`` (2²² floats = 16 MiB). The network here is the closed-form
Gaussian model on 1×4×4 images so that the run is quick; a real network adds its own
activations on top. Run: ``python benchmarks/bench_memory.py [--float32]``.
"""
from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--T", type=int, default=4000)
    ap.add_argument("--float32", action="store_true", help="store L and L_se as float32")
    args = ap.parse_args()
    from ddpmdp.data.images import ImageSet
    from ddpmdp.table import load_table
    from ddpmdp.models.gaussian_data import GaussianDataModel
    from ddpmdp.schedules import cosine_schedule
    from ddpmdp.table_estimation import run_table

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(4, 1, 4, 4), dtype=np.uint8)
    model = GaussianDataModel.fit(imgs, cosine_schedule(args.T), v=0.5)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "t.npz")
        run_table(model, ImageSet(imgs, "random"), variance="learned_range", out=out, batch_size=4, progress=False,
                  float32=args.float32)
        size = os.path.getsize(out) / 2**20
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        table = load_table(out)
    G = args.T + 1
    print(f"T={args.T}: G={G}, one float64 (G,G) array = {G * G * 8 / 2**20:.0f} MiB; "
          f"run {time.time() - t0:.1f} s; peak RSS {peak:.0f} MiB (baseline after imports {base:.0f} MiB); "
          f"file {size:.0f} MiB ({'float32' if args.float32 else 'float64'} L); L dtype after load {table.L.dtype}")


if __name__ == "__main__":
    main()
