"""The optimal-variance experiment (issue 13; notebook ``optimal_variance``): one table pass on
the training split gives every scalar variance rule (``fixed_small``, ``fixed_large``,
``analytic``, ``optimal``) and, for a learned-variance model, ``learned_range`` and the per-edge
``best``; each rule's DP, even and quadratic paths are then scored on held-out images in one
paired evaluation, each edge with the σ² its rule fixed on the training table
(:mod:`ddpmdp.rescore`, :mod:`ddpmdp.inference_schedule`). Also its table, σ² figure and
generated sentences.
"""
from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from matplotlib.figure import Figure

from ddpmdp.book.experiments.paths import solve_table, stride_paths
from ddpmdp.book.reporting.comparisons import verdict
from ddpmdp.book.reporting.formatting import mean_pm_se
from ddpmdp.book.reporting.plotting import FIGURE_DPI, styled
from ddpmdp.book.reporting.tables import ResultTable, bpd_table
from ddpmdp.book.runtime.inputs import variance_rule
from ddpmdp.book.runtime.table_cache import cached_table, superset_rule
from ddpmdp.data.images import ImageSet
from ddpmdp.dp import DPSolution
from ddpmdp.errors import require
from ddpmdp.evaluate import PathScore, evaluate_paths, paired_difference
from ddpmdp.inference_schedule import InferenceSchedule
from ddpmdp.models.adapter import DiffusionModel
from ddpmdp.rescore import rescore
from ddpmdp.table import ElboTable

__all__ = ["ANALYTIC_DPM_TABLE1", "OptimalVarianceResult", "run_optimal_variance", "variance_table",
           "paired_gains", "gain_lines", "sigma_along_path", "plot_sigma_along_path", "anchor_markdown", "curves",
           "must_show_pairs", "must_show_lines", "comparison_table", "comparison_caption"]

ANALYTIC_DPM_TABLE1: dict[str, dict[int, float]] = {
    "CIFAR10 (LS) ET DDPM σ²=β": {10: 6.99, 25: 6.11, 50: 5.44, 100: 4.86, 200: 4.39, 400: 4.07, 1000: 3.75},
    "CIFAR10 (LS) ET Analytic-DDPM": {10: 5.47, 25: 4.79, 50: 4.38, 100: 4.07, 200: 3.84, 400: 3.71, 1000: 3.59},
    "CIFAR10 (LS) OT DDPM σ²=β": {10: 5.38, 25: 4.34, 50: 3.97, 100: 3.82, 200: 3.77, 400: 3.75, 1000: 3.75},
    "CIFAR10 (LS) OT Analytic-DDPM": {10: 4.11, 25: 3.68, 50: 3.61, 100: 3.59, 200: 3.59, 400: 3.59, 1000: 3.59},
    "CIFAR10 (CS) OT DDPM σ²=β": {10: 5.51, 25: 4.30, 50: 3.86, 100: 3.65, 200: 3.57, 400: 3.54, 1000: 3.54},
    "CIFAR10 (CS) OT Analytic-DDPM": {10: 3.99, 25: 3.56, 50: 3.47, 100: 3.44, 200: 3.43, 400: 3.42, 1000: 3.42},
}
"""Analytic-DPM (Bao et al. 2022) Table 1, CIFAR-10 test bits/dim (``method.md`` §11): an external
anchor on *their* models (T = 1000), not comparable cell by cell with the embedded models."""


@dataclass
class OptimalVarianceResult:
    """``scores[(rule, stride, K)]`` held-out PathScores (all paired: same images, same noise per
    node); ``tables[rule]`` the training tables, ``solutions[rule]`` their DPs; ``schedules`` the
    evaluated schedules with per-edge σ²; ``full`` the full chain under ``variance``, the model's own
    rule (:func:`ddpmdp.book.runtime.inputs.variance_rule`)."""

    name: str
    model: str
    variance: str
    rules: list[str]
    tables: dict[str, ElboTable]
    solutions: dict[str, DPSolution]
    schedules: dict[tuple[str, str, int], InferenceSchedule]
    scores: dict[tuple[str, str, int], PathScore]
    full: PathScore | None
    seconds: dict[str, float] = field(default_factory=dict)
    cached: bool = False


