"""What a notebook reads: data and models (loaded quietly, described portably), cached tables,
stride and DP paths.

Selection and evaluation stay apart: tables are estimated on the **training** split and every
reported number is a direct held-out evaluation (:func:`ddpmdp.evaluate.evaluate_paths`).
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import cast

import numpy as np
import torch

from ddpmdp.data.images import ImageSet, data_root
from ddpmdp.data.specs import load_images
from ddpmdp.dp import DPSolution, solve
from ddpmdp.grids import parse_grid
from ddpmdp.table import ElboTable, load_table
from ddpmdp.table_estimation import estimate_table
from ddpmdp.errors import require
from ddpmdp.models.adapter import DiffusionModel
from ddpmdp.book.locations import repo_root
from ddpmdp.strides import even_stride, quadratic_stride
from ddpmdp.rescore import rescore
from ddpmdp.variances import VarianceRule, default_rule, sums_rule

__all__ = [
    "load_data",
    "describe_data",
    "load_experiment_model",
    "default_variance",
    "describe_model",
    "table_grid",
    "grid_with_strides",
    "cached_table",
    "superset_rule",
    "solve_table",
    "stride_paths",
    "by_budget",
]


# ---- data and models ---------------------------------------------------------------------------
def load_data(spec: str, n: int | None = None, *, data_dir: str | os.PathLike | None = None) -> ImageSet:
    """The first ``n`` images (all when None) of a data spec (:func:`ddpmdp.data.specs.load_images`).

    Warnings raised while loading (e.g. "differs from the official files") are not printed;
    they are kept in the returned set's ``notes`` (and hence in every table's metadata).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_images(spec, data_dir)
    extra = [str(w.message) for w in caught if str(w.message) not in ds.notes]
    ds = ds.subset(n)
    ds.notes.extend(extra)
    return ds


def _portable(text: str, data_dir: str | os.PathLike | None = None) -> str:
    """``text`` with the data folder written as ``$DDPMDP_DATA`` (outputs independent of the machine)."""
    root = data_root(data_dir)
    if root is not None:
        for form in {str(root), str(Path(root).resolve())}:
            text = text.replace(form, "$DDPMDP_DATA")
    return text


def describe_data(ds: ImageSet, data_dir: str | os.PathLike | None = None) -> str:
    """One paragraph about an image set: identity, split, N, shape, d and its notes."""
    C, H, W = ds.images.shape[1:]
    lines = [f"{ds.identity}: split {ds.split}, {len(ds):,} images of {C}×{H}×{W} (d = {ds.dims:,})"]
    lines += [f"  note: {_portable(n, data_dir)}" for n in ds.notes]
    return "\n".join(lines)


def load_experiment_model(spec: str, *, noise_schedule: str | None = None, device: str = "cpu",
                          data_dir: str | os.PathLike | None = None) -> DiffusionModel:
    """A model adapter from a model spec (:func:`ddpmdp.models.specs.load_model`): an embedded
    model name, ``iddpm:PRESET[:PATH]``, ``ho[:PATH]``, ``gaussian:DATA`` or ``module:callable``.
    ``noise_schedule`` (``linear:T``, ``cosine:T``, a ``.npy`` of ᾱ) is for the specs that need
    or accept one. Loader warnings are suppressed (data notes travel with the data instead)."""
    from ddpmdp.models.specs import load_model

    if device.startswith("cuda"):
        require(torch.cuda.is_available(), f"device {device!r}: CUDA is not available here; use device='cpu'")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_model(spec, device=device, data_dir=data_dir, schedule=noise_schedule)


def default_variance(model: DiffusionModel, variance: str | None = None) -> VarianceRule:
    """``variance`` if given, else ``learned_range`` for learned-variance models and ``fixed_large`` otherwise."""
    return cast(VarianceRule, variance or model.variance)  # a rule name; consumers call check_rule


def describe_model(model: DiffusionModel, variance: str | None = None) -> str:
    """One line: identity, noise schedule, T and the variance rule in use."""
    return (f"{model.identity}: {model.schedule.describe()}, T = {model.schedule.T}, "
            f"variance {default_variance(model, variance)}")


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


def cached_table(model: DiffusionModel, data: ImageSet, *, variance: VarianceRule, grid: str | None = None,
                 clip: bool = True, seed: int = 0, batch_size: int = 32, device: str = "cpu",
                 cache_dir: str | os.PathLike | None = None) -> tuple[ElboTable, bool]:
    """The L(t, s) table of ``model`` on ``data``; returns ``(table, loaded_from_cache)``.

    With ``cache_dir`` (relative paths resolve against :func:`ddpmdp.book.locations.repo_root`) the
    table is stored as ``TABLE-<key>.npz``, where the key hashes the model and data
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
    nodes = table_grid(grid, model.schedule.T)
    estimated_rule = superset_rule(model, variance)
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
            return _as_rule(load_table(path), variance), True
    table = estimate_table(model, data, variance=estimated_rule, clip=clip, nodes=nodes, batch_size=batch_size,
                           seed=seed, device=device)
    table.meta["grid"] = grid or "all"
    if path is not None:
        table.save(path)
    return _as_rule(table, variance), False


def superset_rule(model: DiffusionModel, variance: VarianceRule) -> VarianceRule:
    """The rule :func:`cached_table` estimates to serve ``variance``: ``best`` (learned-variance
    models) or ``optimal`` when ``variance`` sums the model's own rule's cells, else ``variance``."""
    own = default_rule(model.learned_variance)
    if sums_rule(variance, model.learned_variance) != own:
        return variance
    return "best" if model.learned_variance else "optimal"


def _as_rule(table: ElboTable, variance: VarianceRule) -> ElboTable:
    return table if table.meta.get("variance") == variance else rescore(table, variance)


def stride_paths(T: int, budgets: Sequence[int], *, solution: DPSolution | None = None,
                 strides: Sequence[str] = ("even", "quadratic"), dp_name: str = "dp"
                 ) -> dict[tuple[str, int], np.ndarray]:
    """``{(stride, K): nodes}`` for the even and quadratic strides (:mod:`ddpmdp.strides`) and,
    with a solution, the DP path of every budget (named ``dp_name``). Nodes run 0 … T."""
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


def solve_table(table: ElboTable, budgets: Sequence[int], L: np.ndarray | None = None) -> DPSolution:
    """The DP (:func:`ddpmdp.dp.solve`) of ``table`` up to the largest budget, on the table's
    grid; ``L`` replaces the ELBO cells by another (G, G) edge cost (e.g.
    :func:`mse_reweighted_cost`). Fails with a clear message when the grid is too coarse."""
    G = len(table.nodes)
    k_max = max(int(k) for k in budgets)
    require(k_max <= G - 1, f"budget K = {k_max} needs at least K + 1 grid nodes, but the table's grid has {G} "
            f"({table.meta.get('grid')}); use a finer grid or smaller budgets")
    return solve(table.L if L is None else L, k_max, table.nodes)
