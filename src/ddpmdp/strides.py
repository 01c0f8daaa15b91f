"""Hand-designed strides (even, quadratic, DDIM's quadratic, log-SNR, EDM) and path utilities, in the
node convention.

``method.md`` §7. A K-step path is an int64 array of K + 1 node values
0 = t_0 < t_1 < … < t_K = T (node 0 = data, node T = the prior's node; see
:mod:`ddpmdp.schedules`). Every path scored as an ELBO must end at T.

* :func:`even_stride` — improved-diffusion's ``space_timesteps(T, [K])`` spacing.
* :func:`quadratic_stride` — ddpmdp's quadratic rule for ELBOs (ends at T).
* :func:`ddim_quadratic_indices` — DDIM's original quadratic rule, as *code
  indices*; it ends at 0.8·T and may repeat, so it is for sampling only.
* :func:`ddim_quadratic_stride` — DDIM's rule made into a K-step path (its top node
  moved to T, collisions resolved).
* :func:`logsnr_stride`, :func:`edm_stride` — uniform log-SNR and Karras et al.'s ρ = 7
  σ spacing, mapped to the nearest distinct nodes of a noise schedule
  (``method.md`` §13.6, the baselines at equal K of the trajectory table).
* :func:`validate_path`, :func:`snap_to_grid` — checks and grid lookup.

Code indices (improved-diffusion's 0-based timesteps) are node − 1.
"""
from __future__ import annotations

import numpy as np

from ddpmdp.errors import DdpmdpError, require

EDM_RHO = 7.0
"""Karras et al.'s (2022) ρ for :func:`edm_stride`."""

