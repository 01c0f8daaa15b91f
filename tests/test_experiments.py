"""The notebook drivers (ddpmdp.book.experiments), their inputs and cached tables (ddpmdp.book.runtime)
and the repository root on tiny inputs."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from _models import MeansExtractor, random_images, tiny_adapter

from ddpmdp.book.experiments.embedded_models import embedded_card_table, lossless_gap_lines, model_samples
from ddpmdp.book.experiments.mc_ablation import mc_ablation_summary_markdown, nested_tables, run_mc_ablation
from ddpmdp.book.experiments.nll import nll_summary_markdown, nll_table, run_nll
from ddpmdp.book.experiments.paths import by_budget
from ddpmdp.book.experiments.sample_quality import (SAMPLERS, mse_reweighted_cost, run_sample_quality,
                                                   sample_quality_summary_markdown)
from ddpmdp.book.experiments.samples_and_schedules import shared_noise_grids
from ddpmdp.book.reporting.files import save_figure, write_dp_json, write_result_table
from ddpmdp.book.reporting.formatting import format_paths
from ddpmdp.book.reporting.tables import markdown_table
from ddpmdp.book.runtime.inputs import describe_data, describe_model, load_data, variance_rule
from ddpmdp.book.runtime.locations import repo_root
from ddpmdp.book.runtime.table_cache import cached_table, table_grid
from ddpmdp.path_specs import parse_path_spec
from ddpmdp.data.images import ImageSet
from ddpmdp.table_estimation import estimate_table
from ddpmdp.errors import DdpmdpError
from ddpmdp.schedules import cosine_schedule, linear_schedule
from ddpmdp.strides import validate_path

T = 20


@pytest.fixture(scope="module")
def model():
    return tiny_adapter(cosine_schedule(T), channels=3, learned=True, seed=3, image_shape=(3, 8, 8))


@pytest.fixture(scope="module")
def train():
    return ImageSet(random_images(6, seed=1), "train-array", "train")


@pytest.fixture(scope="module")
def test_set():
    return ImageSet(random_images(5, seed=2), "test-array", "test")


@pytest.fixture(scope="module")
def nll(model, train, test_set):
    return run_nll(model, train, test_set, objective="L_hybrid", budgets=[2, 4], grid="log:8", batch_size=4)


def test_run_nll_scores_every_stride_and_the_full_chain(nll, test_set):
    assert set(nll.scores) == {(s, K) for s in ("even", "quadratic", "dp") for K in (2, 4)}
    for (s, K), sc in nll.scores.items():
        assert sc.K == K and sc.split == "test" and sc.n_images == len(test_set)
        assert np.isfinite(sc.bpd) and sc.bpd_se > 0
        validate_path(nll.paths[(s, K)], T)
    assert nll.full is not None and nll.full.K == T
    assert nll.variance == "learned_range" and nll.table.meta["split"] == "train"
    # DP paths lie on the selection grid
    assert all(np.isin(p, nll.table.nodes).all() for p in nll.dp_paths().values())
    assert set(nll.seconds) == {"table", "dp", "evaluate"}


def test_nll_table_summary_and_files(nll, tmp_path):
    t = nll_table({"L_hybrid": nll}, budgets=[2, 4])
    assert t.rows == [("L_hybrid", "even"), ("L_hybrid", "quadratic"), ("L_hybrid", "dp")]
    assert t.full["L_hybrid"][0] == T
    paths = write_result_table(t, "nll", tmp_path)
    wide = paths["wide"].read_text().splitlines()
    assert wide[0] == "Objective,Stride,K=2,K=4,All"
    assert len(wide) == 4 and "±" in wide[1]
    assert paths["csv"].read_text().startswith("objective,stride,K,bpd,se")
    assert "Bits/dim" in paths["md"].read_text()
    caption = paths["caption"].read_text()
    assert caption.startswith("Bits/dim, mean ± SE over images.") and "|" not in caption


def test_nll_summary_names_every_budget_once_with_its_verdict(nll):
    """The generated NLL paragraph: each budget in exactly one of gain / within 2 SE / loss (the
    2-SE verdict on the paired differences), the K = smallest difference against the quadratic
    stride, and the gap of every path to the full chain at the largest K."""
    from ddpmdp.book.reporting.comparisons import verdict
    from ddpmdp.book.reporting.formatting import mean_pm_se, ranges
    from ddpmdp.evaluate import paired_difference

    text = nll_summary_markdown({"L_hybrid": nll})
    assert text.startswith(f"**L_hybrid** (`{nll.model}`, variance learned_range): the DP path beats both strides at ")
    assert text.endswith(".\n") and f"bits/dim above the full {T}-step chain: even " in text
    d, se = paired_difference(nll.scores[("dp", 2)], nll.scores[("quadratic", 2)])
    assert f"at K = 2 it is {mean_pm_se(d, se, signed=True)} bits/dim against the quadratic stride" in text
    groups: dict[str, list[int]] = {"gain": [], "within": [], "loss": []}
    for K in (2, 4):
        status = {verdict(*paired_difference(nll.scores[("dp", K)], nll.scores[(s, K)])) for s in ("even", "quadratic")}
        groups["loss" if "loss" in status else ("within" if "within" in status else "gain")].append(K)
    assert f"beats both strides at {ranges(groups['gain'])};" in text
    assert (f" Within 2 paired SE of a stride at {ranges(groups['within'])}." in text) == bool(groups["within"])
    assert (f" **Worse** than a stride at {ranges(groups['loss'])} (largest: " in text) == bool(groups["loss"])


def test_nested_tables_equal_separate_estimates(model, train):
    tabs = nested_tables(model, train, [3, 1, 5], variance="learned_range", grid="stride:4", batch_size=2)
    assert sorted(tabs) == [1, 3, 5]
    for n, tab in tabs.items():
        ref = estimate_table(model, train.subset(n), variance="learned_range", nodes=tab.nodes, batch_size=n)
        assert tab.meta["n_images"] == n
        lower = np.tri(len(tab.nodes), len(tab.nodes), -1, dtype=bool)
        # same images and noise; only the float32 network rounding depends on the batch split
        np.testing.assert_allclose(tab.L[lower], ref.L[lower], rtol=1e-5)
        np.testing.assert_allclose(tab.prior, ref.prior, rtol=1e-12)
        np.testing.assert_allclose(tab.mse()[0][1:], ref.mse()[0][1:], rtol=1e-5)
    with pytest.raises(DdpmdpError, match="exceeds"):
        nested_tables(model, train, [7], variance="learned_range")


def test_mc_ablation_scores_all_sizes_and_budgets(model, train, test_set):
    r = run_mc_ablation(model, train, test_set, label="tiny", sizes=[1, 2, 4], budgets=[2, 3], grid="log:8")
    assert r.sizes == [1, 2, 4] and set(r.scores) == {1, 2, 4}
    assert all(set(d) == {2, 3} for d in r.scores.values())
    rt = r.as_table()
    assert [row[1] for row in rt.rows] == ["table from 1 image", "table from 2 images", "table from 4 images"]
    summary = mc_ablation_summary_markdown(r)
    assert summary.startswith("**tiny**: the largest difference from the paths chosen with a 4-image table is ")
    assert "(paired SE)" in summary and "every other table size and budget is closer." in summary
    assert summary.endswith("not their distance from the paths of a converged table.\n")  # what it measures


def test_cached_table_is_reused(model, train, tmp_path):
    a, hit_a = cached_table(model, train.subset(2), variance="fixed_large", grid="stride:5", cache_dir=tmp_path)
    b, hit_b = cached_table(model, train.subset(2), variance="fixed_large", grid="stride:5", cache_dir=tmp_path)
    c, hit_c = cached_table(model, train.subset(2), variance="fixed_large", grid="stride:5", seed=1,
                               cache_dir=tmp_path)
    assert (hit_a, hit_b, hit_c) == (False, True, False)
    np.testing.assert_array_equal(a.L, b.L)
    assert len(list(tmp_path.glob("TABLE-*.npz"))) == 2


def test_one_cached_pass_serves_every_rule_of_the_models_own_sums(model, train, tmp_path):
    """fixed_large, analytic and optimal (a fixed-variance model) share one cached file, as do
    learned_range and best (a learned-variance model); the model's own rule keeps its summed cells,
    equal to a direct table's; a rule with other sums gets its own file."""
    fixed = tiny_adapter(cosine_schedule(T), channels=3, learned=False, seed=3, image_shape=(3, 8, 8))
    data = train.subset(3)
    kw = dict(grid="stride:5", cache_dir=tmp_path, batch_size=2)
    direct = estimate_table(fixed, data, variance="fixed_large", nodes=table_grid("stride:5", T), batch_size=2)
    hits = []
    for rule in ("fixed_large", "optimal", "analytic"):
        t, hit = cached_table(fixed, data, variance=rule, **kw)
        hits.append(hit)
        assert t.meta["variance"] == rule
        if rule == "fixed_large":
            np.testing.assert_allclose(t.L, direct.L, rtol=1e-12)
            np.testing.assert_allclose(t.L_se, direct.L_se, rtol=1e-10, equal_nan=True)
    assert hits == [False, True, True] and len(list(tmp_path.glob("TABLE-*.npz"))) == 1
    assert [cached_table(model, data, variance=r, **kw)[1] for r in ("learned_range", "best")] == [False, True]
    assert cached_table(fixed, data, variance="fixed_small", **kw)[1] is False
    assert len(list(tmp_path.glob("TABLE-*.npz"))) == 3


