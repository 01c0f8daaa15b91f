"""Hand-designed strides (even, quadratic) and path utilities, in the node convention.

``method.md`` §7. A K-step path is an int64 array of K + 1 node values
0 = t_0 < t_1 < … < t_K = T (node 0 = data, node T = the prior's node; see
:mod:`ddpmdp.schedules`). Every path scored as an ELBO must end at T.

* :func:`even_stride` — improved-diffusion's ``space_timesteps(T, [K])`` spacing.
* :func:`quadratic_stride` — ddpmdp's quadratic rule for ELBOs (ends at T).
* :func:`ddim_quadratic_indices` — DDIM's original quadratic rule, as *code
  indices*; it ends at 0.8·T and may repeat, so it is for sampling only.
* :func:`validate_path`, :func:`snap_to_grid` — checks and grid lookup.

Code indices (improved-diffusion's 0-based timesteps) are node − 1.
"""
from __future__ import annotations

import numpy as np

from ddpmdp.errors import DdpmdpError, require

__all__ = [
    "even_stride",
    "quadratic_stride",
    "ddim_quadratic_indices",
    "validate_path",
    "snap_to_grid",
]


def _is_int(x: object) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _check_T_K(T: int, K: int) -> tuple[int, int]:
    require(_is_int(T) and T >= 1, f"T must be a positive integer (the number of diffusion steps), got {T!r}")
    require(_is_int(K), f"the number of steps K must be an integer, got {K!r}")
    require(
        1 <= K <= T,
        f"the number of steps K must satisfy 1 <= K <= T = {T} "
        f"(a path visits each of the nodes 1..T at most once), got K = {K}",
    )
    return int(T), int(K)


def even_stride(T: int, K: int) -> np.ndarray:
    """The even K-step path of improved-diffusion's respacing (``method.md`` §7.1).

    improved-diffusion's ``space_timesteps(T, [K])`` keeps code indices round(c_i) with
    c_0 = 0 and c_{i+1} = c_i + (T−1)/(K−1) accumulated in floating point, Python's
    ``round`` (halves to even); nodes {0} ∪ {index + 1}. This is the same loop, so paths
    match ``image_nll.py --timestep_respacing K`` exactly. The closed form
    round(i·(T−1)/(K−1)) of ``method.md`` §7.1 agrees at the paper's budgets but differs
    by one index at some (T, K) with a half, e.g. T = 1000, K = 21 (499 here, 500 there).
    Contains nodes 0, 1 and T. K = 1 is the single edge T → 0.

    Returns:
        ``(K + 1,)`` int64 node values, 0 = t_0 < … < t_K = T.
    """
    T, K = _check_T_K(T, K)
    if K == 1:
        return np.array([0, T], dtype=np.int64)
    frac, cur, code = (T - 1) / (K - 1), 0.0, []
    for _ in range(K):
        code.append(round(cur))
        cur += frac
    return np.array([0] + [c + 1 for c in code], dtype=np.int64)


def quadratic_stride(T: int, K: int) -> np.ndarray:
    """ddpmdp's quadratic K-step path for ELBOs (``method.md`` §7.2, project rule).

    Code indices c_i = ⌊(T−1)·(i/(K−1))²⌋ for i = 0..K−1, computed exactly in
    integer arithmetic as ⌊(T−1)·i² / (K−1)²⌋, then c_i ← max(c_i, c_{i−1} + 1)
    for i = 1..K−1; nodes {0} ∪ {c_i + 1}. Contains nodes 0, 1 and T and has
    exactly K steps for every 1 <= K <= T. K = 1 is the single edge T → 0.

    Unlike DDIM's rule (:func:`ddim_quadratic_indices`) it ends at T, so the
    prior term is the model's.

    Returns:
        ``(K + 1,)`` int64 node values, 0 = t_0 < … < t_K = T.
    """
    T, K = _check_T_K(T, K)
    if K == 1:
        return np.array([0, T], dtype=np.int64)
    code: list[int] = []
    for i in range(K):
        c = (T - 1) * i * i // ((K - 1) * (K - 1))
        if code:
            c = max(c, code[-1] + 1)
        code.append(c)
    return np.array([0] + [c + 1 for c in code], dtype=np.int64)


