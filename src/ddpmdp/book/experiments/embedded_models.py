"""The embedded models (notebook ``embedded_models``): their cards as a table, their training
history, the generated lossless-versus-JPEG sentences, the lossless − JPEG gap before and after the
fine-tuning on lossless images (table and per-node figure, from the package file
``lossless_gap.npz`` that ``scripts/lossless_check.py update`` writes), and samples along a path.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from matplotlib.figure import Figure

from ddpmdp.book.reporting.formatting import mean_pm_se
from ddpmdp.book.reporting.plotting import FIGURE_DPI, styled
from ddpmdp.book.runtime.inputs import variance_rule
from ddpmdp.errors import require
from ddpmdp.models.adapter import DiffusionModel

__all__ = ["EMBEDDED_CAPTION", "embedded_card_table", "lossless_gap_lines", "model_samples", "training_lines",
           "GAP_FILE", "GapData", "load_gap", "gap_table", "gap_lines", "cumulative_gap", "plot_lossless_gap"]


EMBEDDED_CAPTION = (
    "Held-out bits/dim: the full-chain negative ELBO, mean ± SE over the named test images (fresh noise). "
    "Lossless-100: the first 100 official CIFAR-10 test images with their exact pixels; JPEG-100: the same 100 "
    "images from the shared JPEG-decoded copy (the held-out column names the data each card measured on; the "
    "book's other CIFAR-10 numbers use the lossless images). Their difference is what the JPEG copy does to "
    "bits/dim; no 64×64 lossless set exists here (Tiny-ImageNet is stored as JPEG at its source).")
"""Caption of the embedded-model table (no numbers: they come from the cards)."""


def _score(row: dict, key: str, precision: int) -> str:
    if row.get(f"{key}_bpd") is None:
        return "no lossless set" if row.get(f"{key}_note") else "—"
    return mean_pm_se(row[f"{key}_bpd"], row[f"{key}_bpd_se"], precision)


# ---- the embedded models ------------------------------------------------------------------------
def embedded_card_table(names: Sequence[str] | None = None, precision: int = 3) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the embedded models' cards (:func:`ddpmdp.models.embedded.model_table`): objective,
    the held-out full-chain bits/dim ± SE and the images it was measured on (count and split),
    the full chain on the lossless and JPEG copies of the first 100 CIFAR-10 test images,
    training steps and CPU minutes, noise schedule with variance rule, and parameter count.
    Nine columns, so that the table fits a page at 1280 px."""
    from ddpmdp.models.embedded import model_table

    header = ["Model", "Objective", "Held-out bits/dim (full chain)", "Held-out images", "Lossless-100",
              "JPEG-100", "Training", "Schedule, variance", "Parameters"]
    rows = []
    for r in model_table():
        if names is not None and r["name"] not in names:
            continue
        bpd = mean_pm_se(r["heldout_bpd"], r["heldout_bpd_se"], precision) if r["heldout_bpd"] is not None \
            else "not measured"
        images = (f"{r['heldout_images']} of {r['heldout_split']}" if r["heldout_images"] and r["heldout_split"]
                  else "—")
        steps = f"{r['steps']:,} steps" if r["steps"] else "—"
        training = steps + (f", {r['train_minutes']:.0f} min" if r["train_minutes"] is not None else "")
        rows.append([r["name"], r["objective"], bpd, images, _score(r, "lossless100", precision),
                     _score(r, "jpeg100", precision), training, f"{r['schedule']}, {r['variance']}",
                     f"{r['parameters']:,}" if r["parameters"] else "—"])
    return header, rows


def lossless_gap_lines(names: Sequence[str] | None = None, precision: int = 3) -> list[str]:
    """One sentence per embedded model from its card: the full chain on the 100 lossless CIFAR-10 test
    images and on their JPEG copies (mean ± SE, bits/dim, same seed and noise) and their difference,
    or why a model has no lossless number."""
    from ddpmdp.models.embedded import model_table

    out = []
    for r in model_table():
        if names is not None and r["name"] not in names:
            continue
        if r["lossless100_bpd"] is not None and r["jpeg100_bpd"] is not None:
            gap = r["lossless100_bpd"] - r["jpeg100_bpd"]
            out.append(f"`{r['name']}`: {_score(r, 'lossless100', precision)} bits/dim on the 100 lossless test "
                       f"images, {_score(r, 'jpeg100', precision)} on their JPEG copies: the JPEG copy scores "
                       f"{abs(gap):.2f} bits/dim {'lower' if gap > 0 else 'higher'}.")
        elif r["lossless100_note"]:
            out.append(f"`{r['name']}`: {r['lossless100_note']}.")
        else:
            out.append(f"`{r['name']}`: the lossless and JPEG-100 numbers are not measured yet "
                       "(scripts/lossless_check.py).")
    return out


