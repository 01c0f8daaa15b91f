"""The exact dynamic programme over a per-edge cost table, for all budgets at once.

Watson et al. (2021), §4.2 and Algorithm 1, with the corrected backtracking of
``method.md`` §6.2. The grid has G nodes with values ``nodes[0] = 0 < … <
nodes[G−1] = T``; ``L[i, j]`` is the cost (nats per image, or any other additive
unit) of the edge from grid node i down to grid node j < i. With

* C[0, 0] = 0 and C[0, i] = +∞ for i > 0,
* C[k, i] = min_{j<i} (C[k−1, j] + L[i, j]) for k ≥ 1,
* D[k, i] = the smallest j that attains that minimum,

C[k, i] is the least total cost of a k-step path from grid node i down to node 0,
and C[k, i] = +∞ whenever k > i. One pass over k = 1..k_max yields C[k, G−1] and
the optimal path for **every** budget k ≤ k_max. The prior term L_prior is the
same for all paths ending at T and is not included.

Implementation. The work is Σ_k Σ_{i ≥ k} (i − k + 1) ≈ k_max·G²/2 cell updates;
cells with k > i are never computed. Rows are processed in blocks of increasing
index, and each block's slice of L is reused for every k while it sits in cache.
Two interchangeable back ends give bit-identical results:

* ``"numba"`` (used when numba is installed): one compiled, single-threaded loop
  per block over k, with the block's rows transposed so that the inner loop runs
  over rows and vectorises (≈ 0.4 s for G = 4001, k_max = 256 on one core).
* ``"numpy"`` (the fallback): for a block [a, b) the minimum over j < a depends
  only on finished blocks, so it is computed for every k with ``np.add`` and
  ``argmin`` split over threads (numpy releases the GIL); the part over
  a ≤ j < i follows row by row for all k (≈ 1 s for the same table on 2 idle cores).
"""
from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ddpmdp.errors import DdpmdpError, require

__all__ = ["path_cost", "DPSolution", "solve"]

_BLOCK = 128
"""Rows per block (tuned on 2 cores for G = 4001, k_max = 256)."""

_MIN_PARALLEL_WORK = 200_000
"""Cell updates in one block's j < a part below which no thread is started (numpy path)."""

Backend = Literal["auto", "numba", "numpy"]


@dataclass(frozen=True, eq=False)
class DPSolution:
    """Result of :func:`solve`: optimal costs and predecessors for every budget.

    Attributes:
        nodes: ``(G,)`` int64, the grid's node values, ``nodes[0] = 0``, ``nodes[-1] = T``.
        costs: ``(k_max + 1,)`` float64, ``costs[k] = C[k, G−1]``: the least total
            cost of a k-step path from T down to 0, in the table's unit (nats per
            image for ELBO tables), prior **not** included; ``costs[0] = +∞``.
        predecessors: ``(k_max + 1, G)`` int16 (int32 when G > 32768), ``D[k, i]``
            = the grid index of the node before i on the best k-step path from i;
            −1 where C[k, i] = +∞ (k > i, and all of row 0).
    """

    nodes: np.ndarray
    costs: np.ndarray
    predecessors: np.ndarray

    def __post_init__(self) -> None:
        for name in ("nodes", "costs", "predecessors"):
            getattr(self, name).setflags(write=False)

    @property
    def k_max(self) -> int:
        """The largest budget (number of steps) solved for."""
        return int(self.costs.size - 1)

    @property
    def T(self) -> int:
        """The last node value; every path runs from T down to 0."""
        return int(self.nodes[-1])

    def path_indices(self, K: int) -> np.ndarray:
        """Grid indices of the optimal K-step path, ``(K + 1,)`` int64, increasing from 0 to G−1.

        Backtracking (``method.md`` §6.2): i_K = G−1, then i_{k−1} = D[k, i_k] for
        k = K, …, 1. (The Paper's Algorithm 2 starts at "K" and uses D[K−1], …,
        D[0], which yields K − 1 steps; that is a typo.)
        """
        _check_budget(K, self.k_max)
        out = np.empty(K + 1, dtype=np.int64)
        i = self.nodes.size - 1
        out[K] = i
        for k in range(K, 0, -1):
            i = int(self.predecessors[k, i])
            out[k - 1] = i
        assert out[0] == 0 and bool(np.all(np.diff(out) > 0)), "corrupt predecessor table"
        return out

    def path(self, K: int) -> np.ndarray:
        """Node values of the optimal K-step path, ``(K + 1,)`` int64: 0 = t_0 < … < t_K = T."""
        return self.nodes[self.path_indices(K)]

    def __repr__(self) -> str:
        return f"DPSolution(G={self.nodes.size}, T={self.T}, k_max={self.k_max})"


