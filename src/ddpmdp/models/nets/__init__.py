"""Plain-PyTorch re-implementations of the public diffusion UNets.

* :mod:`ddpmdp.models.nets.iddpm_unet` — Nichol & Dhariwal's improved-diffusion UNet
  (``input_blocks…`` state_dict keys), with presets for the released CIFAR-10 and
  ImageNet 64 checkpoints and small CPU variants of the same class;
* :mod:`ddpmdp.models.nets.ho_unet` — Ho et al.'s CIFAR-10 UNet with diffusers
  ``UNet2DModel`` parameter names, plus the rename tables for the old diffusers
  attention names and pesser's ``pytorch_diffusion`` keys.

Neither module imports ``diffusers``; it is only used by the tests as an
independent numerical reference.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import Any

import torch

from ddpmdp.models.nets.ho_unet import HoUNet, HoUNetConfig, GOOGLE_DDPM_CIFAR10_CONFIG
from ddpmdp.models.nets.iddpm_unet import IDDPM_PRESETS, IDDPMConfig, IDDPMUNet, get_preset

__all__ = [
    "IDDPMUNet",
    "IDDPMConfig",
    "IDDPM_PRESETS",
    "get_preset",
    "HoUNet",
    "HoUNetConfig",
    "GOOGLE_DDPM_CIFAR10_CONFIG",
    "key_shape_fingerprint",
    "count_parameters",
]


def key_shape_fingerprint(shapes: Mapping[str, Any]) -> str:
    """sha256 (64 hex digits) of the sorted ``key:shape`` lines (``checkpoints.md`` §2.3/§7).

    ``shapes`` maps a state_dict key to a shape (tuple, list, ``torch.Size``) or to a
    tensor. Each line is ``f"{key}:{shape!r}"`` with the shape as a tuple of ints, e.g.
    ``out.2.bias:(6,)`` or ``out.2.weight:(6, 128, 3, 3)``; lines are sorted by key and
    joined with ``\\n``, without a trailing newline.
    """
    lines = [f"{key}:{_shape(shapes[key])!r}" for key in sorted(shapes)]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def count_parameters(shapes: Mapping[str, Any]) -> int:
    """Total number of scalars Σ ∏ shape over a ``key → shape`` (or ``key → tensor``) mapping."""
    return sum(math.prod(_shape(v)) for v in shapes.values())


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in (value.shape if isinstance(value, torch.Tensor) else value))