def model_samples(model: DiffusionModel, path: str, n: int, *, method: Literal["ancestral", "ddim"] = "ancestral",
                  variance: str | None = None, clip: bool = True, seed: int = 0, device: str = "cpu",
                  batch_size: int = 64) -> np.ndarray:
    """``n`` samples, uint8 (n, C, H, W), along a path spec (``even:K``, ``quadratic:K``,
    ``dp:FILE.json:K``, ``nodes:…``; :func:`ddpmdp.path_specs.parse_schedule_spec`, which checks a solved
    file's model and noise schedule) with the model's variance rule by default."""
    from ddpmdp.path_specs import parse_schedule_spec
    from ddpmdp.sampling import sample

    shape = model.image_shape
    require(shape is not None, "the model does not declare its image shape")
    assert shape is not None
    nodes = parse_schedule_spec(path, model.schedule.T)
    return sample(model, nodes, n, shape, method=method, variance=variance_rule(variance, model),
                  clip=clip, seed=seed, device=device, batch_size=batch_size)


# ---- training history -----------------------------------------------------------------------------
def _data_words(spec: str | None) -> str:
    if spec and spec.startswith("cifar10-lossless:"):
        return f"`{spec}` (lossless)"
    if spec and spec.startswith("cifar10:"):
        return f"`{spec}` (the JPEG-decoded copy)"
    return f"`{spec}`"


def training_lines(names: Sequence[str] | None = None) -> list[str]:
    """One sentence per embedded model: its training stages, oldest first, from the card
    (:func:`ddpmdp.training.cards.training_history`): data (JPEG copy or lossless), steps, minutes, and
    the card's overfitting check (``train_vs_test``: train and test bits/dim on equal image counts) if any."""
    from ddpmdp.models.embedded import embedded_models
    from ddpmdp.training.cards import training_history

    out = []
    for name, entry in embedded_models().items():
        if names is not None and name not in names:
            continue
        card = entry["card"]
        if not card:
            out.append(f"`{name}`: no card.")
            continue
        stages = [f"{int(st.get('steps') or 0):,} steps on {_data_words(st.get('data'))}"
                  + (f" ({float(st['wall_minutes']):.0f} min)" if st.get("wall_minutes") is not None else "")
                  for st in training_history(card)]
        line = f"`{name}`: " + ", then ".join(stages) + "."
        fit = card.get("train_vs_test")
        if fit:
            n = int(fit["n_images"])
            line += (f" Overfitting check on {n} images of each split (full chain): lossless train "
                     f"{mean_pm_se(fit['train']['bpd'], fit['train']['bpd_se'], 3)}, lossless test "
                     f"{mean_pm_se(fit['test']['bpd'], fit['test']['bpd_se'], 3)} bits/dim, test − train "
                     f"{fit['test_minus_train']:+.3f} ± {fit['test_minus_train_se']:.3f}.")
        out.append(line)
    return out


# ---- the lossless − JPEG gap (issue 20) -------------------------------------------------------------
GAP_FILE = "lossless_gap.npz"
"""The package data file (under :func:`ddpmdp.models.embedded.weights_dir`) with the gap per model and stage."""
STAGES = ("before", "after")
_STAGE_WORDS = {"before": "before fine-tuning", "after": "after fine-tuning on the lossless training images"}


@dataclass(frozen=True)
class GapData:
    """``summary[model][stage]``: ``lossless``/``jpeg`` {bpd, bpd_se, n_images, weights}, ``gap_bpd``,
    ``gap_bpd_se``; ``nodes[(model, stage)]`` the full chain's nodes and ``terms[(model, stage, set)]``
    the per-edge mean terms in bits/dim (edge i: nodes[i + 1] → nodes[i]) on the ``lossless`` and
    ``jpeg`` sets; ``path`` the file read."""

    summary: dict[str, dict[str, dict[str, Any]]]
    nodes: dict[tuple[str, str], np.ndarray]
    terms: dict[tuple[str, str, str], np.ndarray]
    path: str