def run_optimal_variance(model: DiffusionModel, train: ImageSet, test: ImageSet, *, name: str,
                         budgets: Sequence[int], grid: str | None, strides: Sequence[str] = ("even", "quadratic"),
                         clip: bool = True, full_chain: bool = False, batch_size: int = 32, seed: int = 0,
                         device: str = "cpu", cache_dir: str | os.PathLike | None = None) -> OptimalVarianceResult:
    """Table on ``train`` (rule ``optimal``, or ``best`` for learned-variance models: one pass,
    every rule) → every rule's table by :func:`ddpmdp.rescore.rescore` → DP per rule → even,
    quadratic and DP schedules per rule with σ² fixed on ``train`` → one paired evaluation on ``test``.

    The grid must contain the even and quadratic nodes of every budget (e.g.
    ``log:120+even:8,16+quadratic:8,16``) so that their σ² come from the same table.
    """
    learned = model.learned_variance
    rules = (["fixed_small", "fixed_large", "learned_range", "analytic", "optimal", "best"] if learned
             else ["fixed_small", "fixed_large", "analytic", "optimal"])
    t0 = time.perf_counter()
    own = variance_rule(None, model)
    base, cached = cached_table(model, train, variance=superset_rule(model, own), grid=grid, clip=clip,
                                seed=seed, batch_size=batch_size, device=device, cache_dir=cache_dir)
    t1 = time.perf_counter()
    tables = {r: rescore(base, r) for r in rules}
    solutions = {r: solve_table(tables[r], budgets) for r in rules}
    schedules: dict[tuple[str, str, int], InferenceSchedule] = {}
    for r in rules:
        for (stride, K), nodes in stride_paths(model.schedule.T, budgets, solution=solutions[r],
                                               strides=strides).items():
            require(bool(np.all(np.isin(nodes, tables[r].nodes))), f"the {stride} path for K = {K} is not in the "
                    f"grid {grid!r}: add {stride}:{K} to the grid so its σ² come from the training table")
            schedules[(r, stride, K)] = InferenceSchedule.from_table(tables[r], nodes)
    paths: dict = {"|".join(map(str, k)): v for k, v in schedules.items()}
    if full_chain:
        paths["full"] = np.arange(model.schedule.T + 1)
    t2 = time.perf_counter()
    out = evaluate_paths(model, test, paths, variance=own, clip=clip, batch_size=batch_size, seed=seed,
                         device=device)
    t3 = time.perf_counter()
    scores = {k: out["|".join(map(str, k))] for k in schedules}
    return OptimalVarianceResult(name, model.identity, own, rules, tables, solutions, schedules, scores,
                                 out.get("full"), {"table": t1 - t0, "solve": t2 - t1, "evaluate": t3 - t2}, cached)


def variance_table(r: OptimalVarianceResult, budgets: Sequence[int] | None = None, title: str = "") -> ResultTable:
    """Rows rule × stride, columns K (and the full chain in the row of the model's own rule),
    held-out bits/dim ± SE."""
    full = {r.variance: r.full} if r.full is not None else None
    return bpd_table(r.scores, full, budgets=budgets, title=title or f"{r.name}: test bits/dim",
                     row_headers=("Variance rule", "Stride"))


def paired_gains(r: OptimalVarianceResult, a: tuple[str, str], b: tuple[str, str]
                 ) -> dict[int, tuple[float, float]]:
    """``{K: (bpd(a) − bpd(b), paired SE)}`` for (rule, stride) pairs a and b."""
    Ks = sorted({k[2] for k in r.scores if k[:2] == a} & {k[2] for k in r.scores if k[:2] == b})
    return {K: paired_difference(r.scores[(*a, K)], r.scores[(*b, K)]) for K in Ks}


