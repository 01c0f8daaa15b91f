"""Any variance rule's table from one table's node statistics, without the network.

For a scalar σ²_{t,s} the cell is a closed form of one statistic per node (``method.md`` §5.2):

    L(t, s) = (d/2)(r − 1 − log r) + c²_{t,s}/(2σ²)·M(t),   r = β̃_{t,s}/σ²,   SE = c²/(2σ²)·SE(M(t)),

with M(t) = E‖x₀ − x̂₀(x_t, t)‖². Per rule (``variances``):

* ``fixed_small`` σ² = β̃, ``fixed_large`` σ² = β;
* ``analytic`` σ² = β̃ + c²·clip(((1 − ᾱ_t)/ᾱ_t)(1 − Γ_t), 0, 1) (Analytic-DPM, the code's clip);
* ``optimal`` σ² = β̃ + c²·M(t)/d, the minimiser of the cell over σ² (§5.2a); its cell is
  (d/2)·log(1 + c²M(t)/(dβ̃)), never above any other scalar rule's cell from the same M(t);
* ``best`` (learned-variance models): the cell-wise minimum of ``learned_range`` and ``optimal``.
  Each edge's cost still depends on that edge only, so the DP over the minimum stays exact; the
  table records in ``edge_rule`` which rule each cell uses.

The decoder column uses the decoder-candidate sums (:func:`ddpmdp.variances.decoder_candidates`):
fixed rules their own candidate, ``optimal`` the candidate with the least mean NLL on this
(selection) table, ``analytic`` the candidate nearest in log σ² to its floored value.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ddpmdp.errors import require
from ddpmdp.table import ElboTable
from ddpmdp.variances import (ANALYTIC_CLIP, N_DECODER_CANDIDATES, SCALAR_RULES, VARIANCE_RULES, analytic_covariance,
                              candidate_grid, check_rule)

__all__ = ["RULE_CODE", "rescore", "attach_variances", "scalar_variances", "scalar_cells", "schedule_cells",
           "grid_quantities"]

RULE_CODE = {r: i for i, r in enumerate(VARIANCE_RULES)}


def grid_quantities(table: ElboTable) -> dict[str, np.ndarray]:
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
    a_t, a_s = abar[:, None], abar[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        beta = np.where(lower, 1.0 - a_t / a_s, np.nan)
        bt = beta * (1.0 - a_s) / (1.0 - a_t)
        c2 = a_s * beta ** 2 / (1.0 - a_t) ** 2
    return {"abar": abar, "beta_tilde_min": np.float64(bt_min), "beta": beta, "beta_tilde": bt, "c2": c2,
            "kl": lower}


def _candidates(q: dict, i: int) -> np.ndarray:
    return candidate_grid(float(q["abar"][i]), float(q["beta_tilde_min"]))


def scalar_variances(table: ElboTable, rule: str) -> tuple[np.ndarray, np.ndarray]:
    """σ² of every cell under scalar ``rule``, (G, G) with the decoder σ² in column 0 (NaN off the
    lower triangle), and the decoder candidate index per node (G,) (−1 at node 0)."""
    require(rule in SCALAR_RULES, f"{rule} is not a scalar rule ({', '.join(SCALAR_RULES)})")
    q = grid_quantities(table)
    G, d = len(table.nodes), table.dims
    if rule == "fixed_small":
        s2 = q["beta_tilde"].copy()
    elif rule == "fixed_large":
        s2 = q["beta"].copy()
    elif rule == "analytic":
        gamma, _ = table.gamma()
        require(bool(np.all(np.isfinite(gamma[1:]))), "this table has no Γ_t sums (written before they existed): "
                "rebuild it to use the analytic rule")
        cov = analytic_covariance(q["abar"], gamma)
        s2 = q["beta_tilde"] + q["c2"] * cov[:, None]
    else:
        m, _ = table.mse()
        s2 = q["beta_tilde"] + q["c2"] * (m / d)[:, None]
    dec = np.full(G, -1, dtype=np.int64)
    have = table.stats is not None and table.stats.dec_s1.shape[1] == N_DECODER_CANDIDATES
    if rule == "optimal":
        nll, _ = table.decoder_candidate_nll()
        dec[1:] = np.argmin(nll[1:], axis=1)
    for i in range(1, G):
        cand = _candidates(q, i)
        if rule == "fixed_small":
            dec[i] = 0
        elif rule == "fixed_large":
            dec[i] = 0 if int(table.nodes[i]) == 1 else N_DECODER_CANDIDATES - 1
        elif rule == "analytic":
            target = max(float(cov[i]), float(q["beta_tilde_min"]))
            dec[i] = int(np.argmin(np.abs(np.log(cand) - np.log(target))))
        s2[i, 0] = cand[dec[i]] if (have or rule != "analytic") else np.nan
    return s2, dec


def scalar_cells(table: ElboTable, sigma2: np.ndarray, dec_index: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """L and L_se (nats per image) of the cells with the given scalar σ² ((G, G), decoder in column
    0). Decoder cells come from the candidate sums (``dec_index``), or from the raw sums when the
    σ² equals the summed rule's decoder σ²."""
    q = grid_quantities(table)
    d = table.dims
    m, m_se = table.mse()
    G = len(table.nodes)
    L, L_se = np.full((G, G), np.inf), np.full((G, G), np.nan)
    k = q["kl"]
    with np.errstate(divide="ignore", invalid="ignore"):
        r = q["beta_tilde"] / sigma2
        coef = q["c2"] / (2.0 * sigma2)
        L[k] = (0.5 * d * (r - 1.0 - np.log(r)) + coef * m[:, None])[k]
        L_se[k] = (coef * m_se[:, None])[k]
    L[1:, 0], L_se[1:, 0] = _decoder_cells(table, q, sigma2[1:, 0], dec_index)
    return L, L_se


def _decoder_cells(table: ElboTable, q: dict, sig: np.ndarray, dec_index: np.ndarray | None):
    """Decoder cells for σ²_dec per node 1..G−1 (each a candidate, or the summed rule's σ²)."""
    out = [_decoder_one(table, q, i, float(sig[i - 1]), None if dec_index is None else int(dec_index[i]))
           for i in range(1, len(table.nodes))]
    return np.array([o[0] for o in out]), np.array([o[1] for o in out])


def rescore(table: ElboTable, rule: str) -> ElboTable:
    """The table of ``rule`` derived from ``table``'s raw sums (no network): L, L_se, σ² and the
    rule of every cell. ``learned_range`` and ``best`` need sums of a learned-range pass."""
    require(rule in VARIANCE_RULES, f"unknown variance rule {rule!r}: use one of {', '.join(VARIANCE_RULES)}")
    require(table.stats is not None, "this table has no raw sums (it was saved without them): rescoring needs them")
    base = table.meta.get("sums_variance", table.meta.get("variance"))
    G = len(table.nodes)
    lower = np.tril(np.ones((G, G), dtype=bool), k=-1)
    if rule in ("learned_range", "best"):
        check_rule(rule, base == "learned_range")
        require(base == "learned_range", f"{rule} needs a table whose sums are learned-range cells; this one sums "
                f"{base}")
        L, L_se = table.sums_cells()
        sigma2 = np.full((G, G), np.nan)
        codes = np.where(lower, RULE_CODE["learned_range"], -1).astype(np.int8)
        if rule == "best":
            s_opt, dec = scalar_variances(table, "optimal")
            L_opt, se_opt = scalar_cells(table, s_opt, dec)
            use = lower & (L_opt < L)
            L, L_se = np.where(use, L_opt, L), np.where(use, se_opt, L_se)
            sigma2 = np.where(use, s_opt, np.nan)
            codes = np.where(use, RULE_CODE["optimal"], codes).astype(np.int8)
    elif rule == base and rule in ("fixed_small", "fixed_large"):
        L, L_se = table.sums_cells()  # exact per-image SE from the summed cells
        sigma2, _ = scalar_variances(table, rule)
        codes = np.where(lower, RULE_CODE[rule], -1).astype(np.int8)
    else:
        sigma2, dec = scalar_variances(table, rule)
        L, L_se = scalar_cells(table, sigma2, dec)
        codes = np.where(lower, RULE_CODE[rule], -1).astype(np.int8)
    meta = dict(table.meta, variance=rule, sums_variance=base)
    if rule in ("analytic", "optimal", "best"):
        meta.update(analytic_clip=ANALYTIC_CLIP, decoder_candidates=f"{N_DECODER_CANDIDATES} values geometric from "
                    "beta_tilde_min to max(1-abar_t, beta_tilde_min), endpoints included; optimal: least mean NLL on "
                    "this table's images")
    return replace(table, L=L, L_se=L_se, meta=meta, sigma2=np.where(lower, sigma2, np.nan), edge_rule=codes)