def ddim_quadratic_indices(T: int, K: int) -> np.ndarray:
    """DDIM's original quadratic timesteps, as code indices (sampling only).

    ``int((linspace(0, √(0.8·T), K))²)`` as in DDIM's ``runners/diffusion.py``
    (``skip_type == "quad"``). The result is **not** a path: it holds code
    indices (node − 1), ends at 0.8·T instead of T−1, and repeats indices when K
    is large (235 distinct values for T = 1000, K = 256). Do not score it as an
    ELBO (``method.md`` §7); use :func:`quadratic_stride` for that.

    Returns:
        ``(K,)`` int64 code indices, non-decreasing, starting at 0.
    """
    T, K = _check_T_K(T, K)
    return (np.linspace(0.0, np.sqrt(T * 0.8), K) ** 2).astype(np.int64)


def validate_path(nodes: np.ndarray, T: int) -> np.ndarray:
    """Check that ``nodes`` is a path 0 = t_0 < … < t_K = T and return it as int64.

    Args:
        nodes: ``(K + 1,)`` integer node values, K >= 1.
        T: the chain's last node.

    Raises:
        DdpmdpError: naming the first bad position.
    """
    require(_is_int(T) and T >= 1, f"T must be a positive integer, got {T!r}")
    p = np.asarray(nodes)
    require(p.ndim == 1, f"a path must be a 1-D array of node values, got shape {p.shape}")
    require(p.size >= 2, f"a path needs at least 2 nodes (0 and T = {T}), got {p.size}")
    require(
        np.issubdtype(p.dtype, np.integer),
        f"path nodes must be integers, got dtype {p.dtype}",
    )
    p = p.astype(np.int64)
    if p[0] != 0:
        raise DdpmdpError(f"a path must start at node 0 (the data), but path[0] = {int(p[0])}")
    bad = np.flatnonzero((p[1:] <= p[:-1]) | (p[1:] > T))
    if bad.size:
        i = int(bad[0]) + 1
        if p[i] > T:
            raise DdpmdpError(f"path[{i}] = {int(p[i])} lies beyond the last node T = {T}")
        raise DdpmdpError(
            f"a path must be strictly increasing, but path[{i}] = {int(p[i])} "
            f"<= path[{i - 1}] = {int(p[i - 1])}"
        )
    if p[-1] != T:
        raise DdpmdpError(
            f"a path must end at node T = {T} (where the prior term is evaluated), "
            f"but path[{p.size - 1}] = {int(p[-1])}"
        )
    return p


def snap_to_grid(path: np.ndarray, grid_nodes: np.ndarray) -> np.ndarray:
    """Grid indices of the path's nodes: ``grid_nodes[snap_to_grid(path, grid_nodes)] == path``.

    Use it to evaluate a stride on a table built over a sub-grid of nodes.

    Args:
        path: ``(n,)`` integer node values.
        grid_nodes: ``(G,)`` integer node values, strictly increasing.

    Returns:
        ``(n,)`` int64 grid indices.

    Raises:
        DdpmdpError: naming the path nodes that are not in the grid.
    """
    g = np.asarray(grid_nodes)
    require(g.ndim == 1 and g.size >= 1, f"grid_nodes must be a non-empty 1-D array, got shape {g.shape}")
    require(np.issubdtype(g.dtype, np.integer), f"grid_nodes must be integers, got dtype {g.dtype}")
    require(bool(np.all(np.diff(g) > 0)), "grid_nodes must be strictly increasing")
    p = np.asarray(path)
    require(p.ndim == 1, f"path must be a 1-D array of node values, got shape {p.shape}")
    require(np.issubdtype(p.dtype, np.integer), f"path nodes must be integers, got dtype {p.dtype}")
    idx = np.searchsorted(g, p)
    found = idx < g.size
    found[found] = g[idx[found]] == p[found]
    if not bool(found.all()):
        missing = p[~found]
        shown = ", ".join(str(int(x)) for x in missing[:10]) + (", …" if missing.size > 10 else "")
        raise DdpmdpError(
            f"{missing.size} path node(s) are not in the grid of {g.size} nodes "
            f"({int(g[0])}..{int(g[-1])}): {shown}"
        )
    return idx.astype(np.int64)
