"""The analytic, optimal and best variance rules: closed forms on Gaussian data, the minimiser
property, Analytic-DPM's two forms, rescoring without the network, and schedules that carry
per-edge σ² through held-out evaluation, sampling and the command line."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from _models import gaussian_model, random_images, tiny_adapter
from ddpmdp.cli.main import main
from ddpmdp.data.images import to_model_space
from ddpmdp.elbo_terms import q_sample
from ddpmdp.errors import DdpmdpError
from ddpmdp.evaluate import evaluate_paths, path_from_table
from ddpmdp.inference_schedule import InferenceSchedule
from ddpmdp.noise import STREAM_TABLE, keyed_normal
from ddpmdp.path_specs import parse_path_spec, parse_schedule_spec
from ddpmdp.rescore import rescore
from ddpmdp.sampling import sample_ancestral
from ddpmdp.schedules import cosine_schedule, linear_schedule
from ddpmdp.table import load_table
from ddpmdp.table_estimation import estimate_table
from ddpmdp.variances import N_DECODER_CANDIDATES, SCALAR_RULES, decoder_candidates


def exact_m(model, x0: np.ndarray, t: int) -> float:
    """E‖x₀ − E[x₀|x_t]‖² averaged over the given images, for the exact Gaussian denoiser (no clip)."""
    a = float(model.schedule.abar(t))
    U, g = model.eigvecs, model.shrink(t)
    A = np.eye(model.d) - np.sqrt(a) * (U * g) @ U.T
    Gm = (U * g) @ U.T
    bias = (x0 - model.mean) @ A.T
    return float((bias ** 2 + (1 - a) * np.sum(Gm ** 2, axis=1)[None, :]).sum(1).mean())


def test_gaussian_optimal_cells_and_sigma2_match_closed_form():
    """Optimal cells = (d/2)·log(1 + c²M(t)/(dβ̃)) with the exact M(t), within 4 SE; σ² likewise."""
    sched = linear_schedule(200)
    images = random_images(400, shape=(1, 4, 4), seed=5)
    model = gaussian_model(images, sched)
    table = estimate_table(model, images, variance="optimal", clip=False, grid_stride=20, batch_size=128, seed=0)
    x0 = images.reshape(len(images), -1).astype(np.float64) / 127.5 - 1
    d = model.d
    m_hat, m_se = table.mse()
    worst = 0.0
    for i in range(2, len(table.nodes)):
        t = int(table.nodes[i])
        M = exact_m(model, x0, t)
        assert abs(m_hat[i] - M) < 4 * m_se[i]
        for j in range(1, i):
            s = int(table.nodes[j])
            at, as_ = sched.alphas_cumprod[t], sched.alphas_cumprod[s]
            beta = 1 - at / as_
            bt = beta * (1 - as_) / (1 - at)
            c2 = as_ * beta ** 2 / (1 - at) ** 2
            val = 0.5 * d * math.log1p(c2 * M / (d * bt))
            z = abs(table.L[i, j] - val) / table.L_se[i, j]
            worst = max(worst, z)
            assert z < 4, f"cell ({t}->{s}) {table.L[i, j]:.5f} vs closed form {val:.5f}: {z:.1f} SE"
            s2 = bt + c2 * M / d
            assert abs(table.sigma2[i, j] - s2) < 4 * c2 * m_se[i] / d + 1e-15
    assert worst > 0.0


@pytest.fixture(scope="module")
def fixed_tables():
    sched = cosine_schedule(30)
    model = tiny_adapter(sched, learned=False, seed=3)
    images = random_images(48, shape=(3, 8, 8), seed=2)
    opt = estimate_table(model, images, variance="optimal", batch_size=16, seed=4)
    return model, images, opt


def test_optimal_is_the_cellwise_minimiser(fixed_tables):
    """Each optimal cell (decoder column included) is ≤ the same cell under every other scalar rule,
    and ≤ the cell of any other scalar σ² with the same M(t)."""
    model, _, opt = fixed_tables
    lower = np.tril(np.ones_like(opt.L, dtype=bool), k=-1)
    for rule in SCALAR_RULES:
        other = rescore(opt, rule)
        assert np.all(opt.L[lower] <= other.L[lower] * (1 + 1e-12) + 1e-12), rule
    d = opt.dims
    m, _ = opt.mse()
    rng = np.random.default_rng(0)
    for i in range(2, len(opt.nodes)):
        for j in range(1, i):
            bt = float(model.schedule.beta_tilde(int(opt.nodes[i]), int(opt.nodes[j])))
            c, _ = model.schedule.posterior_coefficients(int(opt.nodes[i]), int(opt.nodes[j]))
            for s2 in opt.sigma2[i, j] * np.exp(rng.normal(0, 1, 5)):
                r = bt / s2
                cell = 0.5 * d * (r - 1 - math.log(r)) + float(c) ** 2 / (2 * s2) * m[i]
                assert opt.L[i, j] <= cell + 1e-9 * abs(cell)


def test_rescored_fixed_rule_equals_its_own_table(fixed_tables):
    """Noise is keyed by (seed, image, t): a fixed_large table estimated directly equals the
    fixed_large table derived from the optimal table's statistics, cell by cell."""
    model, images, opt = fixed_tables
    direct = estimate_table(model, images, variance="fixed_large", batch_size=16, seed=4)
    for rule in ("fixed_large", "fixed_small"):
        derived = rescore(opt, rule)
        ref = direct if rule == "fixed_large" else estimate_table(model, images, variance=rule, batch_size=16, seed=4)
        lower = np.tril(np.ones_like(ref.L, dtype=bool), k=-1)
        np.testing.assert_allclose(derived.L[lower], ref.L[lower], rtol=1e-9)
        np.testing.assert_allclose(derived.L_se[lower], ref.L_se[lower], rtol=1e-6, atol=1e-9)


