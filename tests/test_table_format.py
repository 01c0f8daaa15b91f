"""Table files store rule names (format ddpmdp-table-2): codes are read through the file's own
name map, format-1 files through the frozen format-1 order, and unknown or newer formats are
refused in one line naming the writer's version."""
from __future__ import annotations

import json

import numpy as np
import pytest

from _models import random_images, tiny_adapter
from ddpmdp.errors import DdpmdpError
from ddpmdp.inference_schedule import InferenceSchedule
from ddpmdp.rescore import RULE_CODE
from ddpmdp.schedules import cosine_schedule
from ddpmdp.table import FORMAT, FORMAT1_RULE_ORDER, load_table
from ddpmdp.table_estimation import estimate_table
from ddpmdp.version import __version__

NODES = np.array([0, 1, 2, 3, 5, 9, 17, 30])


@pytest.fixture(scope="module")
def best(tmp_path_factory):
    """A saved ``best`` table (cells of two rules) and the per-edge rules of a path through it. On a
    random network ``optimal`` wins every cell, so the path's odd edges are marked learned-range."""
    model = tiny_adapter(cosine_schedule(30), learned=True, seed=5)
    table = estimate_table(model, random_images(16, seed=6), variance="best", batch_size=16, seed=1)
    pos = np.searchsorted(table.nodes, NODES)
    i, j = pos[1::2], pos[:-1:2]
    table.edge_rule[i, j] = RULE_CODE["learned_range"]
    table.sigma2[i, j] = np.nan
    path = tmp_path_factory.mktemp("fmt") / "best.npz"
    table.save(path)
    rules = InferenceSchedule.from_table(table, NODES).rules
    assert set(rules) == {"learned_range", "optimal"}, rules  # the test needs both codes on the path
    return path, table, rules


def rewrite(src, dst, meta_update: dict, drop=(), edge_rule=None):
    """Copy a table file with its metadata updated (keys in ``drop`` removed) and new rule codes."""
    with np.load(src, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta"]))
    meta.update(meta_update)
    for k in drop:
        meta.pop(k, None)
    arrays["meta"] = np.array(json.dumps(meta))
    if edge_rule is not None:
        arrays["edge_rule"] = edge_rule
    np.savez(dst, **arrays)


def test_written_files_name_their_rule_codes(best):
    path, table, rules = best
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
    assert meta["format"] == FORMAT == "ddpmdp-table-2"
    assert meta["edge_rule_names"] == list(table.edge_rule_names)
    back = load_table(path)
    assert InferenceSchedule.from_table(back, NODES).rules == rules and "edge_rule_names" not in back.meta


def test_a_name_map_in_another_order_reads_the_same_rules(best, tmp_path):
    path, table, rules = best
    names = list(table.edge_rule_names)
    order = names[::-1]  # what a ddpmdp with the rules in another order would write
    codes = np.where(table.edge_rule >= 0, np.array([order.index(names[c]) for c in range(len(names))],
                                                    dtype=np.int8)[table.edge_rule], -1).astype(np.int8)
    rewrite(path, tmp_path / "reordered.npz", {"edge_rule_names": order}, edge_rule=codes)
    back = load_table(tmp_path / "reordered.npz")
    sch = InferenceSchedule.from_table(back, NODES)
    assert sch.rules == rules
    np.testing.assert_array_equal(sch.sigma2, InferenceSchedule.from_table(table, NODES).sigma2)
    G = len(back.nodes)
    lower = np.tril_indices(G, -1)
    assert back.cell_rules(*lower) == table.cell_rules(*lower)


def test_format1_files_read_through_the_frozen_order(best, tmp_path):
    path, table, rules = best
    codes = np.where(table.edge_rule >= 0, np.array([FORMAT1_RULE_ORDER.index(n) for n in table.edge_rule_names],
                                                    dtype=np.int8)[table.edge_rule], -1).astype(np.int8)
    rewrite(path, tmp_path / "v1.npz", {"format": "ddpmdp-table-1"}, drop=("edge_rule_names",), edge_rule=codes)
    back = load_table(tmp_path / "v1.npz")
    assert back.edge_rule_names == FORMAT1_RULE_ORDER
    assert InferenceSchedule.from_table(back, NODES).rules == rules
    back.save(tmp_path / "again.npz")  # re-saved as format 2 with its map
    assert InferenceSchedule.from_table(load_table(tmp_path / "again.npz"), NODES).rules == rules


@pytest.mark.parametrize("fmt,match", [
    ("ddpmdp-table-3", r"written by ddpmdp 9\.9\.9 in format ddpmdp-table-3; this ddpmdp \(.+\) reads "
                       r"ddpmdp-table-1 and ddpmdp-table-2: upgrade ddpmdp"),
    ("other-tool-7", r"written by ddpmdp 9\.9\.9 in an unknown format 'other-tool-7'"),
])
def test_unknown_or_newer_formats_are_refused(best, tmp_path, fmt, match):
    path, _, _ = best
    rewrite(path, tmp_path / "new.npz", {"format": fmt, "version": "9.9.9"})
    with pytest.raises(DdpmdpError, match=match) as err:
        load_table(tmp_path / "new.npz")
    assert "\n" not in str(err.value) and f"({__version__})" in str(err.value)


def test_rule_names_this_version_does_not_know_are_refused(best, tmp_path):
    path, table, _ = best
    names = list(table.edge_rule_names)
    names[names.index("optimal")] = "future_rule"
    rewrite(path, tmp_path / "future.npz", {"edge_rule_names": names})
    with pytest.raises(DdpmdpError, match="future_rule.*upgrade ddpmdp"):
        load_table(tmp_path / "future.npz")
    rewrite(path, tmp_path / "nomap.npz", {}, drop=("edge_rule_names",))
    with pytest.raises(DdpmdpError, match="edge_rule_names"):
        load_table(tmp_path / "nomap.npz")
