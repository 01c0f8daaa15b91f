"""Sample-grid figures: images tiled in a grid, one row per budget K and one column per stride."""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ddpmdp.errors import require
from ddpmdp.book.reporting.plotting import FIGURE_DPI, styled

__all__ = [
    "sample_grid_figure",
    "tile_images",
]


def tile_images(images: np.ndarray, nrow: int | None = None, pad: int = 1) -> np.ndarray:
    """uint8 (N, C, H, W) → one uint8 grid (rows·(H+pad)+pad, cols·(W+pad)+pad, C) with white
    padding; ``nrow`` images per row (default ⌈√N⌉)."""
    x = np.asarray(images)
    require(x.dtype == np.uint8 and x.ndim == 4 and x.shape[1] in (1, 3),
            f"images must be uint8 (N, C, H, W) with C in {{1, 3}}, got {x.dtype} {x.shape}")
    N, C, H, W = x.shape
    cols = nrow or max(1, math.ceil(math.sqrt(N)))
    rows = math.ceil(N / cols)
    out = np.full((rows * (H + pad) + pad, cols * (W + pad) + pad, C), 255, dtype=np.uint8)
    for i in range(N):
        r, c = divmod(i, cols)
        out[pad + r * (H + pad):pad + r * (H + pad) + H, pad + c * (W + pad):pad + c * (W + pad) + W] = (
            x[i].transpose(1, 2, 0))
    return out


def _show(ax: Axes, images: np.ndarray, nrow: int | None) -> None:
    grid = tile_images(images, nrow)
    ax.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray" if grid.shape[-1] == 1 else None,
              interpolation="nearest", vmin=0, vmax=255)
    ax.set_xticks([])
    ax.set_yticks([])


@styled
def sample_grid_figure(grids: Mapping[str, np.ndarray] | Mapping[str, Mapping[str, np.ndarray]], *,
                       nrow: int | None = None, title: str = "", panel_size: float = 2.6,
                       max_cols: int | None = None) -> Figure:
    """Labelled sample grids side by side (Paper Figs. 4, 5, 7, 8).

    ``grids``: ``{label: uint8 (N, C, H, W)}`` → one row of panels titled by label; or
    ``{row_label: {column_label: images}}`` (e.g. budget → stride) → a table of panels with
    row labels on the left and column labels on top. Pixels are shown as stored (no axes
    units: image panels carry labels instead of ticks). ``max_cols``: a flat ``grids`` wraps into rows
    of at most that many panels (e.g. 2: four models as 2 × 2, legible on a phone).
    """
    require(len(grids) > 0, "grids is empty")
    nested = all(isinstance(v, Mapping) for v in grids.values())
    table: dict[str, dict[str, np.ndarray]] = (
        {str(r): dict(v) for r, v in grids.items()} if nested else {"": dict(grids)})  # type: ignore[arg-type]
    if not nested and max_cols is not None and len(grids) > max_cols:
        items = list(table[""].items())
        table = {" " * i: dict(items[i * max_cols:(i + 1) * max_cols])
                 for i in range((len(items) + max_cols - 1) // max_cols)}  # unlabelled rows
    layout = _grid_layout(table)
    ncols = max(len(row) for row in layout)
    fig = Figure(dpi=FIGURE_DPI, figsize=(panel_size * ncols + (0.6 if nested else 0), panel_size * len(table) + 0.5),
                 layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(table), ncols, squeeze=False))
    for r, (rlabel, row) in enumerate(table.items()):
        for c in range(ncols):
            ax = axes[r, c]
            clabel = layout[r][c] if c < len(layout[r]) else None
            if clabel is not None and clabel in row:
                _show(ax, np.asarray(row[clabel]), nrow)
            else:
                ax.set_axis_off()
            above = next((layout[q][c] for q in range(r - 1, -1, -1)
                          if c < len(layout[q]) and layout[q][c] is not None), None)
            if clabel is not None and clabel != above:
                ax.set_title(clabel, fontsize="medium")
            if c == 0 and rlabel.strip():
                ax.set_ylabel(rlabel, fontsize="medium")
    if title:
        fig.suptitle(title)
    return fig


def _grid_layout(table: Mapping[str, Mapping[str, np.ndarray]]) -> list[list[str | None]]:
    """Panel labels per row of :func:`sample_grid_figure`: one row per entry of ``table``. Rows
    whose labels all appear in the first row (e.g. the strides of every budget K) keep the first
    row's columns, so a column holds one stride; any other row (the full chain, real images) is
    laid out from the left with its own panel titles, instead of in new columns to the right of
    all others (which made a staircase)."""
    rows = list(table.values())
    main = list(rows[0])
    out: list[list[str | None]] = []
    for row in rows:
        if all(c in main for c in row):
            out.append([c if c in row else None for c in main])
        else:
            out.append(list(row))
    return out
