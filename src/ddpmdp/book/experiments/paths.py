"""The paths every driver compares: the DP of a selection table for every budget, and the even
and quadratic strides (:mod:`ddpmdp.strides`). Nodes run 0 … T."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ddpmdp.dp import DPSolution, solve
from ddpmdp.errors import require
from ddpmdp.strides import even_stride, quadratic_stride
from ddpmdp.table import ElboTable

__all__ = ["solve_table", "stride_paths", "by_budget"]


def solve_table(table: ElboTable, budgets: Sequence[int], L: np.ndarray | None = None) -> DPSolution:
    """The DP (:func:`ddpmdp.dp.solve`) of ``table`` up to the largest budget, on the table's
    grid; ``L`` replaces the ELBO cells by another (G, G) edge cost (e.g.
    :func:`ddpmdp.book.experiments.sample_quality.mse_reweighted_cost`). Fails with a clear
    message when the grid is too coarse."""
    G = len(table.nodes)
    k_max = max(int(k) for k in budgets)
    require(k_max <= G - 1, f"budget K = {k_max} needs at least K + 1 grid nodes, but the table's grid has {G} "
            f"({table.meta.get('grid')}); use a finer grid or smaller budgets")
    return solve(table.L if L is None else L, k_max, table.nodes)


def stride_paths(T: int, budgets: Sequence[int], *, solution: DPSolution | None = None,
                 strides: Sequence[str] = ("even", "quadratic"), dp_name: str = "dp"
                 ) -> dict[tuple[str, int], np.ndarray]:
    """``{(stride, K): nodes}`` for the even and quadratic strides and, with a solution, the DP
    path of every budget (named ``dp_name``)."""
    fns = {"even": even_stride, "quadratic": quadratic_stride}
    out: dict[tuple[str, int], np.ndarray] = {}
    for s in strides:
        require(s in fns, f"unknown stride {s!r}: use even or quadratic")
    for K in budgets:
        for s in strides:
            out[(s, int(K))] = fns[s](T, int(K))
        if solution is not None:
            out[(dp_name, int(K))] = solution.path(int(K))
    return out


def by_budget(paths: Mapping[tuple[str, int], np.ndarray]) -> dict[int, dict[str, np.ndarray]]:
    """``{(stride, K): nodes}`` (from :func:`stride_paths`) regrouped as ``{K: {stride: nodes}}``."""
    out: dict[int, dict[str, np.ndarray]] = {}
    for (s, K), p in paths.items():
        out.setdefault(int(K), {})[s] = p
    return dict(sorted(out.items()))
