"""ε-prediction training of small improved-diffusion UNets with the paper's three objectives.

Notation (``method.md`` §1): nodes n = 0..T, x_t = √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε, d = C·H·W, and the
network output at node t is ε̂ (C channels) and, for learned-range models, o (C channels) with
v = (o + 1)/2. Per image, with t drawn from nodes 1..T:

* ``L_simple`` = (1/d)·‖ε − ε̂‖², the mean over pixels;
* L_t (nats, summed over the d dimensions) is the per-t ELBO term in ddpmdp nodes:
  KL(q(x_{t−1} | x_t, x₀) ‖ p_θ(x_{t−1} | x_t)) for t ≥ 2 and the discretised decoder
  −log p_θ(x₀ | x₁) for t = 1, computed with :func:`ddpmdp.elbo_terms.kl_row` /
  :func:`~ddpmdp.elbo_terms.decoder_term` on x̂₀ = :func:`~ddpmdp.elbo_terms.predict_x0`
  (``clip=False``) with the ``learned_range`` rule — the conventions the evaluator uses;
* ``L_vlb`` = T·L_t/(d·ln 2), in bits/dim: for t uniform on 1..T its mean is the
  full-chain −ELBO in bits/dim minus the (parameter-free) prior term.

Objectives (improved-diffusion ``gaussian_diffusion.training_losses`` with
``rescale_learned_sigmas=True``):

* ``simple`` — loss = L_simple, t uniform; ε-only network (fixed variance, evaluated with
  ``fixed_large``);
* ``hybrid`` — loss = L_simple + λ·L_vlb with λ = 0.001 and L_t computed from **ε̂.detach()**
  and the live v (the mean learns only from L_simple); since improved-diffusion scales its
  per-t vb term in bits/dim by T/1000, this is the same number; t uniform;
* ``vlb`` — loss = w_t·L_vlb with t drawn by :class:`LossSecondMomentResampler`
  (p_t ∝ √E[L_t²] once every t has 10 recorded losses, mixed with 0.001 uniform) and
  w_t = 1/(T·p_t), so E[w_t·L_vlb] is the uniform-t mean.

The batch loss is the mean over images of w·loss. :func:`~ddpmdp.training.loop.train` runs AdamW with an EMA of the
weights, checkpoints atomically and resumes exactly, then writes the EMA weights as float16
``NAME.safetensors`` and a JSON model card with held-out full-chain bits/dim.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ddpmdp.elbo_terms import decoder_term, kl_row, predict_x0
from ddpmdp.errors import require
from ddpmdp.schedules import Schedule
from ddpmdp.training.config import HYBRID_LAMBDA, OBJECTIVES

__all__ = [
    "LossTerms",
    "compute_losses",
        ]


# ---- losses -------------------------------------------------------------------------
@dataclass
class LossTerms:
    """Per-image terms (B,): ``mse`` = L_simple; ``L_t`` nats (None for ``simple``); ``vlb`` =
    T·L_t/(d ln 2) bits/dim (None for ``simple``); ``loss`` = the objective before the
    importance weight."""

    mse: torch.Tensor
    L_t: torch.Tensor | None
    vlb: torch.Tensor | None
    loss: torch.Tensor


def compute_losses(schedule: Schedule, objective: str, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor,
                   eps: torch.Tensor, out: torch.Tensor, *, hybrid_lambda: float = HYBRID_LAMBDA) -> LossTerms:
    """The per-image objective from one network output ``out`` (B, C or 2C, H, W) at nodes t (B,).

    L_simple = mean_j (ε − ε̂)²_j. For ``hybrid``/``vlb``, v = (o + 1)/2 and, per distinct t in
    the batch, x̂₀ = predict_x0(x_t, t, ε̂′, clip=False) with ε̂′ = ε̂.detach() (hybrid) or ε̂ (vlb),
    then L_t = decoder_term(…, 1, learned_range, v) at t = 1 and
    kl_row(…, t, [t − 1], learned_range, v) at t ≥ 2 (nats per image); L_vlb = T·L_t/(d ln 2).
    loss = L_simple (simple), L_simple + λ·L_vlb (hybrid) or L_vlb (vlb).
    """
    require(objective in OBJECTIVES, f"unknown objective {objective!r}: use simple, hybrid or vlb")
    C = x0.shape[1]
    d = x0[0].numel()
    eps_hat = out[:, :C]
    mse = (eps - eps_hat).pow(2).flatten(1).mean(1)
    if objective == "simple":
        require(out.shape[1] == C, f"objective simple needs an ε-only network ({C} output channels), got "
                f"{out.shape[1]}; use an architecture with learn_sigma=False")
        return LossTerms(mse, None, None, mse)
    require(out.shape[1] == 2 * C, f"objective {objective} needs a learned-variance network ({2 * C} output "
            f"channels: ε and v), got {out.shape[1]}; use an architecture with learn_sigma=True")
    v = (out[:, C:] + 1.0) * 0.5
    eps_for_vb = eps_hat.detach() if objective == "hybrid" else eps_hat
    rows, vals = [], []
    for tv in torch.unique(t).tolist():
        idx = (t == tv).nonzero().squeeze(1)
        x0_hat = predict_x0(schedule, x_t[idx], tv, eps_for_vb[idx], clip=False)
        if tv == 1:
            term = decoder_term(schedule, x0[idx], x0_hat, 1, "learned_range", v[idx])
        else:
            term = kl_row(schedule, x0[idx], x0_hat, tv, np.array([tv - 1]), "learned_range", v[idx])[:, 0]
        rows.append(idx)
        vals.append(term)
    L_t = torch.zeros(x0.shape[0], dtype=torch.float64, device=x0.device).index_copy(
        0, torch.cat(rows), torch.cat(vals))
    vlb = (L_t * (schedule.T / (d * math.log(2.0)))).float()
    loss = mse + hybrid_lambda * vlb if objective == "hybrid" else vlb
    return LossTerms(mse, L_t, vlb, loss)