def _check_budget(K: int, k_max: int) -> None:
    require(
        isinstance(K, (int, np.integer)) and not isinstance(K, bool),
        f"the budget K must be an integer, got {K!r}",
    )
    require(1 <= K <= k_max, f"the budget K must satisfy 1 <= K <= k_max = {k_max}, got K = {K}")


def _check_nodes(nodes: np.ndarray | None, G: int) -> np.ndarray:
    if nodes is None:
        return np.arange(G, dtype=np.int64)
    n = np.asarray(nodes)
    require(n.ndim == 1, f"nodes must be a 1-D array of node values, got shape {n.shape}")
    require(n.size == G, f"nodes has {n.size} entries but the cost table has G = {G} rows")
    require(np.issubdtype(n.dtype, np.integer), f"nodes must be integers, got dtype {n.dtype}")
    n = n.astype(np.int64)
    require(int(n[0]) == 0, f"nodes must start at node 0 (the data), got nodes[0] = {int(n[0])}")
    bad = np.flatnonzero(np.diff(n) <= 0)
    if bad.size:
        p = int(bad[0]) + 1
        raise DdpmdpError(
            f"nodes must be strictly increasing, but nodes[{p}] = {int(n[p])} "
            f"<= nodes[{p - 1}] = {int(n[p - 1])}"
        )
    return n


def _check_table(L: np.ndarray, nodes: np.ndarray, block: int) -> None:
    """NaN anywhere and non-finite values below the diagonal are errors; name the first."""
    G = L.shape[0]

    def cell(i: int, j: int) -> str:
        return f"L[{i}, {j}] (edge from node {int(nodes[i])} to node {int(nodes[j])})"

    if bool(np.isnan(L).any()):
        i, j = (int(x) for x in np.argwhere(np.isnan(L))[0])
        raise DdpmdpError(f"the cost table contains NaN, first at {cell(i, j)}")
    for a in range(1, G, block):
        b = min(a + block, G)
        bad = ~np.isfinite(L[a:b, :b])
        bad &= np.tri(b - a, b, a - 1, dtype=bool)  # keep j < i only
        if bool(bad.any()):
            r, j = (int(x) for x in np.argwhere(bad)[0])
            raise DdpmdpError(
                f"the cost table must be finite below the diagonal (every edge i -> j < i "
                f"needs a cost), but {cell(a + r, j)} is {L[a + r, j]}"
            )


def _default_threads() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


def _blocked_kernel(L: np.ndarray, C: np.ndarray, D: np.ndarray, block: int) -> None:
    """Fill C (k_max+1, G) and D in place; C[0] and D must be initialised (numba path).

    For each row block [a, b) the lower part of L[a:b, :b] is copied transposed
    into Lt[j, r] (+inf for j >= a + r); then for every k the running minimum over
    j = k−1, …, b−2 is updated for all rows of the block at once. Strict ``<``
    keeps the first (smallest) j on ties, as ``np.argmin`` does.
    """
    G = L.shape[0]
    K = C.shape[0] - 1
    Lt = np.empty((G, block))
    best = np.empty(block)
    arg = np.empty(block, dtype=np.int64)
    for a in range(1, G, block):
        b = min(a + block, G)
        nb = b - a
        for r in range(nb):
            i = a + r
            for j in range(i):
                Lt[j, r] = L[i, j]
            for j in range(i, b):
                Lt[j, r] = np.inf
        for k in range(1, min(K, b - 1) + 1):
            for r in range(nb):
                best[r] = np.inf
                arg[r] = -1
            for j in range(k - 1, b - 1):
                c = C[k - 1, j]
                for r in range(nb):
                    v = c + Lt[j, r]
                    m = v < best[r]
                    best[r] = v if m else best[r]
                    arg[r] = j if m else arg[r]
            for r in range(max(a, k) - a, nb):  # rows i < k stay infeasible
                C[k, a + r] = best[r]
                D[k, a + r] = arg[r]


