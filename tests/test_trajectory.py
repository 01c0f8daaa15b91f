"""The trajectory table C(t, s) and the held-out teacher distance (method.md §13) on the closed-form
Gaussian-data model: exact zeros, a cell against an independently coded DDIM step, batch-size
independence, resume, the DP and the solved-schedule file, and paired SEs against brute force."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from _models import CallCounter, NaNAt, gaussian_model, random_images, tiny_adapter
from ddpmdp.ddim import ddim_walk
from ddpmdp.dp import solve
from ddpmdp.errors import DdpmdpError
from ddpmdp.models.gaussian_data import GaussianDataModel
from ddpmdp.noise import STREAM_SAMPLE, STREAM_TEACHER, STREAM_TRAJECTORY, keyed_normal
from ddpmdp.sampling import sample_ddim
from ddpmdp.schedules import cosine_schedule, linear_schedule
from ddpmdp.table import TRAJECTORY_UNITS, load_table
from ddpmdp.trajectory import (default_batch_size, estimate_trajectory_table, paired_teacher_difference,
                               run_trajectory_table, teacher_distance, teacher_grids)

SHAPE = (1, 2, 3)


def wide_gaussian(T: int = 20, schedule=cosine_schedule) -> GaussianDataModel:
    """d = 6, a data spread so wide that x̂₀ leaves [−1, 1] often (clipping matters)."""
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    cov = (Q * np.array([0.05, 0.1, 0.3, 0.6, 1.0, 2.0])) @ Q.T
    return GaussianDataModel(rng.uniform(-0.5, 0.5, 6), cov, SHAPE, schedule(T))


def test_neighbouring_teacher_nodes_cost_exactly_zero_and_the_full_path_costs_zero():
    for teacher in (None, "stride:3"):
        model = wide_gaussian(30)
        tab = estimate_trajectory_table(model, 12, teacher_grid=teacher, grid=teacher or "all", batch_size=5)
        G = len(tab.nodes)
        idx = np.arange(1, G)
        assert np.all(tab.L[idx, idx - 1] == 0.0), tab.L[idx, idx - 1]  # exactly, not to tolerance
        lower = np.tril(np.ones((G, G), dtype=bool), -1)
        assert np.all(tab.L[lower] >= 0) and np.all(np.isfinite(tab.L[lower])) and np.all(np.isinf(tab.L[~lower]))
        assert np.all(tab.L[lower & ~np.eye(G, k=-1, dtype=bool)] > 0)  # every other edge errs
        sol = solve(tab.L, G - 1, tab.nodes)
        assert sol.costs[G - 1] == 0.0 and sol.path(G - 1).tolist() == tab.nodes.tolist()
        assert tab.prior == 0.0 and tab.meta["objective"] == "trajectory" and tab.meta["n_seeds"] == 12


def independent_teacher(model: GaussianDataModel, z: np.ndarray, teacher: list[int], clip: bool) -> dict:
    """Teacher states and (x̂₀, ε̃) per node, from the formulas in numpy: E[x₀ | x_t] for N(μ, Σ) data,
    x̂₀ = E[x₀ | x_t] (the Bayes denoiser, clipped), ε̃ = (x_t − √ᾱ_t x̂₀)/√(1 − ᾱ_t),
    Φ(t → s) = √ᾱ_s x̂₀ + √(1 − ᾱ_s) ε̃ (x̂₀ for s = 0)."""
    mu, cov, d = model.mean, model.cov, model.d
    abar = model.schedule.alphas_cumprod
    x = z.reshape(len(z), d).astype(np.float64)
    states, pairs = {teacher[-1]: x}, {}
    for t, s in zip(teacher[::-1][:-1], teacher[::-1][1:]):
        a = abar[t]
        gain = np.sqrt(a) * cov @ np.linalg.inv(a * cov + (1 - a) * np.eye(d))
        x0 = mu + (x - np.sqrt(a) * mu) @ gain.T
        x0 = np.clip(x0, -1, 1) if clip else x0
        eps = (x - np.sqrt(a) * x0) / np.sqrt(1 - a)
        pairs[t] = (x0, eps)
        x = x0 if s == 0 else np.sqrt(abar[s]) * x0 + np.sqrt(1 - abar[s]) * eps
        states[s] = x
    return {"states": states, "pairs": pairs}


@pytest.mark.parametrize("clip", [True, False])
def test_cells_equal_an_independently_coded_ddim_step(clip):
    model = wide_gaussian(24)
    n = 9
    tab = estimate_trajectory_table(model, n, grid="all", clip=clip, seed=4, batch_size=4)
    z = keyed_normal(4, torch.arange(n), 0, SHAPE, stream=STREAM_TRAJECTORY).double().numpy()
    ref = independent_teacher(model, z, list(range(25)), clip)
    abar = model.schedule.alphas_cumprod
    for t, s in [(24, 0), (24, 12), (15, 3), (9, 1), (20, 19), (5, 0)]:
        x0, eps = ref["pairs"][t]
        phi = x0 if s == 0 else np.sqrt(abar[s]) * x0 + np.sqrt(1 - abar[s]) * eps
        e = np.linalg.norm(phi - ref["states"][s], axis=1) / math.sqrt(model.d)
        assert tab.L[t, s] == pytest.approx(e.mean(), rel=1e-9, abs=1e-13), (t, s)
        assert tab.L_se[t, s] == pytest.approx(e.std(ddof=1) / math.sqrt(n), rel=1e-6, abs=1e-13), (t, s)
    if clip:  # the clip flag changes the cells (x̂₀ leaves [−1, 1] on this data)
        other = estimate_trajectory_table(model, n, grid="all", clip=False, seed=4)
        assert not np.allclose(other.L[24, :12], tab.L[24, :12])


def test_the_table_does_not_depend_on_the_batch_size_and_seeds_matter():
    model = wide_gaussian(20)
    tables = [estimate_trajectory_table(model, 11, grid="log:8", batch_size=b, seed=2) for b in (1, 4, 11)]
    for other in tables[1:]:
        np.testing.assert_allclose(other.L, tables[0].L, rtol=1e-12)
        np.testing.assert_allclose(other.L_se, tables[0].L_se, rtol=1e-8)
    other_seed = estimate_trajectory_table(model, 11, grid="log:8", seed=3)
    assert not np.allclose(other_seed.L[2:, :1], tables[0].L[2:, :1])


def test_one_teacher_run_per_seed_and_the_dp_grid_must_lie_in_the_teacher_grid():
    model = CallCounter(tiny_adapter(cosine_schedule(30), learned=False, image_shape=(3, 8, 8)))
    tab = estimate_trajectory_table(model, 5, teacher_grid="stride:2", grid="stride:6", batch_size=2)
    assert model.calls == 3 * 15  # ⌈5/2⌉ batches × (|𝒯| − 1) passes, whatever the DP grid
    assert tab.nodes.tolist() == [0, 6, 12, 18, 24, 30] and tab.meta["teacher_grid_size"] == 16
    with pytest.raises(DdpmdpError, match="holds node 3, which is not in the teacher grid 'stride:2'"):
        estimate_trajectory_table(model, 2, teacher_grid="stride:2", grid="stride:3")
    teacher, grid, _, spec = teacher_grids(300, "stride:3", None)  # the default grid snaps to the teacher grid
    assert set(grid) <= set(teacher) and 0 in grid and 300 in grid and "snapped" in spec


def test_baseline_grids_that_need_the_noise_schedule_are_accepted():
    """``edm:K`` and ``logsnr:K`` grid parts need ᾱ: the table parses its grids with the model's schedule."""
    from ddpmdp.grids import parse_grid

    model = tiny_adapter(cosine_schedule(30), learned=False, image_shape=(3, 8, 8))
    tab = estimate_trajectory_table(model, 2, grid="stride:10+edm:4+logsnr:3", batch_size=2)
    want = parse_grid("stride:10+edm:4+logsnr:3", model.schedule)
    assert tab.nodes.tolist() == want.tolist() and len(want) > 4
    with pytest.raises(DdpmdpError, match="needs the noise schedule"):
        teacher_grids(30, None, "edm:4")


