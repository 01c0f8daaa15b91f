"""The NLL experiment (Paper Tables 3 and 4; notebooks ``cifar10_nll`` and ``imagenet64_nll``):
table on train → DP for every budget → even, quadratic and DP strides (and optionally the full
chain) scored on test, with paired SEs; its table, figure, DP-path files and generated summary.
"""
from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ddpmdp.book.experiments.paths import solve_table, stride_paths
from ddpmdp.book.reporting.captions import provenance
from ddpmdp.book.reporting.comparisons import verdict
from ddpmdp.book.reporting.files import write_dp_json
from ddpmdp.book.reporting.formatting import format_paths, mean_pm_se, ranges
from ddpmdp.book.reporting.plotting import plot_bpd_vs_budget
from ddpmdp.book.reporting.tables import ResultTable, bpd_table, flags_markdown, scores_by_stride
from ddpmdp.book.runtime.inputs import describe_model, variance_rule
from ddpmdp.book.runtime.run_config import RunConfig
from ddpmdp.book.runtime.table_cache import cached_table, grid_with_strides
from ddpmdp.data.images import ImageSet
from ddpmdp.dp import DPSolution, path_cost
from ddpmdp.errors import require
from ddpmdp.evaluate import PathScore, evaluate_paths, paired_difference
from ddpmdp.models.adapter import DiffusionModel
from ddpmdp.table import ElboTable

__all__ = ["NLLResult", "run_nll", "run_nll_models", "nll_table", "nll_figure", "nll_caption", "nll_summary_markdown",
           "write_nll_paths", "nll_report"]


# ---- NLL: table on train, DP, direct evaluation on test ---------------------------------------
@dataclass
class NLLResult:
    """One model's bits/dim per (stride, K) on the held-out split.

    ``paths[(stride, K)]`` and ``scores[(stride, K)]`` for strides ``even``, ``quadratic`` and
    ``dp``; ``full`` the full T-step chain (None when not evaluated); ``table`` the training
    table the DP used and ``solution`` its DP; ``seconds`` wall times of the stages; ``cached``
    whether the table came from the cache.
    """

    objective: str
    model: str
    variance: str
    table: ElboTable
    solution: DPSolution
    paths: dict[tuple[str, int], np.ndarray]
    scores: dict[tuple[str, int], PathScore]
    full: PathScore | None
    seconds: dict[str, float] = field(default_factory=dict)
    cached: bool = False

    def keyed_scores(self) -> dict[tuple[str, str, int], PathScore]:
        """``{(objective, stride, K): score}``, the input of :func:`ddpmdp.book.reporting.tables.bpd_table`."""
        return {(self.objective, s, K): sc for (s, K), sc in self.scores.items()}

    def dp_paths(self) -> dict[int, np.ndarray]:
        """``{K: nodes}`` of the DP paths."""
        return {K: p for (s, K), p in self.paths.items() if s == "dp"}


def run_nll(model: DiffusionModel, train: ImageSet, test: ImageSet, *, objective: str, budgets: Sequence[int],
            grid: str | None = None, variance: str | None = None, clip: bool = True, full_chain: bool = True,
            batch_size: int = 32, seed: int = 0, device: str = "cpu",
            cache_dir: str | os.PathLike | None = None) -> NLLResult:
    """Table on ``train`` → DP for every budget → even, quadratic and DP strides on ``test``.

    Model calls: ⌈N_train/B⌉·(G − 1) for the table (unless cached) and ⌈N_test/B⌉·U for the
    evaluation, where U is the number of distinct nodes t > 0 on all paths (T with ``full_chain``).
    The test scores are paired: every path sees the same images and the same noise per node.
    """
    variance = variance_rule(variance, model)
    T = model.schedule.T
    require(len(budgets) >= 1 and all(1 <= int(k) <= T for k in budgets), f"budgets must lie in 1..T = {T}")
    t0 = time.perf_counter()
    table, cached = cached_table(model, train, variance=variance, grid=grid_with_strides(grid, budgets), clip=clip,
                                 seed=seed, batch_size=batch_size, device=device, cache_dir=cache_dir)
    t1 = time.perf_counter()
    sol = solve_table(table, budgets)
    paths = stride_paths(T, budgets, solution=sol)
    for (s, K), p in paths.items():  # the grid holds every stride node, so the DP optimum is never worse
        if s != "dp":
            dp_nats = path_cost(table.L, table.nodes, paths[("dp", K)])
            stride_nats = path_cost(table.L, table.nodes, p)
            require(dp_nats <= stride_nats + 1e-9 * abs(stride_nats),
                    f"DP path for K = {K} costs more than the {s} stride on its own selection table")
    t2 = time.perf_counter()
    named = {f"{s}:{K}": p for (s, K), p in paths.items()}
    if full_chain:
        named["full"] = np.arange(T + 1, dtype=np.int64)
    scored = evaluate_paths(model, test, named, variance=variance, clip=clip, batch_size=batch_size, seed=seed,
                            device=device)
    t3 = time.perf_counter()
    scores = {key: scored[f"{key[0]}:{key[1]}"] for key in paths}
    return NLLResult(objective, model.identity, variance, table, sol, paths, scores, scored.get("full"),
                     {"table": t1 - t0, "dp": t2 - t1, "evaluate": t3 - t2}, cached)


def nll_table(results: Mapping[str, NLLResult], *, budgets: Sequence[int] | None = None, precision: int = 3,
              title: str = "") -> ResultTable:
    """The Table-3 layout (rows objective × stride, columns K and the full chain) of several
    :class:`NLLResult`, with DP gains within 2 SE flagged (paired SEs)."""
    scores: dict[tuple[str, str, int], PathScore] = {}
    for r in results.values():
        scores.update(r.keyed_scores())
    full = {r.objective: r.full for r in results.values() if r.full is not None}
    return bpd_table(scores, full or None, budgets=budgets, precision=precision, title=title)


