"""Reverse-process variance rules: one registry entry per rule, one function that picks the rule.

A rule is a :class:`Rule` in :data:`RULES`, named by a :data:`VarianceRule` string (files,
command lines and schedules store the **name**, never a position). Each entry states how a
table pass obtains its cells, whether it is isotropic, whether it needs a learned-variance model,
which node statistics it needs, its σ² for any edge s ≥ 1 (``Rule.sigma2`` / ``Rule.log_sigma2``,
``method.md`` §2.2) and its decoder σ² (``Rule.decoder_sigma2`` / ``Rule.decoder_log_sigma2``, §4):

``fixed_small``
    σ²_{t,s} = β̃_{t,s}; decoder β̃_min.
``fixed_large``
    σ²_{t,s} = β_{t,s}; decoder β̃_min if t = 1, else 1 − ᾱ_t.
``learned_range``
    per pixel log σ²_j = v_j log β_{t,s} + (1 − v_j) log β̃_{t,s}, with the *stride's* β and β̃
    (never the original chain's β_t); decoder exp(v_j log(1 − ᾱ_t) + (1 − v_j) log β̃_min).
``analytic``
    σ²_{t,s} = β̃_{t,s} + c²_{t,s}·clip(((1 − ᾱ_t)/ᾱ_t)(1 − Γ_t), 0, 1) (Analytic-DPM, the code's
    clip); decoder the candidate nearest in log σ² to max(that clip, β̃_min).
``optimal``
    σ²_{t,s} = β̃_{t,s} + c²_{t,s}·M(t)/d, the KL-optimal isotropic σ² for the network's own mean
    (§5.2a); decoder the candidate with the least mean NLL on the selection table.
``best``
    per edge the smaller cell of ``learned_range`` and ``optimal`` (learned-variance models only).

with M(t) = E‖x₀ − x̂₀(x_t, t)‖² and Γ_t = E‖ε_θ(x_t, t)‖²/d. ``analytic``, ``optimal`` and
``best`` are **derived**: their σ² need statistics of a whole selection pass, so
:mod:`ddpmdp.rescore` computes them from a table and they then travel with the schedule
(:mod:`ddpmdp.inference_schedule`). The other three have per-image cells that a pass sums.

Decoder candidates (:func:`decoder_candidates`): ``N_DECODER_CANDIDATES`` = 8 values of σ²,
geometric from β̃_min to max(1 − ᾱ_t, β̃_min) inclusive. Every scalar rule's decoder σ² is one of
them (``fixed_small`` the first, ``fixed_large`` the last for t ≥ 2 and the first for t = 1), so
one batch of candidate NLLs serves every scalar rule's decoder cell.

:func:`resolve_rule` is the one place that decides which rule a call uses (the requested one,
else the model's own) and refuses an impossible one; the table pass, the rescorer, the evaluator
and the sampler all take σ² from ``RULES[name]`` (the one rule → σ² map).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Literal, cast, get_args

import numpy as np

from ddpmdp.errors import DdpmdpError
from ddpmdp.schedules import Schedule, Stride

__all__ = ["VarianceRule", "Rule", "NodeStats", "RULES", "VARIANCE_RULES", "resolve_rule", "get_rule", "check_rule",
           "default_rule", "sums_rule", "DECODER_CONVENTION", "SCALAR_RULES", "DERIVED_RULES",
           "N_DECODER_CANDIDATES", "decoder_candidates", "candidate_grid", "analytic_covariance", "ANALYTIC_CLIP"]

VarianceRule = Literal["fixed_small", "fixed_large", "learned_range", "analytic", "optimal", "best"]
"""A rule's name: what files, schedules and command lines store."""
N_DECODER_CANDIDATES = 8
ANALYTIC_CLIP = ("Analytic-DPM code clip: ((1-abar_t)/abar_t)(1-Gamma_t) clipped to [0, 1]; decoder variance "
                 "floored at beta_tilde_min and snapped to the nearest decoder candidate in log sigma^2")
