"""Any variance rule's table from one table's node statistics, without the network.

For a scalar σ²_{t,s} the cell is a closed form of one statistic per node (``method.md`` §5.2),
:func:`ddpmdp.elbo_terms.scalar_cell`:

    L(t, s) = (d/2)(r − 1 − log r) + c²_{t,s}/(2σ²)·M(t),   r = β̃_{t,s}/σ²,   SE = c²/(2σ²)·SE(M(t)),

with M(t) = E‖x₀ − x̂₀(x_t, t)‖², the stride quantities of :func:`ddpmdp.schedules.stride_quantities`
and the σ² of the rule's registry entry (``ddpmdp.variances.RULES[rule].sigma2``): β̃, β,
Analytic-DPM's β̃ + c²·clip(((1 − ᾱ_t)/ᾱ_t)(1 − Γ_t), 0, 1), or the optimal β̃ + c²·M(t)/d, whose
cell (d/2)·log(1 + c²M(t)/(dβ̃)) is never above any other scalar rule's cell from the same M(t).
``best`` (learned-variance models) takes per cell the smaller of ``learned_range`` and ``optimal``:
each edge's cost still depends on that edge only, so the DP over the minimum stays exact; the
table records in ``edge_rule`` which rule each cell uses (codes of :data:`RULE_CODE`, stored in
files with their names, :mod:`ddpmdp.table`).

The decoder column uses the decoder-candidate sums (:func:`ddpmdp.variances.decoder_candidates`):
fixed rules their own candidate, ``optimal`` the candidate with the least mean NLL on this
(selection) table, ``analytic`` the candidate nearest in log σ² to its floored value.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from ddpmdp.elbo_terms import scalar_cell
from ddpmdp.errors import DdpmdpError, require
from ddpmdp.schedules import Stride, stride_quantities
from ddpmdp.table import ElboTable, require_objective
from ddpmdp.variances import (ANALYTIC_CLIP, N_DECODER_CANDIDATES, SCALAR_RULES, VARIANCE_RULES, NodeStats,
                              candidate_grid, check_rule, get_rule)

__all__ = ["RULE_CODE", "rescore", "attach_variances", "scalar_variances", "scalar_cells", "schedule_cells",
           "grid_quantities", "node_stats"]

RULE_CODE = {r: i for i, r in enumerate(VARIANCE_RULES)}
"""In-memory code of each rule in ``ElboTable.edge_rule`` (``ElboTable.edge_rule_names`` maps back)."""


def grid_quantities(table: ElboTable) -> dict[str, Any]:
    """ᾱ at the grid nodes, and per cell (i, j) β_{t,s}, β̃_{t,s}, c²_{t,s} (NaN where j ≥ i or j = 0)."""
    meta = table.meta
    if "abar_grid" in meta:
        abar, bt_min = np.asarray(meta["abar_grid"], dtype=np.float64), float(meta["beta_tilde_min"])
    else:  # tables written before ᾱ was recorded: rebuild the named schedule
        from ddpmdp.schedules import parse_schedule

        sched = parse_schedule(str(meta["schedule"]))
        abar, bt_min = np.asarray(sched.abar(table.nodes), dtype=np.float64), float(sched.beta_tilde_min)
    G = len(table.nodes)
    lower = np.tril(np.ones((G, G), dtype=bool), k=-1)
    lower[:, 0] = False
    with np.errstate(divide="ignore", invalid="ignore"):
        q = stride_quantities(abar[:, None], abar[None, :])
    return {"abar": abar, "beta_tilde_min": np.float64(bt_min), "beta": np.where(lower, q.beta, np.nan),
            "beta_tilde": np.where(lower, q.beta_tilde, np.nan), "c2": np.where(lower, q.c2, np.nan), "kl": lower}


def node_stats(table: ElboTable, q: dict, rule: str) -> NodeStats:
    """The grid nodes' statistics that ``rule`` needs (``Rule.node_stats``), each (G,) or (G, N)."""
    need = get_rule(rule).node_stats
    m = table.mse()[0] / table.dims if "M" in need else None
    gamma = None
    if "Gamma" in need:
        gamma = table.gamma()[0]
        require(bool(np.all(np.isfinite(gamma[1:]))), "this table has no Γ_t sums (written before they existed): "
                "rebuild it to use the analytic rule")
    nll = table.decoder_candidate_nll()[0] if "decoder_candidates" in need and _has_candidates(table) else None
    return NodeStats(t=np.asarray(table.nodes), abar=q["abar"], beta_tilde_min=float(q["beta_tilde_min"]),
                     m_per_dim=m, gamma=gamma, candidate_nll=nll)