def attach_variances(table: ElboTable, rule: str) -> ElboTable:
    """A freshly estimated table with its rule's cells, σ² and per-cell rules (what ``run_table`` returns)."""
    return rescore(table, rule)


def schedule_cells(table: ElboTable, pos: np.ndarray, rules, sigma2) -> tuple[np.ndarray, np.ndarray]:
    """Mean terms and SEs of a path's edges (grid indices ``pos``, increasing) with per-edge rules and
    σ² held fixed (a schedule from a selection table), evaluated on ``table``'s images."""
    q = grid_quantities(table)
    d = table.dims
    m, m_se = table.mse()
    terms, ses = np.empty(len(pos) - 1), np.empty(len(pos) - 1)
    for k in range(len(pos) - 1):
        i, j = int(pos[k + 1]), int(pos[k])
        rule, s2 = rules[k], float(sigma2[k])
        if rule == "learned_range":
            require(table.meta.get("sums_variance", table.meta.get("variance")) == "learned_range",
                    "a learned-range edge needs a table whose sums are learned-range cells")
            L, L_se = table.sums_cells()
            terms[k], ses[k] = L[i, j], L_se[i, j]
        elif j == 0:
            terms[k], ses[k] = _decoder_one(table, q, i, s2)
        else:
            r = q["beta_tilde"][i, j] / s2
            coef = q["c2"][i, j] / (2.0 * s2)
            terms[k] = 0.5 * d * (r - 1.0 - np.log(r)) + coef * m[i]
            ses[k] = coef * m_se[i]
    return terms, ses


def _decoder_one(table: ElboTable, q: dict, i: int, s2: float, index: int | None = None) -> tuple[float, float]:
    """The decoder cell at grid node i with σ²_dec = s2: a candidate's sums, or the raw sums when s2 is
    the summed fixed rule's decoder σ²."""
    have = table.stats is not None and table.stats.dec_s1.shape[1] == N_DECODER_CANDIDATES
    if have:
        nll, nll_se = table.decoder_candidate_nll()
        if index is None or index < 0:
            hit = np.flatnonzero(np.isclose(_candidates(q, i), s2, rtol=1e-9, atol=0.0))
            require(hit.size > 0, f"decoder σ² {s2:.6g} at node {int(table.nodes[i])} is not one of this table's "
                    "decoder candidates")
            index = int(hit[0])
        return float(nll[i, index]), float(nll_se[i, index])
    base = table.meta.get("sums_variance", table.meta.get("variance"))
    require(base in ("fixed_small", "fixed_large"), "this table has no decoder-candidate sums: rebuild it with "
            "--variance analytic, optimal or best to derive other decoder variances")
    own = scalar_variances(table, str(base))[0][i, 0]
    require(bool(np.isclose(own, s2, rtol=1e-9)), f"this table's decoder sums are for {base} only: rebuild it "
            "with --variance analytic, optimal or best to derive other decoder variances")
    L, L_se = table.sums_cells()
    return float(L[i, 0]), float(L_se[i, 0])
