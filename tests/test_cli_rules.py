"""Rules every ``ddpmdp`` command follows: output files (refused unless --overwrite, written
atomically), operating-system errors as one line with exit status 2, a JSON summary line at the end,
one grid option, an explicit download command, and a start-up that imports neither torch nor
matplotlib."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import urllib.request

import numpy as np
import pytest

from _cli import one_line_error, run
from _models import random_images
from ddpmdp.cli import registry
from ddpmdp.cli.main import build_parser, main
from ddpmdp.table import load_table


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("rules")
    train = d / "train.npz"
    np.savez(train, images=random_images(12, shape=(1, 4, 4), seed=1), split="train")
    model = ["--model", f"gaussian:{train}", "--noise-schedule", "cosine:12"]
    assert main(["table", *model, "--data", str(train), "--out", str(d / "t.npz"), "--quiet"]) == 0
    assert main(["solve", str(d / "t.npz"), "--budgets", "2,4", "--out", str(d / "dp.json")]) == 0
    return {"dir": d, "train": train, "model": model, "table": d / "t.npz", "dp": d / "dp.json"}


# ---- output files ------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["table", "solve", "rescore", "export", "sample", "sample-npz", "models"])
def test_an_existing_output_file_is_refused_before_any_work_unless_overwrite(files, command, tmp_path, capsys):
    suffix = {"table": "npz", "solve": "json", "rescore": "npz", "export": "py", "sample": "png", "sample-npz": "npz",
              "models": "csv"}[command]
    existing = tmp_path / f"existing.{suffix}"
    existing.write_bytes(b"precious")
    f = files
    argv = {"table": ["table", *f["model"], "--data", f["train"], "--out", existing, "--quiet"],
            "solve": ["solve", f["table"], "--budgets", "2", "--out", existing],
            "rescore": ["rescore", f["table"], "--variance", "fixed_large", "--out", existing],
            "export": ["export", f"{f['dp']}:2", "--to", "iddpm", "--out", existing],
            "sample": ["sample", *f["model"], "--schedule", "even:2", "--n", "1", "--out", existing, "--quiet"],
            "sample-npz": ["sample", *f["model"], "--schedule", "even:2", "--n", "1", "--out", tmp_path / "x.png",
                           "--npz", existing, "--quiet"],
            "models": ["models", "--csv", existing]}[command]
    code, out, err = run(argv, capsys)
    one_line_error(code, err, f"{existing} exists: pass --overwrite to replace it")
    assert existing.read_bytes() == b"precious" and out == ""
    code, out, err = run(argv + ["--overwrite"], capsys)
    assert code == 0, err
    assert existing.read_bytes() != b"precious" and json.loads(out.splitlines()[-1])


def test_table_resume_accepts_an_existing_table(files, tmp_path, capsys):
    out = tmp_path / "t.npz"
    out.write_bytes(files["table"].read_bytes())
    code, _, err = run(["table", *files["model"], "--data", files["train"], "--out", out, "--resume", "--quiet"], capsys)
    assert code == 0, err
    assert np.array_equal(load_table(out).L, load_table(files["table"]).L)


def test_solve_out_is_atomic_a_failed_solve_leaves_the_file(files, tmp_path, capsys):
    dp = tmp_path / "dp.json"
    dp.write_text(files["dp"].read_text())
    before = dp.read_bytes()
    code, out, err = run(["solve", files["table"], "--budgets", "2,99", "--out", dp, "--overwrite"], capsys)
    one_line_error(code, err, "budgets must lie in 1..12")
    assert dp.read_bytes() == before and out == ""
    assert not list(tmp_path.glob(".dp.json.*"))  # no temporary file left behind
    code, out, err = run(["solve", files["table"], "--budgets", "3", "--out", dp, "--overwrite", "--json"], capsys)
    assert code == 0 and json.loads(dp.read_text()) == json.loads(out) and set(json.loads(out)["budgets"]) == {"3"}


@pytest.mark.parametrize("command", ["table", "solve", "sample"])
def test_a_file_name_too_long_is_one_line_with_exit_status_2(files, command, tmp_path, capsys):
    long = tmp_path / ("x" * 300 + ".out")
    argv = {"table": ["table", *files["model"], "--data", files["train"], "--out", long, "--quiet"],
            "solve": ["solve", files["table"], "--budgets", "2", "--out", long],
            "sample": ["sample", *files["model"], "--schedule", "even:2", "--n", "1", "--out", long]}[command]
    code, _, err = run(argv, capsys)
    one_line_error(code, err, "File name too long")


# ---- the JSON summary line ---------------------------------------------------------------------
@pytest.mark.parametrize("command", ["solve", "evaluate", "export", "model-info", "models", "rescore"])
def test_every_command_ends_with_a_json_summary_line(files, command, tmp_path, capsys):
    f = files
    argv = {"solve": ["solve", f["table"], "--budgets", "2"],
            "evaluate": ["evaluate", f["table"], "--schedule", f"dp:{f['dp']}:2", "--schedule", "even:2"],
            "export": ["export", f"{f['dp']}:2", "--to", "diffusers"],
            "model-info": ["model-info", "cifar10-simple"],
            "models": ["models"],
            "rescore": ["rescore", f["table"], "--variance", "fixed_large", "--out", tmp_path / "r.npz"]}[command]
    code, out, err = run(argv, capsys)
    assert code == 0, err
    last = json.loads(out.strip().splitlines()[-1])
    assert last["event"] == f"{command.replace('-', '_')}_done"
    if command not in ("rescore",):  # with --json the document is the one line
        code, out, _ = run(argv + ["--json"], capsys)
        assert code == 0 and len(out.strip().splitlines()) == 1 and json.loads(out)


# ---- one grid option ---------------------------------------------------------------------------
def test_grid_stride_is_a_deprecated_spelling_of_grid_stride_k(files, tmp_path, capsys):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    base = ["table", *files["model"], "--data", str(files["train"]), "--quiet"]
    assert main(base + ["--out", str(a), "--grid", "stride:4"]) == 0
    with pytest.warns(FutureWarning, match="--grid-stride is deprecated: use --grid stride:4"):
        assert main(base + ["--out", str(b), "--grid-stride", "4"]) == 0
    ta, tb = load_table(a), load_table(b)
    assert ta.nodes.tolist() == tb.nodes.tolist() == [0, 4, 8, 12] and tb.meta["grid"] == "stride:4"
    assert np.array_equal(ta.L, tb.L)
    capsys.readouterr()
    code, _, err = run(base + ["--out", tmp_path / "c.npz", "--grid", "log:5", "--grid-stride", "2"], capsys)
    one_line_error(code, err, "give --grid only")


def test_noise_schedule_is_the_only_spelling(files, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["table", "--model", f"gaussian:{files['train']}", "--schedule", "cosine:12", "--data",
              str(files["train"]), "--out", str(tmp_path / "x.npz")])
    assert exc.value.code == 2 and "unrecognized arguments: --schedule" in capsys.readouterr().err


# ---- data: explicit downloads only -------------------------------------------------------------
def test_a_missing_data_set_fails_without_network_and_names_ddpmdp_download(tmp_path, monkeypatch, capsys):
    def no_network(*a, **k):
        raise AssertionError("no network access may be attempted")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    train = tmp_path / "t.npz"
    np.savez(train, images=random_images(4, shape=(1, 4, 4)))
    code, _, err = run(["table", "--model", f"gaussian:{train}", "--data", "cifar10:train", "--data-dir", tmp_path,
                        "--out", tmp_path / "x.npz"], capsys)
    one_line_error(code, err, "put the official cifar-10-batches-py/ folder under",
                   f"ddpmdp download cifar10 --data-dir {tmp_path}")


def test_download_cifar10_with_a_fake_urlopen(tmp_path, monkeypatch, capsys):
    from test_datasets_real import FakeResponse, fake_archive

    from ddpmdp.data import cifar10

    archive = fake_archive()
    calls = []

    def fake(url, timeout=None):
        calls.append(url)
        return FakeResponse(archive)

    monkeypatch.setattr(urllib.request, "urlopen", fake)
    monkeypatch.setattr(cifar10, "ARCHIVE_MD5", hashlib.md5(archive).hexdigest())
    code, out, err = run(["download", "cifar10", "--data-dir", tmp_path / "data"], capsys)
    assert code == 0, err
    summary = json.loads(out.splitlines()[-1])
    assert calls == [cifar10.URL] and summary["downloaded"] and summary["files"] == ["readme.html", "test_batch"]
    assert (tmp_path / "data" / cifar10.FOLDER / "test_batch").is_file()
    assert not (tmp_path / "escape.txt").exists()
    monkeypatch.setattr(cifar10, "ARCHIVE_MD5", "0" * 32)  # a corrupt download: one line, exit 2
    code, _, err = run(["download", "cifar10", "--data-dir", tmp_path / "other"], capsys)
    one_line_error(code, err, "downloaded CIFAR-10 archive has MD5")


# ---- the command registry and start-up ---------------------------------------------------------
def test_the_registry_builds_every_command_with_its_summary():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert list(sub.choices) == [c.name for c in registry.COMMANDS]
    helps = {a.dest: a.help for a in sub._choices_actions}
    assert helps == {c.name: c.summary for c in registry.COMMANDS}
    for name, p in sub.choices.items():
        assert p.get_default("func") is not None, name


START_UP = """
import sys
from ddpmdp.cli.main import main
try:
    main({argv!r})
except SystemExit:
    pass
heavy = sorted(m for m in ("torch", "matplotlib") if m in sys.modules)
print("HEAVY=" + ",".join(heavy), file=sys.stderr)
"""
@pytest.mark.parametrize("command", [""] + [c.name for c in registry.COMMANDS])
def test_help_imports_neither_torch_nor_matplotlib(command):
    argv = [command, "--help"] if command else ["--help"]
    proc = subprocess.run([sys.executable, "-c", START_UP.format(argv=argv)], capture_output=True, text=True)
    assert "usage: ddpmdp" in proc.stdout
    assert proc.stderr.strip().splitlines()[-1] == "HEAVY=", proc.stderr
