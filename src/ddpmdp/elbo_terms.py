"""The per-image ELBO terms of ``method.md`` §3, §4 and §5.

−ELBO(x₀) = L_prior(x₀) + Σ_i L(t_i, t_{i−1}) for a path 0 = t₀ < … < t_K = T, with

* L(t, s) = KL(q(x_s | x_t, x₀) ‖ p_θ(x_s | x_t)) for s ≥ 1, and
* L(t, 0) = −log p_θ(x₀ | x_t), the discretised-Gaussian decoder term.

One forward pass at (x_t, t) gives L(t, s) for **every** s < t (Paper §4.3): the
means differ by c_{t,s}·(x₀ − x̂₀(x_t, t)) and the network output does not depend
on s. :func:`kl_row` uses that. Every function returns **nats per image**
(summed over the d = C·H·W dimensions) as float64 tensors of shape (B, …).
"""
from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

from ddpmdp.errors import DdpmdpError, require
from ddpmdp.gaussians import bin_edges, discretized_gaussian_nll, log_bin_probability
from ddpmdp.schedules import Schedule, stride_quantities
from ddpmdp.variances import NodeStats, VarianceRule, get_rule

__all__ = ["q_sample", "predict_x0", "q_posterior", "prior_term", "kl_row", "decoder_term", "row_chunk_size",
           "kl_scalar", "scalar_cell", "edge_term", "decoder_node"]


