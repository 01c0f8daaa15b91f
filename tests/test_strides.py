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