def test_optimal_variance_scores_every_rule_paired_and_plots_without_pyplot(model, train, test_set):
    from matplotlib.figure import Figure

    from ddpmdp.book.experiments.optimal_variance import (anchor_markdown, comparison_caption, comparison_table,
                                                          must_show_lines, plot_sigma_along_path,
                                                          run_optimal_variance, variance_table)

    r = run_optimal_variance(model, train.subset(3), test_set, name="tiny", budgets=[2, 4],
                             grid="log:8+even:2,4+quadratic:2,4", full_chain=True, batch_size=4)
    assert r.variance == "learned_range" and r.rules == ["fixed_small", "fixed_large", "learned_range", "analytic",
                                                         "optimal", "best"]
    assert set(r.scores) == {(rule, s, K) for rule in r.rules for s in ("even", "quadratic", "dp") for K in (2, 4)}
    assert len({sc.n_images for sc in r.scores.values()}) == 1 and r.full is not None
    table = variance_table(r, budgets=[2, 4])
    assert table.full == {"learned_range": (T, table.full["learned_range"][1])}  # the row of the model's own rule
    lines = must_show_lines(r)
    assert len(lines) == 5 and all("paired" in line and "K = 2:" in line for line in lines)
    header, rows = comparison_table({"tiny": r})  # the results chapter's Beyond-the-paper table
    assert header == ["Model", "DP paths compared", "K=2", "K=4", "Beyond 2 SE"] and len(rows) == 5
    assert all(len(row) == len(header) and "±" in row[2] for row in rows)
    assert all(not re.search(r"[-+]0\.0+ ", cell) for row in rows for cell in row)  # no signed zero
    assert "tiny = `" in comparison_caption({"tiny": r}) and f"{len(test_set)} test images" in comparison_caption(
        {"tiny": r})
    anchor = anchor_markdown()
    assert anchor.startswith(":::{admonition} Reference: Bao et al. (2022)") and "| CIFAR10 (LS) OT Analytic-DDPM |" in anchor
    fig = plot_sigma_along_path(r, "best", 4)
    assert isinstance(fig, Figure) and fig.canvas.manager is None  # not a pyplot figure: shown once
    assert fig.dpi >= 200 and fig.axes[0].get_xlabel().startswith("edge start t")


