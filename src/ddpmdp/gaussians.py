"""Gaussian likelihood pieces and the one unit conversion.

All functions work elementwise on tensors; callers sum over dimensions.
Units: natural logarithms (nats). Bits per dimension appear only through
:func:`nats_to_bpd`.
"""
from __future__ import annotations

import math

import torch

__all__ = ["normal_kl", "approx_standard_normal_cdf", "discretized_gaussian_log_likelihood", "nats_to_bpd"]


def normal_kl(mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) ‖ N(mean2, e^logvar2)) per element, in nats (``method.md`` §3.2):
    ½[logvar2 − logvar1 + e^{logvar1 − logvar2} − 1 + (mean1 − mean2)² e^{−logvar2}]."""
    return 0.5 * (logvar2 - logvar1 + torch.exp(logvar1 - logvar2) - 1.0
                  + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def approx_standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """Φ(x) ≈ ½(1 + tanh(√(2/π)(x + 0.044715 x³))), the approximation improved-diffusion and
    Ho et al. use, kept for parity with published numbers (``method.md`` §3.3)."""
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def discretized_gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log P(x) per element for 8-bit data x ∈ {−1, −1 + 2/255, …, 1} under N(mean, e^{2·log_scale})
    integrated over the bin [x − 1/255, x + 1/255]; the outer bins extend to ±∞ and each
    probability is clamped at 1e-12 before the log (``method.md`` §3.3). Nats, shape of x."""
    centered = x - mean
    inv_std = torch.exp(-log_scale)
    cdf_plus = approx_standard_normal_cdf(inv_std * (centered + 1.0 / 255.0))
    cdf_min = approx_standard_normal_cdf(inv_std * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_delta))


def nats_to_bpd(nats, dims: int):
    """Bits per dimension of a quantity in nats summed over ``dims`` = C·H·W dimensions:
    bpd = nats/(d·ln 2). Works on floats and arrays."""
    return nats / (dims * math.log(2.0))
