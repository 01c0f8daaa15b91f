"""Figures for the book: each function takes data and returns a ``matplotlib.figure.Figure``.

Figures are built with the object-oriented API (``Figure(...)``, never ``pyplot``), so they
work under any backend including Agg, are not registered with pyplot's global state, and
display in Jupyter when returned from a cell. Save with ``fig.savefig(path)``. Every data
axis names its unit: budgets K in steps (log₂ axis), nodes as timesteps 0..T, likelihoods in
bits/dim (nats per image / (d·ln 2), :func:`ddpmdp.gaussians.nats_to_bpd`), FIDs with the
extractor's label (proxy-FIDs say so).

Scores may be :class:`ddpmdp.evaluate.PathScore` objects or ``(bpd, se)`` pairs
(:data:`ddpmdp.book.reporting.comparisons.ScoreLike`); error bars are ±1 SE.

Resolution and type: every figure carries ``dpi = FIGURE_DPI`` (200), so ``fig.savefig(path)``
writes at least 200 dpi; fonts are set by :data:`FONT_RC` (12 pt text, 11 pt ticks, 10.5 pt
legends) and two-panel figures are 10 inches wide, so that text stays at least about 10 px high
when a figure is shown at the width of a book page (about 700 px).

Functions (the Paper's figures, ``method.md`` §10.4): :func:`plot_bpd_vs_budget` (Fig. 1),
:func:`plot_fid` (Fig. 2), :func:`plot_mc_ablation` (Fig. 3),
:func:`~ddpmdp.book.reporting.sample_grids.sample_grid_figure`
(Figs. 4, 5, 7, 8), :func:`plot_dp_timesteps` (Fig. 6), :func:`plot_table_heatmap`.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Union, cast

import numpy as np
import functools

from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.collections import QuadMesh
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

from ddpmdp.table import ElboTable
from ddpmdp.errors import require
from ddpmdp.evaluate import PathScore
from ddpmdp.fid.frechet import FIDResult
from ddpmdp.book.reporting.comparisons import ScoreLike, score_difference
from ddpmdp.book.reporting.tables import cell_of

__all__ = [
    "plot_bpd_vs_budget",
    "plot_table_heatmap",
    "plot_dp_timesteps",
    "plot_mc_ablation",
    "plot_fid",
]

_STRIDE_COLOURS = {"even": "C0", "quadratic": "C1", "dp": "C2", "trajectory": "C3", "full": "k"}
_FULL_KEYS = ("full", "all")
K_LABEL = "budget K (number of steps, log₂ scale)"
FIGURE_DPI = 200
"""Resolution of every figure (``Figure.dpi``); ``fig.savefig(path)`` uses it unless a dpi is passed."""
FONT_RC = {"font.size": 12.0, "axes.titlesize": 12.0, "axes.labelsize": 12.0, "xtick.labelsize": 11.0,
           "ytick.labelsize": 11.0, "legend.fontsize": 10.5, "figure.titlesize": 13.0}
"""Font sizes (points) applied while a figure is built."""
TWO_PANEL_SIZE = (5.6, 8.4)
"""Size in inches of the two-panel figures (:func:`plot_mc_ablation`, :func:`plot_fid` with bits/dim):
panels stacked, one above the other, so that their text stays legible on a phone's 368-px column."""


