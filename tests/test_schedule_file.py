"""The solved-schedule file (``ddpmdp.schedule_file``) and the identity it carries: one writer, one
reader, and every user of a schedule (evaluate on a table or directly, sample, export) refusing
one solved for another model (unless transferred deliberately) or another noise schedule (always)."""
from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest

from _cli import one_line_error, run
from _models import random_images
from ddpmdp.cli.main import main
from ddpmdp.errors import DdpmdpError
from ddpmdp.export import sigmas_to_nodes
from ddpmdp.schedule_file import FORMAT, VERSION, read_schedule_file
from ddpmdp.schedules import cosine_schedule

T = 30


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Model A (gaussian on train, cosine:30), B (another data set, same noise schedule), C (A's data on
    linear:30); A's selection table solved into dp.json; held-out tables of A, B and C."""
    d = tmp_path_factory.mktemp("sf")
    train, other, test = d / "train.npz", d / "other.npz", d / "test.npz"
    np.savez(train, images=random_images(24, shape=(1, 4, 4), seed=1), split="train")
    np.savez(other, images=random_images(24, shape=(1, 4, 4), seed=5), split="train")
    np.savez(test, images=random_images(16, shape=(1, 4, 4), seed=2), split="test")
    m = {"A": ["--model", f"gaussian:{train}", "--noise-schedule", f"cosine:{T}"],
         "B": ["--model", f"gaussian:{other}", "--noise-schedule", f"cosine:{T}"],
         "C": ["--model", f"gaussian:{train}", "--noise-schedule", f"linear:{T}"]}
    common = ["--variance", "fixed_large", "--quiet"]
    assert main(["table", *m["A"], "--data", str(train), "--out", str(d / "sel.npz"), *common]) == 0
    for k in "ABC":
        assert main(["table", *m[k], "--data", str(test), "--out", str(d / f"held{k}.npz"), "--seed", "3",
                     *common]) == 0
    assert main(["solve", str(d / "sel.npz"), "--budgets", "3,5", "--out", str(d / "dp.json")]) == 0
    return {"dir": d, "models": m, "test": test, "dp": d / "dp.json"}


def test_the_file_records_identity_noise_schedule_grid_and_edges(setup):
    doc = json.loads(setup["dp"].read_text())
    assert (doc["format"], doc["version"], doc["objective"], doc["sampler"]) == (FORMAT, VERSION, "elbo",
                                                                                   {"kind": "ancestral"})
    assert doc["model"]["identity"].startswith("gaussian(") and len(doc["model"]["hash"]) == 16
    ns = doc["noise_schedule"]
    assert (ns["name"], ns["T"], ns["hash"]) == (f"cosine:{T}", T, cosine_schedule(T).fingerprint())
    assert doc["grid"]["spec"] == "all" and doc["grid"]["size"] == T + 1 == len(ns["abar_grid"])
    assert ns["abar_grid"] == pytest.approx(cosine_schedule(T).alphas_cumprod.tolist(), rel=1e-15)
    assert doc["selection"]["split"] == "train" and doc["selection"]["n_images"] == 24
    b = doc["budgets"]["5"]
    assert len(b["nodes"]) == 6 and b["optimistic"] is True and b["bpd"] > 0
    assert [e["rule"] for e in b["edges"]] == ["fixed_large"] * 5 and all(e["sigma2"] > 0 for e in b["edges"])
    solved = read_schedule_file(setup["dp"])
    sch = solved.schedule(5)
    assert sch.identity is not None and sch.identity.model_hash == doc["model"]["hash"]
    assert sch.identity.source == f"{setup['dp']}:5" and sch.rules == ("fixed_large",) * 5
    assert [e["sigma2"] for e in sch.edges_json()] == [e["sigma2"] for e in b["edges"]]