_HAVE_NUMBA = importlib.util.find_spec("numba") is not None
"""numba is optional: without it the numpy path gives the same result, slower."""

_Kernel = Callable[[np.ndarray, np.ndarray, np.ndarray, int], None]
_numba_kernel: _Kernel | None = None  # compiled on first use; importing numba takes about 1 s


def _compiled_kernel() -> _Kernel:
    """:func:`_blocked_kernel` compiled by numba (cached on disk by numba after the first compile)."""
    global _numba_kernel
    if _numba_kernel is None:
        from numba import njit

        _numba_kernel = njit(cache=True, nogil=True)(_blocked_kernel)
    return _numba_kernel


def _min_plus_all_budgets(
    L: np.ndarray,
    k_max: int,
    block: int,
    n_threads: int,
    min_parallel_work: int,
    backend: Literal["numba", "numpy"] = "numpy",
) -> tuple[np.ndarray, np.ndarray]:
    """Run the recurrence; return C[:, G−1] ``(k_max+1,)`` float64 and D ``(k_max+1, G)``.

    ``L`` is a validated C-contiguous float64 (G, G) table; only L[i, :i] is read.
    """
    G = L.shape[0]
    K = k_max
    C = np.full((K + 1, G), np.inf)
    C[0, 0] = 0.0
    D = np.full((K + 1, G), -1, dtype=np.int16 if G <= 32768 else np.int32)
    B = min(block, G - 1)
    if backend == "numba":
        _compiled_kernel()(L, C, D, B)
        return C[:, G - 1].copy(), D
    out_v = np.empty((K, B))  # best over j < a, for k = 1..K and the block's rows
    out_j = np.empty((K, B), dtype=np.int64)
    rows = np.arange(max(B, K))
    bufs = [np.empty((B, G)) for _ in range(n_threads)]

    def below_block(t: int, a: int, b: int, ks: range) -> None:
        # min over k−1 <= j < a of C[k−1, j] + L[i, j] for i in [a, b); C[k−1, j] = ∞ for j < k−1.
        nb = b - a
        buf = bufs[t]
        for k in ks:
            lo = k - 1
            m = buf[:nb, : a - lo]
            np.add(L[a:b, lo:a], C[k - 1, lo:a], out=m)
            idx = m.argmin(axis=1)  # first minimum: ties go to the smallest j
            out_v[k - 1, :nb] = m[rows[:nb], idx]
            out_j[k - 1, :nb] = idx + lo

    pool = ThreadPoolExecutor(n_threads) if n_threads > 1 else None
    try:
        for a in range(1, G, B):
            b = min(a + B, G)
            nb = b - a
            out_v[:, :nb] = np.inf
            k_out = min(K, a)  # for k > a no path with j < a exists
            ks = range(1, k_out + 1)
            work = nb * k_out * (a - k_out / 2)
            if pool is not None and work >= min_parallel_work:
                futures = [pool.submit(below_block, t, a, b, ks[t::n_threads]) for t in range(n_threads)]
                for f in futures:
                    f.result()
            else:
                below_block(0, a, b, ks)
            # Inside the block: j in [a, i); C[:, j] for those j is final by now.
            for i in range(a, b):
                r = i - a
                km = min(K, i)  # C[k, i] = ∞ for k > i
                ov, oj = out_v[:km, r], out_j[:km, r]
                if i > a:
                    m = C[:km, a:i] + L[i, a:i]
                    idx = m.argmin(axis=1)
                    iv = m[rows[:km], idx]
                    inside = iv < ov  # strict: on ties the smaller j (< a) wins
                    C[1 : km + 1, i] = np.where(inside, iv, ov)
                    D[1 : km + 1, i] = np.where(inside, idx + a, oj)
                else:
                    C[1 : km + 1, i] = ov
                    D[1 : km + 1, i] = oj
    finally:
        if pool is not None:
            pool.shutdown()
    return C[:, G - 1].copy(), D


