"""Image sets: uint8 (N, C, H, W) arrays with their identity and split.

Data specs (strings that name an image set) are resolved by :mod:`ddpmdp.data.specs`.

Images are mapped to x₀ = pixel/127.5 − 1 ∈ [−1, 1] by :func:`to_model_space`.
Datasets are found under ``$DDPMDP_DATA`` (or an explicit ``data_dir``).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ddpmdp.errors import DdpmdpError, require

__all__ = ["ImageSet", "validate_images", "to_model_space", "data_root"]


@dataclass
class ImageSet:
    """uint8 images (N, C, H, W) plus where they came from.

    ``identity`` names the source (e.g. ``cifar10:test``), ``split`` the split,
    ``notes`` carries warnings that travel into table metadata (e.g. a checksum
    that differs from the official files), ``labels`` the class labels (int64 (N,)) where the
    source has them (None otherwise; nothing in the method uses them).
    """

    images: np.ndarray
    identity: str
    split: str = "unspecified"
    notes: list[str] = field(default_factory=list)
    labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        validate_images(self.images, self.identity)
        if self.labels is not None:
            require(self.labels.shape == (self.images.shape[0],), f"{self.identity}: {self.labels.shape} labels "
                    f"for {self.images.shape[0]} images")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def dims(self) -> int:
        """d = C·H·W."""
        return int(np.prod(self.images.shape[1:]))

    def subset(self, n: int | None) -> "ImageSet":
        """The first n images (all when n is None)."""
        if n is None:
            return self
        require(1 <= n <= len(self), f"asked for {n} images but {self.identity} has {len(self)}")
        return ImageSet(self.images[:n], self.identity, self.split, list(self.notes),
                        None if self.labels is None else self.labels[:n])

    def fingerprint(self) -> str:
        """sha256 of the image bytes (16 hex digits)."""
        return hashlib.sha256(np.ascontiguousarray(self.images).tobytes()).hexdigest()[:16]


def validate_images(images: np.ndarray, what: str = "images") -> None:
    """Fail fast on anything but uint8 (N, C, H, W) with C in {1, 3} and N ≥ 1."""
    if not isinstance(images, np.ndarray):
        raise DdpmdpError(f"{what}: expected a numpy array, got {type(images).__name__}")
    if images.dtype != np.uint8:
        raise DdpmdpError(f"{what}: images must be uint8 in 0..255, got dtype {images.dtype}"
                          + (" (float images in [-1, 1] or [0, 1]? convert to uint8 first)"
                             if images.dtype.kind == "f" else ""))
    if images.ndim != 4 or images.shape[1] not in (1, 3) or images.shape[0] < 1:
        raise DdpmdpError(f"{what}: images must have shape (N, C, H, W) with C = 1 or 3, got {images.shape}"
                          + (" (channels last? transpose to (N, C, H, W))"
                             if images.ndim == 4 and images.shape[-1] in (1, 3) else ""))


def to_model_space(images: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 (B, C, H, W) → float32 x₀ = pixel/127.5 − 1 in [−1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).to(device).float().div_(127.5).sub_(1.0)


def data_root(data_dir: str | os.PathLike | None = None) -> Path | None:
    """``data_dir`` if given, else ``$DDPMDP_DATA`` if set, else None."""
    if data_dir is not None:
        return Path(data_dir)
    env = os.environ.get("DDPMDP_DATA")
    return Path(env) if env else None