def test_mse_reweighted_cost(nll):
    W = mse_reweighted_cost(nll.table)
    nodes, m = nll.table.nodes, nll.table.mse()[0]
    G = len(nodes)
    assert W.shape == (G, G) and np.isinf(W[np.triu_indices(G)]).all()
    i, j = G - 1, 1
    assert W[i, j] == pytest.approx((nodes[i] - nodes[j]) / T * m[i])
    assert np.isfinite(W[np.tril_indices(G, -1)]).all()


def test_sample_quality_covers_all_samplers(model, nll, train, test_set):
    r = run_sample_quality(model, nll.table, train, MeansExtractor("means", "test distance"), budgets=[2, 4], n_samples=4, test=test_set,
                           full_chain=True, batch_size=4)
    assert set(r.kid) == set(SAMPLERS) and not r.fid  # FID only with Inception features
    assert all(set(d) == {2, 4} and all(np.isfinite(v.value) and v.se > 0 for v in d.values()) for d in r.kid.values())
    assert all(set(d) == {4} for d in r.step.values())  # K = 4 against K = 2, paired
    assert all(v.n_generated == 4 and v.n_real == len(train) and v.feature == "means" for d in r.kid.values()
               for v in d.values())
    assert set(r.bpd) == {s for s, (_, m) in SAMPLERS.items() if m == "ancestral"}
    assert r.full is not None and r.features["feature"] == "means" and r.real == "train-array"
    np.testing.assert_array_equal(r.paths["dp (ELBO)"][4], nll.solution.path(4))
    header, rows = r.kid_table()
    assert header == ["Sampler", "K=2 · NFE 2", "K=4 · NFE 4", "All"] and rows[-1][0] == "full chain (ancestral)"
    flagged = [s for s in SAMPLERS if not r.told_apart(s, 4)]
    assert all(row[2].endswith(" ≈") == (row[0] in flagged) for row in rows[:-1])
    md = markdown_table(header, rows, title="t")
    assert md.startswith("**t**\n\n| Sampler | K=2 · NFE 2 | K=4 · NFE 4 | All |\n|---|---|---|---|\n")
    assert "4 samples per cell" in r.caption() and "jackknife" in r.caption()
    text = sample_quality_summary_markdown(r)
    assert text.startswith("Lowest KID of means (not comparable to published KID) × 10") and "K = 2 (NFE 2)" in text and "MSE-reweighted" in text
    assert r.fid_table() is None
    with pytest.raises(DdpmdpError, match="unknown sampler"):
        run_sample_quality(model, nll.table, train, MeansExtractor("means", "test distance"), budgets=[2], n_samples=2, samplers=["nope"])


