"""Even and quadratic strides, DDIM's quadratic indices, path checks (ddpmdp.strides)."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from ddpmdp.errors import DdpmdpError
from ddpmdp.strides import (
    ddim_quadratic_indices,
    even_stride,
    quadratic_stride,
    snap_to_grid,
    validate_path,
)

# ---- worked examples, method.md §7.1–7.2 -------------------------------------


def test_even_worked_examples() -> None:
    np.testing.assert_array_equal(even_stride(1000, 8), [0, 1, 144, 286, 429, 572, 715, 857, 1000])
    np.testing.assert_array_equal(even_stride(4000, 8), [0, 1, 572, 1144, 1715, 2286, 2857, 3429, 4000])
    # In code indices (node − 1), as improved-diffusion's space_timesteps lists them.
    np.testing.assert_array_equal(even_stride(1000, 8)[1:] - 1, [0, 143, 285, 428, 571, 714, 856, 999])
    np.testing.assert_array_equal(
        even_stride(4000, 8)[1:] - 1, [0, 571, 1143, 1714, 2285, 2856, 3428, 3999]
    )


def test_quadratic_worked_examples() -> None:
    np.testing.assert_array_equal(quadratic_stride(1000, 8), [0, 1, 21, 82, 184, 327, 510, 734, 1000])
    np.testing.assert_array_equal(quadratic_stride(4000, 8), [0, 1, 82, 327, 735, 1306, 2041, 2939, 4000])


def test_ddim_quadratic_worked_examples() -> None:
    np.testing.assert_array_equal(ddim_quadratic_indices(1000, 8), [0, 16, 65, 146, 261, 408, 587, 800])
    np.testing.assert_array_equal(ddim_quadratic_indices(4000, 8), [0, 65, 261, 587, 1044, 1632, 2351, 3200])
    assert np.unique(ddim_quadratic_indices(1000, 256)).size == 235
    assert np.unique(ddim_quadratic_indices(4000, 256)).size == 250
    idx = ddim_quadratic_indices(1000, 256)
    assert idx.dtype == np.int64 and idx.shape == (256,) and idx[0] == 0 and idx[-1] == 800


def test_quadratic_uses_exact_integer_floor() -> None:
    # (T − 1)·(i/(K − 1))² is an exact integer here; float evaluation would floor 0.999… to 0.
    np.testing.assert_array_equal(quadratic_stride(50, 8), [0, 1, 2, 5, 10, 17, 26, 37, 50])


# ---- structure for every K ----------------------------------------------------


@pytest.mark.parametrize("stride", [even_stride, quadratic_stride])
def test_exactly_K_steps_for_every_K(stride: Callable[[int, int], np.ndarray]) -> None:
    for T in range(1, 160):
        for K in range(1, T + 1):
            p = stride(T, K)
            assert p.dtype == np.int64 and p.shape == (K + 1,), (T, K)
            assert p[0] == 0 and p[-1] == T, (T, K)
            assert np.all(np.diff(p) > 0), (T, K)
            if K >= 2:
                assert p[1] == 1, (T, K)  # decoder edge 1 → 0


@pytest.mark.parametrize("stride", [even_stride, quadratic_stride])
def test_single_step_is_the_edge_T_to_0(stride: Callable[[int, int], np.ndarray]) -> None:
    for T in (1, 2, 1000):
        np.testing.assert_array_equal(stride(T, 1), [0, T])


def test_full_budget_is_the_full_chain() -> None:
    for T in (1, 2, 17, 1000):
        np.testing.assert_array_equal(even_stride(T, T), np.arange(T + 1))
        np.testing.assert_array_equal(quadratic_stride(T, T), np.arange(T + 1))


def test_even_follows_improved_diffusions_accumulated_stride() -> None:
    """At the paper's budgets the closed form of method.md §7.1 and improved-diffusion's
    accumulated float stride agree; at T = 1000, K = 21 the exact half 10 · 999/20 = 499.5
    becomes 499 in improved-diffusion (the float sum lies just below), which ddpmdp follows."""
    for T in (1000, 4000):
        for K in (8, 10, 16, 20, 25, 32, 50, 64, 100, 128, 200, 256):
            closed = [round(i * (T - 1) / (K - 1)) for i in range(K)]
            np.testing.assert_array_equal(even_stride(T, K)[1:] - 1, closed)
    assert even_stride(1000, 21)[11] - 1 == 499


# ---- errors -------------------------------------------------------------------


@pytest.mark.parametrize("fn", [even_stride, quadratic_stride, ddim_quadratic_indices])
@pytest.mark.parametrize(
    "T,K,match",
    [
        (10, 0, r"1 <= K <= T = 10.*got K = 0"),
        (10, 11, r"1 <= K <= T = 10.*got K = 11"),
        (10, -3, r"got K = -3"),
        (0, 1, "T must be a positive integer"),
        (10.0, 2, "T must be a positive integer"),
        (10, 2.0, "K must be an integer"),
        (10, True, "K must be an integer"),
    ],
)
def test_bad_T_or_K(fn: Callable[[int, int], np.ndarray], T: object, K: object, match: str) -> None:
    with pytest.raises(DdpmdpError, match=match):
        fn(T, K)


# ---- validate_path and snap_to_grid ------------------------------------------


def test_validate_path_accepts_and_converts() -> None:
    p = validate_path([0, 1, 5, 10], 10)
    assert p.dtype == np.int64
    np.testing.assert_array_equal(p, [0, 1, 5, 10])
    np.testing.assert_array_equal(validate_path(np.array([0, 7], dtype=np.int16), 7), [0, 7])


@pytest.mark.parametrize(
    "nodes,match",
    [
        ([1, 2, 10], r"start at node 0.*path\[0\] = 1"),
        ([0, 3, 3, 10], r"strictly increasing, but path\[2\] = 3 <= path\[1\] = 3"),
        ([0, 5, 2, 10], r"path\[2\] = 2 <= path\[1\] = 5"),
        ([0, 4, 800], r"path\[2\] = 800 lies beyond the last node T = 10"),
        ([0, 4, 9], r"end at node T = 10.*path\[2\] = 9"),
        ([0, 12, 13, 10], r"path\[1\] = 12 lies beyond the last node T = 10"),
        ([0], "at least 2 nodes"),
        ([[0, 10]], "1-D"),
        ([0.0, 10.0], "must be integers"),
    ],
)
def test_validate_path_names_the_first_bad_position(nodes: list, match: str) -> None:
    with pytest.raises(DdpmdpError, match=match):
        validate_path(nodes, 10)


def test_validate_path_rejects_ddim_indices_as_a_path() -> None:
    nodes = np.concatenate([[0], ddim_quadratic_indices(1000, 8) + 1])
    with pytest.raises(DdpmdpError, match="end at node T = 1000"):
        validate_path(nodes, 1000)


def test_snap_to_grid() -> None:
    grid = np.array([0, 1, 2, 4, 8, 16, 32])
    idx = snap_to_grid([0, 2, 8, 32], grid)
    assert idx.dtype == np.int64
    np.testing.assert_array_equal(idx, [0, 2, 4, 6])
    np.testing.assert_array_equal(grid[idx], [0, 2, 8, 32])
    full = np.arange(1001)
    p = even_stride(1000, 16)
    np.testing.assert_array_equal(snap_to_grid(p, full), p)


def test_snap_to_grid_names_missing_nodes() -> None:
    grid = np.array([0, 1, 2, 4, 8, 16, 32])
    with pytest.raises(DdpmdpError, match=r"2 path node\(s\) are not in the grid of 7 nodes \(0..32\): 3, 40"):
        snap_to_grid([0, 3, 8, 40], grid)
    with pytest.raises(DdpmdpError, match="strictly increasing"):
        snap_to_grid([0, 1], [0, 2, 1])
    with pytest.raises(DdpmdpError, match="must be integers"):
        snap_to_grid([0.0, 1.0], grid)


# ---- baselines at equal K (method.md §13.6): DDIM's quadratic, log-SNR, EDM -------------------

import math  # noqa: E402

from ddpmdp.path_specs import parse_path_spec  # noqa: E402
from ddpmdp.schedules import cosine_schedule, linear_schedule  # noqa: E402
from ddpmdp.strides import (  # noqa: E402
    baseline_stride,
    ddim_quadratic_stride,
    distinct_nodes,
    edm_stride,
    logsnr_stride,
)

SCHEDULES = {"linear:1000": linear_schedule(1000), "cosine:4000": cosine_schedule(4000),
             "linear:50": linear_schedule(50), "cosine:30": cosine_schedule(30)}


def _lam(abar: float) -> float:
    return float(np.log(abar / (1.0 - abar)))


def _brute_nearest(target: float, sched) -> int:
    """The node n in 1..T nearest ``target`` in log-SNR, by a plain loop (ties to the smaller n)."""
    best, best_d = 0, float("inf")
    for n in range(1, sched.T + 1):
        d = abs(_lam(float(sched.alphas_cumprod[n])) - target)
        if d < best_d:
            best, best_d = n, d
    return best


def test_ddim_quadratic_stride_is_ddims_rule_with_its_top_node_moved_to_T() -> None:
    np.testing.assert_array_equal(ddim_quadratic_stride(1000, 8), [0, 1, 17, 66, 147, 262, 409, 588, 1000])
    np.testing.assert_array_equal(ddim_quadratic_stride(4000, 8), [0, 1, 66, 262, 588, 1045, 1633, 2352, 4000])
    for T, K in ((1000, 8), (1000, 25), (4000, 32), (4000, 50)):  # no repeats: DDIM's nodes but the top one
        assert np.unique(ddim_quadratic_indices(T, K)).size == K
        np.testing.assert_array_equal(ddim_quadratic_stride(T, K)[1:-1], ddim_quadratic_indices(T, K)[:-1] + 1)
    # DDIM's rule repeats index 0 from K = 32 at T = 1000 ([0, 0, 3, 7, …]): the repeat moves up one node
    np.testing.assert_array_equal(ddim_quadratic_stride(1000, 32)[:5], [0, 1, 2, 4, 8])
    p = ddim_quadratic_stride(1000, 256)  # DDIM repeats 21 indices here: resolved upwards, still 256 steps
    assert p.shape == (257,) and np.all(np.diff(p) > 0) and p[-1] == 1000
    np.testing.assert_array_equal(ddim_quadratic_stride(7, 1), [0, 7])


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_logsnr_agrees_with_a_brute_force_nearest_node_search(name: str) -> None:
    sched = SCHEDULES[name]
    T = sched.T
    lam_T, lam_1 = _lam(float(sched.alphas_cumprod[T])), _lam(float(sched.alphas_cumprod[1]))
    compared = 0
    for K in (2, 3, 5, 8):
        targets = [lam_T + (K - 1 - i) / (K - 1) * (lam_1 - lam_T) for i in range(K)]  # ascending nodes
        brute = [_brute_nearest(x, sched) for x in targets]
        p = logsnr_stride(T, K, sched)
        if len(set(brute)) == K:  # no collisions: exactly the nearest nodes
            np.testing.assert_array_equal(p, [0] + brute)
            compared += 1
        assert p[1] == 1 and p[-1] == T and p.shape == (K + 1,)
    assert compared >= 2


@pytest.mark.parametrize("name", ["linear:1000", "cosine:4000", "linear:50"])
def test_edm_agrees_with_an_independent_karras_computation(name: str) -> None:
    """σ_i by k-diffusion's get_sigmas_karras formula (in torch, float64), mapped by a plain loop."""
    import torch

    sched = SCHEDULES[name]
    T = sched.T
    a = sched.alphas_cumprod
    smin, smax = float(np.sqrt((1 - a[1]) / a[1])), float(np.sqrt((1 - a[T]) / a[T]))
    compared = 0
    for K in (2, 4, 8, 10):
        ramp = torch.linspace(0, 1, K, dtype=torch.float64)
        min_inv, max_inv = smin ** (1 / 7), smax ** (1 / 7)
        sig = (max_inv + ramp * (min_inv - max_inv)) ** 7  # get_sigmas_karras without the trailing 0
        brute = sorted(_brute_nearest(-2 * math.log(float(s)), sched) for s in sig)
        p = edm_stride(T, K, sched)
        if len(set(brute)) == K:
            np.testing.assert_array_equal(p, [0] + brute)
            compared += 1
        assert p[1] == 1 and p[-1] == T
    assert compared >= 2