@pytest.mark.parametrize("route", ["direct", "table", "sample", "export"])
def test_a_schedule_of_another_model_is_refused_unless_transferred(setup, route, capsys, tmp_path):
    d, m, dp = setup["dir"], setup["models"], f"dp:{setup['dp']}:5"

    def cmd(model):
        if route == "direct":
            return ["evaluate", *m[model], "--data", setup["test"], "--schedule", dp, "--variance", "fixed_large",
                    "--json", "--quiet"]
        if route == "table":
            return ["evaluate", d / f"held{model}.npz", "--schedule", dp, "--json"]
        if route == "sample":
            return ["sample", *m[model], "--schedule", dp, "--n", "2", "--out", tmp_path / f"{model}.png", "--quiet"]
        return ["export", f"{setup['dp']}:5", "--to", "k-diffusion", "--json", *m[model]]

    code, _, err = run(cmd("A"), capsys)
    assert code == 0, err
    code, _, err = run(cmd("B"), capsys)
    one_line_error(code, err, "was solved for model gaussian(npz:train.npz)", "gaussian(npz:other.npz)",
                   "--other-model")
    code, _, err = run(cmd("B") + ["--other-model"], capsys)
    assert code == 0, err


@pytest.mark.parametrize("route", ["direct", "table", "sample", "export"])
def test_a_schedule_of_another_noise_schedule_is_always_refused(setup, route, capsys, tmp_path):
    d, m, dp = setup["dir"], setup["models"], f"dp:{setup['dp']}:5"
    argv = {"direct": ["evaluate", *m["C"], "--data", setup["test"], "--schedule", dp, "--variance", "fixed_large"],
            "table": ["evaluate", d / "heldC.npz", "--schedule", dp],
            "sample": ["sample", *m["C"], "--schedule", dp, "--n", "2", "--out", tmp_path / "c.png"],
            "export": ["export", f"{setup['dp']}:5", "--to", "k-diffusion", "--noise-schedule", f"linear:{T}"]}[route]
    for extra in ([], ["--other-model"]):
        code, _, err = run(argv + extra, capsys)
        one_line_error(code, err, f"noise schedule cosine:{T}", f"linear:{T}", "never transfers")


def test_python_api_refuses_another_model_and_allows_the_override(setup):
    from ddpmdp.evaluate import evaluate_paths, path_from_table
    from ddpmdp.models.specs import load_model
    from ddpmdp.path_specs import parse_schedule_spec
    from ddpmdp.sampling import sample
    from ddpmdp.table import load_table

    d = setup["dir"]
    other = load_model(f"gaussian:{d / 'other.npz'}", schedule=f"cosine:{T}")
    sch = parse_schedule_spec(f"dp:{setup['dp']}:3", T)
    images = random_images(4, shape=(1, 4, 4), seed=9)
    with pytest.raises(DdpmdpError, match="allow_other_model=True"):
        evaluate_paths(other, images, {"dp": sch})
    with pytest.raises(DdpmdpError, match="solved for model"):
        path_from_table(load_table(d / "heldB.npz"), sch)
    with pytest.raises(DdpmdpError, match="solved for model"):
        sample(other, sch, 2, (1, 4, 4))
    moved = parse_schedule_spec(f"dp:{setup['dp']}:3", T, allow_other_model=True)
    assert np.isfinite(evaluate_paths(other, images, {"dp": moved})["dp"].bpd)
    assert np.isfinite(path_from_table(load_table(d / "heldB.npz"), sch.for_other_model()).bpd)
    assert sample(other, moved, 2, (1, 4, 4)).shape == (2, 1, 4, 4)


