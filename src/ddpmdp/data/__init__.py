"""Data: image sets and where they come from.

* :mod:`~ddpmdp.data.images` — :class:`ImageSet` (uint8 (N, C, H, W) with identity and split);
* :mod:`~ddpmdp.data.specs` — data specs (strings) → image sets, :func:`load_images`;
* :mod:`~ddpmdp.data.cifar10`, :mod:`~ddpmdp.data.imagenet64` — the dataset readers;
* :mod:`~ddpmdp.data.image_io` — PNG grids.
"""
from ddpmdp.data.images import ImageSet

__all__ = ["ImageSet"]