def test_analytic_equals_both_analytic_dpm_forms():
    """σ² of the analytic rule = β̃ + c²((1 − ᾱ_t)/ᾱ_t)(1 − Γ_t) = (β/ᾱ_{t|s})(1 − βΓ_t/(1 − ᾱ_t))
    where the code's clip does not bind, with Γ_t recomputed directly from the network."""
    sched = cosine_schedule(30)
    images = random_images(64, shape=(1, 4, 4), seed=2)
    model = gaussian_model(images, sched)  # the exact denoiser: 0 < Γ_t < 1, so the clip rarely binds
    an = estimate_table(model, images, variance="analytic", batch_size=16, seed=4)
    gamma, _ = an.gamma()
    x0 = to_model_space(images)
    idx = torch.arange(len(images))
    checked = 0
    for i in range(1, len(an.nodes)):
        t = int(an.nodes[i])
        eps = keyed_normal(4, idx, t, tuple(x0.shape[1:]), stream=STREAM_TABLE)
        out = model(q_sample(sched, x0, t, eps), t)
        assert gamma[i] == pytest.approx(float(out.eps.double().pow(2).mean()), rel=1e-9)
        at = float(sched.abar(t))
        cov = (1 - at) / at * (1 - gamma[i])
        for j in range(1, i):
            s = int(an.nodes[j])
            beta, bt = float(sched.beta(t, s)), float(sched.beta_tilde(t, s))
            c, _ = sched.posterior_coefficients(t, s)
            form1 = bt + float(c) ** 2 * min(max(cov, 0.0), 1.0)
            assert an.sigma2[i, j] == pytest.approx(form1, rel=1e-12)
            if 0 < cov < 1:
                form2 = beta / (at / float(sched.abar(s))) * (1 - beta * gamma[i] / (1 - at))
                assert an.sigma2[i, j] == pytest.approx(form2, rel=1e-9)
                checked += 1
        dec = decoder_candidates(sched, t)
        target = max(min(max(cov, 0.0), 1.0), sched.beta_tilde_min)
        assert an.sigma2[i, 0] == dec[np.argmin(np.abs(np.log(dec) - math.log(target)))]
    assert checked > 10


