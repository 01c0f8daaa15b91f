"""Paths: the sum of table cells along a path equals a direct evaluation of that path's ELBO."""
from __future__ import annotations

import math

import numpy as np
import pytest

from _models import random_images, tiny_adapter
from ddpmdp.table_estimation import estimate_table
from ddpmdp.errors import DdpmdpError
from ddpmdp.evaluate import evaluate_paths, paired_difference, path_from_table
from ddpmdp.schedules import cosine_schedule


@pytest.mark.parametrize("rule", ["fixed_small", "fixed_large", "learned_range"])
def test_table_path_sum_matches_direct_elbo(rule):
    sched = cosine_schedule(30)
    model = tiny_adapter(sched, learned=True, seed=5)
    images = random_images(96, shape=(3, 8, 8), seed=6)
    table = estimate_table(model, images, variance=rule, batch_size=32, seed=1)
    paths = {"full": np.arange(31), "short": np.array([0, 1, 9, 30]), "odd": np.array([0, 4, 5, 17, 29, 30]),
             "one": np.array([0, 30])}
    direct = evaluate_paths(model, images, paths, variance=rule, batch_size=32, seed=2)
    for name, nodes in paths.items():
        from_table = path_from_table(table, nodes)
        d = direct[name]
        # same images, independent noise: the difference is MC noise only
        tol = 4 * math.hypot(from_table.nats_se, d.nats_se)
        assert abs(from_table.nats - d.nats) < tol, (name, from_table.nats, d.nats, tol)
        # per-edge terms agree as well
        np.testing.assert_allclose(from_table.terms, d.terms, rtol=0.25, atol=4 * from_table.nats_se)
        assert d.bpd == pytest.approx(d.nats / (192 * math.log(2)))


def test_evaluation_never_reuses_table_noise():
    """Same images and the same seed: evaluation draws from its own noise stream, so totals differ."""
    sched = cosine_schedule(10)
    model = tiny_adapter(sched, learned=False)
    images = random_images(8)
    table = estimate_table(model, images, variance="fixed_small", seed=0)
    direct = evaluate_paths(model, images, {"full": np.arange(11)}, variance="fixed_small", seed=0)["full"]
    assert direct.nats != pytest.approx(path_from_table(table, np.arange(11)).nats, rel=1e-9)


def test_paired_difference_and_validation():
    sched = cosine_schedule(20)
    model = tiny_adapter(sched, learned=False)
    images = random_images(16)
    res = evaluate_paths(model, images, {"a": [0, 1, 10, 20], "b": [0, 1, 20]}, variance="fixed_large")
    diff, se = paired_difference(res["a"], res["b"])
    assert diff == pytest.approx(res["a"].bpd - res["b"].bpd) and se > 0
    table = estimate_table(model, images, variance="fixed_large", grid_stride=5)
    with pytest.raises(DdpmdpError, match="not in the table's grid"):
        path_from_table(table, [0, 1, 20])
    with pytest.raises(DdpmdpError, match="strictly increasing"):
        path_from_table(table, [0, 10, 10, 20])
