"""diffusers from the command line: table → solve → export → diffusers sampling end to end (issue 14
scope 3d), the other export targets, and the one-line errors (exit status 2) of ``diffusers:DIR``."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("diffusers")

from _diffusers import save_folder, tiny_unet  # noqa: E402
from _models import random_images  # noqa: E402
from ddpmdp.cli.main import main  # noqa: E402
from ddpmdp.export import sigmas_to_nodes  # noqa: E402
from ddpmdp.schedules import linear_schedule  # noqa: E402

T = 50


def ddpmdp(*args, cwd):
    proc = subprocess.run([sys.executable, "-m", "ddpmdp", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_folder(tmp_path_factory.mktemp("unet") / "m", tiny_unet(seed=0), T=T, variance_type="fixed_large")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "train.npz"
    np.savez(path, images=random_images(8, shape=(3, 8, 8), seed=1), split="train")
    return path


@pytest.mark.slow
def test_table_solve_export_then_diffusers_samples_the_path(tmp_path, folder, data):
    """(d) The whole route from the command line, and the exported snippet run as written."""
    spec = f"diffusers:{folder}"
    ddpmdp("table", "--model", spec, "--data", data, "--out", tmp_path / "t.npz", "--batch-size", 8, "--quiet",
           cwd=tmp_path)
    solved = tmp_path / "solved.json"
    ddpmdp("solve", tmp_path / "t.npz", "--budgets", "3,6", "--out", solved, cwd=tmp_path)
    nodes = json.loads(solved.read_text())["budgets"]["6"]["nodes"]

    snippet = tmp_path / "sample_with_diffusers.py"
    ddpmdp("export", f"{solved}:6", "--to", "diffusers", "--model", spec, "--out", snippet, cwd=tmp_path)
    text = snippet.read_text()
    assert f"timesteps = {[n - 1 for n in nodes[:0:-1]]}" in text and 'variance_type="fixed_large"' in text
    assert "DDIMScheduler cannot take custom timesteps" in text and "--sampler ddim" in text
    run = text.replace("(16,", "(4,") + f"\nimport numpy\nnumpy.save({str(tmp_path / 'x.npy')!r}, images.numpy())\n"
    (tmp_path / "run.py").write_text(run)
    proc = subprocess.run([sys.executable, "run.py"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    images = np.load(tmp_path / "x.npy")
    assert images.shape == (4, 3, 8, 8) and images.dtype == np.uint8

    as_json = json.loads(ddpmdp("export", f"{solved}:6", "--to", "diffusers", "--json", cwd=tmp_path))
    assert as_json["timesteps"] == [n - 1 for n in nodes[:0:-1]] and as_json["variance"] == "fixed_large"
    # k-diffusion: the noise schedule (linear:50) and its ᾱ come from the solved file itself
    sig = json.loads(ddpmdp("export", f"{solved}:6", "--to", "k-diffusion", "--json", cwd=tmp_path))["sigmas"]
    assert sigmas_to_nodes(sig, linear_schedule(T)).tolist() == nodes
    from ddpmdp.export import export
    assert export(f"{solved}:6", "iddpm")["use_timesteps"] == [n - 1 for n in nodes[1:]]
    # the same path with ddpmdp's own sampler
    ddpmdp("sample", "--model", spec, "--schedule", f"dp:{solved}:6", "--n", 4, "--out", tmp_path / "s.png",
           "--quiet", cwd=tmp_path)
    scores = json.loads(ddpmdp("evaluate", "--model", spec, "--data", data, "--n-images", 4, "--schedule",
                               f"dp:{solved}:3", "--schedule", "even:3", "--json", "--quiet", cwd=tmp_path))
    assert set(scores) == {f"dp:{solved}:3", "even:3"} and all(np.isfinite(v["bpd"]) for v in scores.values())


def test_export_iddpm_and_k_diffusion_from_a_solve_output(tmp_path, capsys):
    solved = tmp_path / "solved.json"
    solved.write_text(json.dumps({"T": 1000, "variance": "learned_range", "table": str(tmp_path / "gone.npz"),
                                  "budgets": {"4": {"nodes": [0, 3, 60, 400, 1000]}}}))
    assert main(["export", f"{solved}:4", "--to", "iddpm", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["use_timesteps"] == [2, 59, 399, 999] and out["model_var_type"] == "learned_range"
    assert main(["export", f"{solved}:4", "--to", "k-diffusion", "--noise-schedule", "linear:1000", "--json"]) == 0
    res = capsys.readouterr()
    sig = json.loads(res.out)["sigmas"]
    assert sig[-1] == 0 and len(sig) == 5
    assert sigmas_to_nodes(sig, linear_schedule(1000)).tolist() == [0, 3, 60, 400, 1000]
    assert "not expressible in k-diffusion" in res.err and "learned_range" in res.err


def test_a_variance_the_target_cannot_express_is_named(tmp_path, capsys):
    solved = tmp_path / "solved.json"
    solved.write_text(json.dumps({"T": 100, "variance": "fixed_large", "budgets": {"3": {
        "nodes": [0, 10, 50, 100], "variances": ["analytic", "analytic", "fixed_large"]}}}))
    assert main(["export", f"{solved}:3", "--to", "diffusers"]) == 0
    res = capsys.readouterr()
    assert "NOT EXPRESSIBLE: variance 'analytic' on 2 edge(s)" in res.out
    assert "per-edge variances" in res.out and "variance_type=" not in res.out
    assert "warning" in res.err and "analytic" in res.err


# ---- one-line errors, exit status 2 ------------------------------------------------------------
def _edit_json(path, **changes):
    cfg = json.loads(path.read_text())
    cfg.update(changes)
    path.write_text(json.dumps(cfg))


@pytest.fixture()
def broken(tmp_path, folder):
    import shutil

    def make(name, edit=None, **changes):
        d = tmp_path / name
        shutil.copytree(folder, d)
        if edit:
            _edit_json(d / edit, **changes)
        return d
    return make


def sample_cmd(model, tmp_path, *extra):
    return ["sample", "--model", f"diffusers:{model}", "--schedule", "even:3", "--n", "2",
            "--out", str(tmp_path / "x.png"), "--quiet", *extra]


@pytest.mark.parametrize("case,needle", [
    ("no config", "no config.json"),
    ("no scheduler", "no scheduler_config.json"),
    ("prediction", "prediction_type 'flow'"),
    ("learned variance", "variance_type 'learned'"),
    ("unknown variance", "variance_type 'fancy'"),
    ("zero snr", "rescale_betas_zero_snr"),
    ("weights", "does not fit the UNet2DModel"),
    ("heads", "out_channels"),
    ("shape", "built for 3×8×8"),
    ("table shape", "built for 3×8×8"),
    ("no diffusers", "pip install 'ddpmdp[diffusers]'"),
])
def test_diffusers_errors_are_one_line_with_exit_status_2(tmp_path, broken, folder, case, needle, capsys,
                                                           monkeypatch):
    argv = sample_cmd(folder, tmp_path)
    if case == "no config":
        (tmp_path / "empty").mkdir()
        argv = sample_cmd(tmp_path / "empty", tmp_path)
    elif case == "no scheduler":
        d = broken("nosched")
        (d / "scheduler_config.json").unlink()
        argv = sample_cmd(d, tmp_path)
    elif case == "prediction":
        argv = sample_cmd(broken("pred", "scheduler_config.json", prediction_type="flow"), tmp_path)
    elif case == "learned variance":
        argv = sample_cmd(broken("lv", "scheduler_config.json", variance_type="learned"), tmp_path)
    elif case == "unknown variance":
        argv = sample_cmd(broken("uv", "scheduler_config.json", variance_type="fancy"), tmp_path)
    elif case == "zero snr":
        argv = sample_cmd(broken("zs", "scheduler_config.json", rescale_betas_zero_snr=True), tmp_path)
    elif case == "weights":
        argv = sample_cmd(broken("w", "config.json", block_out_channels=[8, 8]), tmp_path)
    elif case == "heads":
        argv = sample_cmd(broken("h", "scheduler_config.json", variance_type="learned_range"), tmp_path)
    elif case == "shape":
        argv = sample_cmd(folder, tmp_path, "--shape", "3,16,16")
    elif case == "table shape":
        big = tmp_path / "big.npz"
        np.savez(big, images=random_images(4, shape=(3, 16, 16), seed=0), split="train")
        argv = ["table", "--model", f"diffusers:{folder}", "--data", str(big), "--out", str(tmp_path / "t.npz")]
    elif case == "no diffusers":
        monkeypatch.setitem(sys.modules, "diffusers", None)  # `import diffusers` raises ImportError
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
