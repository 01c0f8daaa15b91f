"""The lossless − JPEG gap on the Embedded models page (issue 20 item 4) from a synthetic
``lossless_gap.npz`` in the format ``scripts/lossless_check.py update`` writes, the page's "not
measured yet" path without the file, and the training-history lines of the cards."""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from ddpmdp.book.experiments import embedded_models as em

ROOT = Path(__file__).resolve().parents[1]
D = 3 * 32 * 32 * math.log(2.0)


def _run(folder: Path, model: str, stage: str, which: str, terms: np.ndarray, per_image: np.ndarray) -> None:
    """One ``scripts/lossless_check.py run`` result file (the fields ``update`` reads)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {"model": model, "stage": stage, "set": which, "data": which, "split": "test",
           "weights": f"{stage} weights", "variance": "fixed_large", "n_images": len(per_image), "bpd": float(per_image.mean() / D),
           "bpd_se": float(per_image.std(ddof=1) / math.sqrt(len(per_image)) / D), "per_image_nats": per_image.tolist(),
           "terms_nats": terms.tolist(), "nodes": list(range(len(terms) + 1))}
    (folder / f"{model}_{stage}_{which}.json").write_text(json.dumps(out))


@pytest.fixture()
def gap_file(tmp_path, monkeypatch):
    """A gap file written by the script's own ``update`` from synthetic runs, into a temporary
    weights folder (cards copied there, since ``update`` also writes the cards)."""
    from ddpmdp.models import embedded

    weights = tmp_path / "weights"
    weights.mkdir()
    for card in embedded.weights_dir().glob("*.json"):
        data = json.loads(card.read_text())
        data.pop("train_vs_test", None)  # written by update from the runs below, never kept from the real card
        (weights / card.name).write_text(json.dumps(data))
    monkeypatch.setattr(embedded, "WEIGHTS_DIR", weights)
    rng = np.random.default_rng(0)
    runs = tmp_path / "runs"
    K = 10
    for model in ("cifar10-simple", "cifar10-hybrid"):
        for stage, size in (("before", 0.8), ("after", 0.2)):
            jpeg = rng.uniform(1, 2, K) * 100
            extra = np.zeros(K)
            extra[:3] = size * D / 3  # the gap sits on the three edges nearest the data
            per_image = rng.normal(7000, 50, 6)
            _run(runs, model, stage, "jpeg", jpeg, per_image)
            _run(runs, model, stage, "lossless", jpeg + extra, per_image + size * D + rng.normal(0, 5, 6))
    train = rng.normal(6900, 50, 4)  # the overfitting check: first 4 training images (lossless_curve.py's fields)
    (runs / "cifar10-simple_after_train4.json").write_text(json.dumps(
        {"data": "cifar10-lossless:train", "n_images": 4, "per_image_nats": train.tolist()}))
    spec = importlib.util.spec_from_file_location("lossless_check", ROOT / "scripts" / "lossless_check.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    assert module.main(["update", str(runs)]) == 0
    return weights / em.GAP_FILE


def test_gap_file_table_lines_and_figure(gap_file):
    gap = em.load_gap()
    assert gap is not None and gap.path == em.GAP_FILE
    assert set(gap.summary) == {"cifar10-simple", "cifar10-hybrid"}
    header, rows = em.gap_table(gap)
    assert header[0] == "Model" and len(rows) == 4 and rows[0][1] == "before fine-tuning"
    assert rows[1][1].startswith("after fine-tuning") and rows[0][-1] == "6"
    lines = em.gap_lines(gap)
    assert len(lines) == 2 and lines[0].startswith("`cifar10-simple`: gap lossless − JPEG before fine-tuning +0.")
    assert "the fine-tuning changed it by -0.60 bits/dim" in lines[0]
    t, g = em.cumulative_gap(gap, "cifar10-simple", "before")
    assert t[0] == 1 and len(t) == len(g) == 10
    np.testing.assert_allclose(g[2:], 0.8, rtol=1e-12)  # all of it within the first three edges
    np.testing.assert_allclose(g[0], 0.8 / 3, rtol=1e-12)
    fig = em.plot_lossless_gap(gap)
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert len(ax.lines) == 4 + 1 and ax.get_xscale() == "log" and "bits/dim" in ax.get_ylabel()
    assert {ln.get_linestyle() for ln in ax.lines[:4]} == {"-", "--"}


def test_gap_absent_says_not_measured_yet(tmp_path):
    assert em.load_gap(tmp_path / "nothing.npz") is None
    (line,) = em.gap_lines(None)
    assert "not measured yet" in line and em.GAP_FILE in line


def test_training_lines_name_every_stage():
    from ddpmdp.models.embedded import EMBEDDED

    lines = em.training_lines()
    assert [ln.split("`")[1] for ln in lines] == list(EMBEDDED)
    assert all(" steps on `" in ln for ln in lines)
    assert any("(the JPEG-decoded copy)" in ln for ln in lines)
    assert em.training_lines(["cifar10-vlb"])[0].startswith("`cifar10-vlb`: ")


def test_update_writes_train_vs_test_on_equal_counts(gap_file):
    """The card's overfitting check pairs the first n test images of the lossless run with n training
    images: means, SEs (root sum of squares for the difference) recomputed here from the run files."""
    card = json.loads((gap_file.parent / "cifar10-simple.json").read_text())
    fit = card["train_vs_test"]
    runs = gap_file.parent.parent / "runs"
    train = np.asarray(json.loads((runs / "cifar10-simple_after_train4.json").read_text())["per_image_nats"]) / D
    test = np.asarray(json.loads((runs / "cifar10-simple_after_lossless.json").read_text())["per_image_nats"][:4]) / D
    assert fit["n_images"] == 4
    np.testing.assert_allclose([fit["train"]["bpd"], fit["test"]["bpd"]], [train.mean(), test.mean()], rtol=1e-12)
    se = math.hypot(train.std(ddof=1) / 2, test.std(ddof=1) / 2)
    np.testing.assert_allclose([fit["test_minus_train"], fit["test_minus_train_se"]],
                               [test.mean() - train.mean(), se], rtol=1e-12)
    assert "train_vs_test" not in json.loads((gap_file.parent / "cifar10-hybrid.json").read_text())
    (line,) = em.training_lines(["cifar10-simple"])
    assert "Overfitting check on 4 images of each split" in line and f"{fit['test_minus_train']:+.3f}" in line
