"""The Monte Carlo ablation (Paper Fig. 3; notebook ``mc_ablation``): DP paths from tables of 1,
2, 4, … training images, scored on test; the nested tables come from a single pass over the
images. Also its table and generated summary.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ddpmdp.batches import image_batches
from ddpmdp.book.experiments.paths import solve_table
from ddpmdp.book.reporting.captions import provenance
from ddpmdp.book.reporting.formatting import mean_pm_se
from ddpmdp.book.reporting.tables import ResultTable, bpd_table
from ddpmdp.book.runtime.inputs import variance_rule
from ddpmdp.book.runtime.table_cache import table_grid
from ddpmdp.data.images import ImageSet
from ddpmdp.errors import require
from ddpmdp.evaluate import PathScore, evaluate_paths, paired_difference
from ddpmdp.models.adapter import DiffusionModel
from ddpmdp.table import ElboTable, TableStats, table_meta
from ddpmdp.table_estimation import accumulate_batch
from ddpmdp.variances import VarianceRule

__all__ = ["nested_tables", "MCAblationResult", "run_mc_ablation", "mc_ablation_summary_markdown"]


# ---- Monte Carlo ablation ---------------------------------------------------------------------
def nested_tables(model: DiffusionModel, data: ImageSet, sizes: Sequence[int], *, variance: VarianceRule,
                  grid: str | None = None, clip: bool = True, seed: int = 0, batch_size: int = 32,
                  device: str = "cpu") -> dict[int, ElboTable]:
    """Tables from the first n images of ``data`` for every n in ``sizes``, in one pass over
    max(sizes) images: batches never straddle a size boundary, and the running sums are
    copied into a table at each boundary. Noise is keyed by (seed, image index, t), so each
    table equals ``estimate_table(model, data.subset(n), …)`` up to rounding (the network's
    float32 outputs can depend on how images are batched)."""
    sizes = sorted({int(n) for n in sizes})
    require(len(sizes) >= 1 and sizes[0] >= 1, "sizes must be positive image counts")
    require(sizes[-1] <= len(data), f"the largest table size {sizes[-1]} exceeds the {len(data)} images given")
    nodes = table_grid(grid, model.schedule.T)
    stats = TableStats.zeros(nodes, device)
    out: dict[int, ElboTable] = {}
    batches = image_batches(data.subset(sizes[-1]), batch_size, device, boundaries=sizes)
    for n in sizes:
        while stats.n < n:
            batch = next(batches)
            stats.add_(accumulate_batch(model, batch.x0, batch.keys, nodes, variance, clip, seed))
        snap = TableStats(nodes, **{k: v.detach().clone().cpu() for k, v in stats.tensors().items()}, n=stats.n)
        meta = table_meta(model, data.subset(n), nodes, variance, clip, seed, None)
        meta["grid"] = grid or "all"
        out[n] = ElboTable.from_stats(snap, data.dims, meta)
    return out


@dataclass
class MCAblationResult:
    """DP paths chosen from tables of ``sizes`` training images, scored on test.

    ``paths[n][K]`` and ``scores[n][K]`` (paired: one direct evaluation for all n and K);
    ``tables[n]`` the selection tables; ``seconds`` wall times."""

    label: str
    sizes: list[int]
    tables: dict[int, ElboTable]
    paths: dict[int, dict[int, np.ndarray]]
    scores: dict[int, dict[int, PathScore]]
    seconds: dict[str, float] = field(default_factory=dict)
    provenance: str = ""

    def as_table(self, precision: int = 3, title: str = "") -> ResultTable:
        """Rows "table from n images", columns K: test bits/dim ± SE of the DP paths."""
        keyed = {(self.label, f"table from {n} image{'s' if n != 1 else ''}", K): sc
                 for n, d in self.scores.items() for K, sc in d.items()}
        return bpd_table(keyed, budgets=sorted({K for d in self.scores.values() for K in d}), precision=precision,
                         title=title, row_headers=("Model", "Selection table"))


def run_mc_ablation(model: DiffusionModel, train: ImageSet, test: ImageSet, *, label: str, sizes: Sequence[int],
                    budgets: Sequence[int], grid: str | None = None, variance: str | None = None, clip: bool = True,
                    batch_size: int = 32, seed: int = 0, device: str = "cpu") -> MCAblationResult:
    """Monte Carlo ablation (Paper §5.2, Fig. 3): :func:`nested_tables` on ``train``, the DP of
    each, and one direct evaluation of all DP paths on ``test`` (shared forward passes, paired)."""
    variance = variance_rule(variance, model)
    t0 = time.perf_counter()
    tables = nested_tables(model, train, sizes, variance=variance, grid=grid, clip=clip, seed=seed,
                           batch_size=batch_size, device=device)
    t1 = time.perf_counter()
    paths = {n: {int(K): sol.path(int(K)) for K in budgets} for n, sol in
             ((n, solve_table(tab, budgets)) for n, tab in tables.items())}
    named = {f"{n}|{K}": p for n, d in paths.items() for K, p in d.items()}
    scored = evaluate_paths(model, test, named, variance=variance, clip=clip, batch_size=batch_size, seed=seed,
                            device=device)
    t2 = time.perf_counter()
    scores = {n: {K: scored[f"{n}|{K}"] for K in d} for n, d in paths.items()}
    return MCAblationResult(label, sorted(tables), tables, paths, scores, {"tables": t1 - t0, "evaluate": t2 - t1},
                            provenance({label: model.identity}, train, test, tables[max(tables)]))


def mc_ablation_summary_markdown(result: MCAblationResult, precision: int = 3) -> str:
    """The largest paired difference between DP paths chosen from small tables and from the
    largest table, with its SE, and what that measures: the reference is itself a table of a
    finite number of images, so the difference is agreement with that table's paths, not the
    distance to converged ones."""
    ref = max(result.sizes)
    worst: tuple[float, float, int, int] | None = None
    for n in result.sizes:
        if n == ref:
            continue
        for K, sc in result.scores[n].items():
            d, se = paired_difference(sc, result.scores[ref][K])
            if worst is None or abs(d) > abs(worst[0]):
                worst = (d, se, n, K)
    if worst is None:
        return f"**{result.label}**: only one table size ({ref} images).\n"
    d, se, n, K = worst
    return (f"**{result.label}**: the largest difference from the paths chosen with a {ref}-image table is "
            f"{mean_pm_se(d, se, precision, signed=True)} bits/dim (paired SE), for the table of "
            f"{n} image{'s' if n != 1 else ''} at K = {K}; every other table size and budget is closer. "
            f"The reference is itself a Monte Carlo table of {ref} images, so this measures how closely the smaller "
            f"tables' paths agree with its paths, not their distance from the paths of a converged table.\n")
