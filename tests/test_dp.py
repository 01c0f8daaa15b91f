"""The DP (ddpmdp.dp) against brute-force enumeration and a plain min-plus loop."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from ddpmdp import dp
from ddpmdp.dp import DPSolution, solve
from ddpmdp.errors import DdpmdpError


def _path_cost(L: np.ndarray, idx) -> float:
    """Sum of L along grid indices idx (increasing), bottom edge first, as the DP adds."""
    c = 0.0
    for s, t in zip(idx[:-1], idx[1:]):
        c = c + L[t, s]
    return c


def _brute_force(L: np.ndarray, K: int) -> tuple[float, tuple[int, ...]]:
    """Least cost over all K-step paths G−1 → 0 and the path the DP must return.

    Among exactly tied optima the DP's tie rule (smallest predecessor at each
    backtracking step) picks the lexicographically smallest (i_{K−1}, …, i_1).
    """
    G = L.shape[0]
    best: tuple[float, tuple[int, ...]] | None = None
    for inner in itertools.combinations(range(1, G - 1), K - 1):
        idx = (0, *inner, G - 1)
        key = (_path_cost(L, idx), tuple(reversed(inner)))
        if best is None or key < best:
            best = key
    assert best is not None
    return best[0], (0, *reversed(best[1]), G - 1)


def _plain(L: np.ndarray, k_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference: the vectorised min-plus loop over k on the masked full table."""
    G = L.shape[0]
    Lm = np.where(np.tri(G, G, -1, dtype=bool), L, np.inf)
    C = np.full((k_max + 1, G), np.inf)
    C[0, 0] = 0.0
    D = np.zeros((k_max + 1, G), dtype=np.int64)
    for k in range(1, k_max + 1):
        M = C[k - 1][None, :] + Lm
        D[k] = M.argmin(axis=1)
        C[k] = M[np.arange(G), D[k]]
    return C, D


def _random_table(rng: np.random.Generator, G: int, kind: str) -> np.ndarray:
    if kind == "uniform":
        L = rng.random((G, G))
    elif kind == "ties":  # small integers: many exactly tied paths
        L = rng.integers(0, 3, (G, G)).astype(np.float64)
    elif kind == "signed":
        L = rng.normal(size=(G, G)) * 10.0
    else:
        raise AssertionError(kind)
    # Upper triangle and diagonal hold garbage unless inf: the DP must ignore it.
    upper = np.triu(np.ones((G, G), dtype=bool))
    L[upper] = rng.choice([np.inf, -np.inf, -5.0, 0.0], size=int(upper.sum()))
    return L


CASES = [(seed, kind) for seed in range(40) for kind in ("uniform", "ties", "signed")]
BACKENDS = ["numpy"] + (["numba"] if dp._HAVE_NUMBA else [])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed,kind", CASES)
def test_equals_brute_force_for_every_budget(seed: int, kind: str, backend: str) -> None:
    rng = np.random.default_rng(seed)
    G = int(rng.integers(2, 13))
    L = _random_table(rng, G, kind)
    sol = solve(L, G - 1, backend=backend)  # type: ignore[arg-type]
    assert sol.costs.shape == (G,) and sol.costs.dtype == np.float64
    assert sol.costs[0] == np.inf
    for K in range(1, G):
        cost, idx = _brute_force(L, K)
        assert sol.costs[K] == cost
        got = sol.path_indices(K)
        assert tuple(got) == idx
        assert _path_cost(L, got) == sol.costs[K]
        np.testing.assert_array_equal(sol.path(K), got)  # default nodes = arange(G)


@pytest.mark.parametrize(
    "backend,threads", [("numpy", 1), ("numpy", 2)] + [("numba", 1)] * ("numba" in BACKENDS)
)
@pytest.mark.parametrize("block", [1, 2, 3, 5])
def test_small_blocks_and_threads_equal_brute_force(
    block: int, backend: str, threads: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dp, "_BLOCK", block)
    monkeypatch.setattr(dp, "_MIN_PARALLEL_WORK", 0)  # start threads even for tiny blocks
    for seed in range(8):
        rng = np.random.default_rng(1000 + seed)
        G = int(rng.integers(2, 13))
        L = _random_table(rng, G, ("uniform", "ties")[seed % 2])
        sol = solve(L, G - 1, backend=backend, n_threads=threads)  # type: ignore[arg-type]
        for K in range(1, G):
            cost, idx = _brute_force(L, K)
            assert sol.costs[K] == cost
            assert tuple(sol.path_indices(K)) == idx