def test_shared_noise_grids_share_noise_within_a_budget(model, train):
    p = np.array([0, 5, 12, T])
    grids = shared_noise_grids(model, {3: {"a": p, "b": p.copy()}}, 3, real=train)
    assert list(grids) == ["K = 3", "data"]
    np.testing.assert_array_equal(grids["K = 3"]["a"], grids["K = 3"]["b"])
    assert grids["K = 3"]["a"].shape == (3, 3, 8, 8) and grids["K = 3"]["a"].dtype == np.uint8


def test_by_budget_regroups_paths(nll):
    grouped = by_budget(nll.paths)
    assert list(grouped) == [2, 4] and set(grouped[4]) == {"even", "quadratic", "dp"}
    np.testing.assert_array_equal(grouped[4]["dp"], nll.paths[("dp", 4)])


def test_dp_json_is_a_cli_path_spec(nll, tmp_path):
    f = write_dp_json(nll.table, nll.solution, [2, 4], tmp_path / "dp.json")
    data = json.loads(f.read_text())
    assert data["T"] == T and set(data["budgets"]) == {"2", "4"}
    np.testing.assert_array_equal(parse_path_spec(f"dp:{f}:4", T), nll.solution.path(4))
    text = format_paths(nll.dp_paths(), max_nodes=4)
    assert text.splitlines()[0].startswith("K = 2: 0, ")


def test_load_and_describe_data_are_machine_independent(tmp_path, monkeypatch):
    np.savez(tmp_path / "imgs.npz", images=random_images(4))
    monkeypatch.setenv("DDPMDP_DATA", str(tmp_path))
    ds = load_data(str(tmp_path / "imgs.npz"), 3)
    assert len(ds) == 3
    ds.notes.append(f"file under {tmp_path}/sub differs")
    text = describe_data(ds)
    assert "3 images of 3×8×8 (d = 192)" in text and "$DDPMDP_DATA/sub" in text and str(tmp_path) not in text


def test_variance_rule_and_descriptions(model):
    fixed = tiny_adapter(linear_schedule(40), learned=False)
    assert variance_rule(None, fixed) == "fixed_large" and variance_rule("fixed_small", fixed) == "fixed_small"
    assert variance_rule(None, model) == "learned_range"
    assert describe_model(fixed).endswith("T = 40, variance fixed_large")
    assert describe_model(fixed, "fixed_small").endswith("variance fixed_small")
    np.testing.assert_array_equal(table_grid("all", 4), np.arange(5))
    np.testing.assert_array_equal(table_grid("nodes:2", 4), [0, 2, 4])