def _said(a: tuple[str, str], b: tuple[str, str], gains: Mapping[int, tuple[float, float]]) -> str:
    """Where the paired difference a − b exceeds 2 SE (:func:`ddpmdp.book.reporting.comparisons.verdict`)."""
    by = {v: [K for K, (d, se) in gains.items() if verdict(d, se) == v] for v in ("gain", "loss", "within")}
    if len(by["gain"]) == len(gains) or len(by["loss"]) == len(gains):
        return f"{a[0] if by['gain'] else b[0]} is better beyond 2 SE at every K"
    groups = ((f"{a[0]} better beyond 2 SE", by["gain"]), (f"{b[0]} better beyond 2 SE", by["loss"]),
              ("within 2 SE", by["within"]))
    return "; ".join(f"{label} at K = {', '.join(map(str, Ks))}" for label, Ks in groups if Ks)


def gain_lines(r: OptimalVarianceResult, a: tuple[str, str], b: tuple[str, str]) -> list[str]:
    """One sentence for the pair: the paired difference a − b at every K with its SE, and at which K
    it exceeds 2 SE (:func:`ddpmdp.book.reporting.comparisons.verdict`; negative: a is better)."""
    gains = paired_gains(r, a, b)
    if not gains:
        return []
    first = r.scores[(*a, next(iter(gains)))]
    cells = ", ".join(f"K = {K}: {mean_pm_se(d, se, signed=True)}" for K, (d, se) in gains.items())
    return [f"{r.name}, {' '.join(a)} − {' '.join(b)} (bits/dim, paired, {first.split} split, {first.n_images} "
            f"images): {cells}; {_said(a, b, gains)}."]


def sigma_along_path(r: OptimalVarianceResult, rule: str, K: int) -> dict[str, np.ndarray]:
    """Along the K-step DP path of ``rule``: the edges' t and s, the rule's σ² (NaN on learned-range
    edges), and the fixed_small (β̃) and fixed_large (β) σ² of the same edges (decoder: §4)."""
    sch = r.schedules[(rule, "dp", K)]
    fs = InferenceSchedule.from_table(r.tables["fixed_small"], sch.nodes)
    fl = InferenceSchedule.from_table(r.tables["fixed_large"], sch.nodes)
    assert sch.sigma2 is not None and fs.sigma2 is not None and fl.sigma2 is not None
    return {"t": sch.nodes[1:], "s": sch.nodes[:-1], "sigma2": sch.sigma2, "fixed_small": fs.sigma2,
            "fixed_large": fl.sigma2, "rules": np.array(sch.rules)}


@styled
def plot_sigma_along_path(r: OptimalVarianceResult, rule: str, K: int) -> Figure:
    """σ² of each edge t → s of the K-step DP path of ``rule`` against fixed_small and fixed_large."""
    d = sigma_along_path(r, rule, K)
    fig = Figure(dpi=FIGURE_DPI, figsize=(6.4, 3.8), layout="constrained")
    ax = fig.add_subplot()
    for key, style in (("fixed_large", "s--"), ("fixed_small", "v--"), ("sigma2", "o-")):
        ax.plot(d["t"], d[key], style, label=rule if key == "sigma2" else key, ms=4)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("edge start t (node; the edge goes to the previous node of the path)")
    ax.set_ylabel("σ²_{t,s} (decoder edge: σ²_dec)")
    ax.set_title(f"{r.name}: σ² along the K = {K} DP path of {rule}")
    ax.legend()
    return fig