def _column(node: NodeStats) -> NodeStats:
    """``node`` with its per-node fields as (G, 1) columns, to broadcast against (G, G) cells."""
    col = (lambda a: None if a is None else np.asarray(a)[:, None])  # noqa: E731
    return replace(node, t=col(node.t), abar=col(node.abar), m_per_dim=col(node.m_per_dim), gamma=col(node.gamma))


def _has_candidates(table: ElboTable) -> bool:
    return table.stats is not None and table.stats.dec_s1.shape[1] == N_DECODER_CANDIDATES


def scalar_variances(table: ElboTable, rule: str) -> tuple[np.ndarray, np.ndarray]:
    """σ² of every cell under scalar ``rule``, (G, G) with the decoder σ² in column 0 (NaN off the
    lower triangle), and the decoder candidate index per node (G,) (−1 at node 0)."""
    require(rule in SCALAR_RULES, f"{rule} is not a scalar rule ({', '.join(SCALAR_RULES)})")
    spec = get_rule(rule)
    q = grid_quantities(table)
    node = node_stats(table, q, rule)
    s2 = np.array(spec.sigma2(Stride(q["beta"], q["beta_tilde"], q["c2"]), _column(node)), dtype=np.float64)
    dec = np.full(len(table.nodes), -1, dtype=np.int64)
    rest = replace(node, t=node.t[1:], abar=node.abar[1:], gamma=None if node.gamma is None else node.gamma[1:],
                   candidate_nll=None if node.candidate_nll is None else node.candidate_nll[1:])
    dec[1:] = spec.decoder_choice(rest)
    s2[1:, 0] = np.take_along_axis(rest.candidates(), dec[1:, None], axis=1)[:, 0]
    if "decoder_candidates" in spec.node_stats and not _has_candidates(table):
        s2[1:, 0] = np.nan  # its decoder σ² is a candidate whose sums this table lacks
    return s2, dec