def test_save_figure_is_byte_stable(tmp_path):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 2))
    fig.add_subplot().plot([0, 1], [1, 0])
    a = save_figure(fig, "a", tmp_path).read_bytes()
    b = save_figure(fig, "b", tmp_path).read_bytes()
    assert a == b and a[:8] == b"\x89PNG\r\n\x1a\n" and b"matplotlib" not in a


def test_repo_root(tmp_path, monkeypatch):
    monkeypatch.delenv("DDPMDP_REPO", raising=False)
    (tmp_path / "_toc.yml").write_text("")
    (tmp_path / "pyproject.toml").write_text("")
    deep = tmp_path / "notebooks" / "smoke"
    deep.mkdir(parents=True)
    assert repo_root(deep) == tmp_path.resolve()
    with pytest.raises(DdpmdpError, match="_toc.yml"):
        repo_root(tmp_path.parent)
    monkeypatch.setenv("DDPMDP_REPO", str(tmp_path))
    assert repo_root("/") == tmp_path.resolve()
    monkeypatch.setenv("DDPMDP_REPO", str(deep))
    with pytest.raises(DdpmdpError, match="DDPMDP_REPO"):
        repo_root()


def test_embedded_card_table_reads_every_card():
    from ddpmdp.models.embedded import EMBEDDED, embedded_models

    header, rows = embedded_card_table()
    assert [r[0] for r in rows] == list(EMBEDDED)
    assert all(len(r) == len(header) for r in rows)
    col = header.index("Held-out bits/dim (full chain)")
    for r in rows:
        held = embedded_models()[r[0]]["card"]["held_out"]
        assert r[col] == f"{held['bpd']:.3f} ± {held['bpd_se']:.3f}"
        assert r[header.index("Held-out images")] == f"{held['n_images']} of {held['data']}"
    assert [r[0] for r in embedded_card_table(["cifar10-vlb"])[1]] == ["cifar10-vlb"]


def test_lossless_gap_sentences_and_the_weights_readme_match_the_cards():
    from ddpmdp.models.embedded import model_table, weights_dir

    readme = (weights_dir() / "README.md").read_text()
    top_readme = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text().split())
    lines = lossless_gap_lines()
    for r, line in zip(model_table(), lines):
        assert line.startswith(f"`{r['name']}`")
        if r["lossless100_bpd"] is None:
            assert r["lossless100_note"] and r["lossless100_note"] in line
            continue
        cells = [f"{r['lossless100_bpd']:.3f} ± {r['lossless100_bpd_se']:.3f}",
                 f"{r['jpeg100_bpd']:.3f} ± {r['jpeg100_bpd_se']:.3f}"]
        gap = f"{r['lossless100_bpd'] - r['jpeg100_bpd']:.2f}"
        assert all(c in line for c in cells) and f"{gap} bits/dim lower" in line
        assert f"| `{r['name']}` | {cells[0]} | {cells[1]} | {gap} |" in readme
        assert f"**{cells[0]}** (`{r['name']}`)" in top_readme  # the README's "Embedded models" paragraph
    # the weights README's "before the fine-tuning" sentence, against the record the fine-tuning run wrote
    with np.load(weights_dir() / "lossless_gap.npz") as z:
        summary = json.loads(str(z["summary"]))
    flat = " ".join(readme.split())
    for name, stages in summary.items():
        b = stages["before"]
        assert (f"{b['lossless']['bpd']:.3f} ± {b['lossless']['bpd_se']:.3f} / {b['jpeg']['bpd']:.3f} ± "
                f"{b['jpeg']['bpd_se']:.3f} (`{name}`)") in flat, name
    gaps = [f"{summary[n]['before']['gap_bpd']:.2f}" for n in ("cifar10-simple", "cifar10-hybrid", "cifar10-vlb")]
    assert f"gaps of {gaps[0]}, {gaps[1]} and {gaps[2]} bits/dim" in flat


def test_model_samples_follow_the_path_spec_and_seed():
    # float64 network: uint8 samples compared exactly across batch sizes (tests/README.md)
    model = tiny_adapter(cosine_schedule(T), channels=3, learned=True, seed=3, image_shape=(3, 8, 8), dtype="float64")
    a = model_samples(model, "quadratic:3", 3, seed=5, batch_size=2)
    b = model_samples(model, "quadratic:3", 3, seed=5, batch_size=3)
    assert a.shape == (3, 3, 8, 8) and a.dtype == np.uint8
    assert np.array_equal(a, b)  # sample i uses its own noise keys, whatever the batch size
    assert not np.array_equal(a, model_samples(model, "even:3", 3, seed=5))
    with pytest.raises(DdpmdpError, match="path spec"):
        model_samples(model, "bogus:3", 3)


