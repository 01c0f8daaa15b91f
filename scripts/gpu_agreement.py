"""CUDA against CPU: one small L(t, s) table computed on both devices and compared cell by cell.

    python scripts/gpu_agreement.py [--cpu-only]

Two cases, 4 random images (3×32×32, fixed seed), a 25-node log grid, keyed noise (so both devices
see the same x_t):

* ``float64``: ``iddpm:cifar10-small`` (random weights, learned range) with its network in float64
  (``dtype="float64"``). Tolerance **1e-9 relative** per cell: float64 summation-order noise is about
  1e-16 relative, and the random-weight network amplifies it by ~1e3 (float32 noise of 1e-7 became
  2e-5 in the smoke notebooks); two CPU runs with other summation orders differed by 9.6e-14. 1e-9
  leaves four orders of magnitude, yet any real device difference (a wrong kernel, a float32 cast
  on one device) exceeds it by far.
* ``float32``: the trained embedded ``cifar10-hybrid`` in float32 with TF32 off (cuDNN and cuBLAS
  would otherwise round products to 10 mantissa bits). Tolerance **3e-4 relative** per cell (cells
  below 1e-3 of their row's largest value are compared against 1e-3 of that value): the devices
  differ only in summation order, and float32 summation-order noise measured on the 2-core CPU
  (batch 1 against 4, 1 against 2 threads, oneDNN off; ``--cpu-only`` repeats the measurement) was
  2.9e-5 with AVX-512 kernels and 3.2e-5 with ``ATEN_CPU_CAPABILITY=default``; 3e-4 is a 10× margin.
  bf16 is not compared across devices (its rounding is coarse by design); the gpu tests check it
  against float32 on the GPU.

Prints one line per case and a final JSON line; exit status 1 when a case exceeds its tolerance,
0 with a message (no measurement) when CUDA is not available and ``--cpu-only`` is not given.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from ddpmdp.data.images import ImageSet
from ddpmdp.grids import parse_grid
from ddpmdp.models import Numerics
from ddpmdp.models.specs import load_model
from ddpmdp.table_estimation import estimate_table

CASES = {"float64": ("iddpm:cifar10-small", "float64", 1e-9), "float32": ("cifar10-hybrid", "float32", 3e-4)}
GRID = "log:24"


def images(n: int = 4) -> ImageSet:
    rng = np.random.default_rng(0)
    return ImageSet(rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8), "random-uint8(seed 0)", "train")


def table_L(spec: str, dtype: str, device: str, batch_size: int = 4) -> np.ndarray:
    model = load_model(spec, device=device, numerics=Numerics(dtype=dtype))  # type: ignore[arg-type]
    nodes = parse_grid(GRID, model.schedule.T)
    t = estimate_table(model, images(), variance=model.variance, nodes=nodes, batch_size=batch_size, device=device)
    return t.L


def max_rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    """max over finite cells of |a − b| / max(|b|, 1e-3·max|row of b|)."""
    fin = np.isfinite(b)
    assert np.array_equal(fin, np.isfinite(a)), "the two tables differ in which cells are finite"
    scale = np.abs(np.where(fin, b, 0.0))
    floor = np.broadcast_to(np.maximum(1e-3 * scale.max(axis=1, keepdims=True), 1e-300), b.shape)
    return float((np.abs(a[fin] - b[fin]) / np.maximum(scale[fin], floor[fin])).max())


def compare(case: str, *, cpu_only: bool = False) -> dict:
    spec, dtype, tol = CASES[case]
    cpu = table_L(spec, dtype, "cpu")
    if cpu_only:  # the same table on the CPU with other summation orders: batch 1, 2 threads, oneDNN off
        threads, mkldnn = torch.get_num_threads(), torch.backends.mkldnn.enabled
        torch.set_num_threads(2 if threads == 1 else 1)
        torch.backends.mkldnn.enabled = False
        try:
            other = table_L(spec, dtype, "cpu", batch_size=1)
        finally:
            torch.set_num_threads(threads)
            torch.backends.mkldnn.enabled = mkldnn
        against = "cpu (batch 1, other thread count, oneDNN off)"
    else:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        other = table_L(spec, dtype, "cuda")
        against = f"cuda ({torch.cuda.get_device_name()})"
    rel = max_rel_diff(other, cpu)
    return {"case": case, "model": spec, "dtype": dtype, "against": against, "max_rel_diff": rel, "tolerance": tol,
            "ok": rel <= tol}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpu-only", action="store_true", help="compare two CPU runs with other summation orders")
    args = ap.parse_args(argv)
    if not args.cpu_only and not torch.cuda.is_available():
        print("gpu_agreement: CUDA is not available: nothing measured")
        return 0
    results = [compare(c, cpu_only=args.cpu_only) for c in CASES]
    for r in results:
        print(f"{r['case']:8s} {r['model']:22s} cpu vs {r['against']}: max relative cell difference "
              f"{r['max_rel_diff']:.2e} (tolerance {r['tolerance']:.0e}) {'ok' if r['ok'] else 'EXCEEDED'}")
    print(json.dumps({"gpu_agreement": results}))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