DECODER_CONVENTION = ("ddpmdp-v1: decoder t->0 has mean x0_hat(x_t,t) and variance fixed_small: beta_tilde_min; "
                      "fixed_large: beta_tilde_min if t=1 else 1-abar_t; learned_range: "
                      "exp(v*log(1-abar_t)+(1-v)*log(beta_tilde_min))")


@dataclass(frozen=True)
class NodeStats:
    """What the from-node t of an edge contributes to σ²; scalars, or arrays over nodes shaped to
    broadcast against a :class:`~ddpmdp.schedules.Stride` (e.g. (G, 1) against (G, G)).

    ``t``: node; ``abar``: ᾱ_t; ``beta_tilde_min``: β̃_min; ``m_per_dim``: M(t)/d; ``gamma``: Γ_t;
    ``candidate_nll``: mean decoder NLL per candidate (…, N) nats; ``v``: the network's per-pixel
    fraction (B, C, H, W). Only the fields a rule lists in ``Rule.node_stats`` are read."""

    t: Any = None
    abar: Any = None
    beta_tilde_min: float | None = None
    m_per_dim: Any = None
    gamma: Any = None
    candidate_nll: Any = None
    v: Any = None

    def candidates(self) -> np.ndarray:
        """The decoder candidates at these nodes, (…, N) float64 (:func:`candidate_grid`)."""
        assert self.beta_tilde_min is not None
        return candidate_grid(self.abar, self.beta_tilde_min)


@dataclass(frozen=True)
class Rule:
    """One variance rule. ``cells``: ``summed`` (a table pass sums per-image cells of this rule)
    or ``derived`` (computed afterwards from node statistics, :mod:`ddpmdp.rescore`); ``scalar``:
    one σ² per edge (isotropic); ``needs_v``: needs a learned-variance model; ``node_stats``: the
    statistics of the pass its σ² use (``M``, ``Gamma``, ``decoder_candidates``); ``parts``: for a
    per-edge choice between rules (``best``), the rules it chooses from; ``edge`` and ``decoder``:
    the rule's σ² maps (σ² for a scalar rule, log σ² per pixel for ``learned_range``; the decoder
    map of a scalar rule returns the index of its decoder candidate)."""

    name: VarianceRule
    cells: Literal["summed", "derived"]
    scalar: bool
    needs_v: bool
    node_stats: tuple[str, ...]
    description: str
    edge: Callable[[Stride, NodeStats], Any] | None = None
    decoder: Callable[[NodeStats], Any] | None = None
    parts: tuple[VarianceRule, ...] = ()

    def _edge(self, q: Stride, node: NodeStats):
        if self.edge is None:
            raise DdpmdpError(f"variance rule {self.name} has no σ² of its own: it chooses per edge between "
                              f"{' and '.join(self.parts)} (see ddpmdp.rescore)")
        return self.edge(q, node)

    def sigma2(self, q: Stride, node: NodeStats):
        """σ²_{t,s} of edges s ≥ 1 of a scalar rule, from their stride quantities and the from-node's
        statistics: float64 shaped like the broadcast of ``q`` and ``node``."""
        if not self.scalar and self.edge is not None:
            raise DdpmdpError(f"variance rule {self.name} has a σ² per pixel: use log_sigma2")
        return self._edge(q, node)

    def log_sigma2(self, q: Stride, node: NodeStats):
        """log σ²_{t,s}: per pixel for ``learned_range`` (a tensor like ``node.v``; the rule
        interpolates log-variances), else the log of :meth:`sigma2`."""
        if self.scalar:
            s2 = self._edge(q, node)
            return _log(s2)
        return self._edge(q, node)

    def decoder_choice(self, node: NodeStats) -> np.ndarray:
        """Index into the decoder candidates of this scalar rule's σ²_dec at ``node`` (int64, shaped like ``node.t``)."""
        if not self.scalar or self.decoder is None:
            raise DdpmdpError(f"variance rule {self.name} has no scalar decoder σ²")
        return np.asarray(self.decoder(node), dtype=np.int64)

    def decoder_sigma2(self, node: NodeStats) -> np.ndarray:
        """σ²_dec of this scalar rule at ``node``: its candidate (float64, shaped like ``node.t``)."""
        idx = self.decoder_choice(node)
        return np.take_along_axis(node.candidates(), idx[..., None], axis=-1)[..., 0]

    def decoder_log_sigma2(self, node: NodeStats):
        """log σ²_dec per pixel of a per-pixel rule (``learned_range``), a tensor like ``node.v``."""
        if self.scalar or self.decoder is None:
            raise DdpmdpError(f"variance rule {self.name} has no per-pixel decoder σ²")
        return self.decoder(node)