def load_gap(path: str | os.PathLike | None = None) -> GapData | None:
    """The gap file (default: the package's :data:`GAP_FILE`), or None when it does not exist yet."""
    from ddpmdp.models.embedded import EMBEDDED, weights_dir

    p = Path(path) if path is not None else weights_dir() / GAP_FILE
    if not p.is_file():
        return None
    with np.load(p, allow_pickle=False) as z:
        raw = json.loads(str(z["summary"]))
        order = [m for m in EMBEDDED if m in raw] + sorted(m for m in raw if m not in EMBEDDED)
        summary = {m: raw[m] for m in order}
        nodes = {(m, st): np.asarray(z[f"{m}/{st}/nodes"]) for m, d in summary.items() for st in d}
        terms = {(m, st, s): np.asarray(z[f"{m}/{st}/{s}_terms_bpd"], dtype=np.float64)
                 for m, d in summary.items() for st in d for s in ("lossless", "jpeg")}
    return GapData(summary, nodes, terms, p.name)


def _stages(d: Mapping[str, Any]) -> list[str]:
    return [st for st in STAGES if st in d] + sorted(st for st in d if st not in STAGES)


def gap_table(gap: GapData, precision: int = 3) -> tuple[list[str], list[list[str]]]:
    """(header, rows): per model and stage the full-chain bits/dim on the lossless test images and on
    their JPEG copies (mean ± SE, the image count) and the paired gap lossless − JPEG ± SE."""
    header = ["Model", "Weights", "Lossless test images", "Their JPEG copies", "Gap (lossless − JPEG)", "Images"]
    rows = []
    for m, d in gap.summary.items():
        for st in _stages(d):
            e = d[st]
            rows.append([m, _STAGE_WORDS.get(st, st), mean_pm_se(e["lossless"]["bpd"], e["lossless"]["bpd_se"], precision),
                         mean_pm_se(e["jpeg"]["bpd"], e["jpeg"]["bpd_se"], precision),
                         mean_pm_se(e["gap_bpd"], e["gap_bpd_se"], precision, signed=True), str(e["lossless"]["n_images"])])
    return header, rows


def gap_lines(gap: GapData | None, precision: int = 2) -> list[str]:
    """One sentence per model: the gap before and after the fine-tuning, and how much it shrank; or
    "not measured yet" without the file."""
    if gap is None:
        return [f"The lossless − JPEG gap before and after the fine-tuning is not measured yet (no {GAP_FILE} in the "
                "package; `scripts/lossless_check.py update` writes it)."]
    out = []
    for m, d in gap.summary.items():
        parts = [f"{_STAGE_WORDS.get(st, st)} {mean_pm_se(d[st]['gap_bpd'], d[st]['gap_bpd_se'], precision, signed=True)}"
                 for st in _stages(d)]
        text = f"`{m}`: gap lossless − JPEG " + "; ".join(parts) + " bits/dim (full chain, paired over the same images)"
        if "before" in d and "after" in d:
            change = d["after"]["gap_bpd"] - d["before"]["gap_bpd"]
            text += f"; the fine-tuning changed it by {change:+.{precision}f} bits/dim"
        out.append(text + ".")
    return out


def cumulative_gap(gap: GapData, model: str, stage: str) -> tuple[np.ndarray, np.ndarray]:
    """(t, G(t)): G(t) = Σ over the edges s → … ending at or below t of (lossless − JPEG) mean terms,
    bits/dim; t runs over the edge starts nodes[1:], so G(T) is the chain's total gap without the prior."""
    diff = gap.terms[(model, stage, "lossless")] - gap.terms[(model, stage, "jpeg")]
    return np.asarray(gap.nodes[(model, stage)][1:]), np.cumsum(diff)


@styled
def plot_lossless_gap(gap: GapData) -> Figure:
    """The cumulative lossless − JPEG gap G(t) against the node t (log axis), one colour per model,
    solid after and dashed before the fine-tuning: which nodes of the chain carry the gap."""
    fig = Figure(dpi=FIGURE_DPI, figsize=(6.4, 4.4), layout="constrained")
    ax = fig.add_subplot()
    for i, (m, d) in enumerate(gap.summary.items()):
        for st in _stages(d):
            t, g = cumulative_gap(gap, m, st)
            ax.plot(t, g, color=f"C{i % 10}", ls="-" if st == "after" else "--", label=f"{m}, {st}")
    ax.set_xscale("log")
    ax.axhline(0.0, color="k", lw=0.8)
    ax.set_xlabel("node t (edges t → s with s < t summed from the data up; log scale)")
    ax.set_ylabel("cumulative gap, lossless − JPEG\n(bits/dim)")
    ax.set_title("Where the chain's lossless − JPEG gap arises")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig
