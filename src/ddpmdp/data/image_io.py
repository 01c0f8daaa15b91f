"""Writing sample grids as PNG."""
from __future__ import annotations

import math
import os

import numpy as np

from ddpmdp.errors import DdpmdpError, require

__all__ = ["make_grid_image", "save_grid"]


def make_grid_image(images: np.ndarray, ncols: int | None = None, pad: int = 2) -> np.ndarray:
    """uint8 (N, C, H, W) → one uint8 (H', W', C) image of tiles with ``pad`` white pixels between."""
    require(images.dtype == np.uint8 and images.ndim == 4, "a grid needs uint8 images (N, C, H, W)")
    n, c, h, w = images.shape
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), 255, dtype=np.uint8)
    for k in range(n):
        r, q = divmod(k, ncols)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = \
            images[k].transpose(1, 2, 0)
    return grid


def save_grid(images: np.ndarray, path: str | os.PathLike, ncols: int | None = None) -> None:
    """Write a PNG grid of uint8 (N, C, H, W) images."""
    from PIL import Image

    grid = make_grid_image(images, ncols)
    try:
        Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(path, format="PNG")
    except OSError as exc:
        raise DdpmdpError(f"cannot write {os.fspath(path)!r}: {exc.strerror or exc}") from None