def q_sample(schedule: Schedule, x0: torch.Tensor, t: int | torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """x_t = √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε, a draw from q(x_t | x₀). Shapes (B, C, H, W).

    ``t``: one node for the batch, or an int64 tensor (B,) with a node per image (training).
    The coefficients are computed in float64 and rounded to x₀'s dtype in both cases."""
    if isinstance(t, torch.Tensor):
        abar = abar_tensor(schedule, "cpu")[t.cpu()]
        a = abar.sqrt().to(x0.dtype).to(x0.device).view(-1, *([1] * (x0.ndim - 1)))
        b = (1.0 - abar).sqrt().to(x0.dtype).to(x0.device).view(-1, *([1] * (x0.ndim - 1)))
        return a * x0 + b * eps
    a_t = float(schedule.abar(t))
    return math.sqrt(a_t) * x0 + math.sqrt(1.0 - a_t) * eps


def predict_x0(schedule: Schedule, x_t: torch.Tensor, t: int, eps_hat: torch.Tensor, clip: bool) -> torch.Tensor:
    """x̂₀ = (x_t − √(1 − ᾱ_t)·ε̂)/√ᾱ_t, clipped to [−1, 1] when ``clip`` (``method.md`` §2.1)."""
    a = float(schedule.abar(t))
    x0_hat = (x_t - math.sqrt(1.0 - a) * eps_hat) / math.sqrt(a)
    return x0_hat.clamp(-1.0, 1.0) if clip else x0_hat


def q_posterior(schedule: Schedule, x0: torch.Tensor, x_t: torch.Tensor, t: int, s: int) -> tuple[torch.Tensor, float]:
    """Mean c_{t,s}·x₀ + e_{t,s}·x_t and variance β̃_{t,s} of q(x_s | x_t, x₀), 0 ≤ s < t."""
    c, e = schedule.posterior_coefficients(t, s)
    return float(c) * x0 + float(e) * x_t, float(schedule.beta_tilde(t, s))


def prior_term(schedule: Schedule, x0: torch.Tensor) -> torch.Tensor:
    """L_prior = KL(q(x_T | x₀) ‖ N(0, I)) = ½ Σ_j [ᾱ_T x₀ⱼ² − ᾱ_T − log(1 − ᾱ_T)], (B,) float64 nats."""
    a = float(schedule.abar(schedule.T))
    d = x0[0].numel()
    sq = x0.double().pow(2).flatten(1).sum(1)
    return 0.5 * (a * sq - d * (a + math.log1p(-a)))


def row_chunk_size(batch: int, dims: int, budget_elements: int = 1 << 22) -> int:
    """How many s to process at once in the learned-range row so that a (B, S, d) tile
    holds at most ``budget_elements`` floats (16 MiB in float32 by default)."""
    return max(1, budget_elements // max(1, batch * dims))


def kl_row(schedule: Schedule, x0: torch.Tensor, x0_hat: torch.Tensor, t: int, s_nodes: np.ndarray | torch.Tensor,
           rule: VarianceRule, v: torch.Tensor | None = None, *, chunk: int | None = None,
           method: Literal["auto", "direct", "chebyshev"] = "auto") -> torch.Tensor:
    """L(t, s) for every s in ``s_nodes`` (each 1 ≤ s < t) from one forward pass at t.

    Rules with summed per-image cells only (``fixed_small``, ``fixed_large``, ``learned_range``; the
    derived rules come from node statistics, :mod:`ddpmdp.rescore`). Scalar rules (``method.md``
    §5.2): :func:`scalar_cell` with M = ‖x₀ − x̂₀‖² and the rule's σ² (``RULES[rule].sigma2``).

    ``learned_range`` (§5.3): the rule's σ²_j substituted in closed form, β̃/σ²_j = e^{−v_j ℓ},
    with ℓ = log((1 − ᾱ_t)/(1 − ᾱ_s)) = log(β/β̃), Δ = SNR(s) − SNR(t) = c²/β̃, e = x₀ − x̂₀::

        L(t, s) = ½ Σ_j [v_j ℓ + e^{−v_j ℓ}(1 + Δ e_j²) − 1]

    evaluated either directly, ½ Σ_j [(expm1(−v_j ℓ) + v_j ℓ) + (1 + expm1(−v_j ℓ)) Δ e_j²] on
    float32 tiles of (B, S_chunk, d) — O(B·S·d) exponentials — or through a Chebyshev expansion of
    e^{−ℓv} in v (:func:`_learned_row_chebyshev`, float64, O((B·d + S)·P)). ``method='auto'`` takes
    the expansion on the CPU when the row is long and ℓ·(v range) is within its exact range, and
    the direct tiles on a GPU (deciding needs the v range, i.e. a device-to-host read).

    x0, x0_hat, v: (B, C, H, W); s_nodes: int array or tensor (a tensor on x0's device avoids a
    host-to-device copy). Returns (B, len(s_nodes)) float64, nats per image.
    """
    B, d = x0.shape[0], x0[0].numel()
    dev = x0.device
    spec = get_rule(rule)
    if spec.cells != "summed":
        raise DdpmdpError(f"variance rule {rule} has no per-image cells: its σ² come from a selection table's "
                          "node statistics (ddpmdp.rescore)")
    s_idx = torch.as_tensor(s_nodes, dtype=torch.int64, device=dev)  # no copy when already on dev
    if s_idx.numel() == 0:
        return torch.zeros(B, 0, dtype=torch.float64, device=dev)
    err = (x0 - x0_hat).flatten(1)
    at = float(schedule.abar(t))
    abar_s = abar_tensor(schedule, dev)[s_idx]  # (S,) float64, computed on the device: no host sync
    if spec.scalar:
        m = err.double().pow(2).sum(1)  # (B,)
        q = stride_quantities(at, abar_s)  # (S,) each
        sigma2 = spec.sigma2(q, NodeStats(t=t, abar=at))
        return scalar_cell(d, q.beta_tilde[None, :], sigma2[None, :], q.c2[None, :], m[:, None])
    require(v is not None, "learned_range needs v")
    assert v is not None
    ell = math.log1p(-at) - torch.log1p(-abar_s)  # (S,) float64, ℓ = log(β_{t,s}/β̃_{t,s}) ≥ 0
    delta = abar_s / (1.0 - abar_s) - at / (1.0 - at)  # (S,) float64, Δ = SNR(s) − SNR(t)
    vf = v.flatten(1)
    e2 = err.double().pow(2)
    if method == "auto":
        method = "chebyshev" if (dev.type == "cpu" and ell.numel() > 2 * CHEB_DEGREE and
                                 float(ell.max()) * float(vf.max() - vf.min()) / 2 <= CHEB_MAX_Z) else "direct"
    if method == "chebyshev":
        return _learned_row_chebyshev(vf.double(), e2.double(), ell, delta)
    ft = torch.promote_types(vf.dtype, torch.float32)  # float32 tiles; float64 for a float64 network
    return _learned_row_direct(vf.to(ft), e2.to(ft), ell, delta, chunk or row_chunk_size(B, d))


CHEB_DEGREE = 40
"""Degree P of the Chebyshev expansion of v ↦ e^{−ℓv} in :func:`_learned_row_chebyshev`."""
CHEB_MAX_Z = 16.0
"""Largest ℓ·h (h = half-width of the batch's v range) for which degree P is exact to < 1e-15."""


def _learned_row_direct(v: torch.Tensor, e2: torch.Tensor, ell: torch.Tensor, delta: torch.Tensor,
                        chunk: int) -> torch.Tensor:
    """½ Σ_j [(expm1(−v_j ℓ) + v_j ℓ) + (1 + expm1(−v_j ℓ)) Δ e_j²] on (B, S_chunk, d) tiles in v's dtype."""
    B, S = v.shape[0], ell.numel()
    out = torch.empty(B, S, dtype=torch.float64, device=v.device)
    ell32 = ell.to(v.dtype)
    e2_sum = e2.sum(-1)[:, None, None]
    for lo in range(0, S, chunk):
        hi = min(lo + chunk, S)
        vl = v[:, None, :] * ell32[None, lo:hi, None]  # (B, S, d)
        em1 = torch.expm1(-vl)
        first = (em1 + vl).sum(-1, dtype=torch.float64)  # Σ_j expm1(−vℓ) + vℓ
        second = torch.baddbmm(e2_sum, em1, e2[:, :, None]).squeeze(-1).double()  # Σ_j e^{−vℓ} e_j²
        out[:, lo:hi] = 0.5 * (first + delta[None, lo:hi] * second)
    return out


def _learned_row_chebyshev(v: torch.Tensor, e2: torch.Tensor, ell: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """The learned-range row through a Chebyshev expansion in v, O((B·d + S)·P) instead of O(B·S·d).

    On the batch's range v ∈ [m − h, m + h], with u = (v − m)/h,
        e^{−ℓ v} = Σ_{k=0..P} c_k(ℓ) T_k(u)   (coefficients from P + 1 Chebyshev nodes; the
    truncation error is below 1e-15 relative for ℓ·h ≤ CHEB_MAX_Z). Hence with the image moments
    M_k = Σ_j T_k(u_j) and N_k = Σ_j T_k(u_j) e_j²:
        Σ_j e^{−ℓ v_j} = Σ_k c_k M_k,   Σ_j e^{−ℓ v_j} e_j² = Σ_k c_k N_k,
        L(t, s) = ½ [Σ_j e^{−ℓ v_j} − d + ℓ Σ_j v_j + Δ Σ_j e^{−ℓ v_j} e_j²]   (all float64).
    """
    P = CHEB_DEGREE
    dev = v.device
    d = v.shape[1]
    lo, hi = v.min(), v.max()
    m = (lo + hi) / 2
    h = torch.clamp((hi - lo) / 2, min=1e-6)
    u = ((v - m) / h).clamp(-1.0, 1.0)  # (B, d)
    # image moments of T_0..T_P by the three-term recurrence
    M = torch.empty(v.shape[0], P + 1, dtype=torch.float64, device=dev)
    N = torch.empty_like(M)
    t_prev, t_cur = torch.ones_like(u), u
    M[:, 0], N[:, 0] = float(d), e2.sum(1)
    M[:, 1], N[:, 1] = u.sum(1), (u * e2).sum(1)
    for k in range(2, P + 1):
        t_prev, t_cur = t_cur, 2.0 * u * t_cur - t_prev
        M[:, k], N[:, k] = t_cur.sum(1), (t_cur * e2).sum(1)
    # coefficients c_k(ℓ_s) from values at the Chebyshev nodes u_i = cos θ_i
    theta = (torch.arange(P + 1, dtype=torch.float64, device=dev) + 0.5) * math.pi / (P + 1)
    nodes_v = m + h * torch.cos(theta)  # (P+1,)
    f = torch.exp(-ell[:, None] * nodes_v[None, :])  # (S, P+1)
    orders = torch.arange(P + 1, dtype=torch.float64, device=dev)
    basis = torch.cos(theta[:, None] * orders[None, :])  # (P+1 nodes, P+1 orders)
    c = f @ basis * (2.0 / (P + 1))
    c[:, 0] *= 0.5
    sum_exp = M @ c.T  # (B, S)
    sum_exp_e2 = N @ c.T
    vsum = v.sum(1, keepdim=True)
    return 0.5 * (sum_exp - d + ell[None, :] * vsum + delta[None, :] * sum_exp_e2)


_ABAR: dict[tuple[int, str], tuple[Schedule, torch.Tensor]] = {}


def abar_tensor(schedule: Schedule, device: torch.device | str) -> torch.Tensor:
    """ᾱ over nodes as a float64 tensor on ``device``, cached per (schedule, device)."""
    key = (id(schedule), str(device))
    hit = _ABAR.get(key)
    if hit is None or hit[0] is not schedule:
        hit = (schedule, torch.tensor(np.array(schedule.alphas_cumprod), dtype=torch.float64, device=device))
        _ABAR[key] = hit
    return hit[1]


def decoder_node(schedule: Schedule, t: int, v: torch.Tensor | None = None) -> NodeStats:
    """The node statistics of a decoder edge t → 0 that need no table (ᾱ_t, β̃_min, v)."""
    require(1 <= t <= schedule.T, f"decoder node t must be in 1..{schedule.T}, got {t}")
    return NodeStats(t=t, abar=float(schedule.abar(t)), beta_tilde_min=schedule.beta_tilde_min, v=v)


def decoder_term(schedule: Schedule, x0: torch.Tensor, x0_hat: torch.Tensor, t: int, rule: VarianceRule,
                 v: torch.Tensor | None = None) -> torch.Tensor:
    """L(t, 0) = −Σ_j log P(x₀ⱼ | x̂₀ⱼ, σ²_dec(t)): the discretised-Gaussian decoder term with the
    rule's decoder σ² (:mod:`ddpmdp.variances`; scalar rules: their decoder candidate, the same
    floats as the candidate column of a table pass). (B,) float64 nats per image."""
    spec = get_rule(rule)
    if spec.cells != "summed":
        raise DdpmdpError(f"variance rule {rule} takes its decoder σ² from a selection table: use a schedule "
                          "written by ddpmdp solve --json")
    node = decoder_node(schedule, t, v)
    if spec.scalar:
        return discretized_gaussian_nll(x0, x0_hat, spec.decoder_sigma2(node)[None])[:, 0]
    require(v is not None, f"{rule} needs v")
    plus, minus = bin_edges(x0.double(), x0_hat.double())
    inv_std = torch.exp(-(0.5 * spec.decoder_log_sigma2(node)).double())
    return -log_bin_probability(plus, minus, inv_std).flatten(1).sum(1)


def scalar_cell(d: int, beta_tilde, sigma2, c2, m):
    """The expected KL of an edge t → s with a scalar σ² (``method.md`` §5.2), r = β̃_{t,s}/σ²:

        L(t, s) = (d/2)(r − 1 − log r) + c²_{t,s}/(2σ²)·M,

    M = ‖x₀ − x̂₀(x_t, t)‖² (per image, or its mean M(t)). The one implementation of the scalar
    cell: table rows, rescoring and evaluation with a recorded σ² call it. numpy arrays or torch
    tensors (float64), broadcasting; nats (per image if M is)."""
    r = beta_tilde / sigma2
    log = torch.log if isinstance(r, torch.Tensor) else np.log if isinstance(r, np.ndarray) else math.log
    return 0.5 * d * (r - 1.0 - log(r)) + c2 / (2.0 * sigma2) * m


def kl_scalar(schedule: Schedule, x0: torch.Tensor, x0_hat: torch.Tensor, t: int, s: int, sigma2: float) -> torch.Tensor:
    """L(t, s) for 1 ≤ s < t with a given scalar σ² (:func:`scalar_cell` with per-image M). (B,) float64 nats."""
    q = schedule.stride(t, s)
    m = (x0 - x0_hat).double().pow(2).flatten(1).sum(1)
    return scalar_cell(x0[0].numel(), float(q.beta_tilde), float(sigma2), float(q.c2), m)


def edge_term(schedule: Schedule, x0: torch.Tensor, x0_hat: torch.Tensor, t: int, s: int, rule: VarianceRule,
              sigma2: float | None = None, v: torch.Tensor | None = None) -> torch.Tensor:
    """The term of one edge t → s, (B,) float64 nats per image: with a given scalar ``sigma2`` (a
    schedule's recorded σ², any scalar rule) :func:`kl_scalar` / the decoder NLL with that σ²;
    without one, ``rule``'s own variance (:func:`kl_row` / :func:`decoder_term`)."""
    if sigma2 is not None and math.isfinite(sigma2):
        if s == 0:
            return discretized_gaussian_nll(x0, x0_hat, [sigma2])[:, 0]
        return kl_scalar(schedule, x0, x0_hat, t, s, sigma2)
    if s == 0:
        return decoder_term(schedule, x0, x0_hat, t, rule, v)
    return kl_row(schedule, x0, x0_hat, t, np.array([s]), rule, v)[:, 0]
