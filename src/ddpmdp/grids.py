"""Grids: the nodes a table holds and the DP searches (specs such as ``log:200+stride:4``)."""
from __future__ import annotations

import numpy as np

from ddpmdp.errors import DdpmdpError, require
from ddpmdp.strides import BASELINES, NEEDS_SCHEDULE, baseline_stride

__all__ = ["make_grid", "parse_grid"]


def make_grid(T: int, stride: int = 1, nodes: np.ndarray | None = None) -> np.ndarray:
    """Grid nodes: every ``stride``-th node from 0, always holding 0 and T; or ``nodes`` validated."""
    if nodes is not None:
        g = np.asarray(nodes, dtype=np.int64)
        require(g.ndim == 1 and g.size >= 2 and g[0] == 0 and g[-1] == T and bool(np.all(np.diff(g) > 0)),
                f"grid nodes must increase strictly from 0 to T = {T}")
        return g
    require(int(stride) == stride and 1 <= stride <= T, f"grid stride must be an integer in 1..{T}, got {stride}")
    g = np.arange(0, T + 1, int(stride), dtype=np.int64)
    return g if g[-1] == T else np.append(g, T)


def parse_grid(spec: str, T) -> np.ndarray:
    """A grid from a spec: parts joined by ``+``, each one of ``all``, ``stride:k``, ``log:G``
    (about G nodes log-spaced from 1 to T: dense near the data, where ELBO-optimal paths put
    their steps), a baseline with budgets ``even:K1,K2,…``, ``quadratic:…``, ``ddim-quadratic:…``,
    ``logsnr:…``, ``edm:…`` (the nodes of those strides, :data:`ddpmdp.strides.BASELINES`, so
    that a held-out table can score them and the DP can choose them), ``nodes:a,b,…``. Nodes 0
    and T are always included. ``T``: the number of steps, or the noise schedule
    (:class:`~ddpmdp.schedules.Schedule`), which ``logsnr`` and ``edm`` need.
    Example: ``log:120+even:8,16,32+edm:8,16,32``."""
    schedule = T if hasattr(T, "alphas_cumprod") else None
    T = int(schedule.T) if schedule is not None else int(T)
    out = [np.array([0, T])]
    for part in spec.split("+"):
        kind, _, arg = part.strip().partition(":")
        try:
            if kind == "all":
                out.append(np.arange(T + 1))
            elif kind == "stride":
                out.append(make_grid(T, int(arg)))
            elif kind == "log":
                G = int(arg)
                require(G >= 2, f"grid {part!r}: log:G needs G >= 2")
                out.append(np.round(np.geomspace(1, T, G - 1)).astype(np.int64))
            elif kind in BASELINES:
                require(kind not in NEEDS_SCHEDULE or schedule is not None,
                        f"grid {part!r} needs the noise schedule (ᾱ), not only T = {T}")
                for k in arg.split(","):
                    require(1 <= int(k) <= T, f"grid {part!r}: K must lie in 1..T = {T}, got {int(k)}")
                    out.append(baseline_stride(kind, T, int(k), schedule))
            elif kind == "nodes":
                nodes = np.array([int(x) for x in arg.split(",")])
                require(bool(np.all((nodes >= 0) & (nodes <= T))), f"grid {part!r}: nodes must lie in 0..{T}")
                out.append(nodes)
            else:
                raise DdpmdpError(f"unknown grid part {part!r}: use all, stride:k, log:G, even:K,…, quadratic:K,…, "
                                  "ddim-quadratic:K,…, logsnr:K,…, edm:K,…, nodes:a,b,…")
        except ValueError as exc:
            if isinstance(exc, DdpmdpError):
                raise
            raise DdpmdpError(f"grid part {part!r}: expected integers after the colon") from None
    return np.unique(np.concatenate(out)).astype(np.int64)