__all__ = [
    "PathBudget",
    "even_stride",
    "quadratic_stride",
    "ddim_quadratic_indices",
    "ddim_quadratic_stride",
    "logsnr_stride",
    "edm_stride",
    "distinct_nodes",
    "nearest_nodes",
    "BASELINES",
    "NEEDS_SCHEDULE",
    "baseline_stride",
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


def distinct_nodes(nodes, T: int) -> np.ndarray:
    """Make K non-decreasing nodes in 1..T, the first 1 and the last T, distinct (how every
    baseline resolves collisions, deterministically).

    Forward pass n_i ← max(n_i, n_{i−1} + 1) (a node that collides with the one below moves
    up to the next free node, so a run of collisions near the data becomes a run of
    consecutive nodes), then backward pass n_i ← min(n_i, n_{i+1} − 1) with n_{K−1} = T (a
    run pushed past T is packed below it). Nodes that collide with nothing are unchanged.
    Needs K <= T; keeps exactly K nodes, n_0 = 1 and n_{K−1} = T.

    Returns:
        ``(K,)`` int64 strictly increasing nodes in 1..T.
    """
    n = [int(x) for x in np.asarray(nodes, dtype=np.int64)]
    K = len(n)
    require(1 <= K <= T, f"need 1 <= K <= T = {T} nodes to make distinct, got {K}")
    for i in range(1, K):
        n[i] = max(n[i], n[i - 1] + 1)
    n[-1] = T
    for i in range(K - 2, -1, -1):
        n[i] = min(n[i], n[i + 1] - 1)
    out = np.asarray(n, dtype=np.int64)
    assert out[0] >= 1 and bool(np.all(np.diff(out) > 0)), "internal: distinct_nodes failed"
    return out


def _abar(T: int, schedule) -> np.ndarray:
    """ᾱ over nodes 0..T (float64, ᾱ₀ = 1) from a :class:`~ddpmdp.schedules.Schedule` or an array."""
    require(schedule is not None, "this stride needs the noise schedule (ᾱ): pass schedule=… (the command "
            "line takes it from --model)")
    a = np.asarray(getattr(schedule, "alphas_cumprod", schedule), dtype=np.float64)
    require(a.ndim == 1 and a.size == T + 1, f"ᾱ must have T + 1 = {T + 1} entries (nodes 0..T), got {a.shape}")
    require(bool(np.all((a[1:] > 0) & (a[1:] < 1))), "ᾱ must lie strictly between 0 and 1 at nodes 1..T (a "
            "finite, positive log-SNR)")
    return a


def nearest_nodes(log_snr_targets, T: int, schedule) -> np.ndarray:
    """The node n in 1..T whose log-SNR λ(n) = log(ᾱ_n/(1 − ᾱ_n)) is nearest each target, ties
    to the smaller node (nearer the data). Nearest in λ is nearest in log σ (λ = −2·log σ with
    σ = √((1 − ᾱ)/ᾱ)), as k-diffusion's ``sigma_to_t`` and diffusers' ``_sigma_to_t`` read σ.

    Returns:
        int64 nodes, same shape as the targets (not made distinct: see :func:`distinct_nodes`).
    """
    a = _abar(T, schedule)[1:]
    lam = np.log(a) - np.log1p(-a)  # λ(n) for n = 1..T, decreasing in n
    x = np.asarray(log_snr_targets, dtype=np.float64)
    require(bool(np.all(np.isfinite(x))), "log-SNR targets must be finite")
    dist = np.abs(x[..., None] - lam)  # (…, T)
    return (np.argmin(dist, axis=-1) + 1).astype(np.int64)  # argmin takes the first (smallest node) on ties


def ddim_quadratic_stride(T: int, K: int) -> np.ndarray:
    """DDIM's own quadratic rule (:func:`ddim_quadratic_indices`) as a K-step path.

    DDIM evaluates the network at code indices c_i = int(linspace(0, √(0.8·T), K)_i²), i.e.
    nodes c_i + 1, starting from pure noise at node 0.8·T + 1. A ddpmdp path starts from
    x_T ~ N(0, I) at node T, so the **top node is replaced by T** (not appended: appending
    would spend K + 1 network evaluations, and equal-K comparisons need K). The first edge is
    then T → c_{K−2} + 1, longer than DDIM's, and the other K − 1 nodes are DDIM's. The rule
    repeats indices near the data when K is large (235 distinct of 256 at T = 1000); repeats
    are resolved by :func:`distinct_nodes` (moved up to the next free node). Not the same
    as :func:`quadratic_stride`, which rescales the quadratic to end at T.

    Returns:
        ``(K + 1,)`` int64 node values, 0 = t_0 < t_1 = 1 < … < t_K = T.
    """
    T, K = _check_T_K(T, K)
    if K == 1:
        return np.array([0, T], dtype=np.int64)
    nodes = ddim_quadratic_indices(T, K) + 1
    nodes[-1] = T
    return np.concatenate([[0], distinct_nodes(nodes, T)]).astype(np.int64)


def logsnr_stride(T: int, K: int, schedule) -> np.ndarray:
    """Uniform log-SNR K-step path (``method.md`` §13.6).

    λ_i = λ(T) + i/(K−1)·(λ(1) − λ(T)) for i = 0..K−1, with λ(n) = log(ᾱ_n/(1 − ᾱ_n)), each
    mapped to the node nearest in λ (:func:`nearest_nodes`), collisions resolved by
    :func:`distinct_nodes`, plus node 0. The ends are exactly T and 1. K = 1 is T → 0.

    Args:
        schedule: a :class:`~ddpmdp.schedules.Schedule` of T steps, or ᾱ over nodes 0..T.

    Returns:
        ``(K + 1,)`` int64 node values, 0 = t_0 < t_1 = 1 < … < t_K = T.
    """
    T, K = _check_T_K(T, K)
    a = _abar(T, schedule)
    if K == 1:
        return np.array([0, T], dtype=np.int64)
    lam_T, lam_1 = (float(np.log(a[n]) - np.log1p(-a[n])) for n in (T, 1))
    targets = lam_T + np.arange(K - 1, -1, -1, dtype=np.float64) / (K - 1) * (lam_1 - lam_T)  # ascending nodes
    return np.concatenate([[0], distinct_nodes(nearest_nodes(targets, T, a), T)]).astype(np.int64)


def edm_stride(T: int, K: int, schedule, *, rho: float = EDM_RHO) -> np.ndarray:
    """Karras et al. (2022, "EDM") σ spacing as a K-step path (``method.md`` §13.6).

    σ(n) = √((1 − ᾱ_n)/ᾱ_n); σ_max = σ(T), σ_min = σ(1); for i = 0..K−1
    σ_i = (σ_max^{1/ρ} + i/(K−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ with ρ = 7 (k-diffusion's
    ``get_sigmas_karras`` without its trailing 0), each mapped to the node nearest in log σ
    (:func:`nearest_nodes`), collisions resolved by :func:`distinct_nodes` (ρ = 7 crowds the
    small σ near the data: at large K the lowest nodes become a run 1, 2, 3, …), plus node 0.
    The ends are exactly T and 1. K = 1 is T → 0.

    Returns:
        ``(K + 1,)`` int64 node values, 0 = t_0 < t_1 = 1 < … < t_K = T.
    """
    T, K = _check_T_K(T, K)
    a = _abar(T, schedule)
    require(float(rho) > 0, f"rho must be positive, got {rho}")
    if K == 1:
        return np.array([0, T], dtype=np.int64)
    s_max, s_min = (float(np.sqrt((1.0 - a[n]) / a[n])) for n in (T, 1))
    ramp = np.arange(K, dtype=np.float64) / (K - 1)
    sig = (s_max ** (1 / rho) + ramp * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho  # descending σ
    lam = -2.0 * np.log(sig[::-1])  # ascending nodes
    return np.concatenate([[0], distinct_nodes(nearest_nodes(lam, T, a), T)]).astype(np.int64)


BASELINES: dict[str, str] = {
    "even": "improved-diffusion's even stride (method.md §7.1)",
    "quadratic": "ddpmdp's quadratic stride, ending at T (§7.2)",
    "ddim-quadratic": "DDIM's quadratic rule, top node 0.8·T + 1 replaced by T (§7.2)",
    "logsnr": "uniform log-SNR between λ(T) and λ(1), nearest distinct nodes (§13.6)",
    "edm": "Karras et al. ρ = 7 σ spacing between σ(T) and σ(1), nearest distinct nodes (§13.6)",
}
"""The baseline strides by spec name (``even:K``, …), with a one-line description."""

NEEDS_SCHEDULE = frozenset({"logsnr", "edm"})
"""Baselines that need ᾱ (the noise schedule), not only T."""


def baseline_stride(name: str, T: int, K: int, schedule=None) -> np.ndarray:
    """The baseline ``name`` (a key of :data:`BASELINES`) with K steps on T (ᾱ from ``schedule``
    for ``logsnr`` and ``edm``)."""
    require(name in BASELINES, f"unknown stride {name!r}: use one of {', '.join(BASELINES)}")
    if name in NEEDS_SCHEDULE:
        if schedule is None:
            raise DdpmdpError(f"the {name} stride needs the noise schedule (ᾱ), not only T = {T}: pass the "
                              "model or its schedule")
        return (logsnr_stride if name == "logsnr" else edm_stride)(T, K, schedule)
    return {"even": even_stride, "quadratic": quadratic_stride, "ddim-quadratic": ddim_quadratic_stride}[name](T, K)


class PathBudget:
    """What every object that carries a path's ``nodes`` (int64, 0 = t₀ < … < t_K = T) shares: its
    budget K (the number of edges) and the network evaluations of its sampler, NFE = K (one per
    edge). A mixin: the class defines ``nodes`` (a dataclass field, or an attribute)."""

    nodes: np.ndarray

    @property
    def K(self) -> int:
        return int(len(self.nodes) - 1)

    @property
    def nfe(self) -> int:
        """Network evaluations per sample along the path: one per edge (= K)."""
        return self.K


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