def test_float64_network_matches_float32_and_has_its_own_cache_key():
    """``dtype="float64"`` (the smoke runs, tests/README.md): the same network and inputs in float64,
    ε̂ and v returned in float64, equal to the float32 outputs within float32 rounding (measured: ~1e-6);
    another fingerprint, so a cached float32 table is never reused for a float64 run."""
    from ddpmdp.models.adapter import Numerics
    from ddpmdp.models.specs import load_model
    from ddpmdp.noise import keyed_normal

    m32 = load_model("iddpm:tiny")
    m64 = load_model("iddpm:tiny", numerics=Numerics(dtype="float64"))
    x = keyed_normal(0, torch.arange(2), 700, m32.image_shape)  # float32, as the table builds x_t
    o32, o64 = m32(x, 700), m64(x, 700)
    assert o32.eps.dtype == o32.v.dtype == torch.float32 and o64.eps.dtype == o64.v.dtype == torch.float64
    assert all(p.dtype == torch.float64 for p in m64.net.parameters())
    torch.testing.assert_close(o64.eps.float(), o32.eps, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(o64.v.float(), o32.v, rtol=1e-4, atol=1e-4)
    assert m64.fingerprint() != m32.fingerprint()
    with pytest.raises(DdpmdpError, match="dtype"):
        load_model("iddpm:tiny", numerics=Numerics(dtype="float16"))  # type: ignore[arg-type]


def test_figure_captions_name_model_images_and_split(train, test_set, tmp_path):
    """Every figure the book shows carries its models' hashes and the images behind it: the notebook
    writes NAME_figcaption.md beside NAME.png, and the book's caption shows it."""
    from matplotlib.figure import Figure

    from ddpmdp.book.reporting.captions import figure_provenance
    from ddpmdp.book.runtime.run_config import RunConfig

    cap = figure_provenance({"L_hybrid": "tiny@0123abcd"}, train, test_set)
    assert cap == ("Model: L_hybrid = `tiny@0123abcd`; held-out: 5 test images of `test-array`; "
                   "selection: 6 train images of `train-array`.")
    assert figure_provenance({"model": "m@1"}, train) == "Model: `m@1`; selection: 6 train images of `train-array`."
    run = RunConfig("x", out_dir=str(tmp_path), num_threads=1)
    fig = Figure()
    fig.add_subplot().plot([0, 1])
    run.figure(fig, "curve", caption=cap)
    assert (tmp_path / "curve.png").is_file() and (tmp_path / "curve_figcaption.md").read_text() == cap + "\n"


def test_notebook_errors_name_notebook_parameters(monkeypatch, tmp_path):
    """A notebook user is told to set the data_dir parameter (or $DDPMDP_DATA), never to pass a
    command-line flag."""
    from ddpmdp.book.runtime.inputs import load_data, load_experiment_model, notebook_terms
    from ddpmdp.errors import DdpmdpError

    monkeypatch.delenv("DDPMDP_DATA", raising=False)
    for spec in ("cifar10:train", "tiny-imagenet64:test"):
        with pytest.raises(DdpmdpError) as err:
            load_data(spec, 4)
        assert "data_dir parameter" in str(err.value) and "--" not in str(err.value), str(err.value)
    with pytest.raises(DdpmdpError) as err:
        load_data("tiny-imagenet64:test", 4, data_dir=str(tmp_path))  # a folder without the file
    assert "--data-dir" not in str(err.value) and "data_dir parameter" in str(err.value)
    with pytest.raises(DdpmdpError) as err:
        load_experiment_model("gaussian:cifar10:train")
    assert "--data-dir" not in str(err.value), str(err.value)
    assert notebook_terms("set DDPMDP_DATA or pass --data-dir (a folder)") == (
        "set the data_dir parameter or $DDPMDP_DATA (a folder)")


def test_rerun_boxes_say_how_to_run_where_and_how_long():
    """Every notebook's re-run box: an install command pip can resolve from the repository, the device,
    the data folder parameter, the paper parameter file, and the cost on CPU and on one GPU."""
    import yaml

    from ddpmdp.book.runtime.rerun import RERUN, read_runtimes, rerun_markdown

    root = Path(__file__).resolve().parents[1]
    assert set(RERUN) == {p.stem for p in (root / "notebooks").glob("*.py")}
    extras = __import__("tomllib").loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "notebooks" in extras
    for name, facts in RERUN.items():
        text = rerun_markdown(name, "https://github.com/o/r")
        assert "pip install 'ddpmdp[notebooks] @ git+https://github.com/o/r'" in text
        assert "pip install -e '.[notebooks]'" in text
        paper = root / "params" / "paper" / f"{name}.yaml"
        assert paper.is_file() and yaml.safe_load(paper.read_text())["device"] == "cuda"
        assert f"https://github.com/o/r/blob/main/params/paper/{name}.yaml" in text and "`device: cuda`" in text
        assert ("`data_dir`" in text) == facts.uses_data_dir
        assert "on one GPU" in text and "estimated" in text
        recorded = read_runtimes(root)[name]  # written by `make reproduce`, never typed
        assert recorded["full_run"] and f"recorded {recorded['date']} by `make reproduce` on a fresh clone" in text
        assert f"{recorded['cores']} cores" in text and facts.default_note in text
        src = (root / "notebooks" / f"{name}.py").read_text()
        assert f"# ```{{rerun-box}} {name}\n# ```" in src, f"{name}: the source has no re-run box"
        assert ("data_dir:" in src) == facts.uses_data_dir


def test_reproduce_records_the_wall_times_that_the_rerun_boxes_quote(tmp_path, monkeypatch, capsys):
    """Only the book's default run records; a partial run is labelled; the file says what it is."""
    import ddpmdp.book.runtime.runner as runner
    from ddpmdp.book.runtime.rerun import RUNTIMES_FILE, read_runtimes, rerun_markdown
    from ddpmdp.cli.main import main
    from ddpmdp.errors import DdpmdpError

    for marker in ("_toc.yml", "pyproject.toml"):
        (tmp_path / marker).write_text("")
    (tmp_path / "notebooks").mkdir()
    for name in ("cifar10_nll", "embedded_models"):
        (tmp_path / "notebooks" / f"{name}.py").write_text("")
    monkeypatch.setenv("DDPMDP_REPO", str(tmp_path))
    monkeypatch.setattr(runner, "run_all", lambda names, **kw: [
        runner.NotebookRun(n, tmp_path / f"{n}.ipynb", {}, {"cifar10_nll": 222.4, "embedded_models": 71.2}[n])
        for n in names])
    assert main(["reproduce", "--smoke"]) == 0 and not (tmp_path / RUNTIMES_FILE).exists()
    assert main(["reproduce", "--no-build", "-p", "budgets", "[2]"]) == 0 and not (tmp_path / RUNTIMES_FILE).exists()
    assert main(["reproduce", "--no-build"]) == 0
    got = read_runtimes(tmp_path)
    assert got["cifar10_nll"]["seconds"] == 222.4 and got["embedded_models"]["full_run"] is True
    text = rerun_markdown("cifar10_nll", "https://github.com/o/r", root=tmp_path)
    assert f"3.7 minutes (recorded {got['cifar10_nll']['date']} by `make reproduce` on a fresh clone" in text
    assert "cached for the other CIFAR-10 notebooks" in text
    (tmp_path / "runs" / "cache").mkdir(parents=True)
    (tmp_path / "runs" / "cache" / "t.npz").write_bytes(b"")
    assert main(["reproduce", "--no-build", "cifar10_nll"]) == 0  # one notebook, tables cached: not a full run
    got = read_runtimes(tmp_path)
    assert got["cifar10_nll"]["full_run"] is False and got["embedded_models"]["full_run"] is True
    text = rerun_markdown("cifar10_nll", "https://github.com/o/r", root=tmp_path)
    assert "in a run of only some notebooks" in text and "cached for the other" not in text
    assert "71 s (recorded" in rerun_markdown("embedded_models", "https://github.com/o/r", root=tmp_path)
    assert "not recorded yet" in rerun_markdown("mc_ablation", "https://github.com/o/r", runtimes={})
    (tmp_path / RUNTIMES_FILE).write_text('{"format": "other"}')
    with pytest.raises(DdpmdpError, match="runtimes file"):
        read_runtimes(tmp_path)
