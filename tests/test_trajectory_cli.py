"""The command line of trajectory tables (method.md §13): table → solve → evaluate --metric teacher, the
refusals (one line, exit status 2), and torchrun sharding (2-process gloo equals one process)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _cli import one_line_error, run
from _models import random_images
from ddpmdp.cli.main import main
from ddpmdp.table import load_table

TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("traj")
    train = d / "train.npz"
    np.savez(train, images=random_images(30, shape=(1, 4, 4), seed=1), split="train")
    model = ["--model", f"gaussian:{train}", "--noise-schedule", "cosine:24"]
    assert main(["table", "--objective", "trajectory", *model, "--n-seeds", "16", "--grid", "all", "--out",
                 str(d / "traj.npz"), "--quiet", "--batch-size", "5"]) == 0
    assert main(["table", *model, "--data", str(train), "--out", str(d / "elbo.npz"), "--quiet"]) == 0
    return {"dir": d, "train": train, "model": model, "traj": d / "traj.npz", "elbo": d / "elbo.npz"}


def test_table_solve_and_teacher_distance(files, tmp_path, capsys):
    f = files
    tab = load_table(f["traj"])
    assert tab.meta["objective"] == "trajectory" and tab.meta["n_seeds"] == 16 and tab.meta["teacher_grid"] == "all"
    assert tab.meta["batch_size"] == 5 and tab.meta["sampler"] == {"kind": "ddim", "eta": 0.0, "clip": True}
    code, out, err = run(["solve", f["traj"], "--budgets", "3,6,24", "--out", tmp_path / "dp.json"], capsys)
    assert code == 0, err
    assert "bpd" not in out and "cost=" in out and "RMS distance per dimension" in out
    summary = json.loads(out.splitlines()[-1])
    assert summary["objective"] == "trajectory" and summary["selection_cost"]["24"] == 0.0
    doc = json.loads((tmp_path / "dp.json").read_text())
    assert doc["objective"] == "trajectory" and doc["sampler"] == {"kind": "ddim", "eta": 0.0, "clip": True}
    assert "bpd" not in doc["budgets"]["3"] and doc["budgets"]["24"]["nodes"] == list(range(25))
    specs = [f"dp:{tmp_path / 'dp.json'}:3", "even:3", f"dp:{tmp_path / 'dp.json'}:24"]
    argv = ["evaluate", "--metric", "teacher", *f["model"], "--n-seeds", "12", "--quiet", "--json"]
    code, out, err = run(argv + sum((["--schedule", s] for s in specs), []), capsys)
    assert code == 0, err
    scores = json.loads(out)
    assert scores[specs[2]]["teacher_distance"] == 0.0 and scores[specs[2]]["nfe"] == 24
    assert scores[specs[0]]["nfe"] == 3 and scores[specs[0]]["teacher_distance"] > 0
    paired = scores[specs[1]]["paired_vs_first"]
    assert paired["minus"] == specs[0] and paired["within_2se"] == (abs(paired["diff"]) <= 2 * paired["diff_se"])
    code, out, err = run(argv[:-1] + sum((["--schedule", s] for s in specs), []), capsys)
    assert code == 0 and "NFE=3" in out and "RMS/dim from the teacher" in out
    assert json.loads(out.splitlines()[-1])["metric"] == "teacher"
    # a held-out trajectory table scores the sum of its local errors (not the teacher distance)
    code, out, err = run(["evaluate", "--metric", "teacher", f["traj"], "--schedule", specs[0], "--json"], capsys)
    assert code == 0 and json.loads(out)[specs[0]]["local_error_sum"] > 0


@pytest.mark.parametrize("argv,needle", [
    (["table", "--objective", "trajectory", "MODEL", "--n-seeds", "4", "--variance", "fixed_large", "--out", "OUT"],
     "--variance does not apply to a trajectory table"),
    (["table", "--objective", "trajectory", "MODEL", "--n-seeds", "4", "--data", "TRAIN", "--out", "OUT"],
     "--data does not apply to a trajectory table"),
    (["table", "--objective", "trajectory", "MODEL", "--out", "OUT"], "needs --n-seeds"),
    (["table", "MODEL", "--data", "TRAIN", "--n-seeds", "4", "--out", "OUT"],
     "--n-seeds applies to --objective trajectory only"),
    (["table", "MODEL", "--data", "TRAIN", "--teacher-grid", "all", "--out", "OUT"],
     "--teacher-grid applies to --objective trajectory only"),
    (["table", "--objective", "trajectory", "MODEL", "--n-seeds", "4", "--teacher-grid", "stride:2", "--grid",
      "stride:3", "--out", "OUT"], "holds node 3, which is not in the teacher grid 'stride:2'"),
    (["rescore", "TRAJ", "--variance", "fixed_small", "--out", "OUT"], "rescore needs an ELBO table"),
    (["evaluate", "TRAJ", "--schedule", "even:3"], "evaluate --metric bpd TABLE needs an ELBO table"),
    (["evaluate", "--metric", "teacher", "ELBO", "--schedule", "even:3"],
     "evaluate --metric teacher TABLE needs a trajectory table"),
    (["evaluate", "--metric", "teacher", "MODEL", "--n-seeds", "4", "--data", "TRAIN", "--schedule", "even:3"],
     "--data does not apply to --metric teacher"),
    (["evaluate", "--metric", "teacher", "MODEL", "--schedule", "even:3"], "needs --model and --n-seeds"),
    (["evaluate", "MODEL", "--data", "TRAIN", "--n-seeds", "4", "--schedule", "even:3"],
     "--n-seeds applies to --metric teacher, not bpd"),
])
def test_bad_input_is_one_line_with_exit_status_2(files, tmp_path, capsys, argv, needle):
    subst = {"TRAIN": [str(files["train"])], "OUT": [str(tmp_path / "out.npz")], "TRAJ": [str(files["traj"])],
             "ELBO": [str(files["elbo"])], "MODEL": files["model"]}
    code, out, err = run(sum((subst.get(a, [a]) for a in argv), []), capsys)
    one_line_error(code, err, needle)
    assert not (tmp_path / "out.npz").exists()


def test_two_process_gloo_equals_single_process(tmp_path):
    def cmd(out, *launcher):
        return [sys.executable, *launcher, "-m", "ddpmdp", "table", "--objective", "trajectory", "--model",
                "_models:cli_tiny_model", "--n-seeds", "7", "--batch-size", "2", "--grid", "log:12", "--quiet",
                "--seed", "3", "--out", str(out)]

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    single, dist = tmp_path / "single.npz", tmp_path / "dist.npz"
    subprocess.run(cmd(single), check=True, env=env, cwd=TESTS, capture_output=True)
    launcher = ["-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29523"]
    proc = subprocess.run(cmd(dist, *launcher), env=dict(env, DDPMDP_BACKEND="gloo"), cwd=TESTS,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = load_table(single), load_table(dist)
    assert b.meta["world_size"] == 2 and a.meta["n_seeds"] == b.meta["n_seeds"] == 7
    np.testing.assert_allclose(b.L, a.L, rtol=1e-12, atol=0)
    np.testing.assert_allclose(b.L_se, a.L_se, rtol=1e-8, atol=0)
    assert a.stats is not None and b.stats is not None
    np.testing.assert_allclose(b.stats.s2.numpy(), a.stats.s2.numpy(), rtol=1e-12, atol=0)