def styled(fn):
    """Build the figure under :data:`FONT_RC` (text sizes are fixed when text is created; each
    function creates its ``Figure(dpi=FIGURE_DPI, …)``)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with rc_context(FONT_RC):
            return fn(*args, **kwargs)
    return wrapper

BPD_LABEL = "−ELBO (bits/dim)"


def _colour(name: str, i: int) -> str:
    key = name.lower().split(" ")[0]
    return _STRIDE_COLOURS.get(key, f"C{(i + 3) % 10}")


def _log2_budget_axis(ax: Axes, Ks: Sequence[int]) -> None:
    """x axis in steps on a log₂ scale with ticks at the budgets present."""
    ax.set_xscale("log", base=2)
    ticks = sorted({int(k) for k in Ks})
    if ticks:
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        fmt = ScalarFormatter()
        fmt.set_scientific(False)
        ax.xaxis.set_major_formatter(fmt)
        ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel(K_LABEL)


def _curve(d: Mapping[int, ScoreLike]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    Ks = np.array(sorted(int(k) for k in d))
    cells = [cell_of(d[k]) for k in sorted(d, key=int)]
    return Ks, np.array([c.bpd for c in cells]), np.array([c.se for c in cells])


@styled
def plot_bpd_vs_budget(results: Mapping[str, Mapping[int, ScoreLike]], title: str = "", *,
                       full: ScoreLike | None = None, paper: Mapping[str, Mapping[int | str, float]] | None = None,
                       ylog: bool = False, ylabel: str = "") -> Figure:
    """Test bits/dim against the budget K for several strides (Paper Fig. 1).

    Args:
        results: ``{stride: {K: score}}`` (e.g. from :func:`ddpmdp.book.reporting.tables.scores_by_stride`);
            an entry named ``"full"`` or ``"all"`` (one score) is drawn as the full chain.
        title: axes title (e.g. "CIFAR-10 L_vlb, test split, 10,000 images").
        full: the full chain's score (K = T) if not inside ``results``: a horizontal line
            with a ±1 SE band.
        paper: optional published values ``{stride: {K: bpd, "all": bpd}}`` (e.g. a row group
            of :data:`ddpmdp.book.reporting.paper.PAPER_TABLE3`), drawn as open markers on dotted lines.
        ylog: log-scale y axis (useful when the even stride at K = 8 dwarfs the rest).
        ylabel: the y label with its unit when the scores are not bits/dim (e.g. a teacher distance
            given as ``(mean, se)`` pairs); default :data:`BPD_LABEL`.
    """
    require(len(results) > 0, "results is empty")
    fig = Figure(dpi=FIGURE_DPI, figsize=(6.4, 4.4), layout="constrained")
    ax = fig.add_subplot()
    allK: list[int] = []
    for i, (stride, d) in enumerate(results.items()):
        if stride.lower() in _FULL_KEYS:
            require(len(d) == 1, f"the {stride!r} entry must hold exactly one score (the full chain)")
            full = next(iter(d.values())) if full is None else full
            continue
        Ks, y, se = _curve(d)
        allK += Ks.tolist()
        ax.errorbar(Ks, y, yerr=np.nan_to_num(se), marker="o", ms=4, capsize=3, color=_colour(stride, i), label=stride)
    for i, (stride, pd) in enumerate((paper or {}).items()):
        pts = sorted((int(k), v) for k, v in pd.items() if k != "all")
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], ls=":", marker="s", mfc="none", ms=5,
                    color=_colour(stride, i), label=f"{stride} (paper)")
            allK += [p[0] for p in pts]
        if "all" in pd:
            ax.axhline(pd["all"], color="grey", ls=":", lw=1, label="full chain (paper)")
    if full is not None:
        c = cell_of(full)
        T = full.K if isinstance(full, PathScore) else None
        ax.axhline(c.bpd, color="k", ls="--", lw=1, label=f"full chain ({T} steps)" if T else "full chain")
        if math.isfinite(c.se):
            ax.axhspan(c.bpd - c.se, c.bpd + c.se, color="k", alpha=0.12, lw=0)
    _log2_budget_axis(ax, allK)
    if ylog:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel or BPD_LABEL)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


@styled
def plot_table_heatmap(table: ElboTable,
                       paths: Mapping[str, np.ndarray] | Sequence[np.ndarray | tuple[str, np.ndarray]] | None = None,
                       *, title: str | None = None) -> Figure:
    """Heatmap of the cost table L(t, s) in bits/dim on a log colour scale (lower triangle s < t);
    a trajectory table (``meta['objective'] == 'trajectory'``, ``method.md`` §13) shows its C(t, s)
    in RMS distance per dimension instead.

    Rows are "from node t" (increasing downwards, as in the matrix L[t, s]), columns "to node
    s"; column s = 0 holds the decoder terms. Cells ≤ 0 or above the diagonal are blank. Each
    path 0 = t₀ < … < t_K = T in ``paths`` is drawn as the polyline through its cells
    (s, t) = (t_{i−1}, t_i); a sequence may hold ``(label, nodes)`` pairs (several paths of one
    name, e.g. one per budget).
    """
    nodes = np.asarray(table.nodes)
    G = nodes.size
    trajectory = table.meta.get("objective") == "trajectory"
    M = np.asarray(table.L if trajectory else table.bpd(table.L), dtype=np.float64)
    lower = np.tri(G, G, -1, dtype=bool)
    M = np.where(lower & np.isfinite(M) & (M > 0), M, np.nan).astype(np.float32)
    pos = M[np.isfinite(M)]
    require(pos.size > 0, "the table has no positive finite cells to show")
    vmax = float(pos.max())
    vmin = max(float(pos.min()), vmax * 1e-12)
    norm = LogNorm(vmin=vmin, vmax=vmax)
    fig = Figure(dpi=FIGURE_DPI, figsize=(6.4, 5.4), layout="constrained")
    ax = fig.add_subplot()
    steps = np.diff(nodes)
    uniform = bool(np.all(steps[:-1] == steps[0])) and steps[-1] <= steps[0]
    im: AxesImage | QuadMesh
    if uniform and G > 512:
        h = 0.5 * steps[0]
        im = ax.imshow(M, norm=norm, cmap="viridis", interpolation="nearest", aspect="auto", origin="upper",
                       extent=(nodes[0] - h, nodes[0] + steps[0] * (G - 1) + h, nodes[0] + steps[0] * (G - 1) + h,
                               nodes[0] - h))
    else:
        mid = (nodes[1:] + nodes[:-1]) / 2.0
        edges = np.concatenate([[nodes[0] - 0.5], mid, [nodes[-1] + 0.5]])
        im = ax.pcolormesh(edges, edges, np.ma.masked_invalid(M), norm=norm, cmap="viridis", shading="flat")
        ax.set_ylim(edges[-1], edges[0])
    cb = fig.colorbar(im, ax=ax)
    cb.set_label("C(t, s) (RMS distance per dimension, log scale)" if trajectory else "L(t, s) (bits/dim, log scale)")
    items = list(paths.items()) if isinstance(paths, Mapping) else [
        (p[0], p[1]) if isinstance(p, tuple) else (f"path {i}", p) for i, p in enumerate(paths or [])]
    for i, (name, p) in enumerate(items):
        p = np.asarray(p)
        ax.plot(p[:-1], p[1:], marker="o", ms=3, lw=1.2, color=f"C{(i + 1) % 10}",
                label=f"{name} (K = {len(p) - 1})")
    if items:
        ax.legend(loc="upper right")
    ax.set_xlabel("to node s (timestep, 0 = data)")
    ax.set_ylabel(f"from node t (timestep, T = {table.T})")
    meta = table.meta
    default = (f"C(t, s): {meta.get('n_seeds', '?')} selection seeds" if trajectory else
               f"L(t, s): {meta.get('n_images', '?')} {meta.get('split', '?')} images, {meta.get('variance', '?')}")
    ax.set_title(title if title is not None else default)
    return fig


@styled
def plot_dp_timesteps(paths_by_K: Mapping[int, np.ndarray], T: int, *, title: str = "") -> Figure:
    """The nodes each budget's DP path visits (Paper Fig. 6): one row per K, a marker per node.

    ``paths_by_K``: ``{K: nodes}`` with nodes 0 = t₀ < … < t_K = T (e.g. ``sol.path(K)``).
    """
    require(len(paths_by_K) > 0, "paths_by_K is empty")
    Ks = sorted(int(k) for k in paths_by_K)
    fig = Figure(dpi=FIGURE_DPI, figsize=(7.0, 1.0 + 0.42 * len(Ks)), layout="constrained")
    ax = fig.add_subplot()
    for row, K in enumerate(Ks):
        p = np.asarray(paths_by_K[K])
        require(p.size == K + 1, f"the path for K = {K} has {p.size} nodes, expected K + 1 = {K + 1}")
        ax.scatter(p, np.full(p.size, row), marker="|", s=90, linewidths=1.0, color=f"C{row % 10}")
    ax.set_yticks(range(len(Ks)), [str(K) for K in Ks])
    ax.set_ylim(len(Ks) - 0.5, -0.5)
    ax.set_xlim(-0.01 * T, 1.01 * T)
    ax.set_xlabel(f"node t (timestep; 0 = data, {T} = prior)")
    ax.set_ylabel("budget K (steps)")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return fig


def _diff_curve(d: Mapping[int, ScoreLike], ref: Mapping[int, ScoreLike]) -> tuple[list[int], list[float], list[float]]:
    Ks, diffs, ses = [], [], []
    for K in sorted(d, key=int):
        if K not in ref:
            continue
        diff, se, _ = score_difference(d[K], ref[K])
        Ks.append(int(K))
        diffs.append(diff)
        ses.append(se)
    return Ks, diffs, ses


@styled
def plot_mc_ablation(results: Mapping[int | str, Mapping[int, ScoreLike]], *, reference: int | str | None = None,
                     title: str = "") -> Figure:
    """Monte Carlo ablation (Paper Fig. 3): test bits/dim of the DP path against K when the
    selection table was estimated from n = 1, 2, 4, … images.

    ``results``: ``{n_images: {K: score}}`` (keys may also be labels such as "full (50000)").
    Top: bits/dim ± SE. Bottom: difference from the ``reference`` table's paths (default: the
    largest integer key), with paired SEs when the scores hold per-image totals.
    """
    require(len(results) > 0, "results is empty")
    keys = list(results)
    if reference is None:
        ints = [k for k in keys if isinstance(k, (int, np.integer))]
        reference = max(ints) if ints else keys[-1]
    require(reference in results, f"reference {reference!r} is not among the results")
    fig = Figure(dpi=FIGURE_DPI, figsize=TWO_PANEL_SIZE, layout="constrained")
    ax, ax2 = fig.subplots(2, 1)
    allK: list[int] = []
    name = (lambda k: f"table from {k} image{'s' if k != 1 else ''}" if isinstance(k, (int, np.integer)) else str(k))
    for i, k in enumerate(keys):
        Ks, y, se = _curve(results[k])
        allK += Ks.tolist()
        colour = f"C{i % 10}"
        ax.errorbar(Ks, y, yerr=np.nan_to_num(se), marker="o", ms=4, capsize=3, color=colour, label=name(k))
        if k != reference:
            dK, dd, ds = _diff_curve(results[k], results[reference])
            ax2.errorbar(dK, dd, yerr=np.nan_to_num(ds), marker="o", ms=4, capsize=3, color=colour, label=name(k))
    ax2.axhline(0.0, color="k", lw=1)
    for a in (ax, ax2):
        _log2_budget_axis(a, allK)
        a.grid(alpha=0.3)
        a.legend()
    ax.set_ylabel("test −ELBO of the DP path (bits/dim)")
    ax2.set_ylabel(f"Δ bits/dim vs {name(reference)}")
    ax.set_title(title)
    ax2.set_title("difference (±1 SE, paired where possible)")
    return fig


SampleMetric = Union[float, FIDResult, tuple[float, float]]
"""A sample-quality number: a float, an :class:`~ddpmdp.fid.frechet.FIDResult`, or a ``(value, se)``
pair (e.g. KID ± its jackknife SE), drawn with ±1 SE error bars."""


def _fid_value(v: SampleMetric) -> float:
    if isinstance(v, tuple):
        return float(v[0])
    return float(v.value) if isinstance(v, FIDResult) else float(v)


def _fid_se(v: SampleMetric) -> float:
    return float(v[1]) if isinstance(v, tuple) else 0.0


@styled
def plot_fid(results: Mapping[str, Mapping[int, SampleMetric]],
             bpd: Mapping[str, Mapping[int, ScoreLike]] | None = None, *, full: SampleMetric | None = None,
             metric_label: str | None = None, title: str = "", ylog: bool = False) -> Figure:
    """FID (or KID ± SE) against the budget for each sampler (top), and against bits/dim (bottom;
    Paper Fig. 2).

    Args:
        results: ``{sampler: {K: value}}`` with floats, :class:`ddpmdp.fid.frechet.FIDResult` or
            ``(value, se)`` pairs (:data:`SampleMetric`; pairs get ±1 SE error bars).
        bpd: ``{sampler: {K: score}}`` test bits/dim of the same paths; samplers without
            bits/dim (e.g. DDIM η = 0, which has no likelihood) are left out of the bottom panel,
            and without ``bpd`` only the top panel is drawn.
        full: the full chain's value, a horizontal line.
        metric_label: the y label (name the metric, its scale and features, e.g. "proxy-KID ×10³");
            default the label of the first :class:`FIDResult` found
            (e.g. "proxy-FID (not comparable to published FID)"), else "FID".
        ylog: log-scale axes (FIDs at K = 8 can be 10–50× those at K = 256).
    """
    require(len(results) > 0, "results is empty")
    if metric_label is None:
        found = [v for d in results.values() for v in d.values() if isinstance(v, FIDResult)]
        found += [full] if isinstance(full, FIDResult) else []
        labels = {v.label for v in found}
        require(len(labels) <= 1, f"results mix FID kinds {sorted(labels)}; they are not comparable")
        metric_label = labels.pop() if labels else "FID"
    two = bpd is not None and any(s in results for s in bpd)
    fig = Figure(dpi=FIGURE_DPI, figsize=TWO_PANEL_SIZE if two else (6.4, 4.4), layout="constrained")
    axes = fig.subplots(2 if two else 1, 1)
    ax: Axes = cast(np.ndarray, axes)[0] if two else axes
    allK: list[int] = []
    ylabel = f"{metric_label}\n(lower is better{', log scale' if ylog else ''})"
    for i, (sampler, d) in enumerate(results.items()):
        Ks = sorted(int(k) for k in d)
        allK += Ks
        ax.errorbar(Ks, [_fid_value(d[k]) for k in Ks], yerr=[_fid_se(d[k]) for k in Ks], marker="o", ms=4,
                    capsize=3, color=f"C{i % 10}", label=sampler)
    if full is not None:
        ax.axhline(_fid_value(full), color="k", ls="--", lw=1, label="full chain")
    _log2_budget_axis(ax, allK)
    if ylog:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    if two:
        assert bpd is not None
        ax2 = cast(np.ndarray, axes)[1]
        for i, (sampler, d) in enumerate(results.items()):
            if sampler not in bpd:
                continue
            Ks = sorted(int(k) for k in d if k in bpd[sampler])
            cells = [cell_of(bpd[sampler][k]) for k in Ks]
            x = [c.bpd for c in cells]
            y = [_fid_value(d[k]) for k in Ks]
            ax2.errorbar(x, y, xerr=np.nan_to_num([c.se for c in cells]), yerr=[_fid_se(d[k]) for k in Ks],
                         marker="o", ms=4, color=f"C{i % 10}", label=sampler)
            for K, xi, yi in zip(Ks, x, y):
                ax2.annotate(str(K), (xi, yi), textcoords="offset points", xytext=(3, 3), fontsize=10)
        if ylog:
            ax2.set_yscale("log")
        ax2.set_xlabel("test −ELBO (bits/dim)")
        ax2.set_ylabel(ylabel)
        ax2.set_title("against likelihood (labels: K)")
        ax2.grid(alpha=0.3)
        ax2.legend()
    return fig
