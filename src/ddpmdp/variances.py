"""Reverse-process variance rules for an edge t → s, and the decoder convention.

Edges with s ≥ 1 (``method.md`` §2.2):

=================  ===========================================================
``fixed_small``    σ²_{t,s} = β̃_{t,s}
``fixed_large``    σ²_{t,s} = β_{t,s}
``learned_range``  log σ²_j = v_j·log β_{t,s} + (1 − v_j)·log β̃_{t,s}, per pixel,
                   with the *stride's* β and β̃ (never the original chain's β_t)
=================  ===========================================================

Decoder edge t → 0 (the ddpmdp convention, ``method.md`` §4): mean x̂₀(x_t, t)
and a variance that depends only on t and the forward pass at t:

=================  ===========================================================
``fixed_small``    β̃_min
``fixed_large``    β̃_min if t = 1, else 1 − ᾱ_t
``learned_range``  exp(v_j·log(1 − ᾱ_t) + (1 − v_j)·log β̃_min), per pixel
=================  ===========================================================

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
           "decoder_log_variance", "DECODER_CONVENTION"]

VarianceRule = Literal["fixed_small", "fixed_large", "learned_range"]
VARIANCE_RULES: tuple[str, ...] = get_args(VarianceRule)
DECODER_CONVENTION = ("ddpmdp-v1: decoder t->0 has mean x0_hat(x_t,t) and variance fixed_small: beta_tilde_min; "
                      "fixed_large: beta_tilde_min if t=1 else 1-abar_t; learned_range: "
                      "exp(v*log(1-abar_t)+(1-v)*log(beta_tilde_min))")


def default_rule(learned_variance: bool) -> VarianceRule:
    """The one place that decides a model's default rule: ``learned_range`` for a model that
    outputs v, else ``fixed_large`` (the paper's choice for L_simple models)."""
    return "learned_range" if learned_variance else "fixed_large"


def check_rule(rule: str, learned_variance: bool) -> None:
    """Fail fast on an unknown rule, or learned_range for a model without a v output."""
    require(rule in VARIANCE_RULES, f"unknown variance rule {rule!r}: use one of {', '.join(VARIANCE_RULES)}")
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
        return v * float(log_beta) + (1.0 - v) * float(log_beta_tilde)
    raise DdpmdpError(f"unknown variance rule {rule!r}")


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
        return v * math.log(1.0 - float(schedule.abar(t))) + (1.0 - v) * log_min
    raise DdpmdpError(f"unknown variance rule {rule!r}")
