"""Figures: each plotting function returns a Figure whose data axes name their units."""
from __future__ import annotations

import io
import math

import numpy as np
import pytest
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from _models import random_images, tiny_adapter
from ddpmdp.book.reporting import plotting, sample_grids as sample_figures
from ddpmdp.table import ElboTable
from ddpmdp.table_estimation import estimate_table
from ddpmdp.errors import DdpmdpError
from ddpmdp.evaluate import PathScore
from ddpmdp.fid.frechet import FID_LABEL, PROXY_LABEL, FIDResult
from ddpmdp.book.reporting.paper import PAPER_TABLE3
from ddpmdp.schedules import cosine_schedule
from ddpmdp.strides import even_stride, quadratic_stride

BUDGETS = (8, 16, 32, 64)


def _score(bpd: float, K: int, T: int = 100, n: int = 50, seed: int = 0) -> PathScore:
    d = 3072
    nats = np.random.default_rng(seed + K).normal(bpd, 0.1, n) * d * math.log(2)
    m, se = float(nats.mean()), float(nats.std(ddof=1) / math.sqrt(n))
    nodes = even_stride(T, K)
    return PathScore(nodes, m / (d * math.log(2)), se / (d * math.log(2)), m, se, d, "test", n, "direct",
                     per_image=nats)