def solve(
    L: np.ndarray,
    k_max: int,
    nodes: np.ndarray | None = None,
    *,
    backend: Backend = "auto",
    n_threads: int | None = None,
) -> DPSolution:
    """Optimal K-step paths from T down to 0 for every budget K = 1..k_max (Paper Alg. 1).

    Args:
        L: ``(G, G)`` float cost table (converted to float64), ``L[i, j]`` = cost of the
            edge from grid node i down to grid node j, in nats per image for ELBO
            tables. Cells with j < i must be finite; cells with j >= i (the diagonal
            and above) are ignored and treated as +∞. NaN anywhere is an error.
        k_max: the largest budget, 1 <= k_max <= G − 1.
        nodes: ``(G,)`` integer node values of the grid rows, starting at 0 and
            strictly increasing; the last one is T. Default ``arange(G)``, i.e. the
            table is indexed by node.
        backend: ``"numba"`` (compiled; the first call in a fresh environment
            compiles it, later calls load it from numba's cache), ``"numpy"``, or
            ``"auto"`` = numba when it is installed. Results are bit-identical.
        n_threads: worker threads of the numpy back end (default: the CPUs
            available, at most 8); the numba back end runs on one thread.

    Returns:
        A :class:`DPSolution` with ``costs[k] = C[k, G−1]`` (prior not included) and
        the predecessor table D; ``path(K)`` backtracks the K-step path.

    Raises:
        DdpmdpError: for a malformed table, grid or budget.
    """
    Lr = np.asarray(L)
    require(
        Lr.ndim == 2 and Lr.shape[0] == Lr.shape[1],
        f"the cost table must be a square (G, G) array, got shape {Lr.shape}",
    )
    require(
        np.issubdtype(Lr.dtype, np.floating),
        f"the cost table must have a floating dtype (float64), got {Lr.dtype}",
    )
    G = int(Lr.shape[0])
    require(G >= 2, f"the cost table needs at least 2 grid nodes (0 and T), got G = {G}")
    n = _check_nodes(nodes, G)
    require(
        isinstance(k_max, (int, np.integer)) and not isinstance(k_max, bool),
        f"k_max must be an integer, got {k_max!r}",
    )
    k_max = int(k_max)
    require(
        1 <= k_max <= G - 1,
        f"k_max must satisfy 1 <= k_max <= G - 1 = {G - 1} for a grid of G = {G} nodes "
        f"(a K-step path uses K of the G − 1 grid nodes above node 0), got k_max = {k_max}",
    )
    if n_threads is None:
        n_threads = _default_threads()
    require(
        isinstance(n_threads, (int, np.integer)) and n_threads >= 1,
        f"n_threads must be a positive integer, got {n_threads!r}",
    )
    require(
        backend in ("auto", "numba", "numpy"),
        f"backend must be 'auto', 'numba' or 'numpy', got {backend!r}",
    )
    if backend == "numba":
        require(
            _HAVE_NUMBA,
            "backend='numba' needs numba (pip install numba); use backend='numpy' or 'auto'",
        )
    use: Literal["numba", "numpy"] = (
        "numba" if backend == "numba" or (backend == "auto" and _HAVE_NUMBA) else "numpy"
    )
    Lf = np.ascontiguousarray(Lr, dtype=np.float64)
    _check_table(Lf, n, _BLOCK)
    costs, D = _min_plus_all_budgets(Lf, k_max, _BLOCK, int(n_threads), _MIN_PARALLEL_WORK, use)
    return DPSolution(nodes=n, costs=costs, predecessors=D)


def path_cost(L: np.ndarray, nodes: np.ndarray, path: np.ndarray) -> float:
    """Σ_i L[t_i → t_{i−1}] along ``path`` (node values, each in ``nodes``): the cost the DP
    minimises, on the table's own cells (no prior). Use it to check a DP path against another path
    on the same table; held-out scores come from :mod:`ddpmdp.evaluate`."""
    pos = np.searchsorted(nodes, path)
    require(bool(np.all((pos < len(nodes)) & (np.asarray(nodes)[np.minimum(pos, len(nodes) - 1)] == path))),
            "path nodes are not all in the table's grid")
    return float(np.asarray(L, dtype=np.float64)[pos[1:], pos[:-1]].sum())
