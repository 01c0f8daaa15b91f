"""The sample-fidelity schedules driver (ddpmdp.book.experiments.sampling_schedules) and its report
module: the fresh-seed walk against ddpmdp.trajectory.teacher_distance, the grids, one end-to-end run
on the closed-form Gaussian model, and the generated verdicts on synthetic scores."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from _models import MeansExtractor, gaussian_model, random_images

from ddpmdp.book.experiments import sampling_schedules as ss
from ddpmdp.book.experiments import sampling_schedules_report as rep
from ddpmdp.data.images import ImageSet
from ddpmdp.errors import DdpmdpError
from ddpmdp.grids import parse_grid
from ddpmdp.schedules import linear_schedule
from ddpmdp.table_estimation import estimate_table
from ddpmdp.trajectory import TeacherScore, teacher_distance

T = 40
SHAPE = (3, 4, 4)


@pytest.fixture(scope="module")
def model():
    return gaussian_model(random_images(64, shape=SHAPE, seed=4), linear_schedule(T))


@pytest.fixture(scope="module")
def elbo(model):
    return estimate_table(model, random_images(6, shape=SHAPE, seed=5), variance="fixed_large",
                          nodes=parse_grid("log:12+even:2,3,4+quadratic:2,3,4", T), batch_size=6)


@pytest.fixture(scope="module")
def result(model, elbo):
    real = ImageSet(random_images(12, shape=SHAPE, seed=6), "real-array", "test")
    return ss.run_sampling_schedules(model, elbo, label="toy", budgets=[2, 3, 4], teacher_grid="stride:5",
                                     grid="log:8", n_selection=6, n_fresh=8, real=real, extractor=MeansExtractor("means (test)", "test KID"),
                                     kid_mode="pooled", batch_size=3)


def test_teacher_run_equals_teacher_distance(model):
    paths = {"a": np.array([0, 3, 17, T]), "b": np.array([0, 1, 9, 25, T]), "a again": np.array([0, 3, 17, T])}
    scores, samples, teacher = ss.teacher_run(model, paths, 7, teacher_grid="stride:4", batch_size=3)
    ref = teacher_distance(model, paths, 7, teacher_grid="stride:4", batch_size=3)
    for name in paths:
        np.testing.assert_array_equal(scores[name].per_seed, ref[name].per_seed)
        assert (scores[name].mean, scores[name].se, scores[name].teacher_grid) == (ref[name].mean, ref[name].se,
                                                                                   "stride:4")
        assert samples[name].shape == (7, *SHAPE) and samples[name].dtype == np.uint8
    np.testing.assert_array_equal(samples["a"], samples["a again"])
    assert teacher.shape == (7, *SHAPE) and teacher.dtype == np.uint8
    with pytest.raises(DdpmdpError, match="at least 2 fresh seeds"):
        ss.teacher_run(model, paths, 1, teacher_grid="stride:4")


def test_fidelity_grids_hold_every_compared_node(model, elbo):
    paths = ss.comparison_paths(model, [2, 4], elbo)
    assert list(paths) == [*ss.STRIDES, ss.ELBO_DP, ss.MSE_DP]
    tspec, gspec, teacher, grid = ss.fidelity_grids(T, "stride:10", "log:6", paths)
    used = np.unique(np.concatenate([p for d in paths.values() for p in d.values()]))
    assert np.isin(used, grid).all() and np.isin(parse_grid("log:6", T), grid).all()
    assert np.isin(grid, teacher).all() and np.isin(parse_grid("stride:10", T), teacher).all()
    np.testing.assert_array_equal(parse_grid(tspec, T), teacher)
    np.testing.assert_array_equal(parse_grid(gspec, T), grid)


def test_run_compares_every_path_on_fresh_seeds(result):
    assert list(result.paths) == list(ss.PATHS) and result.budgets == (2, 3, 4)
    for name in ss.PATHS:
        for K in result.budgets:
            sc = result.scores[name][K]
            assert sc.K == K and sc.n_seeds == 8 and np.isfinite(sc.mean) and result.samples[name][K].shape[0] == 8
            assert result.selection_cost[ss.TRAJECTORY][K] <= result.selection_cost[name][K] * (1 + 1e-9)
            assert result.kid[name][K].n_generated == 8 and result.kid[name][K].n_real == 12
    assert result.n_selection == 6 and result.table.meta["objective"] == "trajectory"
    assert result.kid_info["pooled"] and "pooled" in result.kid_info["label"]
    assert set(result.seconds) == {"trajectory table", "DP", "teacher distance and samples", "KID"}
    header, rows = rep.metric_table(result, "teacher")
    assert header == ["Path", "K=2 · NFE 2", "K=3 · NFE 3", "K=4 · NFE 4"] and [r[0] for r in rows] == list(ss.PATHS)
    header, rows = rep.difference_table(result, "kid")
    assert len(rows) == len(ss.PATHS) - 1 and header[0] == "Trajectory DP −"
    cap = rep.distance_caption(result)
    assert "8 fresh seeds" in cap and "6 selection seeds" in cap and "NFE = K" in cap
    kcap = rep.kid_caption(result)
    assert "means (test)" in kcap and "12 held-out real images" in kcap and "pooled" in kcap
    assert len(rep.summary_lines(result, "kid")) == 3
    grids = rep.grid_images(result, [2, 4, 99], 2)
    assert list(grids)[-1] == "teacher" and list(grids[ss.TRAJECTORY]) == ["K = 2", "K = 4"]


def _synthetic(per_seed: dict[str, dict[int, np.ndarray]], same: tuple[str, int] | None = None):
    """A FidelityResult whose teacher distances are the given per-seed arrays (paths made distinct
    except ``same``, which copies the trajectory DP path)."""
    Ks = tuple(sorted(next(iter(per_seed.values()))))
    paths = {name: {K: np.array([0, 1 + i, 20 + K, T]) for K in Ks} for i, name in enumerate(ss.PATHS)}
    if same is not None:
        paths[same[0]][same[1]] = paths[ss.TRAJECTORY][same[1]].copy()
    scores = {name: {K: TeacherScore(paths[name][K], float(e.mean()), float(e.std(ddof=1) / np.sqrt(len(e))), len(e),
                                     "all", T + 1, True, 0, 5, e) for K, e in d.items()}
              for name, d in per_seed.items()}
    cost = {name: {K: 1.0 + (name != ss.TRAJECTORY) for K in Ks} for name in ss.PATHS}
    table = SimpleNamespace(meta={"n_seeds": 16, "clip": True})
    return ss.FidelityResult("synthetic", "model@x", T, Ks, paths, table, None, cost, scores, {}, np.zeros(0),  # type: ignore[arg-type]
                             "all", "nodes", "all", "log:8", T + 1, 9, 12, {})


def test_verdicts_and_must_show_sentences_on_synthetic_scores():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.3, 12)
    noise = rng.normal(0, 1, 12)
    per_seed = {name: {4: base + 0.05, 8: base + 0.05} for name in ss.PATHS}
    per_seed[ss.TRAJECTORY] = {4: base.copy(), 8: base.copy()}            # better than everything at K = 4 ...
    per_seed["log-SNR"][8] = base + 0.001 * noise                          # ... but at K = 8 within 2 SE of log-SNR,
    per_seed["EDM ρ=7"][8] = base - 0.02 + 0.001 * noise                   # behind EDM beyond 2 SE,
    per_seed["even"][8] = base.copy()                                      # and the same path as even
    r = _synthetic(per_seed, same=("even", 8))
    comps = rep.comparisons(r)
    assert all(c.verdict == "gain" for c in comps[4])
    v8 = {c.other: (c.verdict, c.same_path) for c in comps[8]}
    assert v8["log-SNR"] == ("within", False) and v8["EDM ρ=7"] == ("loss", False) and v8["even"] == ("within", True)
    assert v8["quadratic"] == ("gain", False)
    lines = rep.must_show_lines(r, (4, 8, 16))
    assert "holds at K = 4" in lines[0] and "**does not hold** at K = 8" in lines[0] and "K = 16 not run" in lines[0]
    why = lines[1]
    assert why.startswith("At K = 8:") and "same nodes as even" in why and "12 fresh seeds do not tell" in why
    assert "EDM ρ=7 is closer to the teacher" in why and "summed local error" in why and "sample fidelity" in why
    k4, k8 = rep.summary_lines(r, "teacher")
    assert k4.startswith("K = 4 (NFE 4): the trajectory DP path is closer to the teacher than every other path")
    assert "is within 2 SE of even (the same path)" in k8 and "is farther from the teacher than EDM ρ=7" in k8
    header, rows = rep.metric_table(r)
    traj = rows[-1]
    assert traj[0] == ss.TRAJECTORY and traj[1].endswith(("0", "1", "2", "3", "4", "5", "6", "7", "8", "9"))
    assert traj[2].endswith("†‡")
    _, diffs = rep.difference_table(r)
    assert diffs[0][2] == "same path" and diffs[4][2].endswith("†")
    held = rep.must_show_lines(_synthetic({name: {4: base + (0 if name == ss.TRAJECTORY else 0.05)}
                                           for name in ss.PATHS}), (4,))
    assert held == [held[0]] and held[0].endswith("**holds** at every one of these K.")


def test_pool2x2_and_kid_exponent(result):
    x = np.arange(2 * 3 * 4 * 4, dtype=np.uint8).reshape(2, 3, 4, 4)
    p = ss.pool2x2(x)
    assert p.shape == (2, 3, 2, 2) and p.dtype == np.uint8
    assert p[0, 0, 0, 0] == round((0 + 1 + 4 + 5) / 4 + 1e-9)  # 2.5 rounds half up to 3
    with pytest.raises(DdpmdpError, match="even H and W"):
        ss.pool2x2(np.zeros((1, 3, 3, 4), np.uint8))
    e = rep.kid_exponent(result)
    top = max(abs(k.value) for d in result.kid.values() for k in d.values())
    assert e % 3 == 0 and 1 <= top / 10.0 ** e < 1000
