"""The O(T) table: one forward pass per row equals the direct two-Gaussian KL, closed forms on
Gaussian data, full-chain ELBO → exact NLL, call counts, batch-size invariance, errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from _models import CallCounter, NaNAt, gaussian_model, random_images, tiny_adapter
from ddpmdp.data.images import to_model_space
from ddpmdp.grids import make_grid
from ddpmdp.table_estimation import estimate_table
from ddpmdp.elbo_terms import decoder_term, kl_row, predict_x0, q_posterior, q_sample
from ddpmdp.errors import DdpmdpError
from ddpmdp.evaluate import evaluate_paths
from ddpmdp.gaussians import discretized_gaussian_log_likelihood, normal_kl
from ddpmdp.models.gaussian_data import GaussianDataModel
from ddpmdp.noise import STREAM_TABLE, keyed_normal
from ddpmdp.schedules import cosine_schedule, linear_schedule

RULES = ["fixed_small", "fixed_large", "learned_range"]


def direct_log_variance(sched, t, s, rule, v):
    """σ² of p(x_s | x_t) written out from ᾱ, independently of ddpmdp.variances."""
    at, as_ = float(sched.alphas_cumprod[t]), float(sched.alphas_cumprod[s])
    beta = 1 - at / as_
    beta_tilde = beta * (1 - as_) / (1 - at)
    if rule == "fixed_small":
        return torch.full_like(v, math.log(beta_tilde))
    if rule == "fixed_large":
        return torch.full_like(v, math.log(beta))
    return v * math.log(beta) + (1 - v) * math.log(beta_tilde)


def direct_kl(sched, x0, x_t, x0_hat, t, s, rule, v):
    """KL(q(x_s | x_t, x₀) ‖ p(x_s | x_t)) summed over pixels, from the two Gaussians."""
    mean_q, var_q = q_posterior(sched, x0.double(), x_t.double(), t, s)
    mean_p, _ = q_posterior(sched, x0_hat.double(), x_t.double(), t, s)
    logvar_p = direct_log_variance(sched, t, s, rule, v.double())
    kl = normal_kl(mean_q, torch.full_like(mean_q, math.log(var_q)), mean_p, logvar_p)
    return kl.flatten(1).sum(1)


@pytest.mark.parametrize("clip", [True, False])
@pytest.mark.parametrize("rule", RULES)
def test_row_from_one_pass_equals_direct_kl(rule, clip):
    sched = cosine_schedule(60)
    model = tiny_adapter(sched, learned=True, seed=1)
    x0 = to_model_space(random_images(5, seed=2))
    for t in (2, 31, 60):
        eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(t))
        x_t = q_sample(sched, x0, t, eps)
        out = model(x_t, t)
        x0_hat = predict_x0(sched, x_t, t, out.eps, clip)
        s_nodes = np.arange(1, t)
        row = kl_row(sched, x0, x0_hat, t, s_nodes, rule, out.v, chunk=7)
        direct = torch.stack([direct_kl(sched, x0, x_t, x0_hat, t, int(s), rule, out.v) for s in s_nodes], 1)
        assert row.shape == direct.shape == (5, t - 1)
        np.testing.assert_allclose(row.numpy(), direct.numpy(), rtol=2e-5, atol=2e-5)
        # decoder cell: discretised Gaussian with the documented decoder variance
        if rule == "fixed_small" or (rule == "fixed_large" and t == 1):
            logvar = torch.full_like(x0, math.log(sched.beta_tilde_min), dtype=torch.float64)
        elif rule == "fixed_large":
            logvar = torch.full_like(x0, math.log(1 - sched.alphas_cumprod[t]), dtype=torch.float64)
        else:
            logvar = out.v * math.log(1 - sched.alphas_cumprod[t]) + (1 - out.v) * math.log(sched.beta_tilde_min)
        want = -discretized_gaussian_log_likelihood(x0.double(), x0_hat.double(), 0.5 * logvar.double())
        np.testing.assert_allclose(decoder_term(sched, x0, x0_hat, t, rule, out.v).numpy(),
                                   want.flatten(1).sum(1).numpy(), rtol=1e-10)


@pytest.mark.parametrize("vrange", [(0.0, 1.0), (-0.15, 1.2), (0.4, 0.4001)])
@pytest.mark.parametrize("sched", [cosine_schedule(1000), linear_schedule(4000)], ids=["cos1000", "lin4000"])
def test_learned_row_chebyshev_and_direct_agree_with_float64_kl(sched, vrange):
    """The two evaluations of the learned-range row against the direct two-Gaussian KL in float64."""
    g = torch.Generator().manual_seed(0)
    B, T = 3, sched.T
    x0 = torch.rand(B, 3, 8, 8, generator=g) * 2 - 1
    x0_hat = (x0 + 0.1 * torch.randn(B, 3, 8, 8, generator=g)).clamp(-1, 1)
    v = vrange[0] + (vrange[1] - vrange[0]) * torch.rand(B, 3, 8, 8, generator=g)
    x_t = q_sample(sched, x0, T, torch.randn(B, 3, 8, 8, generator=g))
    s_nodes = np.unique(np.linspace(1, T - 1, 300).astype(int))
    cheb = kl_row(sched, x0, x0_hat, T, s_nodes, "learned_range", v, method="chebyshev")
    direct = kl_row(sched, x0, x0_hat, T, s_nodes, "learned_range", v, method="direct")
    want = torch.stack([direct_kl(sched, x0, x_t, x0_hat, T, int(s), "learned_range", v) for s in s_nodes], 1)
    np.testing.assert_allclose(cheb.numpy(), want.numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(direct.numpy(), want.numpy(), rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("rule", RULES)
def test_table_cells_are_means_of_direct_terms(rule):
    """Every cell of an estimated table equals the image-mean of direct KL/decoder terms under the keyed noise."""
    sched = cosine_schedule(40)
    model = tiny_adapter(sched, learned=True, seed=3)
    images = random_images(6, seed=4)
    table = estimate_table(model, images, variance=rule, grid_stride=7, batch_size=4, seed=11)
    x0 = to_model_space(images)
    idx = torch.arange(6)
    nodes = table.nodes
    for i in range(1, len(nodes)):
        t = int(nodes[i])
        x_t = q_sample(sched, x0, t, keyed_normal(11, idx, t, x0.shape[1:], stream=STREAM_TABLE))
        out = model(x_t, t)
        x0_hat = predict_x0(sched, x_t, t, out.eps, True)
        assert table.L[i, 0] == pytest.approx(decoder_term(sched, x0, x0_hat, t, rule, out.v).mean().item(), rel=1e-9)
        for j in range(1, i):
            cell = direct_kl(sched, x0, x_t, x0_hat, t, int(nodes[j]), rule, out.v)
            assert table.L[i, j] == pytest.approx(cell.mean().item(), rel=2e-5, abs=1e-5)
            assert table.L_se[i, j] == pytest.approx(cell.std().item() / math.sqrt(6), rel=2e-3, abs=1e-5)
    assert np.all(np.isinf(table.L[np.triu_indices(len(nodes))]))


def expected_error_sq(model: GaussianDataModel, x0: np.ndarray, t: int) -> np.ndarray:
    """E_ε[(x₀ − x̂₀)²] per pixel for each image, for the exact Gaussian denoiser (no clipping)."""
    a = float(model.schedule.abar(t))
    U, g = model.eigvecs, model.shrink(t)
    A = np.eye(model.d) - np.sqrt(a) * (U * g) @ U.T  # x₀ − x̂₀ = A(x₀ − μ) − √(1−ᾱ) G ε
    Gm = (U * g) @ U.T
    bias = (x0 - model.mean) @ A.T
    return bias ** 2 + (1 - a) * np.sum(Gm ** 2, axis=1)[None, :]


@pytest.mark.parametrize("rule", RULES)
def test_gaussian_model_cells_match_closed_form(rule):
    sched = linear_schedule(200)
    images = random_images(400, shape=(1, 4, 4), seed=5)
    model = gaussian_model(images, sched, v=0.3)
    table = estimate_table(model, images, variance=rule, clip=False, grid_stride=20, batch_size=128, seed=0)
    x0 = images.reshape(len(images), -1).astype(np.float64) / 127.5 - 1
    nodes, d = table.nodes, model.d
    worst = 0.0
    for i in range(2, len(nodes)):
        t = int(nodes[i])
        e2 = expected_error_sq(model, x0, t)  # (N, d)
        for j in range(1, i):
            s = int(nodes[j])
            at, as_ = sched.alphas_cumprod[t], sched.alphas_cumprod[s]
            beta = 1 - at / as_
            bt = beta * (1 - as_) / (1 - at)
            c2 = as_ * beta ** 2 / (1 - at) ** 2
            if rule == "learned_range":
                ell = np.log(beta / bt)
                delta = c2 / bt
                val = 0.5 * np.sum(0.3 * ell + np.exp(-0.3 * ell) * (1 + delta * e2) - 1, axis=1).mean()
            else:
                var = bt if rule == "fixed_small" else beta
                r = bt / var
                val = (0.5 * d * (r - 1 - np.log(r)) + c2 / (2 * var) * e2.sum(1)).mean()
            z = abs(table.L[i, j] - val) / table.L_se[i, j]
            worst = max(worst, z)
            assert z < 4, f"cell ({t}->{s}) {table.L[i, j]:.5f} vs closed form {val:.5f}: {z:.1f} SE"
    assert worst > 0.0


def test_full_chain_elbo_approaches_exact_nll():
    """On data drawn from N(μ, Σ) and the exact denoiser, the full-chain ELBO tends to the exact NLL."""
    rng = np.random.default_rng(0)
    d = 8
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    cov = (Q * np.linspace(0.01, 0.04, d)) @ Q.T
    mean = rng.uniform(-0.2, 0.2, size=d)
    x = rng.multivariate_normal(mean, cov, size=300)
    images = np.clip(np.round((x + 1) * 127.5), 0, 255).astype(np.uint8).reshape(300, 1, 2, 4)
    xq = images.reshape(300, d) / 127.5 - 1
    # exact −log P(bin) ≈ −log N(x_q; μ, Σ) − d log(2/255) for bins much narrower than Σ
    diff = xq - mean
    logdens = -0.5 * (np.einsum("ni,ij,nj->n", diff, np.linalg.inv(cov), diff)
                      + np.linalg.slogdet(cov)[1] + d * np.log(2 * np.pi))
    nll_per_image = -logdens - d * np.log(2 / 255)
    nll = float(np.mean(nll_per_image))
    gaps = []
    for T in (10, 40, 160, 640, 2560):
        model = GaussianDataModel(mean, cov, (1, 2, 4), cosine_schedule(T))
        score = evaluate_paths(model, images, {"full": np.arange(T + 1)}, variance="fixed_large", clip=False,
                               batch_size=300, seed=1)["full"]
        paired = score.per_image - nll_per_image
        gap_se = float(paired.std(ddof=1) / np.sqrt(len(paired)))
        gaps.append(score.nats - nll)
        print(f"T={T:5d}  -ELBO={score.nats:8.3f} ± {score.nats_se:.3f}  exact NLL={nll:8.3f}  "
              f"gap={score.nats - nll:7.3f} ± {gap_se:.3f} nats")
    assert gaps[0] > gaps[1] > gaps[2] > 0, gaps  # differences far beyond the MC error here
    assert gaps[-1] < 0.05 * gaps[0], gaps
    assert abs(gaps[-1]) < 4 * gap_se + 0.05, (gaps, gap_se)


def test_model_calls_per_table():
    sched = cosine_schedule(30)
    model = CallCounter(tiny_adapter(sched, learned=False))
    images = random_images(10)
    table = estimate_table(model, images, variance="fixed_large", grid_stride=4, batch_size=3)
    G = len(make_grid(30, 4))
    assert G == len(table.nodes) == 9 and table.nodes[-1] == 30
    assert model.calls == math.ceil(10 / 3) * (G - 1)


@pytest.mark.parametrize("rule", ["fixed_small", "learned_range"])
def test_same_seed_same_table_for_any_batch_size(rule):
    sched = cosine_schedule(25)
    model = gaussian_model(random_images(50, shape=(1, 4, 4), seed=8), sched, v=0.4)
    images = random_images(32, shape=(1, 4, 4), seed=9)
    tables = [estimate_table(model, images, variance=rule, grid_stride=3, batch_size=b, seed=5) for b in (1, 7, 32)]
    for other in tables[1:]:
        np.testing.assert_allclose(other.L, tables[0].L, rtol=1e-12)
        np.testing.assert_allclose(other.L_se, tables[0].L_se, rtol=1e-8)
        assert other.prior == pytest.approx(tables[0].prior, rel=1e-14)
    different = estimate_table(model, images, variance=rule, grid_stride=3, batch_size=32, seed=6)
    assert not np.allclose(different.L[2:, 1:], tables[0].L[2:, 1:])


def test_nan_from_model_names_node():
    sched = cosine_schedule(20)
    model = NaNAt(tiny_adapter(sched, learned=False), bad_t=15)
    with pytest.raises(DdpmdpError, match="t = 15"):
        estimate_table(model, random_images(4), variance="fixed_small", batch_size=2)


@pytest.mark.parametrize("bad,match", [
    (np.zeros((2, 3, 8, 8), dtype=np.float32), "uint8"),
    (np.zeros((2, 8, 8, 3), dtype=np.uint8), "channels last"),
    (np.zeros((3, 8, 8), dtype=np.uint8), "shape"),
    (np.zeros((2, 3, 8, 8), dtype=np.int64) + 300, "uint8"),
])
def test_bad_images_are_refused(bad, match):
    model = tiny_adapter(cosine_schedule(10), learned=False)
    with pytest.raises(DdpmdpError, match=match):
        estimate_table(model, bad, variance="fixed_small")


def test_learned_range_needs_v_output():
    model = tiny_adapter(cosine_schedule(10), learned=False)
    with pytest.raises(DdpmdpError, match="learned-variance"):
        estimate_table(model, random_images(2), variance="learned_range")


def test_bf16_autocast_and_channels_last_only_change_network_arithmetic():
    from ddpmdp.models.adapter import Numerics, TorchModelAdapter
    from _models import TinyNet

    sched = cosine_schedule(20)
    images = random_images(8)
    make = lambda **kw: TorchModelAdapter(TinyNet(3, True, 2), sched, output="eps+v", **kw)  # noqa: E731
    ref = estimate_table(make(), images, variance="learned_range")
    fast = estimate_table(make(numerics=Numerics(bf16=True, channels_last=True)), images, variance="learned_range")
    assert fast.meta["network_bf16"] and fast.meta["network_channels_last"] and not ref.meta["network_bf16"]
    lower = np.tril_indices(len(ref.nodes), -1)
    rel = np.abs(fast.L[lower] - ref.L[lower]) / np.abs(ref.L[lower])
    assert 0 < np.median(rel) < 0.05
    assert fast.L.dtype == np.float64
