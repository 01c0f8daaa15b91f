"""Wall time of ddpmdp.dp.solve against the plain vectorised min-plus loop over k.

Run: ``python benchmarks/bench_dp.py``. Two random tables (uniform costs below the
diagonal, +inf above): G = 4001 nodes with k_max = 256, and G = 1001 with
k_max = 1000 (all budgets). For each, ``solve`` with its default back end (numba
when installed) is timed, best of 3 with the first run shown too (the first run
of a fresh environment includes numba's compile), and so is its numpy fallback
(best of 3) and the plain loop (once: at step k build C[k−1, j] + L[i, j] over the
whole masked table, then take the row-wise argmin). The script checks that all
three give identical costs and predecessors, and prints each time beside its
target. It exits with status 1 if they disagree; a missed target only prints MISS.
The machine may be shared: the load average is printed first.
"""
from __future__ import annotations

import os
import platform
import sys
import time

import numpy as np

from ddpmdp import dp
from ddpmdp.dp import solve

TARGET_S = 1.5
CASES = [(4001, 256), (1001, 1000)]


def plain_min_plus(L: np.ndarray, k_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference DP: C (k_max+1, G) float64 and D (k_max+1, G) int64, D = 0 where C is inf."""
    G = L.shape[0]
    Lm = np.where(np.tri(G, G, -1, dtype=bool), L, np.inf)
    C = np.full((k_max + 1, G), np.inf)
    C[0, 0] = 0.0
    D = np.zeros((k_max + 1, G), dtype=np.int64)
    rows = np.arange(G)
    for k in range(1, k_max + 1):
        M = C[k - 1][None, :] + Lm
        D[k] = M.argmin(axis=1)
        C[k] = M[rows, D[k]]
    return C, D


def random_table(G: int, seed: int) -> np.ndarray:
    L = np.random.default_rng(seed).random((G, G))
    L[np.triu_indices(G)] = np.inf
    return L


def best_of_3(L: np.ndarray, k_max: int, backend: str) -> tuple[float, float, dp.DPSolution]:
    """(best, first) wall time in seconds of ``solve`` and its result."""
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        sol = solve(L, k_max, backend=backend)  # type: ignore[arg-type]
        times.append(time.perf_counter() - t0)
    return min(times), times[0], sol


def agrees(sol: dp.DPSolution, C: np.ndarray, D: np.ndarray) -> bool:
    feasible = np.isfinite(C)
    feasible[0] = False
    return bool(
        np.array_equal(sol.costs, C[:, -1])
        and np.array_equal(sol.predecessors[feasible], D[feasible])
        and np.all(sol.predecessors[~feasible] == -1)
    )


def main() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    default = "numba" if dp._HAVE_NUMBA else "numpy"
    print(f"python {platform.python_version()}, numpy {np.__version__}, {cpus} CPU(s) available, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; solve's default back end: {default}")
    print(f"{'table':>20} | {'solve best (first)':>20} | {'target':>14} | {'numpy fallback':>14} | "
          f"{'plain loop':>10} | {'solve vs plain':>14} | agree")
    ok = True
    for G, k_max in CASES:
        L = random_table(G, seed=G)
        best, first, sol = best_of_3(L, k_max, default)
        best_np, _, sol_np = best_of_3(L, k_max, "numpy") if default != "numpy" else (best, first, sol)
        t0 = time.perf_counter()
        C, D = plain_min_plus(L, k_max)
        t_plain = time.perf_counter() - t0
        agree = agrees(sol, C, D) and agrees(sol_np, C, D)
        ok &= agree
        verdict = "ok" if best <= TARGET_S else "MISS"
        verdict_np = "ok" if best_np <= TARGET_S else "MISS"
        label = f"G={G}, k_max={k_max}"
        print(f"{label:>20} | {best:8.3f} s ({first:6.3f} s) | <= {TARGET_S:.1f} s {verdict:>4} | "
              f"{best_np:7.3f} s {verdict_np:>4} | {t_plain:8.2f} s | {t_plain / best:13.1f}x | "
              f"{'yes' if agree else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