@pytest.mark.parametrize("block", [1, 3, 128])
def test_uncompiled_kernel_equals_brute_force(block: int) -> None:
    """The numba kernel's Python source, run without numba, on tiny tables."""
    for seed in range(6):
        rng = np.random.default_rng(2000 + seed)
        G = int(rng.integers(2, 10))
        L = np.ascontiguousarray(_random_table(rng, G, ("uniform", "ties")[seed % 2]))
        C = np.full((G, G), np.inf)
        C[0, 0] = 0.0
        D = np.full((G, G), -1, dtype=np.int16)
        dp._blocked_kernel(L, C, D, min(block, G - 1))
        for K in range(1, G):
            cost, idx = _brute_force(L, K)
            assert C[K, -1] == cost
            path = [G - 1]
            for k in range(K, 0, -1):
                path.append(int(D[k, path[-1]]))
            assert tuple(reversed(path)) == idx


def test_backend_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    L = _table()
    ref = solve(L, 5, backend="numpy")
    np.testing.assert_array_equal(solve(L, 5, backend="auto").costs, ref.costs)
    with pytest.raises(DdpmdpError, match="backend must be"):
        solve(L, 5, backend="cuda")  # type: ignore[arg-type]
    monkeypatch.setattr(dp, "_HAVE_NUMBA", False)  # as if numba were not installed
    with pytest.raises(DdpmdpError, match="needs numba"):
        solve(L, 5, backend="numba")
    np.testing.assert_array_equal(solve(L, 5).predecessors, ref.predecessors)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("G,k_max,block", [(200, 199, 16), (300, 40, 64), (129, 128, 128), (130, 129, 128)])
