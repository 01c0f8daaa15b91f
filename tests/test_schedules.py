"""Schedules: named β, node convention, stride identities, converters, validation."""
from __future__ import annotations

import numpy as np
import pytest

from ddpmdp.errors import DdpmdpError
from ddpmdp.schedules import (Schedule, cosine_schedule, diffusers_timestep_to_node, iddpm_index_to_node,
                              linear_schedule, node_to_diffusers_timestep, node_to_iddpm_index, parse_schedule)


def test_linear_is_ho_et_al_for_T_1000():
    s = linear_schedule(1000)
    np.testing.assert_allclose(s.betas, np.linspace(1e-4, 0.02, 1000), rtol=1e-12)
    assert s.alphas_cumprod[0] == 1.0 and s.T == 1000
    assert s.abar(1) == pytest.approx(1 - 1e-4)
    assert linear_schedule(4000).betas[0] == pytest.approx(2.5e-5)


def test_cosine_formula_and_cap():
    T = 4000
    s = cosine_schedule(T)
    f = lambda u: np.cos((u + 0.008) / 1.008 * np.pi / 2) ** 2  # noqa: E731
    i = np.arange(T)
    np.testing.assert_allclose(s.betas, np.minimum(1 - f((i + 1) / T) / f(i / T), 0.999), rtol=1e-10)
    assert s.betas.max() == pytest.approx(0.999) and 1 - s.abar(T) == pytest.approx(1.0, abs=1e-9)


def test_stride_identities():
    s = cosine_schedule(200)
    t, u = np.meshgrid(np.arange(2, 201), np.arange(1, 200), indexing="ij")
    t, u = t[u < t], u[u < t]
    c, e = s.posterior_coefficients(t, u)
    np.testing.assert_allclose(c ** 2 / s.beta_tilde(t, u), s.snr(u) - s.snr(t), rtol=1e-8)
    np.testing.assert_allclose(s.beta(t, u) / s.beta_tilde(t, u), (1 - s.abar(t)) / (1 - s.abar(u)), rtol=1e-12)
    c0, e0 = s.posterior_coefficients(np.arange(1, 201), 0)
    np.testing.assert_allclose(c0, 1.0) and np.testing.assert_allclose(e0, 0.0, atol=0)
    assert s.beta_tilde_min == pytest.approx(s.betas[1] * (1 - s.abar(1)) / (1 - s.abar(2)))
    # adjacent jumps are the chain's own β_t
    np.testing.assert_allclose(s.beta(np.arange(1, 201), np.arange(200)), s.betas, rtol=1e-12)


def test_from_alphas_cumprod_accepts_iddpm_layout_and_round_trips():
    s = cosine_schedule(50)
    assert Schedule.from_alphas_cumprod(s.alphas_cumprod[1:]) == s
    assert Schedule.from_alphas_cumprod(s.alphas_cumprod) == s
    assert Schedule.from_betas(s.betas) == s


def test_index_converters():
    nodes = np.array([1, 2, 1000])
    assert node_to_iddpm_index(nodes).tolist() == [0, 1, 999]
    assert node_to_diffusers_timestep(nodes).tolist() == [0, 1, 999]
    assert iddpm_index_to_node(np.array([0, 999])).tolist() == [1, 1000]
    assert diffusers_timestep_to_node(np.array([999, 0])).tolist() == [1000, 1]
    with pytest.raises(DdpmdpError, match="node 0"):
        node_to_iddpm_index([0, 5])


@pytest.mark.parametrize("abar,match", [
    ([1.0, 0.5, 0.6], "strictly decreasing"),
    ([0.9, 0.5, 0.1], "exactly 1"),
    ([1.0, 0.5, 0.0], "must be > 0"),
    ([1.0, np.nan, 0.1], "NaN"),
])
def test_invalid_schedules(abar, match):
    with pytest.raises(DdpmdpError, match=match):
        Schedule(np.array(abar))


def test_parse_schedule(tmp_path):
    assert parse_schedule("cosine:100") == cosine_schedule(100)
    np.save(tmp_path / "a.npy", linear_schedule(100).alphas_cumprod)
    assert parse_schedule(str(tmp_path / "a.npy")) == linear_schedule(100)
    for bad in ("linear:x", "exp:10", "linear:10"):
        with pytest.raises(DdpmdpError):
            parse_schedule(bad)
