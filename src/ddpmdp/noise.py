"""Keyed Gaussian noise: ε depends only on (seed, image index, node t).

A table, an evaluation or a sample is then the same for any batch size, device or
number of processes: batching and sharding only change which (image, t) pairs are
computed together, never their noise. The generator is counter-based: a 32-bit
integer hash of (seed, stream, image index, t, element) gives two uniforms per pair
of elements, and Box–Muller turns them into standard normals. The integer part is
exact on every device; the transform runs in float64 and is cast to float32.
"""
from __future__ import annotations

import math

import torch

__all__ = ["keyed_normal", "STREAM_TABLE", "STREAM_EVAL", "STREAM_SAMPLE", "STREAM_TRAJECTORY", "STREAM_TEACHER"]

_M32 = 0xFFFFFFFF
_MUL = 0x045D9F3B  # < 2**31, so every product of a 32-bit value stays below 2**63
_GOLD = 0x61C88647  # 2**32 − ⌊2**32/φ⌋, < 2**31

STREAM_TABLE = 1
STREAM_EVAL = 2
STREAM_SAMPLE = 3
STREAM_TRAJECTORY = 4
"""x_T = z of the trajectory table's seeds (keyed by seed index, node 0)."""
STREAM_TEACHER = 5
"""x_T = z of the held-out teacher-distance seeds (never the table's)."""


def _mix(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit avalanche hash on int64 tensors holding values in [0, 2**32)."""
    x = ((x >> 16) ^ x) * _MUL & _M32
    x = ((x >> 16) ^ x) * _MUL & _M32
    return (x >> 16) ^ x


def _key(seed: int, stream: int, index: torch.Tensor, t: int) -> torch.Tensor:
    k = _mix(torch.full_like(index, (seed * _GOLD + stream) & _M32))
    k = _mix((k + (index & _M32) * _GOLD) & _M32)
    k = _mix((k + ((index >> 32) & _M32) + 0x2545F491) & _M32)
    return _mix((k + (t & _M32) * _GOLD + 0x9E3779B) & _M32)


def keyed_normal(seed: int, index: torch.Tensor, t: int, shape: tuple[int, ...], *,
                 stream: int = STREAM_TABLE, device: str | torch.device | None = None) -> torch.Tensor:
    """Standard normal noise, float32 ``(B, *shape)``, for images ``index`` (int64 (B,)) at node t.

    Row b depends only on (seed, stream, index[b], t). ``stream`` separates uses
    (table, held-out evaluation, sampling) so they never share noise.
    """
    device = index.device if device is None else torch.device(device)
    index = index.to(device=device, dtype=torch.int64)
    n = math.prod(shape)
    half = (n + 1) // 2
    key = _key(int(seed), int(stream), index, int(t))[:, None]  # (B, 1)
    counter = torch.arange(half, device=device, dtype=torch.int64)[None, :] * 2  # (1, half)
    k2 = _mix((key ^ 0x5BD1E995) & _M32)
    h1 = _mix(_mix((counter ^ key) & _M32) ^ k2)
    h2 = _mix(_mix(((counter + 1) ^ key) & _M32) ^ k2)
    u1 = (h1.double() + 0.5) * (1.0 / 4294967296.0)
    u2 = h2.double() * (2.0 * math.pi / 4294967296.0)
    r = torch.sqrt(-2.0 * torch.log(u1))
    z = torch.stack([r * torch.cos(u2), r * torch.sin(u2)], dim=-1).reshape(index.shape[0], 2 * half)
    return z[:, :n].reshape(index.shape[0], *shape).float()
