"""The embedded models (notebook ``embedded_models``): their cards as a table, the generated
lossless-versus-JPEG sentences, and samples along a path.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from ddpmdp.book.reporting.formatting import mean_pm_se
from ddpmdp.book.runtime.inputs import variance_rule
from ddpmdp.errors import require
from ddpmdp.models.adapter import DiffusionModel

__all__ = ["EMBEDDED_CAPTION", "embedded_card_table", "lossless_gap_lines", "model_samples"]


EMBEDDED_CAPTION = (
    "Held-out bits/dim: the full-chain negative ELBO, mean ± SE over the named test images (fresh noise). "
    "Lossless-100: the first 100 official CIFAR-10 test images with their exact pixels; JPEG-100: the same 100 "
    "images from the shared JPEG-decoded copy that every other CIFAR-10 number in this book uses. Their "
    "difference is what the JPEG copy does to bits/dim; no 64×64 lossless set exists here (Tiny-ImageNet is "
    "stored as JPEG at its source).")
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