def test_k_diffusion_export_needs_nothing_but_the_file(setup, capsys, tmp_path):
    solved = tmp_path / "dp.json"
    solved.write_text(setup["dp"].read_text())  # the selection table is not beside it
    code, out, err = run(["export", f"{solved}:5", "--to", "k-diffusion", "--json"], capsys)
    assert code == 0, err
    res = json.loads(out)
    assert res["noise_schedule"] == f"cosine:{T}" and res["sigmas"][-1] == 0.0
    assert sigmas_to_nodes(res["sigmas"], cosine_schedule(T)).tolist() == res["nodes"]
    # a schedule whose name is no spec (diffusers, .npy): σ from the ᾱ the file holds on its grid
    doc = json.loads(solved.read_text())
    doc["noise_schedule"]["name"] = "file:abar.npy"
    solved.write_text(json.dumps(doc))
    from ddpmdp.export import export

    assert export(f"{solved}:5", "k-diffusion")["sigmas"] == pytest.approx(res["sigmas"], rel=1e-12)


@pytest.mark.parametrize("content,needle", [
    ("{not json", "not valid JSON (line 1"),
    ('{"format": "ddpmdp-schedules", "version": 3, "T": 30, "budgets": {}}', "version 3 is newer"),
    ('{"format": "something-else", "version": 1, "T": 30, "budgets": {}}', "format 'something-else'"),
    ('{"T": 30, "budgets": {"5": {"nodes": [0, 1, 30]}}}', "2 edges under budget K = 5"),
    ('[1, 2]', "not a solved-schedule file"),
    ('{"T": 30, "budgets": {"5": {"nodes": "0,1"}}}', "needs a 'nodes' list"),
    (None, "no budget K = 7 (it has [3, 5])"),
])
@pytest.mark.parametrize("command", ["evaluate", "export"])
def test_a_bad_schedule_file_is_one_line_with_exit_status_2(setup, tmp_path, capsys, content, needle, command):
    bad = tmp_path / "bad.json"
    if content is None:
        bad.write_text(setup["dp"].read_text())
    else:
        bad.write_text(content)
    argv = (["evaluate", setup["dir"] / "heldA.npz", "--schedule", f"dp:{bad}:7"] if command == "evaluate"
            else ["export", f"{bad}:7", "--to", "iddpm"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # old-format files warn; the error is what is tested
        code, _, err = run(argv, capsys)
    one_line_error(code, err, needle)


def test_an_old_file_without_identity_loads_with_a_one_line_warning(setup, tmp_path, capsys):
    old = tmp_path / "old.json"
    doc = json.loads(setup["dp"].read_text())
    legacy = {"table": "gone.npz", "T": T, "split": "train", "variance": "fixed_large", "n_images": 24,
              "budgets": {k: {"nodes": v["nodes"], "nats": v["nats"], "bpd": v["bpd"], "variance": "fixed_large",
                              "edges": v["edges"]} for k, v in doc["budgets"].items()}}
    old.write_text(json.dumps(legacy))
    with pytest.warns(UserWarning, match="records no model or noise schedule"):
        solved = read_schedule_file(old)
    assert solved.identity is None and solved.schedule(5).rules == ("fixed_large",) * 5
    proc = subprocess.run([sys.executable, "-m", "ddpmdp", "evaluate", *map(str, setup["models"]["B"]), "--data",
                           str(setup["test"]), "--schedule", f"dp:{old}:5", "--json", "--quiet"],
                          capture_output=True, text=True)  # unchecked: any model of the same T
    assert proc.returncode == 0 and np.isfinite(json.loads(proc.stdout)[f"dp:{old}:5"]["bpd"])
    assert proc.stderr.startswith("ddpmdp: UserWarning:") and proc.stderr.count("\n") == 1
    assert "records no model or noise schedule" in proc.stderr


def test_writer_and_reader_round_trip(setup, tmp_path):
    from ddpmdp.dp import solve
    from ddpmdp.schedule_file import SolvedSchedules, write_schedule_file
    from ddpmdp.table import load_table

    table = load_table(setup["dir"] / "sel.npz")
    solved = SolvedSchedules.from_table(table, solve(table.L, 4, table.nodes), [2, 4])
    write_schedule_file(tmp_path / "s.json", solved)
    back = read_schedule_file(tmp_path / "s.json")
    assert back.identity is not None and solved.identity is not None
    assert (back.identity.model_hash, back.identity.noise_schedule_hash, back.T) == (
        solved.identity.model_hash, solved.identity.noise_schedule_hash, T)
    for K in (2, 4):
        a, b = solved.budgets[K], back.budgets[K]
        assert np.array_equal(a.nodes, b.nodes) and a.rules == b.rules and a.bpd == b.bpd
        np.testing.assert_array_equal(a.sigma2, b.sigma2)
    assert np.allclose(back.abar(back.budgets[4].nodes), cosine_schedule(T).abar(back.budgets[4].nodes))


# ---- objective and sampler: trajectory schedules (issue 19, items 1 and 5) -----------------------
@pytest.fixture(scope="module")
def traj(setup):
    """A trajectory schedule of model A (a stand-in table with the metadata a trajectory table records)."""
    from _trajectory import write_trajectory_file
    from ddpmdp.models.specs import load_model

    model = load_model(f"gaussian:{setup['dir'] / 'train.npz'}", schedule=f"cosine:{T}")
    return {"model": model, "file": write_trajectory_file(setup["dir"] / "traj.json", model, budgets=(3, 5)),
            "noclip": write_trajectory_file(setup["dir"] / "traj_noclip.json", model, budgets=(3, 5), clip=False)}


def test_a_trajectory_file_records_its_objective_sampler_and_cost(traj):
    doc = json.loads(traj["file"].read_text())
    assert doc["objective"] == "trajectory" and doc["sampler"] == {"kind": "ddim", "eta": 0.0, "clip": True}
    assert doc["cost_units"] == "RMS per dimension" and "held-out seeds" in doc["note"]
    b = doc["budgets"]["5"]
    assert b["cost"] > 0 and b["optimistic"] is True and "bpd" not in b and "edges" not in b
    solved = read_schedule_file(traj["file"])
    assert solved.objective == "trajectory" and solved.sampler.describe() == "ddim (eta = 0, clip)"
    sch = solved.schedule(5)
    assert sch.sampler is not None and (sch.sampler.kind, sch.sampler.eta, sch.sampler.clip) == ("ddim", 0.0, True)
    assert sch.rules is None and sch.identity is not None and sch.identity.objective == "trajectory"
    assert read_schedule_file(traj["noclip"]).sampler.clip is False


def test_from_table_reads_objective_and_sampler_from_the_table_metadata(setup, traj):
    from _trajectory import trajectory_table
    from ddpmdp.dp import solve
    from ddpmdp.schedule_file import SolvedSchedules
    from ddpmdp.table import load_table

    elbo = load_table(setup["dir"] / "sel.npz")  # records neither: elbo, ancestral
    s = SolvedSchedules.from_table(elbo, solve(elbo.L, 3, elbo.nodes), [3])
    assert (s.objective, s.sampler.kind, s.to_json()["sampler"]) == ("elbo", "ancestral", {"kind": "ancestral"})
    table = trajectory_table(traj["model"])
    sol = solve(table.L, 3, table.nodes)
    assert SolvedSchedules.from_table(table, sol, [3], objective="trajectory", sampler="ddim").sampler.clip is True
    with pytest.raises(DdpmdpError, match="records objective 'trajectory', not 'elbo'"):
        SolvedSchedules.from_table(table, sol, [3], objective="elbo")
    with pytest.raises(DdpmdpError, match="records sampler ddim"):
        SolvedSchedules.from_table(table, sol, [3], sampler={"kind": "ddim", "eta": 0.0, "clip": False})
    del table.meta["sampler"]  # objective alone: DDIM η = 0 with the table's clip flag
    assert SolvedSchedules.from_table(table, sol, [3]).sampler.to_json() == {"kind": "ddim", "eta": 0.0, "clip": True}
    table.meta["sampler"] = "ancestral"
    with pytest.raises(DdpmdpError, match="objective trajectory is solved for the ddim"):
        SolvedSchedules.from_table(table, sol, [3])


def test_sample_uses_the_recorded_sampler_and_refuses_another_without_other_sampler(setup, traj, capsys, tmp_path):
    A = setup["models"]["A"]
    base = ["sample", *A, "--schedule", f"dp:{traj['file']}:5", "--n", "2", "--quiet"]
    code, out, err = run(base + ["--out", tmp_path / "a.png"], capsys)
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["sampler"] == {"kind": "ddim", "eta": 0.0, "clip": True} and summary["objective"] == "trajectory"
    for i, (extra, needle) in enumerate(((["--sampler", "ancestral"], "not ancestral"),
                                         (["--sampler", "ddim", "--eta", "0.5"], "not ddim (eta = 0.5, clip)"),
                                         (["--no-clip"], "not ddim (eta = 0, no clip)"))):
        out_png = tmp_path / f"b{i}.png"
        code, _, err = run(base + ["--out", out_png, *extra], capsys)
        one_line_error(code, err, "was solved for the ddim (eta = 0, clip) sampler (objective trajectory)", needle,
                       "--other-sampler")
        assert not out_png.exists()
        code, _, err = run(base + ["--out", out_png, *extra, "--other-sampler"], capsys)
        assert code == 0, err
    code, _, err = run(base + ["--out", tmp_path / "c.png", "--eta", "0.3"], capsys)
    one_line_error(code, err, "--eta 0.3 applies to --sampler ddim only")
    # an ELBO schedule keeps sampling ancestrally by default and accepts DDIM
    elbo = ["sample", *A, "--schedule", f"dp:{setup['dp']}:5", "--n", "2", "--quiet"]
    code, out, err = run(elbo + ["--out", tmp_path / "d.png"], capsys)
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["sampler"] == {"kind": "ancestral", "clip": True}
    code, out, err = run(elbo + ["--out", tmp_path / "e.png", "--sampler", "ddim", "--eta", "0.5"], capsys)
    assert code == 0, err


def test_python_sample_follows_the_recorded_sampler(setup, traj):
    from ddpmdp.path_specs import parse_schedule_spec
    from ddpmdp.sampling import sample, sample_ancestral, sample_ddim, to_uint8

    model = traj["model"]
    sch = parse_schedule_spec(f"dp:{traj['file']}:5", model.schedule)
    ddim = to_uint8(sample_ddim(model, sch.nodes, 3, (1, 4, 4), eta=0.0, clip=True, seed=4))
    assert np.array_equal(sample(model, sch, 3, (1, 4, 4), seed=4), ddim)
    noclip = parse_schedule_spec(f"dp:{traj['noclip']}:5", model.schedule)
    assert np.array_equal(sample(model, noclip, 3, (1, 4, 4), seed=4),
                          to_uint8(sample_ddim(model, noclip.nodes, 3, (1, 4, 4), eta=0.0, clip=False, seed=4)))
    for kw in ({"method": "ancestral"}, {"method": "ddim", "eta": 0.5}, {"clip": False}):
        with pytest.raises(DdpmdpError, match="allow_other_sampler=True"):
            sample(model, sch, 2, (1, 4, 4), **kw)  # type: ignore[arg-type]
    with pytest.raises(DdpmdpError, match="allow_other_sampler=True"):
        sample_ancestral(model, sch, 2, (1, 4, 4))
    with pytest.raises(DdpmdpError, match="not ddim \\(eta = 0.5"):
        sample_ddim(model, sch, 2, (1, 4, 4), eta=0.5)
    assert sample(model, sch, 2, (1, 4, 4), method="ancestral", allow_other_sampler=True).shape == (2, 1, 4, 4)
    moved = parse_schedule_spec(f"dp:{traj['file']}:5", model.schedule, allow_other_sampler=True)
    assert sample(model, moved, 2, (1, 4, 4), method="ancestral").shape == (2, 1, 4, 4)
    elbo = parse_schedule_spec(f"dp:{setup['dp']}:5", T)  # ELBO: ancestral by default, as before
    assert np.array_equal(sample(model, elbo, 2, (1, 4, 4), seed=1),
                          to_uint8(sample_ancestral(model, elbo, 2, (1, 4, 4), seed=1)))


def test_export_of_a_trajectory_schedule_is_for_the_deterministic_sampler(setup, traj, capsys):
    f = traj["file"]
    code, out, err = run(["export", f"{f}:5", "--to", "k-diffusion", "--json"], capsys)
    assert code == 0, err
    res = json.loads(out)
    assert res["sampler"] == {"kind": "ddim", "eta": 0.0, "clip": True} and res["variance"] is None
    assert "sample_euler" in res["snippet"] and "ClippedDenoiser" in res["snippet"] and res["not_expressible"] == []
    assert sigmas_to_nodes(res["sigmas"], cosine_schedule(T)).tolist() == res["nodes"]
    code, out, err = run(["export", f"{traj['noclip']}:5", "--to", "k-diffusion", "--json"], capsys)
    assert "denoiser = model_wrap" in json.loads(out)["snippet"]
    code, out, err = run(["export", f"{f}:5", "--to", "iddpm"], capsys)
    assert code == 0 and "ddim_sample_loop" in out and "clip_denoised=True, eta=0.0" in out
    assert "sampler: ddim (eta = 0, clip)" in out
    code, out, err = run(["export", f"{f}:5", "--to", "diffusers"], capsys)
    assert code == 0 and "EulerDiscreteScheduler" in out and "def diffusers_ddim_euler" in out
    code, _, err = run(["export", f"{f}:5", "--to", "diffusers", "--sampler", "ancestral"], capsys)
    one_line_error(code, err, "solved for the ddim (eta = 0, clip) sampler", "--other-sampler")
    code, out, err = run(["export", f"{f}:5", "--to", "iddpm", "--sampler", "ancestral", "--other-sampler"], capsys)
    assert code == 0 and "p_sample_loop" in out, err
    code, out, err = run(["export", f"{setup['dp']}:5", "--to", "diffusers", "--sampler", "ddim", "--json"], capsys)
    res = json.loads(out)  # an ELBO schedule exported for DDIM on request
    assert code == 0 and res["scheduler"] == "EulerDiscreteScheduler" and res["sampler"]["clip"] is True


@pytest.mark.parametrize("sampler,needle", [
    ({"kind": "ancestral"}, "objective trajectory is solved for the ddim (eta = 0) sampler, not ancestral"),
    ({"kind": "ddim", "eta": 0.5}, "not ddim (eta = 0.5"),
    ({"kind": "euler"}, "unknown sampler 'euler'"),
])
def test_a_file_whose_objective_and_sampler_disagree_is_refused(traj, tmp_path, capsys, sampler, needle):
    doc = json.loads(traj["file"].read_text())
    doc["sampler"] = sampler
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    code, _, err = run(["export", f"{bad}:5", "--to", "iddpm"], capsys)
    one_line_error(code, err, needle)
    doc["objective"], doc["sampler"] = "mse", {"kind": "ancestral"}
    bad.write_text(json.dumps(doc))
    code, _, err = run(["export", f"{bad}:5", "--to", "iddpm"], capsys)
    one_line_error(code, err, "unknown objective 'mse'")


def test_every_export_snippet_is_valid_python():
    """The snippets users paste must parse, whatever the variance rule (an unknown rule once put the
    comma after a comment: a syntax error in the improved-diffusion snippet)."""
    import ast

    from ddpmdp.export_snippets import iddpm_ddim_snippet, iddpm_snippet, k_diffusion_snippet

    for rule in ("fixed_small", "fixed_large", "learned_range", "optimal", None):
        ast.parse(iddpm_snippet([0, 4, 9], rule, 10, "cosine:10"))
    for clip in (True, False):
        ast.parse(iddpm_ddim_snippet([0, 4, 9], 10, "linear:10", clip))
    ast.parse(k_diffusion_snippet([14.2, 1.3, 0.0]))