def _log(x):
    """log of a numpy array or number, or of a torch tensor (its own ``.log()``: this module imports
    no torch, so that the command line's help can list the rules without it)."""
    return np.log(x) if isinstance(x, (np.ndarray, np.generic, float, int)) else x.log()


def _learned_edge(q: Stride, n: NodeStats):
    log_beta, log_bt = _log(q.beta), _log(q.beta_tilde)
    return n.v * log_beta + (1.0 - n.v) * log_bt


def _learned_decoder(n: NodeStats):
    assert n.beta_tilde_min is not None
    return n.v * math.log(1.0 - float(n.abar)) + (1.0 - n.v) * math.log(n.beta_tilde_min)


def _optimal_decoder(n: NodeStats) -> np.ndarray:
    if n.candidate_nll is None:
        raise DdpmdpError("this table has no decoder-candidate sums: rebuild it with --variance analytic, optimal "
                          "or best")
    return np.argmin(n.candidate_nll, axis=-1)


def _analytic_decoder(n: NodeStats) -> np.ndarray:
    assert n.beta_tilde_min is not None
    target = np.maximum(analytic_covariance(n.abar, n.gamma), n.beta_tilde_min)
    return np.argmin(np.abs(np.log(n.candidates()) - np.log(target)[..., None]), axis=-1)


RULES: dict[str, Rule] = {r.name: r for r in (
    Rule("fixed_small", "summed", True, False, (), "σ² = β̃_{t,s}, the posterior variance",
         lambda q, n: q.beta_tilde, lambda n: np.zeros_like(np.asarray(n.t))),
    Rule("fixed_large", "summed", True, False, (), "σ² = β_{t,s}, the forward jump's variance",
         lambda q, n: q.beta, lambda n: np.where(np.asarray(n.t) == 1, 0, N_DECODER_CANDIDATES - 1)),
    Rule("learned_range", "summed", False, True, (), "per pixel log σ² = v log β + (1 − v) log β̃ from the network's v",
         _learned_edge, _learned_decoder),
    Rule("analytic", "derived", True, False, ("Gamma", "decoder_candidates"),
         "σ² = β̃ + c²·clip(((1 − ᾱ_t)/ᾱ_t)(1 − Γ_t), 0, 1) (Analytic-DPM) from the selection images",
         lambda q, n: q.beta_tilde + q.c2 * analytic_covariance(n.abar, n.gamma), _analytic_decoder),
    Rule("optimal", "derived", True, False, ("M", "decoder_candidates"),
         "σ² = β̃ + c²·M(t)/d, the KL-optimal isotropic σ² for the network's mean, on the selection images",
         lambda q, n: q.beta_tilde + q.c2 * n.m_per_dim, _optimal_decoder),
    Rule("best", "derived", False, True, ("M", "decoder_candidates"),
         "per edge the smaller cell of learned_range and optimal, on the selection images",
         parts=("learned_range", "optimal")),
)}
"""The registry, in the order of :data:`VarianceRule` (the order means nothing: files store names)."""
assert tuple(RULES) == get_args(VarianceRule)
VARIANCE_RULES: tuple[str, ...] = tuple(RULES)
SCALAR_RULES: tuple[str, ...] = tuple(n for n, r in RULES.items() if r.scalar)
"""Rules with one σ² per edge (isotropic): their cells are closed forms of M(t) (§5.2)."""
DERIVED_RULES: tuple[str, ...] = tuple(n for n, r in RULES.items() if r.cells == "derived")
"""Rules whose σ² need statistics of the whole selection pass (Γ_t, M(t), decoder candidates)."""