def run_nll_models(run: RunConfig, models: Mapping[str, str], train: ImageSet, test: ImageSet, *,
                   budgets: Sequence[int], grid: str | None, full_chain: bool,
                   noise_schedules: Mapping[str, str] | None = None, log=print) -> dict[str, NLLResult]:
    """:func:`run_nll` for every ``objective → model spec`` with the run's settings; logs one line
    per model (identity, schedule, T, variance rule)."""
    results = {}
    for objective, spec in models.items():
        model = run.model(spec, (noise_schedules or {}).get(objective))
        log(f"{objective}: {describe_model(model, run.variance)}")
        results[objective] = run_nll(model, train, test, objective=objective, budgets=budgets, grid=grid,
                                     variance=run.variance, full_chain=full_chain, cache_dir=run.cache,
                                     **run.settings())
    return results


def nll_figure(result: NLLResult, dataset: str, paper: Mapping[tuple[str, str], Mapping] | None = None):
    """Test bits/dim against K for one objective (±1 SE), with the paper's values when given."""
    overlay = ({s: paper[(result.objective, s)] for s in ("even", "quadratic", "dp") if (result.objective, s) in paper}
               if paper else None)
    return plot_bpd_vs_budget(scores_by_stride(result.keyed_scores(), result.objective),
                              f"{dataset} {result.objective}, {result.full.split if result.full else 'test'} split",
                              full=result.full, paper=overlay)


def nll_caption(results: Mapping[str, NLLResult], train: ImageSet, test: ImageSet) -> str:
    """Provenance of an NLL table: models with hashes, data origin, split, n, grid."""
    first = next(iter(results.values()))
    return provenance({o: r.model for o, r in results.items()}, train, test, first.table)


def _fmt(diff: float, se: float, p: int) -> str:
    return mean_pm_se(diff, se, p, signed=True)


def nll_summary_markdown(results: Mapping[str, "NLLResult"], precision: int = 3) -> str:
    """Where the DP path beats both strides, lies within 2 paired SE of one, or loses to one
    (:func:`ddpmdp.book.reporting.comparisons.verdict`), per objective, and each path's gap to the
    full chain at the largest budget."""
    lines = []
    for objective, r in results.items():
        Ks = sorted({K for (_, K) in r.scores})
        by: dict[str, list[int]] = {"gain": [], "within": [], "loss": []}
        worst: dict[str, tuple[int, float, float]] = {}
        for K in Ks:
            dp = r.scores[("dp", K)]
            per_stride = {s: paired_difference(dp, r.scores[(s, K)]) for s in ("even", "quadratic")}
            status = [verdict(d, se) for d, se in per_stride.values()]
            overall = "loss" if "loss" in status else ("within" if "within" in status else "gain")
            by[overall].append(K)
            for s, (d, se) in per_stride.items():
                if s not in worst or d > worst[s][1]:
                    worst[s] = (K, d, se)
        K0 = Ks[0]
        d0, se0 = paired_difference(r.scores[("dp", K0)], r.scores[("quadratic", K0)])
        text = (f"**{objective}** (`{r.model}`, variance {r.variance}): the DP path beats both strides at "
                f"{ranges(by['gain'])}; at K = {K0} it is {_fmt(d0, se0, precision)} bits/dim against the "
                f"quadratic stride.")
        if by["within"]:
            text += f" Within 2 paired SE of a stride at {ranges(by['within'])}."
        if by["loss"]:
            worst_s = max(worst, key=lambda s: worst[s][1])
            K, d, se = worst[worst_s]
            text += (f" **Worse** than a stride at {ranges(by['loss'])} (largest: {_fmt(d, se, precision)} "
                     f"against the {worst_s} stride at K = {K}).")
        if r.full is not None:
            K = Ks[-1]
            gaps = ", ".join(f"{s} {_fmt(*paired_difference(r.scores[(s, K)], r.full), precision)}"
                             for s in ("even", "quadratic", "dp"))
            text += f" At K = {K}, bits/dim above the full {r.full.K}-step chain: {gaps}."
        lines.append(text)
    return "\n\n".join(lines) + "\n"


def write_nll_paths(run: RunConfig, results: Mapping[str, NLLResult], prefix: str, budgets: Sequence[int]) -> str:
    """Write each objective's DP paths as ``PREFIX_OBJECTIVE_dp.json`` (``dp:FILE.json:K``) and
    return them as text."""
    lines = []
    for objective, r in results.items():
        write_dp_json(r.table, r.solution, budgets, run.out / f"{prefix}_{objective}_dp.json")
        lines += [objective, format_paths(r.dp_paths(), max_nodes=20)]
    return "\n".join(lines)


def nll_report(run: RunConfig, results: Mapping[str, NLLResult], train: ImageSet, test: ImageSet, *, name: str,
               title: str, budgets: Sequence[int]) -> list[Any]:
    """Write and return, for display, the Table-3 layout with its provenance caption
    (``NAME``), the paired DP-versus-stride differences (``NAME_flags``) and the generated
    summary (``NAME_summary``)."""
    table = nll_table(results, budgets=budgets, title=title)
    return [run.table(table, name, caption=nll_caption(results, train, test)),
            run.text(flags_markdown(table.flags), f"{name}_flags"),
            run.text(nll_summary_markdown(results), f"{name}_summary")]
