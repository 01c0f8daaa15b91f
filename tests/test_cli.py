"""The command line: table → solve → evaluate → sample on the Gaussian-data model, and user errors."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from _cli import run
from _models import random_images
from ddpmdp.cli.main import main
from ddpmdp.table import load_table


@pytest.fixture()
def npz_data(tmp_path):
    train, test = tmp_path / "train.npz", tmp_path / "test.npz"
    np.savez(train, images=random_images(40, shape=(1, 4, 4), seed=1), split="train")
    np.savez(test, images=random_images(30, shape=(1, 4, 4), seed=2), split="test")
    return train, test


def test_table_solve_evaluate_sample(tmp_path, npz_data, capsys):
    train, test = npz_data
    model = f"gaussian:{train}"
    sched = "cosine:30"
    tab = tmp_path / "train_table.npz"
    code, out, _ = run(["table", "--model", model, "--noise-schedule", sched, "--data", train, "--out", tab,
                        "--variance", "fixed_large", "--batch-size", "16", "--quiet"], capsys)
    assert code == 0 and json.loads(out.splitlines()[-1])["event"] == "table_done"
    table = load_table(tab)
    assert table.meta["split"] == "train" and table.meta["n_images"] == 40 and table.L.shape == (31, 31)

    code, out, _ = run(["solve", tab, "--budgets", "2,5,30", "--json"], capsys)
    solved = json.loads(out)
    assert code == 0 and solved["budgets"]["30"]["nodes"] == list(range(31))
    assert len(solved["budgets"]["5"]["nodes"]) == 6
    (tmp_path / "dp.json").write_text(out)

    held = tmp_path / "test_table.npz"
    code, *_ = run(["table", "--model", model, "--noise-schedule", sched, "--data", test, "--out", held,
                    "--variance", "fixed_large", "--quiet", "--seed", "3"], capsys)
    assert code == 0
    specs = ["even:5", "quadratic:5", f"dp:{tmp_path / 'dp.json'}:5", "nodes:0,1,10,20,30"]
    args = ["evaluate", held, "--json"] + sum((["--schedule", s] for s in specs), [])
    code, out, _ = run(args, capsys)
    scores = json.loads(out)
    assert code == 0 and set(scores) == set(specs)
    for s in scores.values():
        assert s["split"] == "test" and s["bpd_se"] > 0 and s["K"] == s["nfe"] == len(s["nodes"]) - 1

    # direct K-pass evaluation on held-out images agrees with the held-out table within MC error
    code, out, _ = run(["evaluate", "--model", model, "--noise-schedule", sched, "--data", test, "--json", "--quiet",
                        "--variance", "fixed_large", "--schedule", "even:5"], capsys)
    direct = json.loads(out)["even:5"]
    assert abs(direct["bpd"] - scores["even:5"]["bpd"]) < 4 * (direct["bpd_se"] + scores["even:5"]["bpd_se"])
    # several paths evaluated directly: paired differences against the first one
    code, out, _ = run(["evaluate", "--model", model, "--noise-schedule", sched, "--data", test, "--json", "--quiet",
                        "--variance", "fixed_large", "--schedule", "even:5", "--schedule", "quadratic:5"], capsys)
    both = json.loads(out)
    p = both["quadratic:5"]["paired_vs_first"]
    assert p["minus"] == "even:5" and p["diff_se"] > 0
    assert p["diff"] == pytest.approx(both["quadratic:5"]["bpd"] - both["even:5"]["bpd"], abs=1e-12)

    png = tmp_path / "s.png"
    code, out, _ = run(["sample", "--model", model, "--noise-schedule", sched, "--schedule", "even:5", "--n", "6",
                        "--out", png, "--npz", tmp_path / "s.npz", "--variance", "fixed_large"], capsys)
    assert code == 0 and png.stat().st_size > 0
    imgs = np.load(tmp_path / "s.npz")["images"]
    assert imgs.dtype == np.uint8 and imgs.shape == (6, 1, 4, 4)


@pytest.mark.parametrize("argv,needle", [
    (["solve", "{tab}", "--budgets", "0,4"], "budgets must lie in 1..10"),
    (["solve", "{tab}", "--budgets", "11"], "budgets must lie in 1..10"),
    (["evaluate", "{tab}", "--schedule", "nodes:0,5,3,10"], "strictly increasing"),
    (["evaluate", "{tab}", "--schedule", "nodes:0,5,9"], "must end at node T = 10"),
    (["evaluate", "{tab}", "--schedule", "nodes:2,5,10"], "must start at node 0"),
    (["evaluate", "{tab}", "--schedule", "even:0"], "K"),
    (["evaluate", "{tab}", "--schedule", "bogus:3"], "unknown path spec"),
    (["solve", "{missing}", "--budgets", "2"], "does not exist"),
    (["table", "--model", "gaussian:{data}", "--data", "{data}", "--out", "{tab2}", "--variance", "learned_range"],
     "learned-variance"),
    (["table", "--model", "nosuchmodule:make", "--data", "{data}", "--out", "{tab2}"], "cannot import"),
    (["table", "--model", "gaussian:{data}", "--data", "{bad}", "--out", "{tab2}"], "uint8"),
])
def test_user_errors_exit_2_with_one_line(tmp_path, npz_data, capsys, argv, needle):
    train, _ = npz_data
    tab = tmp_path / "t.npz"
    assert main(["table", "--model", f"gaussian:{train}", "--noise-schedule", "cosine:10", "--data", str(train),
                 "--out", str(tab), "--quiet"]) == 0
    bad = tmp_path / "bad.npz"
    np.savez(bad, images=np.zeros((3, 1, 4, 4), dtype=np.float32))
    capsys.readouterr()
    fill = dict(tab=tab, missing=tmp_path / "nope.npz", data=train, tab2=tmp_path / "t2.npz", bad=bad)
    code, out, err = run([a.format(**fill) for a in argv], capsys)
    assert code == 2
    assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_grid_spec(tmp_path, npz_data, capsys):
    from ddpmdp.grids import parse_grid

    g = parse_grid("log:20+even:4+nodes:7", 100)
    assert g[0] == 0 and g[-1] == 100 and 7 in g and set([0, 1, 34, 67, 100]) <= set(g.tolist())
    assert np.all(np.diff(g) > 0) and 1 in g and 2 in g
    train, _ = npz_data
    tab = tmp_path / "g.npz"
    assert main(["table", "--model", f"gaussian:{train}", "--noise-schedule", "cosine:50", "--data", str(train),
                 "--out", str(tab), "--grid", "log:10+even:3", "--quiet"]) == 0
    table = load_table(tab)
    assert table.meta["grid"] == "log:10+even:3" and 1 in table.nodes
    capsys.readouterr()
    code, out, _ = run(["evaluate", tab, "--schedule", "even:3", "--json"], capsys)
    assert code == 0 and json.loads(out)["even:3"]["K"] == 3
    code, _, err = run(["table", "--model", f"gaussian:{train}", "--data", str(train), "--out", tmp_path / "x.npz",
                        "--grid", "cubic:3"], capsys)
    assert code == 2 and "unknown grid part" in err


def test_table_metadata_mismatch_is_refused(tmp_path, npz_data, capsys):
    train, _ = npz_data
    tab = tmp_path / "t.npz"
    assert main(["table", "--model", f"gaussian:{train}", "--noise-schedule", "cosine:10", "--data", str(train),
                 "--out", str(tab), "--quiet"]) == 0
    z = dict(np.load(tab))
    meta = json.loads(str(z["meta"]))
    meta["T"] = 12
    z["meta"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "bad.npz", **z)
    code, _, err = run(["solve", tmp_path / "bad.npz", "--budgets", "2"], capsys)
    assert code == 2 and "table/metadata mismatch" in err


def test_console_script_exit_status(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ddpmdp", "solve", str(tmp_path / "none.npz"), "--budgets", "3"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "does not exist" in proc.stderr


def test_models_lists_the_embedded_models_with_their_cards(tmp_path, capsys):
    code, out, _ = run(["models", "--json", "--csv", tmp_path / "m.csv"], capsys)
    rows = {r["name"]: r for r in json.loads(out)}
    assert code == 0 and set(rows) == {"cifar10-simple", "cifar10-hybrid", "cifar10-vlb", "imagenet64-hybrid"}
    for r in rows.values():
        if r["available"]:
            assert r["heldout_bpd"] > 0 and r["heldout_bpd_se"] > 0 and r["heldout_split"].endswith(":test")
            assert r["parameters"] < 2_500_000
    assert (tmp_path / "m.csv").read_text().startswith("name,objective,schedule")