def test_default_batch_size_bounds_the_kept_states():
    assert default_batch_size(201, 12288) == (1 << 30) // (2 * 200 * 12288 * 8) == 27
    assert default_batch_size(201, 3072) == 64 and default_batch_size(4001, 12288) == 1
    model = tiny_adapter(cosine_schedule(12), learned=False, image_shape=(3, 8, 8))
    assert estimate_trajectory_table(model, 2, grid="all").meta["batch_size"] == 64


def test_nan_from_the_model_names_the_node():
    model = NaNAt(tiny_adapter(cosine_schedule(20), learned=False, image_shape=(3, 8, 8)), bad_t=15)
    with pytest.raises(DdpmdpError, match="t = 15"):
        estimate_trajectory_table(model, 2)


def test_interrupted_run_resumes_bitwise(tmp_path):
    base = tiny_adapter(cosine_schedule(25), learned=False, image_shape=(3, 8, 8), dtype="float64")
    ref = tmp_path / "ref.npz"
    run_trajectory_table(base, n_seeds=9, grid="log:10", batch_size=2, seed=1, out=ref, progress=False)

    class Interrupt(CallCounter):
        def __call__(self, x_t, t):
            if self.calls == self.stop:
                raise KeyboardInterrupt
            return super().__call__(x_t, t)

    out = tmp_path / "t.npz"
    for stop in (2 * 25 + 7, 25 + 3):  # inside batch 2, then (resumed after batches 0, 1) inside batch 3
        model = Interrupt(base)
        model.stop = stop
        with pytest.raises(KeyboardInterrupt):
            run_trajectory_table(model, n_seeds=9, grid="log:10", batch_size=2, seed=1, out=out, resume=True,
                                 save_every=1, progress=False)
        assert (tmp_path / "t.npz.progress.npz").exists() and not out.exists()
    with pytest.raises(DdpmdpError, match="'n_seeds' was 9 and is now 10"):
        run_trajectory_table(base, n_seeds=10, grid="log:10", batch_size=2, seed=1, out=out, resume=True,
                             progress=False)
    counted = CallCounter(base)
    run_trajectory_table(counted, n_seeds=9, grid="log:10", batch_size=2, seed=1, out=out, resume=True,
                         progress=False)
    assert counted.calls == 2 * 25  # only batches 3 and 4 were left
    a, b = np.load(ref), np.load(out)
    for k in a.files:
        if k != "meta":
            assert np.array_equal(a[k], b[k], equal_nan=True), k
    assert not list(tmp_path.glob("*.progress*"))


