"""Variance rules as registry entries (issue 18): one rule resolver, one scalar cell, one decoder NLL
(batched candidates bitwise equal to the per-candidate reference), the learned variance kept by
``ddpmdp.sample``, and the optimistic table route refused."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import ddpmdp
from _models import random_images, tiny_adapter
from ddpmdp.data.images import to_model_space
from ddpmdp.elbo_terms import kl_row, kl_scalar, predict_x0, q_sample, scalar_cell
from ddpmdp.errors import DdpmdpError
from ddpmdp.evaluate import evaluate_paths, full_chain_bpd, path_from_table
from ddpmdp.gaussians import discretized_gaussian_log_likelihood, discretized_gaussian_nll, normal_kl
from ddpmdp.inference_schedule import InferenceSchedule
from ddpmdp.rescore import rescore
from ddpmdp.schedules import cosine_schedule, linear_schedule
from ddpmdp.table_estimation import estimate_table
from ddpmdp.variances import (DERIVED_RULES, RULES, SCALAR_RULES, VARIANCE_RULES, decoder_candidates, get_rule,
                              resolve_rule)


def test_registry_views_and_resolve_rule():
    assert VARIANCE_RULES == ("fixed_small", "fixed_large", "learned_range", "analytic", "optimal", "best")
    assert SCALAR_RULES == ("fixed_small", "fixed_large", "analytic", "optimal")
    assert DERIVED_RULES == ("analytic", "optimal", "best")
    assert [n for n, r in RULES.items() if r.needs_v] == ["learned_range", "best"]
    learned, fixed = (tiny_adapter(cosine_schedule(10), learned=b) for b in (True, False))
    assert resolve_rule(None, learned) == "learned_range" and resolve_rule(None, fixed) == "fixed_large"
    assert resolve_rule("optimal", fixed) == "optimal" and resolve_rule(None, True) == "learned_range"
    fixed.variance = "fixed_small"  # a checkpoint that names its own rule
    assert resolve_rule(None, fixed) == "fixed_small"
    for bad, model, match in [("bogus", learned, "unknown variance rule 'bogus'"),
                              ("learned_range", fixed, "use fixed_small or fixed_large"),
                              ("best", False, "for this model use optimal")]:
        with pytest.raises(DdpmdpError, match=match) as err:
            resolve_rule(bad, model)
        assert "\n" not in str(err.value)
    with pytest.raises(DdpmdpError, match="chooses per edge"):
        get_rule("best").sigma2(None, None)  # type: ignore[arg-type]


def test_scalar_cell_equals_two_gaussian_kl():
    """(d/2)(r − 1 − log r) + c²M/(2σ²) against the summed elementwise KL of N(μ_q, β̃) and N(μ_p, σ²)
    with ‖μ_q − μ_p‖² = c²M, for numpy and torch inputs."""
    rng = np.random.default_rng(0)
    d = 48
    for _ in range(20):
        bt, s2, c2 = rng.uniform(1e-5, 0.5), rng.uniform(1e-5, 0.5), rng.uniform(0.01, 3.0)
        e = rng.normal(0, 0.3, d)
        m = float(np.sum(e ** 2))
        mq, mp = torch.from_numpy(np.sqrt(c2) * e), torch.zeros(d, dtype=torch.float64)
        want = float(normal_kl(mq, torch.full((d,), math.log(bt), dtype=torch.float64), mp,
                               torch.full((d,), math.log(s2), dtype=torch.float64)).sum())
        assert scalar_cell(d, bt, s2, c2, m) == pytest.approx(want, rel=1e-12)
        got = scalar_cell(d, np.array([bt, bt]), np.array([s2, bt]), np.array([c2, c2]), m)
        assert got[0] == pytest.approx(want, rel=1e-12) and got[1] == pytest.approx(c2 * m / (2 * bt), rel=1e-14)
        f64 = dict(dtype=torch.float64)
        tgot = scalar_cell(d, torch.tensor([bt], **f64), torch.tensor([s2], **f64), torch.tensor([c2], **f64),
                           torch.tensor([[m]], **f64))
        assert float(tgot) == pytest.approx(want, rel=1e-12)


def test_table_row_and_kl_scalar_use_the_scalar_cell():
    """kl_row's fixed rules and kl_scalar with the rule's σ² agree (torch's vectorised log in the row,
    libm's for a scalar σ²: the same expression, rounding apart)."""
    sched = cosine_schedule(40)
    model = tiny_adapter(sched, learned=False, seed=2, dtype="float64")
    x0 = to_model_space(random_images(3, seed=1)).double()
    t = 33
    x_t = q_sample(sched, x0, t, torch.randn(x0.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    x0_hat = predict_x0(sched, x_t, t, model(x_t, t).eps, True)
    for rule in ("fixed_small", "fixed_large"):
        row = kl_row(sched, x0, x0_hat, t, np.arange(1, t), rule)
        for s in (1, 17, 32):
            q = sched.stride(t, s)
            s2 = float(q.beta_tilde if rule == "fixed_small" else q.beta)
            torch.testing.assert_close(row[:, s - 1], kl_scalar(sched, x0, x0_hat, t, s, s2), rtol=1e-13, atol=0)


def _old_discretized_ll(x, mean, log_scale):
    """The pre-issue-18 implementation (three logs and a select, Φ̃ as ½(1 + tanh)), kept here as an
    independent reference: the same function, evaluated with the cancellation of 1 + tanh in the
    lower tail and of Φ̃_p − Φ̃_m in the upper tail, so it agrees to ~1e-4 nats per tail pixel."""
    def cdf(z):
        return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (z + 0.044715 * z ** 3)))
    centered = x - mean
    inv_std = torch.exp(-log_scale)
    cdf_plus = cdf(inv_std * (centered + 1.0 / 255.0))
    cdf_min = cdf(inv_std * (centered - 1.0 / 255.0))
    return torch.where(x < -0.999, torch.log(cdf_plus.clamp(min=1e-12)),
                       torch.where(x > 0.999, torch.log((1.0 - cdf_min).clamp(min=1e-12)),
                                   torch.log((cdf_plus - cdf_min).clamp(min=1e-12))))


@pytest.mark.parametrize("B", [1, 3, 32])
def test_batched_decoder_candidates_are_bitwise_the_reference(B):
    """The (B, 8) candidate NLLs of one batched call equal, bit for bit (float64), the reference
    discretised Gaussian evaluated candidate by candidate (scalar or full log-scale tensors)."""
    g = torch.Generator().manual_seed(B)
    x = torch.randint(0, 256, (B, 3, 8, 8), generator=g).double() / 127.5 - 1  # includes both outer bins
    for sched, t in [(cosine_schedule(4000), 1), (cosine_schedule(4000), 2000), (linear_schedule(1000), 999)]:
        for spread in (0.02, 0.5):
            x0_hat = (x + spread * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(-1, 1).float()
            cands = decoder_candidates(sched, t)
            got = discretized_gaussian_nll(x, x0_hat, cands)
            assert got.shape == (B, 8) and got.dtype == torch.float64
            for c, v in enumerate(cands):
                for ls in (torch.full((1, 1, 1, 1), 0.5 * math.log(v), dtype=torch.float64),
                           torch.full(x.shape, 0.5 * math.log(v), dtype=torch.float64)):
                    ref = -discretized_gaussian_log_likelihood(x, x0_hat.double(), ls).flatten(1).sum(1)
                    old = -_old_discretized_ll(x, x0_hat.double(), ls).flatten(1).sum(1)
                    assert torch.equal(got[:, c], ref), (t, c)
                    torch.testing.assert_close(ref, old, rtol=1e-6, atol=0)  # measured ≤ 6.6e-8


def test_bin_probabilities_keep_their_digits_in_both_tails():
    """log P(bin) against the same approximation Φ̃ evaluated in 60-digit arithmetic (mpmath): every bin
    whose probability is above the 1e-12 clamp is right to 1e-12 relative, in the lower tail, the
    centre, the upper tail (mirrored by bin_edges) and the open outer bins; the ½(1 + tanh) form
    loses the upper tail's digits (the reason the logistic form and the mirroring exist)."""
    import mpmath

    mpmath.mp.dps = 60
    x = torch.tensor([-1.0, -1 + 2 / 255, -0.5, 0.0, 0.5, 1 - 2 / 255, 1.0], dtype=torch.float64)
    sigma = 0.03
    offsets = sigma * torch.arange(-5.5, 6.0, 0.5, dtype=torch.float64)  # pixel − mean from −5.5σ to 5.5σ
    x, mean = torch.meshgrid(x, offsets, indexing="ij")
    mean = (x - mean).clamp(-1, 1)

    def phi(z):
        a = mpmath.sqrt(2 / mpmath.pi) * (z + mpmath.mpf("0.044715") * z ** 3)
        return (1 + mpmath.tanh(a)) / 2

    def exact(xv, mv):
        lo = -mpmath.inf if xv < -0.999 else (mpmath.mpf(xv) - mpmath.mpf(mv) - mpmath.mpf(1) / 255) / sigma
        hi = mpmath.inf if xv > 0.999 else (mpmath.mpf(xv) - mpmath.mpf(mv) + mpmath.mpf(1) / 255) / sigma
        p = (1 if hi == mpmath.inf else phi(hi)) - (0 if lo == -mpmath.inf else phi(lo))
        return float(mpmath.log(max(p, mpmath.mpf("1e-12"))))

    want = torch.tensor([[exact(float(a), float(b)) for a, b in zip(r, m)] for r, m in zip(x, mean)],
                        dtype=torch.float64)
    ls = torch.full_like(x, 0.5 * math.log(sigma ** 2))
    got = discretized_gaussian_log_likelihood(x, mean, ls)
    inside = want > math.log(1e-12) + 1e-9
    assert bool(inside.sum() > 100) and bool((want[inside] < -15).sum() > 10)  # deep tails are in the test
    torch.testing.assert_close(got[inside], want[inside], rtol=0, atol=1e-12)
    assert torch.equal(got[~inside], want[~inside])
    old_err = (_old_discretized_ll(x, mean, ls) - want)[inside].abs().max()
    assert old_err > 1e-10, "the tanh form should lose tail digits here"  # measured 2.5e-8


def test_decoder_likelihood_under_autograd_same_floats_finite_gradients():
    """Training differentiates the learned-range decoder term: under autograd the same floats come
    out, and the outer bins (opened at ±OPEN_EDGE, not ±inf) give finite gradients."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (4, 3, 8, 8), generator=g).double() / 127.5 - 1
    assert bool((x == 1).any() and (x == -1).any())
    mean = (x + 0.1 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(-1, 1)
    log_scale = (0.5 * math.log(1e-3) + 0.5 * torch.rand(x.shape, generator=g, dtype=torch.float64))
    plain = discretized_gaussian_log_likelihood(x, mean, log_scale)
    mean_g, ls_g = mean.clone().requires_grad_(True), log_scale.clone().requires_grad_(True)
    ll = discretized_gaussian_log_likelihood(x, mean_g, ls_g)
    assert torch.equal(ll.detach(), plain)
    torch.testing.assert_close(plain, _old_discretized_ll(x, mean, log_scale), rtol=0, atol=1e-3)
    ll.sum().backward()
    assert torch.isfinite(mean_g.grad).all() and torch.isfinite(ls_g.grad).all()


def test_derived_pass_sums_the_plain_pass_cells_bitwise():
    """An optimal table's summed cells (its decoder column taken from the candidates) are the
    fixed_large table's, bit for bit, for a float64 network."""
    model = tiny_adapter(cosine_schedule(30), learned=False, seed=4, dtype="float64")
    images = random_images(10, seed=3)
    opt = estimate_table(model, images, variance="optimal", grid_stride=3, batch_size=4, seed=2)
    fl = estimate_table(model, images, variance="fixed_large", grid_stride=3, batch_size=4, seed=2)
    assert torch.equal(opt.stats.s1, fl.stats.s1) and torch.equal(opt.stats.s2, fl.stats.s2)
    assert opt.stats.dec_s1[5, -1] == fl.stats.s1[5, 0]  # fixed_large's decoder σ² is the last candidate


def test_sample_defaults_to_the_models_own_rule():
    """``ddpmdp.sample`` on a learned-variance model uses learned_range unless told otherwise."""
    model = tiny_adapter(cosine_schedule(20), learned=True, seed=1, dtype="float64")
    path = [0, 1, 7, 13, 20]
    default = ddpmdp.sample(model, path, 6, (3, 8, 8), seed=3)
    learned = ddpmdp.sample(model, path, 6, (3, 8, 8), variance="learned_range", seed=3)
    large = ddpmdp.sample(model, path, 6, (3, 8, 8), variance="fixed_large", seed=3)
    np.testing.assert_array_equal(default, learned)
    assert not np.array_equal(default, large)
    with pytest.raises(DdpmdpError, match="learned-variance"):
        ddpmdp.sample(tiny_adapter(cosine_schedule(20), learned=False), path, 2, (3, 8, 8), variance="learned_range")


@pytest.mark.parametrize("rule", ["optimal", "analytic", "best"])
def test_optimistic_table_route_is_refused(rule):
    """A held-out table whose σ² were optimised on its own images scores only paths with their own σ²."""
    learned = rule == "best"
    model = tiny_adapter(cosine_schedule(30), learned=learned, seed=5)
    train, test = random_images(32, seed=6), random_images(48, seed=7)
    held = estimate_table(model, test, variance=rule, batch_size=16, seed=1)
    nodes = np.array([0, 1, 9, 30])
    with pytest.raises(DdpmdpError, match="optimised on its own images") as err:
        path_from_table(held, nodes)
    assert "dp:SOLVED.json:K" in str(err.value) and "--variance fixed_large" in str(err.value)
    assert full_chain_bpd(held) == (None, "optimistic: σ² optimised on this table's images")
    path_from_table(rescore(held, "fixed_large"), nodes)  # the second way out
    if rule != "optimal":
        return
    # what it would have given, against the honest numbers (σ² fixed on a selection table), on
    # held-out images that differ from the selection images (flatter, darker)
    test = (random_images(16, seed=7) // 4 + 96).astype(np.uint8)
    held = estimate_table(model, test, variance=rule, batch_size=16, seed=1)
    nodes = np.array([0, 1, 2, 5, 12, 30])
    pos = np.searchsorted(held.nodes, nodes)
    optimistic = float(held.L[pos[1:], pos[:-1]].sum() + held.prior)
    solved = InferenceSchedule.from_table(estimate_table(model, train, variance=rule, batch_size=16, seed=1), nodes)
    honest_table = path_from_table(held, solved).nats
    honest_direct = evaluate_paths(model, test, {"p": solved}, batch_size=16, seed=2)["p"]
    # each optimal cell minimises over σ² on the same images and noise: strictly below, here by 22 nats
    assert optimistic < honest_table - 10
    assert optimistic < honest_direct.nats - honest_direct.nats_se, (optimistic, honest_direct.nats)


def test_full_chain_bpd():
    model = tiny_adapter(cosine_schedule(12), learned=False, seed=1)
    images = random_images(6, seed=2)
    full = estimate_table(model, images, variance="fixed_large", batch_size=6)
    bpd, why = full_chain_bpd(full)
    idx = np.arange(1, 13)
    assert why is None and bpd == pytest.approx(full.bpd(full.L[idx, idx - 1].sum() + full.prior), rel=1e-15)
    assert bpd == pytest.approx(path_from_table(full, np.arange(13)).bpd, rel=1e-12)
    sparse = estimate_table(model, images, variance="fixed_large", grid_stride=4, batch_size=6)
    assert full_chain_bpd(sparse) == (None, f"not every node in the grid ({len(sparse.nodes)} of 13)")