def _data_axes(fig: Figure) -> list:
    """Axes that are not colorbars."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def _check_labelled(fig: Figure) -> None:
    assert isinstance(fig, Figure)
    for ax in _data_axes(fig):
        assert ax.get_xlabel().strip() and ax.get_ylabel().strip(), ax
    fig.savefig(io.BytesIO(), format="png", dpi=40)  # renders without pyplot or a GUI backend


def test_bpd_vs_budget():
    results = {"even": {K: _score(5 - math.log2(K) / 4, K) for K in BUDGETS},
               "quadratic": {K: (4.5 - math.log2(K) / 5, 0.01) for K in BUDGETS},
               "dp": {K: _score(4 - math.log2(K) / 6, K) for K in BUDGETS},
               "full": {100: _score(3.0, 100)}}
    paper = {s: v for (o, s), v in PAPER_TABLE3.items() if o == "L_vlb"}
    fig = plotting.plot_bpd_vs_budget(results, "toy", paper=paper)
    _check_labelled(fig)
    (ax,) = fig.axes
    assert "bits/dim" in ax.get_ylabel() and "K" in ax.get_xlabel() and "log₂" in ax.get_xlabel()
    assert ax.get_xscale() == "log" and ax.get_title() == "toy"
    assert list(ax.get_xticks()) == [8, 16, 32, 64, 128, 256]
    labels = ax.get_legend_handles_labels()[1]
    assert {"even", "quadratic", "dp", "full chain (100 steps)", "dp (paper)"} <= set(labels)
    assert any(abs(line.get_ydata()[0] - results["full"][100].bpd) < 1e-12 for line in ax.get_lines()
               if len(line.get_ydata()) == 2)  # the full-chain line
    with pytest.raises(DdpmdpError):
        plotting.plot_bpd_vs_budget({}, "empty")


def test_table_heatmap_is_in_bits_per_dim_on_a_log_scale_with_paths():
    sched = cosine_schedule(12)
    model = tiny_adapter(sched, learned=True, seed=1)
    table = estimate_table(model, random_images(8, shape=(3, 4, 4), seed=2), variance="learned_range",
                           batch_size=8, seed=0)
    paths = {"even": even_stride(12, 3), "quadratic": quadratic_stride(12, 4)}
    fig = plotting.plot_table_heatmap(table, paths)
    _check_labelled(fig)
    ax = _data_axes(fig)[0]
    assert "from node t" in ax.get_ylabel() and "to node s" in ax.get_xlabel()
    cbar = [a for a in fig.axes if a.get_label() == "<colorbar>"][0]
    assert "bits/dim" in cbar.get_ylabel()
    mesh = ax.collections[0]
    assert isinstance(mesh.norm, LogNorm)
    shown = np.ma.filled(mesh.get_array(), np.nan).reshape(13, 13)
    lower = np.tri(13, 13, -1, dtype=bool)
    np.testing.assert_allclose(shown[lower], table.bpd(table.L)[lower], rtol=1e-6)
    assert np.isnan(shown[~lower]).all()
    lines = [line for line in ax.get_lines() if line.get_label().startswith(("even", "quadratic"))]
    assert len(lines) == 2
    np.testing.assert_array_equal(lines[0].get_xdata(), paths["even"][:-1])  # s = t_{i−1}
    np.testing.assert_array_equal(lines[0].get_ydata(), paths["even"][1:])  # t = t_i


def test_trajectory_table_heatmap_shows_rms_distances_and_labelled_paths():
    from _models import gaussian_model
    from ddpmdp.schedules import linear_schedule
    from ddpmdp.trajectory import estimate_trajectory_table

    model = gaussian_model(random_images(32, shape=(3, 4, 4), seed=1), linear_schedule(30))
    table = estimate_trajectory_table(model, 4, teacher_grid="stride:2", grid="stride:6")
    p4, p5 = np.array([0, 6, 12, 18, 30]), np.array([0, 6, 12, 18, 24, 30])
    fig = plotting.plot_table_heatmap(table, [("trajectory DP", p4), ("trajectory DP", p5)])
    _check_labelled(fig)
    ax = _data_axes(fig)[0]
    cbar = [a for a in fig.axes if a.get_label() == "<colorbar>"][0]
    assert "RMS distance per dimension" in cbar.get_ylabel() and "bits/dim" not in cbar.get_ylabel()
    assert ax.get_title() == "C(t, s): 4 selection seeds"
    G = len(table.nodes)
    shown = np.ma.filled(ax.collections[0].get_array(), np.nan).reshape(G, G)
    lower = np.tri(G, G, -1, dtype=bool) & (table.L > 0)
    np.testing.assert_allclose(shown[lower], table.L[lower], rtol=1e-6)
    assert [ln.get_label() for ln in ax.get_lines()] == ["trajectory DP (K = 4)", "trajectory DP (K = 5)"]


def test_curves_of_other_metrics_name_their_unit():
    curves = {"trajectory DP": {K: (0.1 / K, 0.01 / K) for K in BUDGETS}, "even": {K: (0.2 / K, 0.01) for K in BUDGETS}}
    fig = plotting.plot_bpd_vs_budget(curves, "teacher", ylog=True, ylabel="teacher distance (RMS)")
    _check_labelled(fig)
    (ax,) = fig.axes
    assert ax.get_ylabel() == "teacher distance (RMS)" and len(ax.containers) == 2
    assert ax.containers[0].lines[0].get_color() != ax.containers[1].lines[0].get_color()
    kid = plotting.plot_fid({"even": {K: (3.0 / K, 0.1) for K in BUDGETS}}, {"even": {K: _score(4.0, K) for K in BUDGETS}},
                            full=(0.01, 0.001), metric_label="proxy-KID × 10³")
    _check_labelled(kid)
    ax, ax2 = kid.axes
    assert ax.get_ylabel().startswith("proxy-KID × 10³") and ax.containers[0].has_yerr and ax2.containers[0].has_yerr


def test_table_heatmap_large_uniform_grid_uses_an_image():
    G, T = 601, 600
    nodes = np.arange(G)
    t, s = np.meshgrid(nodes, nodes, indexing="ij")
    L = np.where(t > s, (t - s) ** 2 / (1.0 + s) + 1.0, np.inf)
    table = ElboTable(L, np.zeros_like(L), nodes, 0.0, 0.0, 3072, {"split": "train", "n_images": 4})
    fig = plotting.plot_table_heatmap(table, [np.array([0, 1, 300, 600])], title="big")
    _check_labelled(fig)
    ax = _data_axes(fig)[0]
    assert ax.images and isinstance(ax.images[0].norm, LogNorm) and ax.get_title() == "big"


def test_dp_timesteps_one_row_per_budget():
    paths = {K: quadratic_stride(200, K) for K in (32, 8, 16)}
    fig = plotting.plot_dp_timesteps(paths, 200, title="DP nodes")
    _check_labelled(fig)
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_yticklabels()] == ["8", "16", "32"]
    assert len(ax.collections) == 3 and len(ax.collections[2].get_offsets()) == 33
    assert "timestep" in ax.get_xlabel() and "steps" in ax.get_ylabel()
    with pytest.raises(DdpmdpError):
        plotting.plot_dp_timesteps({8: quadratic_stride(200, 4)}, 200)


def test_mc_ablation_has_levels_and_differences():
    results = {n: {K: _score(4 - math.log2(K) / 6 + 0.2 / n, K, seed=n) for K in BUDGETS} for n in (1, 2, 4, 128)}
    fig = plotting.plot_mc_ablation(results, title="MC")
    _check_labelled(fig)
    ax, ax2 = fig.axes
    assert "bits/dim" in ax.get_ylabel() and "128 images" in ax2.get_ylabel()
    assert len(ax.containers) == 4 and len(ax2.containers) == 3  # errorbars; the reference has no difference


def test_fid_plots_label_proxy_metrics():
    res = {s: {K: FIDResult(100 / K * (i + 1), PROXY_LABEL, "proxy", False, 100, 100) for K in BUDGETS}
           for i, s in enumerate(["even", "dp", "ddim"])}
    bpd = {s: {K: _score(4.0 - K / 100, K) for K in BUDGETS} for s in ("even", "dp")}
    fig = plotting.plot_fid(res, bpd, full=FIDResult(3.0, PROXY_LABEL, "proxy", False, 100, 100))
    _check_labelled(fig)
    ax, ax2 = fig.axes
    assert PROXY_LABEL in ax.get_ylabel() and PROXY_LABEL in ax2.get_ylabel()
    assert "bits/dim" in ax2.get_xlabel()
    assert len(ax2.containers) == 2  # DDIM has no bits/dim
    single = plotting.plot_fid({"even": {8: 50.0, 16: 30.0}}, ylog=True)
    _check_labelled(single)
    assert len(single.axes) == 1 and single.axes[0].get_ylabel().startswith("FID")
    mixed = {"a": {8: FIDResult(1.0, PROXY_LABEL, "p", False, 1, 1)},
             "b": {8: FIDResult(1.0, FID_LABEL, "i", True, 1, 1)}}
    with pytest.raises(DdpmdpError, match="not comparable"):
        plotting.plot_fid(mixed)


def test_sample_grids_side_by_side_and_as_a_table():
    imgs = random_images(6, shape=(3, 8, 8), seed=3)
    fig = sample_figures.sample_grid_figure({"even K=32": imgs, "dp K=32": imgs}, title="samples")
    assert isinstance(fig, Figure)
    assert [ax.get_title() for ax in fig.axes] == ["even K=32", "dp K=32"]
    assert fig.axes[0].images[0].get_array().shape == (2 * 9 + 1, 3 * 9 + 1, 3)  # ⌈√6⌉ = 3 per row, 2 rows
    grid = sample_figures.sample_grid_figure({"K=32": {"even": imgs, "dp": imgs}, "K=64": {"even": imgs[:, :1]}}, nrow=6)
    assert len(grid.axes) == 4 and grid.axes[0].get_ylabel() == "K=32" and grid.axes[2].get_ylabel() == "K=64"
    assert not grid.axes[3].axison  # missing cell
    grid.savefig(io.BytesIO(), format="png", dpi=40)
    tile = sample_figures.tile_images(imgs, nrow=6)
    assert tile.shape == (10, 6 * 9 + 1, 3) and tile.dtype == np.uint8
    with pytest.raises(DdpmdpError, match="uint8"):
        sample_figures.tile_images(imgs.astype(np.float32))


# ---- resolution, type size and layout for the book (issue 12) ---------------------------------------------
PAGE_PX = 690  # width of the book's text column at a 1280-px window (sphinx-book-theme), where figures are shown
MIN_TEXT_PX = 9.0  # smallest legible text height on the page, in CSS pixels


def _all_figures() -> dict[str, Figure]:
    imgs = random_images(4, shape=(3, 8, 8), seed=3)
    scores = {s: {K: _score(4.0 + i - math.log2(K) / 5, K) for K in BUDGETS} for i, s in enumerate(("even", "dp"))}
    fid = {s: {K: FIDResult(100 / K * (i + 1), PROXY_LABEL, "proxy", False, 100, 100) for K in BUDGETS}
           for i, s in enumerate(("even", "dp"))}
    sched = cosine_schedule(12)
    table = estimate_table(tiny_adapter(sched, learned=True, seed=1), random_images(4, shape=(3, 4, 4), seed=2),
                           variance="learned_range", batch_size=4, seed=0)
    return {
        "bpd_vs_budget": plotting.plot_bpd_vs_budget(scores, "toy", full=_score(3.0, 100)),
        "heatmap": plotting.plot_table_heatmap(table, {"even": even_stride(12, 3)}),
        "timesteps": plotting.plot_dp_timesteps({K: even_stride(100, K) for K in BUDGETS}, 100),
        "mc_ablation": plotting.plot_mc_ablation({1: scores["even"], 4: scores["dp"]}),
        "fid_two_panel": plotting.plot_fid(fid, scores),
        "samples": sample_figures.sample_grid_figure({"K = 8": {"even": imgs, "dp": imgs}, "data": {"real": imgs}}),
    }


@pytest.mark.parametrize("name", ["bpd_vs_budget", "heatmap", "timesteps", "mc_ablation", "fid_two_panel", "samples"])
def test_figures_are_at_least_200_dpi_with_legible_text(name):
    fig = _all_figures()[name]
    assert fig.dpi >= 200 and plotting.FIGURE_DPI >= 200
    buf = io.BytesIO()
    fig.savefig(buf, format="png")  # no dpi given: the figure's own
    from PIL import Image as PILImage

    buf.seek(0)
    w, h = PILImage.open(buf).size
    wi, hi = fig.get_size_inches()
    assert w >= 200 * wi - 2 and h >= 200 * hi - 2, (w, h, wi, hi)
    px_per_inch = PAGE_PX / max(wi, PAGE_PX / 96)  # a figure is shown at most at its natural 96-px/inch size
    fig.canvas.draw()
    texts = [t for t in fig.findobj(lambda o: hasattr(o, "get_fontsize") and hasattr(o, "get_text"))
             if t.get_text().strip() and t.get_visible()]
    assert texts
    small = sorted({(round(t.get_fontsize() * px_per_inch / 72, 1), t.get_text()[:30]) for t in texts
                    if t.get_fontsize() * px_per_inch / 72 < MIN_TEXT_PX})
    assert not small, f"{name}: text below {MIN_TEXT_PX} px at {PAGE_PX} px page width: {small[:5]}"


def test_two_panel_figures_are_no_wider_than_ten_inches():
    figs = _all_figures()
    for name in ("mc_ablation", "fid_two_panel"):
        assert len([a for a in figs[name].axes]) == 2
        assert figs[name].get_size_inches()[0] <= 10.0


PHONE_PX = 368  # the text column of the book at a 400-px window


@pytest.mark.parametrize("name", ["mc_ablation", "fid_two_panel", "four_models"])
def test_two_panel_figures_and_model_grids_are_legible_on_a_phone(name):
    """Shown across a phone's column, the two-panel figures (panels stacked, one above the other) and the
    embedded models' sample grid (four models as 2 × 2) keep their text at least MIN_TEXT_PX high."""
    if name == "four_models":
        imgs = random_images(4, shape=(3, 8, 8), seed=3)
        fig = sample_figures.sample_grid_figure({m: imgs for m in ("cifar10-simple", "cifar10-hybrid", "cifar10-vlb",
                                                                   "imagenet64-hybrid")}, max_cols=2, title="samples")
        assert len([a for a in fig.axes if a.images]) == 4 and len({round(a.get_position().y0, 3) for a in fig.axes}) == 2
    else:
        fig = _all_figures()[name]
        x0 = {round(a.get_position().x0, 3) for a in fig.axes}
        assert len(x0) == 1, f"{name}: the panels should be stacked (one column)"
    fig.canvas.draw()
    px_per_inch = PHONE_PX / fig.get_size_inches()[0]
    texts = [t for t in fig.findobj(lambda o: hasattr(o, "get_fontsize") and hasattr(o, "get_text"))
             if t.get_text().strip() and t.get_visible()]
    small = sorted({(round(t.get_fontsize() * px_per_inch / 72, 1), t.get_text()[:30]) for t in texts
                    if t.get_fontsize() * px_per_inch / 72 < MIN_TEXT_PX})
    assert not small, f"{name}: text below {MIN_TEXT_PX} px on a {PHONE_PX}-px phone column: {small[:5]}"