def test_file_round_trip_units_and_format_checks(tmp_path):
    tab = estimate_trajectory_table(wide_gaussian(12), 4, grid="all")
    tab.save(tmp_path / "t.npz")
    back = load_table(tmp_path / "t.npz")
    assert np.array_equal(back.L, tab.L) and back.meta["units"] == TRAJECTORY_UNITS == back.meta["cost_units"]
    assert back.meta["sampler"] == {"kind": "ddim", "eta": 0.0, "clip": True} and back.meta["n_seeds"] == 4
    import json

    z = dict(np.load(tmp_path / "t.npz"))
    for change, needle in [({"units": "nats per image (summed over C*H*W dimensions)"}, "unexpected units"),
                           ({"format": "ddpmdp-table-9"}, "upgrade ddpmdp"),
                           ({"objective": "fid"}, "unknown table objective 'fid'")]:
        meta = dict(json.loads(str(z["meta"])), **change)
        np.savez(tmp_path / "bad.npz", **dict(z, meta=np.array(json.dumps(meta))))
        with pytest.raises(DdpmdpError, match=needle):
            load_table(tmp_path / "bad.npz")


def test_solved_trajectory_schedules_record_objective_sampler_and_cost(tmp_path):
    from ddpmdp.path_specs import parse_schedule_spec
    from ddpmdp.sampling import sample_ancestral
    from ddpmdp.schedule_file import SolvedSchedules, read_schedule_file, write_schedule_file

    model = wide_gaussian(16)
    tab = estimate_trajectory_table(model, 6, grid="all", clip=False)
    sol = solve(tab.L, 5, tab.nodes)
    solved = SolvedSchedules.from_table(tab, sol, [3, 5])
    write_schedule_file(tmp_path / "s.json", solved)
    doc = read_schedule_file(tmp_path / "s.json")
    assert doc.identity is not None and doc.identity.objective == "trajectory" and doc.identity.sampler.kind == "ddim"
    assert doc.sampler.to_json() == {"kind": "ddim", "eta": 0.0, "clip": False}
    b = doc.budget(3)
    assert b.bpd is None and b.nats is None and b.rules is None and b.cost == pytest.approx(sol.costs[3])
    sch = parse_schedule_spec(f"dp:{tmp_path / 's.json'}:3", 16)
    sample_ddim(model, sch, 2, SHAPE, clip=False)  # the recorded clip flag
    with pytest.raises(DdpmdpError, match="no clip"):  # the same steps with clipping are another sampler
        sample_ddim(model, sch, 2, SHAPE, clip=True)
    with pytest.raises(DdpmdpError, match="solved for the ddim"):
        sample_ancestral(model, sch, 2, SHAPE, variance="fixed_large")