def scalar_cells(table: ElboTable, sigma2: np.ndarray, dec_index: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """L and L_se (nats per image) of the cells with the given scalar σ² ((G, G), decoder in column
    0). Decoder cells come from the candidate sums (``dec_index``), or from the raw sums when the
    σ² equals the summed rule's decoder σ²."""
    q = grid_quantities(table)
    m, m_se = table.mse()
    G = len(table.nodes)
    L, L_se = np.full((G, G), np.inf), np.full((G, G), np.nan)
    k = q["kl"]
    with np.errstate(divide="ignore", invalid="ignore"):
        L[k] = scalar_cell(table.dims, q["beta_tilde"], sigma2, q["c2"], m[:, None])[k]
        L_se[k] = (q["c2"] / (2.0 * sigma2) * m_se[:, None])[k]
    L[1:, 0], L_se[1:, 0] = _decoder_cells(table, q, np.arange(1, G), sigma2[1:, 0],
                                           None if dec_index is None else dec_index[1:])
    return L, L_se


def rescore(table: ElboTable, rule: str) -> ElboTable:
    """The table of ``rule`` derived from ``table``'s raw sums (no network): L, L_se, σ² and the
    rule of every cell. ``learned_range`` and ``best`` need sums of a learned-range pass."""
    require_objective(table, "elbo", "rescoring")
    spec = get_rule(rule)
    require(table.stats is not None, "this table has no raw sums (it was saved without them): rescoring needs them")
    base = table.meta.get("sums_variance", table.meta.get("variance"))
    G = len(table.nodes)
    lower = np.tril(np.ones((G, G), dtype=bool), k=-1)
    if not spec.scalar:  # per-pixel cells: only the summed learned-range cells have them
        check_rule(rule, base == "learned_range")
        require(base == "learned_range", f"{rule} needs a table whose sums are learned-range cells; this one sums "
                f"{base}")
        L, L_se = table.sums_cells()
        sigma2 = np.full((G, G), np.nan)
        codes = np.where(lower, RULE_CODE["learned_range"], -1).astype(np.int8)
        for part in spec.parts:  # best: per cell the smaller of learned_range and its scalar part
            if part == "learned_range":
                continue
            s_part, dec = scalar_variances(table, part)
            L_part, se_part = scalar_cells(table, s_part, dec)
            use = lower & (L_part < L)
            L, L_se = np.where(use, L_part, L), np.where(use, se_part, L_se)
            sigma2 = np.where(use, s_part, sigma2)
            codes = np.where(use, RULE_CODE[part], codes).astype(np.int8)
    elif rule == base and spec.cells == "summed":
        L, L_se = table.sums_cells()  # exact per-image SE from the summed cells
        sigma2, _ = scalar_variances(table, rule)
        codes = np.where(lower, RULE_CODE[rule], -1).astype(np.int8)
    else:
        sigma2, dec = scalar_variances(table, rule)
        L, L_se = scalar_cells(table, sigma2, dec)
        codes = np.where(lower, RULE_CODE[rule], -1).astype(np.int8)
    meta = dict(table.meta, variance=rule, sums_variance=base)
    if spec.cells == "derived":
        meta.update(analytic_clip=ANALYTIC_CLIP, decoder_candidates=f"{N_DECODER_CANDIDATES} values geometric from "
                    "beta_tilde_min to max(1-abar_t, beta_tilde_min), endpoints included; optimal: least mean NLL on "
                    "this table's images")
    return replace(table, L=L, L_se=L_se, meta=meta, sigma2=np.where(lower, sigma2, np.nan), edge_rule=codes,
                   edge_rule_names=VARIANCE_RULES)


def attach_variances(table: ElboTable, rule: str) -> ElboTable:
    """A freshly estimated table with its rule's cells, σ² and per-cell rules (what ``run_table`` returns)."""
    return rescore(table, rule)


def schedule_cells(table: ElboTable, pos: np.ndarray, rules, sigma2) -> tuple[np.ndarray, np.ndarray]:
    """Mean terms and SEs of a path's edges (grid indices ``pos``, increasing) with per-edge rules and
    σ² held fixed (a schedule from a selection table), evaluated on ``table``'s images."""
    q = grid_quantities(table)
    m, m_se = table.mse()
    i, j = np.asarray(pos[1:], dtype=np.int64), np.asarray(pos[:-1], dtype=np.int64)
    s2 = np.asarray(sigma2, dtype=np.float64)
    learned = np.array([r == "learned_range" for r in rules], dtype=bool)
    terms, ses = np.full(len(i), np.nan), np.full(len(i), np.nan)
    if learned.any():
        require(table.meta.get("sums_variance", table.meta.get("variance")) == "learned_range",
                "a learned-range edge needs a table whose sums are learned-range cells")
        L, L_se = table.sums_cells()
        terms[learned], ses[learned] = L[i[learned], j[learned]], L_se[i[learned], j[learned]]
    kl = ~learned & (j > 0)
    ii, jj, ss = i[kl], j[kl], s2[kl]
    terms[kl] = scalar_cell(table.dims, q["beta_tilde"][ii, jj], ss, q["c2"][ii, jj], m[ii])
    ses[kl] = q["c2"][ii, jj] / (2.0 * ss) * m_se[ii]
    dec = ~learned & (j == 0)
    if dec.any():
        terms[dec], ses[dec] = _decoder_cells(table, q, i[dec], s2[dec], None)
    return terms, ses


def _decoder_cells(table: ElboTable, q: dict, rows: np.ndarray, s2: np.ndarray, index: np.ndarray | None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Decoder cells at grid rows ``rows`` with σ²_dec = ``s2`` (each a candidate, found by value
    when ``index`` is None, or the summed fixed rule's own decoder σ²)."""
    if _has_candidates(table):
        nll, nll_se = table.decoder_candidate_nll()
        if index is None:
            cand = candidate_grid(q["abar"][rows], float(q["beta_tilde_min"]))
            hit = np.isclose(cand, s2[:, None], rtol=1e-9, atol=0.0)
            miss = ~hit.any(axis=1)
            if miss.any():
                raise DdpmdpError(f"decoder σ² {s2[miss][0]:.6g} at node {int(table.nodes[rows[miss][0]])} is not "
                                  "one of this table's decoder candidates")
            index = np.argmax(hit, axis=1)
        return nll[rows, index], nll_se[rows, index]
    base = table.meta.get("sums_variance", table.meta.get("variance"))
    require(get_rule(str(base)).scalar, "this table has no decoder-candidate sums: rebuild it with --variance "
            "analytic, optimal or best to derive other decoder variances")
    own = scalar_variances(table, str(base))[0][rows, 0]
    require(bool(np.all(np.isclose(own, s2, rtol=1e-9))), f"this table's decoder sums are for {base} only: rebuild "
            "it with --variance analytic, optimal or best to derive other decoder variances")
    L, L_se = table.sums_cells()
    return L[rows, 0], L_se[rows, 0]