def test_edm_matches_diffusers_euler_karras_timesteps() -> None:
    """diffusers' EulerDiscreteScheduler(use_karras_sigmas=True) interpolates its Karras σ to fractional
    timesteps linearly in log σ; rounding them is the nearest node (node = timestep + 1)."""
    pytest.importorskip("diffusers")
    from diffusers import EulerDiscreteScheduler

    for K in (8, 10, 16, 25):
        sch = EulerDiscreteScheduler(num_train_timesteps=1000, use_karras_sigmas=True)
        sch.set_timesteps(K)
        theirs = np.sort(np.round(sch.timesteps.numpy().astype(np.float64)).astype(np.int64) + 1)
        np.testing.assert_array_equal(edm_stride(1000, K, linear_schedule(1000))[1:], theirs)


@pytest.mark.parametrize("name", list(SCHEDULES))
@pytest.mark.parametrize("stride", ["ddim-quadratic", "logsnr", "edm"])
def test_baselines_keep_exactly_K_distinct_nodes_up_to_K_equal_T(name: str, stride: str) -> None:
    sched = SCHEDULES[name]
    T = sched.T
    Ks = range(1, T + 1) if T <= 50 else [1, 2, 8, 64, 256, T // 2, T - 3, T - 1, T]
    for K in Ks:
        p = baseline_stride(stride, T, K, sched)
        assert p.dtype == np.int64 and p.shape == (K + 1,), (K, p)
        assert p[0] == 0 and p[-1] == T and np.all(np.diff(p) > 0), (K, p)
        if K >= 2:
            assert p[1] == 1, (K, p)
    np.testing.assert_array_equal(baseline_stride(stride, T, T, sched), np.arange(T + 1))


def test_collisions_are_resolved_upwards_then_packed_below_T() -> None:
    np.testing.assert_array_equal(distinct_nodes([1, 1, 1, 2, 5, 10], 10), [1, 2, 3, 4, 5, 10])
    np.testing.assert_array_equal(distinct_nodes([1, 9, 10, 10, 10], 10), [1, 7, 8, 9, 10])
    np.testing.assert_array_equal(distinct_nodes([1, 3, 7, 10], 10), [1, 3, 7, 10])  # no collision: unchanged
    # EDM crowds near the data at large K: a run of consecutive nodes from 1
    p = edm_stride(1000, 256, linear_schedule(1000))
    np.testing.assert_array_equal(p[:12], np.arange(12))


@pytest.mark.parametrize("spec", ["logsnr:0", "edm:1001", "ddim-quadratic:0", "even:1001", "edm:x", "bogus:8"])
def test_bad_baseline_specs_are_one_line_errors(spec: str) -> None:
    with pytest.raises(DdpmdpError) as exc:
        parse_path_spec(spec, linear_schedule(1000))
    assert "\n" not in str(exc.value)


def test_logsnr_and_edm_specs_need_the_noise_schedule() -> None:
    with pytest.raises(DdpmdpError, match="needs the noise schedule"):
        parse_path_spec("logsnr:8", 1000)
    np.testing.assert_array_equal(parse_path_spec("edm:8", linear_schedule(1000)),
                                  edm_stride(1000, 8, linear_schedule(1000)))
    np.testing.assert_array_equal(parse_path_spec("ddim-quadratic:8", 1000), ddim_quadratic_stride(1000, 8))


def test_baselines_as_grid_components() -> None:
    from ddpmdp.grids import parse_grid

    sched = linear_schedule(1000)
    g = parse_grid("log:20+logsnr:8,16+edm:8+ddim-quadratic:8", sched)
    for p in (logsnr_stride(1000, 8, sched), logsnr_stride(1000, 16, sched), edm_stride(1000, 8, sched),
              ddim_quadratic_stride(1000, 8)):
        assert set(p.tolist()) <= set(g.tolist())
    with pytest.raises(DdpmdpError, match="needs the noise schedule"):
        parse_grid("edm:8", 1000)
    with pytest.raises(DdpmdpError, match="K must lie in 1..T"):
        parse_grid("logsnr:0", sched)