def test_sample_ddim_eta0_is_the_teacher_walk_bitwise():
    model = tiny_adapter(cosine_schedule(30), learned=True, image_shape=(3, 8, 8), dtype="float64")
    nodes = [0, 2, 9, 17, 30]
    for clip in (True, False):
        got = sample_ddim(model, nodes, 5, (3, 8, 8), seed=3, clip=clip)
        z = keyed_normal(3, torch.arange(5), 0, (3, 8, 8), stream=STREAM_SAMPLE)
        assert torch.equal(got, ddim_walk(model, z, nodes, clip))


def test_teacher_distance_of_the_teacher_grid_itself_is_zero():
    model = wide_gaussian(40, linear_schedule)
    scores = teacher_distance(model, {"all": np.arange(41), "half": np.arange(0, 41, 2), "K3": [0, 4, 11, 40]}, 7,
                              batch_size=3)
    assert scores["all"].mean == 0.0 and scores["all"].se == 0.0 and scores["all"].nfe == 40
    assert scores["half"].mean > 0 and scores["K3"].mean > scores["half"].mean
    half = teacher_distance(model, {"half": np.arange(0, 41, 2)}, 7, teacher_grid="stride:2")["half"]
    assert half.mean == 0.0 and half.teacher_grid == "stride:2" and half.teacher_grid_size == 21
    d = scores["K3"].as_dict()
    assert d["nfe"] == 3 and d["noise_stream"] == STREAM_TEACHER != STREAM_TRAJECTORY and d["units"] == TRAJECTORY_UNITS


def test_teacher_distance_and_paired_se_against_brute_force():
    model = wide_gaussian(18)
    paths = {"a": [0, 3, 9, 18], "b": [0, 1, 6, 18], "c": [0, 9, 18]}
    n = 8
    scores = teacher_distance(model, paths, n, seed=5, batch_size=3)
    again = teacher_distance(model, paths, n, seed=5, batch_size=8)
    # brute force: one seed at a time, from the formulas (numpy), then the paired statistics by hand
    per_seed = {name: [] for name in paths}
    for i in range(n):
        z = keyed_normal(5, torch.tensor([i]), 0, SHAPE, stream=STREAM_TEACHER).double().numpy()
        target = independent_teacher(model, z, list(range(19)), True)["states"][0]
        for name, p in paths.items():
            x = independent_teacher(model, z, p, True)["states"][0]
            per_seed[name].append(float(np.sqrt(((x - target) ** 2).sum() / model.d)))
    for name in paths:
        np.testing.assert_allclose(scores[name].per_seed, per_seed[name], rtol=1e-9, atol=1e-14)
        np.testing.assert_allclose(again[name].per_seed, scores[name].per_seed, rtol=1e-12, atol=1e-15)
    for other in ("b", "c"):
        diffs = [x - y for x, y in zip(per_seed[other], per_seed["a"])]
        mean = sum(diffs) / n
        se = math.sqrt(sum((v - mean) ** 2 for v in diffs) / (n - 1) / n)
        got_mean, got_se = paired_teacher_difference(scores[other], scores["a"])
        assert got_mean == pytest.approx(mean, rel=1e-8) and got_se == pytest.approx(se, rel=1e-6)
        assert got_se < math.hypot(scores[other].se, scores["a"].se)  # pairing removes the shared seed variance
    with pytest.raises(DdpmdpError, match="same seeds"):
        paired_teacher_difference(scores["a"], teacher_distance(model, {"a": paths["a"]}, n, seed=6)["a"])


def test_table_and_evaluation_never_share_seeds():
    model = gaussian_model(random_images(30, shape=SHAPE, seed=1), cosine_schedule(10))
    z_table = keyed_normal(0, torch.arange(4), 0, SHAPE, stream=STREAM_TRAJECTORY)
    z_eval = keyed_normal(0, torch.arange(4), 0, SHAPE, stream=STREAM_TEACHER)
    assert not torch.allclose(z_table, z_eval)
    score = teacher_distance(model, {"K2": [0, 5, 10]}, 4)["K2"]
    assert score.stream == STREAM_TEACHER and score.n_seeds == 4
