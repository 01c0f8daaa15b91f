"""Reverse-process variance rules for an edge t → s, and the decoder convention.

Edges with s ≥ 1 (``method.md`` §2.2):

=================  ===========================================================
``fixed_small``    σ²_{t,s} = β̃_{t,s}
``fixed_large``    σ²_{t,s} = β_{t,s}
``learned_range``  log σ²_j = v_j·log β_{t,s} + (1 − v_j)·log β̃_{t,s}, per pixel,
                   with the *stride's* β and β̃ (never the original chain's β_t)
``analytic``       σ²_{t,s} = β̃_{t,s} + c²_{t,s}·clip(((1 − ᾱ_t)/ᾱ_t)(1 − Γ_t), 0, 1),
                   Γ_t = E‖ε_θ(x_t, t)‖²/d (Analytic-DPM, the code's clip)
``optimal``        σ²_{t,s} = β̃_{t,s} + c²_{t,s}·M(t)/d, M(t) = E‖x₀ − x̂₀(x_t, t)‖²:
                   the KL-optimal isotropic variance for the network's own mean (§5.2a)
``best``           per edge the smaller cell of ``learned_range`` and ``optimal``
                   (learned-variance models only)
=================  ===========================================================

``analytic``, ``optimal`` and ``best`` need statistics of the selection pass (Γ_t, M(t)):
their σ² are computed by :mod:`ddpmdp.rescore` from a table and then travel with the
schedule (:mod:`ddpmdp.inference_schedule`); the evaluator and the sampler use those values.

Decoder edge t → 0 (the ddpmdp convention, ``method.md`` §4): mean x̂₀(x_t, t)
and a variance that depends only on t and the forward pass at t:

=================  ===========================================================
``fixed_small``    β̃_min
``fixed_large``    β̃_min if t = 1, else 1 − ᾱ_t
``learned_range``  exp(v_j·log(1 − ᾱ_t) + (1 − v_j)·log β̃_min), per pixel
``analytic``       the candidate (below) nearest in log σ² to
                   max(clip(((1 − ᾱ_t)/ᾱ_t)(1 − Γ_t), 0, 1), β̃_min)
``optimal``        the candidate with the least mean decoder NLL on the selection table
=================  ===========================================================

Decoder candidates (:func:`decoder_candidates`): ``N_DECODER_CANDIDATES`` = 8 values of σ²,
geometric from β̃_min to max(1 − ᾱ_t, β̃_min) inclusive. They contain the ``fixed_small``
(first) and ``fixed_large`` (last for t ≥ 2, first for t = 1) decoder variances, so every
scalar rule's decoder cell is one of the candidates' sums.

The table, the evaluator and the sampler all call these functions.
"""
from __future__ import annotations

import math
from typing import Literal, get_args

import numpy as np
import torch

from ddpmdp.errors import DdpmdpError, require
from ddpmdp.schedules import Schedule

__all__ = ["VarianceRule", "VARIANCE_RULES", "check_rule", "default_rule", "edge_log_variance",
           "decoder_log_variance", "decoder_variance", "DECODER_CONVENTION", "SCALAR_RULES", "DERIVED_RULES",
           "N_DECODER_CANDIDATES", "decoder_candidates", "candidate_grid", "analytic_covariance", "sums_rule",
           "ANALYTIC_CLIP"]

VarianceRule = Literal["fixed_small", "fixed_large", "learned_range", "analytic", "optimal", "best"]
VARIANCE_RULES: tuple[str, ...] = get_args(VarianceRule)
SCALAR_RULES: tuple[str, ...] = ("fixed_small", "fixed_large", "analytic", "optimal")
"""Rules with one σ² per edge (isotropic): their cells are closed forms of M(t) (§5.2)."""
DERIVED_RULES: tuple[str, ...] = ("analytic", "optimal", "best")
"""Rules whose σ² need statistics of the whole selection pass (Γ_t, M(t), decoder candidates)."""
N_DECODER_CANDIDATES = 8
ANALYTIC_CLIP = ("Analytic-DPM code clip: ((1-abar_t)/abar_t)(1-Gamma_t) clipped to [0, 1]; decoder variance "
                 "floored at beta_tilde_min and snapped to the nearest decoder candidate in log sigma^2")
DECODER_CONVENTION = ("ddpmdp-v1: decoder t->0 has mean x0_hat(x_t,t) and variance fixed_small: beta_tilde_min; "
                      "fixed_large: beta_tilde_min if t=1 else 1-abar_t; learned_range: "
                      "exp(v*log(1-abar_t)+(1-v)*log(beta_tilde_min))")


def default_rule(learned_variance: bool) -> VarianceRule:
    """The one place that decides a model's default rule: ``learned_range`` for a model that
    outputs v, else ``fixed_large`` (the paper's choice for L_simple models)."""
    return "learned_range" if learned_variance else "fixed_large"


def sums_rule(rule: str, learned_variance: bool) -> VarianceRule:
    """The rule whose per-image cells a table pass sums in ``s1``/``s2``: ``rule`` itself for the
    three rules with per-image cells, else the model's default rule (derived rules are computed
    from the node statistics afterwards)."""
    return default_rule(learned_variance) if rule in DERIVED_RULES else rule  # type: ignore[return-value]


