"""Long runs: kill -9 and resume bitwise, distributed (2-process gloo) equals single process, faults."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from _models import random_images

TESTS = Path(__file__).parent


def table_cmd(data, out, *extra, model="_models:cli_tiny_model"):
    return [sys.executable, "-m", "ddpmdp", "table", "--model", model, "--data", str(data), "--out", str(out),
            "--batch-size", "4", "--quiet", "--seed", "3", *map(str, extra)]


def env():
    e = dict(os.environ, PYTHONPATH=str(TESTS), OMP_NUM_THREADS="1")
    return e


@pytest.fixture()
def data(tmp_path):
    p = tmp_path / "imgs.npz"
    np.savez(p, images=random_images(40, shape=(3, 8, 8), seed=3), split="train")
    return p


def arrays(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files if k != "meta"}, json.loads(str(z["meta"]))


def batches_done(prog: Path) -> int:
    try:
        with np.load(prog) as z:
            return int(z["batches_done"])
    except Exception:  # noqa: BLE001 - absent or being replaced
        return -1


def test_kill9_at_random_points_then_resume_is_bitwise_identical(tmp_path, data):
    slow = "_models:cli_slow_model"
    ref = tmp_path / "ref.npz"
    subprocess.run(table_cmd(data, ref, model=slow), check=True, env=env(), cwd=TESTS)
    out = tmp_path / "out.npz"
    prog = tmp_path / "out.npz.progress.npz"
    rng = random.Random(0)
    seen = []
    for _ in range(3):
        before = batches_done(prog)
        proc = subprocess.Popen(table_cmd(data, out, "--resume", "--save-every", "1", model=slow), env=env(),
                                cwd=TESTS)
        deadline = time.time() + 120
        while batches_done(prog) <= before and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.2))  # a random point inside a later batch, or inside a write
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        seen.append(batches_done(prog))
    # -1 would mean the progress file was absent after a kill (it must always hold the old or the new checkpoint)
    assert seen == sorted(seen) and 0 < seen[-1] < 10, seen
    proc = subprocess.run(table_cmd(data, out, "--resume", "--save-every", "1", model=slow), env=env(), cwd=TESTS,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    got, _ = arrays(out)
    want, _ = arrays(ref)
    for k in want:
        assert np.array_equal(got[k], want[k], equal_nan=True), k
    assert not list(tmp_path.glob("*.progress*")), "progress files are removed after success"


def test_two_process_gloo_equals_single_process(tmp_path, data):
    single = tmp_path / "single.npz"
    subprocess.run(table_cmd(data, single), check=True, env=env(), cwd=TESTS)
    dist = tmp_path / "dist.npz"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29517",
           "-m", "ddpmdp"] + table_cmd(data, dist)[3:]
    proc = subprocess.run(cmd, env=dict(env(), DDPMDP_BACKEND="gloo"), cwd=TESTS, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, ma = arrays(single)
    b, mb = arrays(dist)
    assert mb["world_size"] == 2 and ma["n_images"] == mb["n_images"] == 40
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-12, atol=0, err_msg=k)


def test_resume_with_changed_arguments_is_refused(tmp_path, data):
    out = tmp_path / "o.npz"
    prog = tmp_path / "o.npz.progress.npz"
    proc = subprocess.run(table_cmd(data, out, "--save-every", "1", model="_models:cli_nan_model"), env=env(),
                          cwd=TESTS, capture_output=True, text=True)
    assert proc.returncode == 2 and "t = 30" in proc.stderr and "Traceback" not in proc.stderr
    assert prog.exists(), "batches finished before the NaN are kept"
    with np.load(prog) as z:
        assert int(z["batches_done"]) == 2 and int(z["sum_n"]) == 8
    proc = subprocess.run(table_cmd(data, out, "--resume", "--seed", "4"), env=env(), cwd=TESTS,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "'seed'" in proc.stderr
    proc = subprocess.run(table_cmd(data, out), env=env(), cwd=TESTS, capture_output=True, text=True)
    assert proc.returncode == 2 and "--resume" in proc.stderr
    # a truncated newest checkpoint falls back to the previous one; both damaged → clear error
    prog.write_bytes(prog.read_bytes()[:100])
    prev = tmp_path / "o.npz.progress.npz.prev"
    assert prev.exists()
    proc = subprocess.run(table_cmd(data, out, "--resume"), env=env(), cwd=TESTS, capture_output=True, text=True)
    assert proc.returncode == 0 and "unreadable" in proc.stderr
    assert out.exists()


def test_a_checkpoint_write_cut_short_leaves_the_previous_one_under_the_progress_name(tmp_path, monkeypatch):
    """Between keeping ``.prev`` and writing the new checkpoint the progress file is never absent."""
    import ddpmdp.table_runs as driver
    from ddpmdp.table import TableStats

    grid = np.arange(5)
    stats = TableStats.zeros(grid)
    path = tmp_path / "o.npz.progress.npz"
    driver._save_progress(path, stats, 1, {"seed": 0})
    driver._save_progress(path, stats, 2, {"seed": 0})

    def killed(*a, **k):
        raise KeyboardInterrupt  # stands for a kill -9 inside the write

    monkeypatch.setattr(driver, "atomic_savez", killed)
    with pytest.raises(KeyboardInterrupt):
        driver._save_progress(path, stats, 3, {"seed": 0})
    assert batches_done(path) == 2 and batches_done(path.with_name(path.name + ".prev")) == 2


def test_corrupt_progress_without_fallback_and_read_only_folder(tmp_path, data):
    out = tmp_path / "o.npz"
    (tmp_path / "o.npz.progress.npz").write_bytes(b"garbage")
    proc = subprocess.run(table_cmd(data, out, "--resume"), env=env(), cwd=TESTS, capture_output=True, text=True)
    assert proc.returncode == 2 and "unreadable" in proc.stderr and "Traceback" not in proc.stderr


def test_read_only_output_folder_is_refused_before_any_work(tmp_path, data, monkeypatch, capsys):
    """Root can write anywhere, so the folder's write check is simulated."""
    import ddpmdp.table_estimation as runner
    import ddpmdp.table_runs as driver  # the driver every table shares checks the folder
    from ddpmdp.cli.main import main

    calls = []
    monkeypatch.setattr(driver.os, "access", lambda path, mode: False)
    monkeypatch.setattr(runner, "accumulate_batch", lambda *a, **k: calls.append(1))
    code = main(["table", "--model", "_models:cli_tiny_model", "--data", str(data), "--out", str(tmp_path / "t.npz")])
    assert code == 2 and "not writable" in capsys.readouterr().err and not calls