@pytest.mark.parametrize("learned,rule", [(False, "optimal"), (False, "analytic"), (True, "best")])
def test_heldout_table_equals_direct_evaluation_with_per_edge_variances(learned, rule):
    """A schedule whose σ² were fixed on a selection table: the held-out table's path sum (its
    statistics with those σ²) equals a direct evaluation on the same held-out images."""
    sched = cosine_schedule(30)
    model = tiny_adapter(sched, learned=learned, seed=5)
    train, test = random_images(32, seed=6), random_images(96, seed=7)
    sel = estimate_table(model, train, variance=rule, batch_size=32, seed=1)
    held = estimate_table(model, test, variance="best" if learned else "optimal", batch_size=32, seed=1)
    paths = {"short": np.array([0, 1, 9, 30]), "odd": np.array([0, 4, 5, 17, 29, 30]), "one": np.array([0, 30])}
    schedules = {k: InferenceSchedule.from_table(sel, p) for k, p in paths.items()}
    if learned:  # a schedule that mixes the two rules edge by edge, as best may
        opt = InferenceSchedule.from_table(rescore(sel, "optimal"), paths["short"])
        schedules["mixed"] = InferenceSchedule(paths["short"], ("optimal", "learned_range", "optimal"),
                                               np.array([opt.sigma2[0], np.nan, opt.sigma2[2]]))
    direct = evaluate_paths(model, test, schedules, variance=model.variance, batch_size=32, seed=2)
    for name, sch in schedules.items():
        ft = path_from_table(held, sch)
        tol = 4 * math.hypot(ft.nats_se, direct[name].nats_se)
        assert abs(ft.nats - direct[name].nats) < tol, (name, ft.nats, direct[name].nats, tol)
        np.testing.assert_allclose(ft.terms, direct[name].terms, rtol=0.25, atol=4 * ft.nats_se)


def test_schedule_variances_are_used_by_the_sampler():
    """A schedule carrying the fixed_large σ² samples exactly like --variance fixed_large."""
    sched = cosine_schedule(30)
    model = tiny_adapter(sched, learned=False, seed=5)
    table = estimate_table(model, random_images(8, seed=1), variance="optimal", batch_size=8, seed=0)
    nodes = np.array([0, 1, 9, 30])
    fl = InferenceSchedule.from_table(rescore(table, "fixed_large"), nodes)
    a = sample_ancestral(model, fl, 3, (3, 8, 8), variance="fixed_small", seed=3)
    b = sample_ancestral(model, nodes, 3, (3, 8, 8), variance="fixed_large", seed=3)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    opt = InferenceSchedule.from_table(table, nodes)
    c = sample_ancestral(model, opt, 3, (3, 8, 8), seed=3)
    assert not torch.allclose(b, c)
    with pytest.raises(DdpmdpError, match="solved"):
        sample_ancestral(model, nodes, 3, (3, 8, 8), variance="optimal")


def test_table_records_node_statistics_and_roundtrips(tmp_path, fixed_tables):
    _, _, opt = fixed_tables
    opt.save(tmp_path / "t.npz")
    back = load_table(tmp_path / "t.npz")
    np.testing.assert_array_equal(back.L, opt.L)
    np.testing.assert_array_equal(back.sigma2, opt.sigma2)
    assert back.stats.dec_s1.shape == (len(opt.nodes), N_DECODER_CANDIDATES)
    m, m_se = back.mse()
    g, g_se = back.gamma()
    assert np.all(np.isfinite(m[1:])) and np.all(np.isfinite(g_se[1:])) and back.meta["sums_variance"] == "fixed_large"
    with pytest.raises(DdpmdpError, match="learned-variance"):
        rescore(back, "best")


def test_cli_solve_records_per_edge_variances_and_rescore(tmp_path, capsys):
    train = tmp_path / "train.npz"
    np.savez(train, images=random_images(12, shape=(1, 4, 4), seed=1))
    tab, tab2, solved = tmp_path / "t.npz", tmp_path / "a.npz", tmp_path / "s.json"
    base = ["--model", f"gaussian:{train}", "--noise-schedule", "cosine:20"]
    assert main(["table", *base, "--data", str(train), "--out", str(tab), "--variance", "optimal", "--quiet"]) == 0
    assert main(["rescore", str(tab), "--variance", "analytic", "--out", str(tab2)]) == 0
    capsys.readouterr()
    assert main(["solve", str(tab), "--budgets", "2,4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    solved.write_text(json.dumps(out))
    edges = out["budgets"]["4"]["edges"]
    assert len(edges) == 4 and all(e["rule"] == "optimal" and e["sigma2"] > 0 for e in edges)
    sch = parse_schedule_spec(f"dp:{solved}:4", 20)
    assert sch.rules == ("optimal",) * 4 and list(parse_path_spec(f"dp:{solved}:4", 20)) == out["budgets"]["4"]["nodes"]
    assert main(["evaluate", str(tab), "--schedule", f"dp:{solved}:4", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)[f"dp:{solved}:4"]
    assert got["nats"] == pytest.approx(out["budgets"]["4"]["nats"], rel=1e-9)  # same table, same σ²
    assert main(["evaluate", *base, "--data", str(train), "--schedule", f"dp:{solved}:4", "--json", "--quiet"]) == 0
    assert load_table(tab2).meta["variance"] == "analytic"
