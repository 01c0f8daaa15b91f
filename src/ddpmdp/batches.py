"""One loop over image batches and their noise keys, shared by tables, evaluation and the book.

Noise is keyed by each image's global index in its image set (:mod:`ddpmdp.noise`), so the
batch size never changes which noise an image gets. :func:`image_batches` yields the images of
batch b (numbered from 0, of ``batch_size`` images; a batch never crosses a ``boundaries``
entry) mapped to x₀ ∈ [−1, 1] on ``device``, with their int64 keys.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch

from ddpmdp.data.images import ImageSet, to_model_space
from ddpmdp.errors import require

__all__ = ["ImageBatch", "batch_ranges", "image_batches"]


@dataclass(frozen=True)
class ImageBatch:
    """Batch ``number``: images ``lo:hi`` of the set. ``x0`` float32 (B, C, H, W) in [−1, 1];
    ``keys`` int64 (B,) = lo..hi − 1, the noise keys; both on the same device."""

    number: int
    lo: int
    hi: int
    x0: torch.Tensor
    keys: torch.Tensor


def batch_ranges(n_images: int, batch_size: int, boundaries: Sequence[int] = ()) -> list[tuple[int, int]]:
    """(lo, hi) of every batch: at most ``batch_size`` images, never crossing a boundary."""
    require(int(batch_size) == batch_size and batch_size >= 1, f"batch size must be a positive integer, got {batch_size}")
    stops = sorted({int(b) for b in boundaries if 0 < b < n_images} | {n_images})
    out, lo = [], 0
    for stop in stops:
        while lo < stop:
            hi = min(stop, lo + int(batch_size))
            out.append((lo, hi))
            lo = hi
    return out


def image_batches(data: ImageSet, batch_size: int, device: str | torch.device = "cpu", *,
                  numbers: Iterable[int] | None = None, boundaries: Sequence[int] = ()) -> Iterator[ImageBatch]:
    """The batches of ``data`` (all, or only those in ``numbers``, in the order given)."""
    ranges = batch_ranges(len(data), batch_size, boundaries)
    for b in (range(len(ranges)) if numbers is None else numbers):
        lo, hi = ranges[b]
        yield ImageBatch(b, lo, hi, to_model_space(data.images[lo:hi], device),
                         torch.arange(lo, hi, dtype=torch.int64, device=device))