def get_rule(name: str) -> Rule:
    """The registry entry of a rule name; refuses an unknown name in one line."""
    rule = RULES.get(name)
    if rule is None:
        raise DdpmdpError(f"unknown variance rule {name!r}: use one of {', '.join(VARIANCE_RULES)}")
    return rule


def default_rule(learned_variance: bool) -> VarianceRule:
    """A model's default rule when its checkpoint names none: ``learned_range`` for a model that
    outputs v, else ``fixed_large`` (the paper's choice for L_simple models)."""
    return "learned_range" if learned_variance else "fixed_large"


def check_rule(rule: str, learned_variance: bool) -> None:
    """Fail fast on an unknown rule, or a rule that needs v for a model without a v output."""
    spec = get_rule(rule)
    if spec.needs_v and not learned_variance:
        if spec.parts:
            raise DdpmdpError(f"variance rule {rule} ({spec.description}) needs a learned-variance model; for "
                              "this model use optimal")
        raise DdpmdpError(f"variance rule {rule} needs a model that outputs v (a learned-variance model); "
                          "this model predicts ε only — use fixed_small or fixed_large")


def resolve_rule(requested: str | None, model: Any) -> VarianceRule:
    """The one place that decides the rule a call uses: ``requested`` if given, else the model's own
    (``model.variance``; for a bare bool ``learned_variance``, :func:`default_rule`). ``model`` is a
    model (with ``learned_variance`` and ``variance``) or its ``learned_variance`` flag. Refuses,
    before any work and in one line, an unknown rule or one the model cannot use."""
    if isinstance(model, (bool, np.bool_)):
        learned, own = bool(model), default_rule(bool(model))
    else:
        learned, own = bool(model.learned_variance), getattr(model, "variance", None) or default_rule(
            bool(model.learned_variance))
    name = requested or own
    check_rule(name, learned)
    return cast(VarianceRule, name)


def sums_rule(rule: str, learned_variance: bool) -> VarianceRule:
    """The rule whose per-image cells a table pass sums in ``s1``/``s2``: ``rule`` itself for the
    rules with summed cells, else the model's default rule (derived rules are computed from the
    node statistics afterwards)."""
    return default_rule(learned_variance) if get_rule(rule).cells == "derived" else cast(VarianceRule, rule)


def decoder_candidates(schedule: Schedule, t: int) -> np.ndarray:
    """The documented decoder σ² candidates at node t: ``N_DECODER_CANDIDATES`` values, geometric
    from β̃_min to max(1 − ᾱ_t, β̃_min), both ends included (float64)."""
    return candidate_grid(float(schedule.abar(t)), float(schedule.beta_tilde_min))


def candidate_grid(abar_t, beta_tilde_min: float) -> np.ndarray:
    """:func:`decoder_candidates` from ᾱ_t (a float or an array over nodes) and β̃_min (what a table
    file records): (…, N) float64, the same floats for an array as for each of its elements."""
    lo = float(beta_tilde_min)
    hi = np.maximum(1.0 - np.asarray(abar_t, dtype=np.float64), lo)
    log_hi = np.array([math.log(h) for h in hi.ravel()]).reshape(hi.shape)  # math.log: numpy's differs by an ulp
    c = np.exp(np.linspace(math.log(lo), log_hi, N_DECODER_CANDIDATES, axis=-1))
    c[..., 0], c[..., -1] = lo, hi  # exactly the fixed_small / fixed_large decoder values
    return c


def analytic_covariance(abar_t, gamma) -> np.ndarray:
    """clip(((1 − ᾱ_t)/ᾱ_t)(1 − Γ_t), 0, 1): Analytic-DPM's per-dimension covariance of x₀ | x_t,
    clipped as its code does."""
    a = np.asarray(abar_t, dtype=np.float64)
    return np.clip((1.0 - a) / a * (1.0 - np.asarray(gamma, dtype=np.float64)), 0.0, 1.0)