def test_equals_plain_min_plus_loop(
    G: int, k_max: int, block: int, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dp, "_BLOCK", block)
    monkeypatch.setattr(dp, "_MIN_PARALLEL_WORK", 0)
    rng = np.random.default_rng(G)
    for L in (rng.random((G, G)), rng.integers(0, 4, (G, G)).astype(np.float64)):
        C, D = _plain(L, k_max)
        sol = solve(L, k_max, backend=backend, n_threads=2)  # type: ignore[arg-type]
        np.testing.assert_array_equal(sol.costs, C[:, -1])
        feasible = np.isfinite(C)
        feasible[0] = False
        np.testing.assert_array_equal(sol.predecessors[feasible], D[feasible])
        assert np.all(sol.predecessors[~feasible] == -1)
        for K in (1, k_max // 2, k_max):
            assert np.isclose(_path_cost(L, sol.path_indices(K)), sol.costs[K], rtol=0, atol=1e-9)


def test_non_arange_grid() -> None:
    rng = np.random.default_rng(7)
    nodes = np.array([0, 1, 3, 7, 20, 21, 50, 99, 100], dtype=np.int32)
    G = nodes.size
    L = _random_table(rng, G, "uniform")
    sol = solve(L, G - 1, nodes)
    assert sol.T == 100 and sol.nodes.dtype == np.int64
    for K in range(1, G):
        cost, idx = _brute_force(L, K)
        assert sol.costs[K] == cost
        p = sol.path(K)
        assert p.dtype == np.int64 and p.shape == (K + 1,)
        np.testing.assert_array_equal(p, nodes[list(idx)])
        assert p[0] == 0 and p[-1] == 100


def test_full_budget_is_the_full_chain_and_one_step_is_the_single_edge() -> None:
    L = _random_table(np.random.default_rng(3), 11, "uniform")
    sol = solve(L, 10)
    np.testing.assert_array_equal(sol.path(10), np.arange(11))
    np.testing.assert_array_equal(sol.path(1), [0, 10])
    assert sol.costs[1] == L[10, 0]
    assert sol.costs[10] == _path_cost(L, range(11))


def test_solution_layout() -> None:
    G, k_max = 9, 4
    sol = solve(_random_table(np.random.default_rng(0), G, "uniform"), k_max)
    assert isinstance(sol, DPSolution) and sol.k_max == k_max
    assert sol.predecessors.shape == (k_max + 1, G) and sol.predecessors.dtype == np.int16
    assert np.all(sol.predecessors[0] == -1)
    for k in range(1, k_max + 1):
        assert np.all(sol.predecessors[k, :k] == -1)  # k > i: infeasible
        assert np.all(sol.predecessors[k, k:] >= k - 1)
    for a in (sol.nodes, sol.costs, sol.predecessors):
        assert not a.flags.writeable
    assert "k_max=4" in repr(sol)


def test_float32_table_is_accepted() -> None:
    L = _random_table(np.random.default_rng(5), 7, "uniform")
    L32 = np.where(np.isfinite(L), L, np.inf).astype(np.float32)
    sol = solve(L32, 6)
    assert sol.costs.dtype == np.float64
    assert sol.costs[3] == _brute_force(L32.astype(np.float64), 3)[0]


# ---- errors -----------------------------------------------------------------


def _table(G: int = 6) -> np.ndarray:
    return _random_table(np.random.default_rng(0), G, "uniform")


@pytest.mark.parametrize("k_max", [0, -1, 6, 100])
def test_k_max_out_of_range(k_max: int) -> None:
    with pytest.raises(DdpmdpError, match=r"1 <= k_max <= G - 1 = 5 .*G = 6 nodes.*got k_max = "):
        solve(_table(6), k_max)


@pytest.mark.parametrize("k_max", [2.0, True, "3"])
def test_k_max_not_an_integer(k_max: object) -> None:
    with pytest.raises(DdpmdpError, match="k_max must be an integer"):
        solve(_table(), k_max)  # type: ignore[arg-type]


def test_path_budget_out_of_range() -> None:
    sol = solve(_table(6), 3)
    for K in (0, 4, -1):
        with pytest.raises(DdpmdpError, match=r"1 <= K <= k_max = 3"):
            sol.path(K)
    with pytest.raises(DdpmdpError, match="must be an integer"):
        sol.path_indices(2.0)  # type: ignore[arg-type]


def test_nan_is_named() -> None:
    L = _table()
    L[4, 2] = np.nan
    with pytest.raises(DdpmdpError, match=r"NaN, first at L\[4, 2\] \(edge from node 4 to node 2\)"):
        solve(L, 3)
    L = _table()
    L[1, 3] = np.nan  # above the diagonal: still a corrupt table
    with pytest.raises(DdpmdpError, match=r"NaN, first at L\[1, 3\]"):
        solve(L, 3)


def test_non_finite_lower_triangle_is_named() -> None:
    L = _table()
    L[5, 1] = np.inf
    L[3, 0] = -np.inf
    with pytest.raises(DdpmdpError, match=r"finite below the diagonal.*L\[3, 0\] .* is -inf"):
        solve(L, 3, np.array([0, 2, 4, 6, 8, 10]))
    with pytest.raises(DdpmdpError, match=r"edge from node 6 to node 0"):
        solve(L, 3, np.array([0, 2, 4, 6, 8, 10]))


@pytest.mark.parametrize(
    "L,match",
    [
        (np.zeros((3, 4)), "square"),
        (np.zeros(4), "square"),
        (np.zeros((2, 3, 3)), "square"),
        (np.zeros((1, 1)), "at least 2 grid nodes"),
        (np.tril(np.ones((4, 4), dtype=np.int64), -1), "floating dtype"),
    ],
)
def test_bad_table_shape_or_dtype(L: np.ndarray, match: str) -> None:
    with pytest.raises(DdpmdpError, match=match):
        solve(L, 1)


@pytest.mark.parametrize(
    "nodes,match",
    [
        (np.array([0, 1, 3, 3, 4, 5]), r"strictly increasing, but nodes\[3\] = 3 <= nodes\[2\] = 3"),
        (np.array([0, 5, 4, 6, 7, 8]), r"nodes\[2\] = 4 <= nodes\[1\] = 5"),
        (np.array([1, 2, 3, 4, 5, 6]), r"start at node 0.*nodes\[0\] = 1"),
        (np.array([0, 1, 2, 3, 4]), "5 entries but the cost table has G = 6"),
        (np.array([0.0, 1, 2, 3, 4, 5]), "must be integers"),
        (np.arange(6).reshape(2, 3), "1-D"),
    ],
)
def test_bad_nodes(nodes: np.ndarray, match: str) -> None:
    with pytest.raises(DdpmdpError, match=match):
        solve(_table(6), 2, nodes)


def test_bad_thread_count() -> None:
    with pytest.raises(DdpmdpError, match="n_threads"):
        solve(_table(), 2, n_threads=0)
