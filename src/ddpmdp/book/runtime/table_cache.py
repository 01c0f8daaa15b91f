"""Selection tables for the notebooks: L(t, s) on the training split over a grid, cached on disk
so that notebooks share them, and derived for every rule one pass serves.

Selection and evaluation stay apart: tables are estimated on the **training** split and every
reported number is a direct held-out evaluation (:func:`ddpmdp.evaluate.evaluate_paths`).
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ddpmdp.book.runtime.inputs import variance_rule
from ddpmdp.book.runtime.locations import repo_root
from ddpmdp.data.images import ImageSet
from ddpmdp.grids import parse_grid
from ddpmdp.models.adapter import DiffusionModel
from ddpmdp.rescore import rescore
from ddpmdp.table import ElboTable, load_table
from ddpmdp.table_estimation import estimate_table
from ddpmdp.variances import VarianceRule, default_rule, sums_rule

__all__ = ["table_grid", "grid_with_strides", "cached_table", "superset_rule"]


def table_grid(grid: str | None, T: int) -> np.ndarray:
    """Grid nodes (int64, 0 … T) from a grid spec (``ddpmdp.grids.parse_grid``: ``log:G``,
    ``stride:k``, ``even:K1,K2``, ``quadratic:K1,K2``, ``nodes:a,b,…`` joined with ``+``);
    ``None`` or ``"all"`` is every node."""
    if grid is None or grid == "all":
        return np.arange(T + 1, dtype=np.int64)
    return parse_grid(grid, T)


def grid_with_strides(grid: str | None, budgets: Sequence[int]) -> str:
    """``grid`` plus the nodes of the even and quadratic strides of every budget, so that the DP
    optimum on the selection table is never worse than a stride (``all`` already holds them)."""
    if grid is None or grid == "all":
        return "all"
    Ks = ",".join(str(int(k)) for k in sorted({int(k) for k in budgets}))
    return f"{grid}+even:{Ks}+quadratic:{Ks}"


def cached_table(model: DiffusionModel, data: ImageSet, *, variance: str | None = None, grid: str | None = None,
                 clip: bool = True, seed: int = 0, batch_size: int = 32, device: str = "cpu",
                 cache_dir: str | os.PathLike | None = None) -> tuple[ElboTable, bool]:
    """The L(t, s) table of ``model`` on ``data`` under ``variance`` (None: the model's own rule,
    :func:`ddpmdp.book.runtime.inputs.variance_rule`); returns ``(table, loaded_from_cache)``.

    With ``cache_dir`` (relative paths resolve against :func:`ddpmdp.book.runtime.locations.repo_root`)
    the table is stored as ``TABLE-<key>.npz``, where the key hashes the model and data
    fingerprints, the grid nodes, the variance rule, the clip flag and the seed, and it is
    reused by later calls with the same key (the notebooks share tables this way). The
    batch size and device are not part of the key: they change cells only by rounding.

    One pass serves every rule whose summed cells are the model's own rule's: that rule,
    ``analytic``, ``optimal`` and (learned-variance models) ``best``. For those the table is
    estimated once under :func:`superset_rule` (the same pass also sums M(t), Γ_t and the
    decoder candidates) and the requested rule's table is derived by
    :func:`ddpmdp.rescore.rescore`; the model's own rule keeps its summed per-image cells, so
    they equal a direct table's. Notebooks asking for ``fixed_large`` and for ``optimal`` share one file.
    """
    rule = variance_rule(variance, model)
    nodes = table_grid(grid, model.schedule.T)
    estimated_rule = superset_rule(model, rule)
    path = None
    if cache_dir is not None:
        key = json.dumps({"model": model.fingerprint(), "model_id": model.identity, "data": data.fingerprint(),
                          "n": len(data), "grid": hashlib.sha256(nodes.tobytes()).hexdigest(),
                          "variance": estimated_rule, "clip": bool(clip), "seed": int(seed)}, sort_keys=True)
        folder = Path(cache_dir).expanduser()
        folder = folder if folder.is_absolute() else repo_root() / folder
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"TABLE-{hashlib.sha256(key.encode()).hexdigest()[:20]}.npz"
        if path.is_file():
            return _as_rule(load_table(path), rule), True
    table = estimate_table(model, data, variance=estimated_rule, clip=clip, nodes=nodes, batch_size=batch_size,
                           seed=seed, device=device)
    table.meta["grid"] = grid or "all"
    if path is not None:
        table.save(path)
    return _as_rule(table, rule), False


def superset_rule(model: DiffusionModel, variance: VarianceRule) -> VarianceRule:
    """The rule :func:`cached_table` estimates to serve ``variance`` (a resolved rule): ``best``
    (learned-variance models) or ``optimal`` when ``variance`` sums the cells of the rule a table
    pass sums by default (:func:`ddpmdp.variances.sums_rule`), else ``variance`` itself."""
    summed_by_default = default_rule(model.learned_variance)
    if sums_rule(variance, model.learned_variance) != summed_by_default:
        return variance
    return "best" if model.learned_variance else "optimal"


def _as_rule(table: ElboTable, variance: VarianceRule) -> ElboTable:
    return table if table.meta.get("variance") == variance else rescore(table, variance)