def anchor_markdown() -> str:
    """Analytic-DPM's Table 1 (CIFAR-10 rows, :data:`ANALYTIC_DPM_TABLE1`) as a Markdown table in a
    box labelled as the other paper's numbers, never this run's."""
    Ks = sorted(next(iter(ANALYTIC_DPM_TABLE1.values())))
    rows = ["| Model and method | " + " | ".join(f"K={k}" for k in Ks) + " |", "|---" * (len(Ks) + 1) + "|"]
    for name, vals in ANALYTIC_DPM_TABLE1.items():
        rows.append(f"| {name} | " + " | ".join(f"{vals[k]:.2f}" for k in Ks) + " |")
    return "\n".join([
        ":::{admonition} Reference: Bao et al. (2022), Analytic-DPM, Table 1 (their numbers, not this run's)",
        ":class: paper-reference", "",
        "CIFAR-10 test bits/dim of Analytic-DPM's own models (LS: linear schedule, CS: cosine schedule; T = 1000) "
        "by number of steps K; ET: even trajectory, OT: optimal trajectory (Watson et al.'s DP); DDPM σ² = β is "
        "`fixed_large`, Analytic-DDPM is the rule `analytic`. Copied from their paper "
        "(`ddpmdp.book.experiments.optimal_variance.ANALYTIC_DPM_TABLE1`), no SE given. Other models, data and "
        "image counts than this run: compare the size of the effect, not the values.", ""] + rows + [":::", ""])


def curves(r: OptimalVarianceResult, strides: Sequence[str] = ("dp",), extra: Sequence[tuple[str, str]] = ()
           ) -> dict[str, dict[int, PathScore]]:
    """``{"rule stride": {K: score}}`` for :func:`ddpmdp.book.reporting.plotting.plot_bpd_vs_budget`: every rule's
    ``strides`` plus the (rule, stride) pairs in ``extra``."""
    out: dict[str, dict[int, PathScore]] = {}
    for (rule, stride, K), sc in r.scores.items():
        if stride in strides or (rule, stride) in extra:
            out.setdefault(f"{rule} {stride}", {})[K] = sc
    return out


def must_show_pairs(r: OptimalVarianceResult) -> list[tuple[tuple[str, str], tuple[str, str]]]:
    """The DP-path comparisons the notebook reports: optimal and analytic against fixed_large,
    optimal against analytic, and for a learned-variance model optimal and best against learned_range."""
    pairs = [(("optimal", "dp"), ("fixed_large", "dp")), (("analytic", "dp"), ("fixed_large", "dp")),
             (("optimal", "dp"), ("analytic", "dp"))]
    if "learned_range" in r.rules:
        pairs += [(("optimal", "dp"), ("learned_range", "dp")), (("best", "dp"), ("learned_range", "dp"))]
    return pairs


def must_show_lines(r: OptimalVarianceResult) -> list[str]:
    """Sentences comparing DP paths across rules (paired, held-out), one per :func:`must_show_pairs`."""
    return [line for a, b in must_show_pairs(r) for line in gain_lines(r, a, b)]


def comparison_table(results: Mapping[str, OptimalVarianceResult]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of every :func:`must_show_pairs` comparison of every model: the paired
    difference of held-out bits/dim a − b (negative: a is better) ± its SE per budget K, and where it
    exceeds 2 SE. The results chapter shows it as the *Beyond the paper* table."""
    Ks = sorted({K for r in results.values() for a, b in must_show_pairs(r) for K in paired_gains(r, a, b)})
    header = ["Model", "DP paths compared"] + [f"K={K}" for K in Ks] + ["Beyond 2 SE"]
    rows = []
    for r in results.values():
        for a, b in must_show_pairs(r):
            gains = paired_gains(r, a, b)
            if gains:
                rows.append([r.name, f"{a[0]} − {b[0]}"]
                            + [mean_pm_se(*gains[K], signed=True) if K in gains else "—" for K in Ks]
                            + [_said(a, b, gains)])
    return header, rows


def comparison_caption(results: Mapping[str, OptimalVarianceResult]) -> str:
    """Caption of :func:`comparison_table`: what a cell is, on which images, and each model's identity."""
    seen = []
    for r in results.values():
        sc = next(iter(r.scores.values()))
        seen.append(f"{r.name} = `{r.model}` ({sc.n_images} {sc.split} images, default rule {r.variance})")
    return ("Paired differences of held-out bits/dim between the DP paths of two variance rules, first minus "
            "second (negative: the first rule's schedule is better), mean ± paired SE over the same images and "
            "noise; every σ² was fixed on the training table. The last column says where a difference exceeds "
            "2 SE. Models: " + "; ".join(seen) + ".")