def test_sample_grid_one_row_per_budget_then_extra_rows_from_the_left():
    """Budgets share columns (one stride per column); the full chain and real images get their own rows,
    laid out from the left, never new columns to the right of all others (the old staircase)."""
    imgs = random_images(4, shape=(3, 8, 8), seed=3)
    grids = {f"K = {K}": {"even": imgs, "quadratic": imgs, "dp": imgs} for K in (16, 64, 256)}
    grids["all 1000 steps"] = {"full chain": imgs}
    grids["data"] = {"real images": imgs}
    fig = sample_figures.sample_grid_figure(grids, nrow=2, title="Samples")
    axes = np.array(fig.axes).reshape(5, 3)  # five rows, three columns: no staircase of 5 columns
    assert [ax.get_title() for ax in axes[0]] == ["even", "quadratic", "dp"]
    for r in range(3):
        assert all(ax.axison and ax.images for ax in axes[r]), f"row {r} must show every stride"
        assert axes[r, 0].get_ylabel() == f"K = {(16, 64, 256)[r]}"
        if r:
            assert [ax.get_title() for ax in axes[r]] == ["", "", ""]  # same columns: titles only on top
    for r, (label, panel) in enumerate([("all 1000 steps", "full chain"), ("data", "real images")], start=3):
        assert axes[r, 0].images and axes[r, 0].get_title() == panel and axes[r, 0].get_ylabel() == label
        assert not axes[r, 1].axison and not axes[r, 2].axison
    fig.savefig(io.BytesIO(), format="png", dpi=40)


def test_no_book_module_uses_pyplot():
    """Figures come from ``matplotlib.figure.Figure`` only: a pyplot figure is also shown by the inline
    backend at the end of the cell, so a notebook that displays it would show it twice."""
    import ast
    from pathlib import Path

    book = Path(plotting.__file__).resolve().parents[1]
    found = []
    for path in sorted(book.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [f"{node.module}.{a.name}" for a in node.names] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{path.relative_to(book)}: {n}" for n in names if n.startswith("matplotlib.pyplot")]
    assert not found, found