def decoder_candidates(schedule: Schedule, t: int) -> np.ndarray:
    """The documented decoder σ² candidates at node t: ``N_DECODER_CANDIDATES`` values, geometric
    from β̃_min to max(1 − ᾱ_t, β̃_min), both ends included (float64)."""
    return candidate_grid(float(schedule.abar(t)), float(schedule.beta_tilde_min))


def candidate_grid(abar_t: float, beta_tilde_min: float) -> np.ndarray:
    """:func:`decoder_candidates` from ᾱ_t and β̃_min (what a table file records)."""
    lo = float(beta_tilde_min)
    hi = max(1.0 - float(abar_t), lo)
    c = np.exp(np.linspace(math.log(lo), math.log(hi), N_DECODER_CANDIDATES))
    c[0], c[-1] = lo, hi  # exactly the fixed_small / fixed_large decoder values
    return c


def analytic_covariance(abar_t, gamma) -> np.ndarray:
    """clip(((1 − ᾱ_t)/ᾱ_t)(1 − Γ_t), 0, 1): Analytic-DPM's per-dimension covariance of x₀ | x_t,
    clipped as its code does."""
    a = np.asarray(abar_t, dtype=np.float64)
    return np.clip((1.0 - a) / a * (1.0 - np.asarray(gamma, dtype=np.float64)), 0.0, 1.0)


def check_rule(rule: str, learned_variance: bool) -> None:
    """Fail fast on an unknown rule, or learned_range for a model without a v output."""
    require(rule in VARIANCE_RULES, f"unknown variance rule {rule!r}: use one of {', '.join(VARIANCE_RULES)}")
    if rule == "best" and not learned_variance:
        raise DdpmdpError("variance rule best (per edge the better of learned_range and optimal) needs a "
                          "learned-variance model; for this model use optimal")
    if rule == "learned_range" and not learned_variance:
        raise DdpmdpError("variance rule learned_range needs a model that outputs v (a learned-variance model); "
                          "this model predicts ε only — use fixed_small or fixed_large")


def edge_log_variance(schedule: Schedule, t: int, s, rule: VarianceRule, v: torch.Tensor | None = None):
    """log σ²_{t,s} for 1 ≤ s < t. Scalar rules return a float64 numpy array shaped like s;
    ``learned_range`` needs v (B, C, H, W) and a single s, and returns a tensor like v."""
    s_arr = np.asarray(s)
    require(bool(np.all((s_arr >= 1) & (s_arr < t))), "edge_log_variance needs 1 <= s < t; use decoder_log_variance for s = 0")
    log_beta = np.log(schedule.beta(t, s_arr))
    log_beta_tilde = np.log(schedule.beta_tilde(t, s_arr))
    if rule == "fixed_small":
        return log_beta_tilde
    if rule == "fixed_large":
        return log_beta
    if rule == "learned_range":
        require(v is not None and s_arr.ndim == 0, "learned_range needs v and a single s")
        assert v is not None
        return v * float(log_beta) + (1.0 - v) * float(log_beta_tilde)
    if rule in DERIVED_RULES:
        raise DdpmdpError(f"variance rule {rule} takes its σ² from a selection table: use a schedule written by "
                          "ddpmdp solve --json (dp:SOLVED.json:K), which records each edge's σ²")
    raise DdpmdpError(f"unknown variance rule {rule!r}")


def decoder_variance(schedule: Schedule, t: int, rule: str) -> float:
    """σ²_dec(t) of a fixed rule, exactly the value of its decoder candidate (:func:`decoder_candidates`)."""
    c = decoder_candidates(schedule, t)
    if rule == "fixed_small":
        return float(c[0])
    require(rule == "fixed_large", f"decoder_variance is for fixed_small and fixed_large, not {rule!r}")
    return float(c[0] if t == 1 else c[-1])


def decoder_log_variance(schedule: Schedule, t: int, rule: VarianceRule, v: torch.Tensor | None = None):
    """log σ²_dec(t) of the decoder edge t → 0 (the ddpmdp convention above): a float for
    scalar rules, a tensor like v for ``learned_range``."""
    require(1 <= t <= schedule.T, f"decoder node t must be in 1..{schedule.T}, got {t}")
    log_min = math.log(schedule.beta_tilde_min)
    if rule == "fixed_small":
        return log_min
    if rule == "fixed_large":
        return log_min if t == 1 else math.log(1.0 - float(schedule.abar(t)))
    if rule == "learned_range":
        require(v is not None, "learned_range needs v")
        assert v is not None
        return v * math.log(1.0 - float(schedule.abar(t))) + (1.0 - v) * log_min
    if rule in DERIVED_RULES:
        raise DdpmdpError(f"variance rule {rule} takes its decoder σ² from a selection table: use a schedule "
                          "written by ddpmdp solve --json")
    raise DdpmdpError(f"unknown variance rule {rule!r}")
