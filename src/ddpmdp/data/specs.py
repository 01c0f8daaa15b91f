"""Data specs: strings that name an image set for the CLI and the notebooks.

* ``path/to/file.npz`` — an ``images`` array, uint8 (N, C, H, W) (optional ``split``);
* ``cifar10:train|test`` — the official ``cifar-10-batches-py/`` layout;
* ``cifar10-lossless:train|test`` — the lossless CIFAR-10 pair: the first 4,000 training and the
  first 100 test images with their exact pixels (``cifar10-lossless100`` is the old name of the
  test half);
* ``imagenet64:PATH`` — ImageNet 64×64 (``val_data.npz``, npz batches or a folder of PNGs);
* ``tiny-imagenet64[:train|test]`` — the project's 64×64 Tiny-ImageNet split;
* further prefixes registered with :func:`register_data_spec` (plug-ins).

Datasets are found under ``$DDPMDP_DATA`` (or an explicit ``data_dir``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from ddpmdp.data.cifar10 import cifar10_lossless100_spec, cifar10_lossless_spec, cifar10_spec
from ddpmdp.data.imagenet64 import imagenet64_spec, tiny_imagenet64_spec
from ddpmdp.data.images import ImageSet, data_root
from ddpmdp.errors import DdpmdpError, require

__all__ = ["load_images", "register_data_spec"]


DataLoader = Callable[[str, Path | None], ImageSet]

#: The built-in prefixes; :func:`register_data_spec` adds plug-ins.
_LOADERS: dict[str, DataLoader] = {
    "cifar10": cifar10_spec,
    "cifar10-lossless": cifar10_lossless_spec,
    "cifar10-lossless100": cifar10_lossless100_spec,
    "imagenet64": imagenet64_spec,
    "tiny-imagenet64": tiny_imagenet64_spec,
}


def register_data_spec(prefix: str, loader: DataLoader) -> None:
    """Register ``loader(argument, data_dir) -> ImageSet`` for specs ``prefix[:argument]``."""
    _LOADERS[prefix] = loader


def _load_npz(path: Path) -> ImageSet:
    require(path.is_file(), f"data file {str(path)!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            require("images" in z.files, f"{path}: an image .npz must hold an 'images' array "
                    f"(uint8, N×C×H×W); it holds {sorted(z.files)}")
            images = z["images"]
            split = str(z["split"]) if "split" in z.files else "unspecified"
    except (OSError, ValueError) as exc:
        if isinstance(exc, DdpmdpError):
            raise
        raise DdpmdpError(f"{path}: not a readable .npz file ({exc})") from None
    return ImageSet(images, f"npz:{path.name}", split)


def load_images(spec: str, data_dir: str | os.PathLike | None = None) -> ImageSet:
    """Resolve a data spec (see the module docstring) to an :class:`ImageSet`."""
    prefix, _, arg = spec.partition(":")
    if prefix in _LOADERS:
        return _LOADERS[prefix](arg, data_root(data_dir))
    if spec.endswith(".npz"):
        return _load_npz(Path(spec))
    known = ", ".join(sorted(_LOADERS)) or "none registered"
    raise DdpmdpError(f"unknown data spec {spec!r}: use FILE.npz or one of: {known}")
