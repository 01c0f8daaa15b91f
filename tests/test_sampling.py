"""Samplers: correct distribution on Gaussian data, noise-free last step, batch-size invariance."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from _models import tiny_adapter
from ddpmdp.errors import DdpmdpError
from ddpmdp.models.gaussian_data import GaussianDataModel
from ddpmdp.sampling import sample, sample_ancestral, sample_ddim
from ddpmdp.schedules import cosine_schedule


@pytest.fixture(scope="module")
def gauss():
    rng = np.random.default_rng(0)
    d = 4
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    cov = (Q * np.array([0.02, 0.05, 0.1, 0.2])) @ Q.T
    return GaussianDataModel(rng.uniform(-0.3, 0.3, d), cov, (1, 2, 2), cosine_schedule(200))


@pytest.mark.parametrize("method", ["ancestral_small", "ancestral_large", "ddim0", "ddim1"])
def test_samples_follow_the_data_gaussian(gauss, method):
    nodes = np.arange(0, 201, 2)  # 100 steps
    n = 4000
    if method.startswith("ancestral"):
        x = sample_ancestral(gauss, nodes, n, (1, 2, 2), variance="fixed_" + method.split("_")[1], clip=False)
    else:
        x = sample_ddim(gauss, nodes, n, (1, 2, 2), eta=float(method[-1]), clip=False)
    x = x.reshape(n, -1).double().numpy()
    se_mean = np.sqrt(np.diag(gauss.cov) / n)
    assert np.all(np.abs(x.mean(0) - gauss.mean) < 5 * se_mean + 0.01)
    np.testing.assert_allclose(np.cov(x, rowvar=False), gauss.cov, atol=0.02)


def test_one_step_returns_decoder_mean_without_noise(gauss):
    a = sample_ancestral(gauss, [0, 200], 8, (1, 2, 2), variance="fixed_large", seed=1)
    b = sample_ancestral(gauss, [0, 200], 8, (1, 2, 2), variance="fixed_small", seed=1)
    c = sample_ddim(gauss, [0, 200], 8, (1, 2, 2), eta=1.0, seed=1)
    d = sample_ddim(gauss, [0, 200], 8, (1, 2, 2), eta=0.0, seed=1)
    assert torch.equal(a, b) and torch.equal(c, d)
    # DDIM walks on float64 states (ddpmdp.ddim), the ancestral sampler on float32 ones: the same x̂₀(x_T),
    # exactly in float64 for DDIM; in float32 the division by √ᾱ_T ≈ 0.0025 amplifies ε̂'s rounding
    from ddpmdp.elbo_terms import predict_x0
    from ddpmdp.noise import STREAM_SAMPLE, keyed_normal

    x_T = keyed_normal(1, torch.arange(8), 0, (1, 2, 2), stream=STREAM_SAMPLE).double()
    assert torch.equal(c, predict_x0(gauss.schedule, x_T, 200, gauss(x_T, 200).eps, True))
    torch.testing.assert_close(c.float(), a, rtol=0, atol=2e-3)


def test_uint8_output_and_batch_invariance():
    # float64 network: the uint8 images are compared exactly, and in float32 another batch split may
    # move a pixel across a rounding boundary on some CPU (tests/README.md)
    model = tiny_adapter(cosine_schedule(20), learned=True, dtype="float64")
    path = [0, 1, 7, 13, 20]
    full = sample(model, path, 10, (3, 8, 8), variance="learned_range", seed=4, batch_size=10)
    split = sample(model, path, 10, (3, 8, 8), variance="learned_range", seed=4, batch_size=3)
    assert full.dtype == np.uint8 and full.shape == (10, 3, 8, 8)
    np.testing.assert_array_equal(full, split)
    other = sample(model, path, 10, (3, 8, 8), variance="learned_range", seed=5)
    assert not np.array_equal(full, other)


def test_sampler_refuses_bad_paths():
    model = tiny_adapter(cosine_schedule(20), learned=False)
    with pytest.raises(DdpmdpError, match="end at node T"):
        sample_ancestral(model, [0, 5, 16], 2, (3, 8, 8), variance="fixed_small")
    with pytest.raises(DdpmdpError, match="learned-variance"):
        sample_ancestral(model, [0, 20], 2, (3, 8, 8), variance="learned_range")
