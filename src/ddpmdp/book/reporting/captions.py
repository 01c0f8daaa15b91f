"""Provenance captions: which models, data (origin, split, image count) and grid stand behind a
table, in one sentence the book prints under it."""
from __future__ import annotations

from collections.abc import Mapping

from ddpmdp.data.images import ImageSet
from ddpmdp.table import ElboTable

__all__ = ["provenance", "figure_provenance"]


def _origin_note(ds: ImageSet) -> str:
    copy = any("differs from the official" in n or "MD5 mismatch" in n for n in ds.notes)
    if ds.identity.startswith("cifar10-lossless:"):
        return "lossless: the official pixels" if not ds.notes else "lossless copy; " + "; ".join(ds.notes)
    if copy and ds.identity.startswith("cifar10:"):
        return "the shared copy decoded from JPEG, not the official pixels"
    if ds.identity.startswith("tiny-imagenet64"):
        return "Tiny-ImageNet 64×64, standing in for ImageNet 64×64"
    return "a local copy that differs from the official files" if copy else ""


def _data_origin(ds: ImageSet, note: bool = True) -> str:
    origin = _origin_note(ds) if note else ""
    return f"{len(ds):,} {ds.split} images of `{ds.identity}`" + (f" ({origin})" if origin else "")


def provenance(models: Mapping[str, str], train: ImageSet | None, test: ImageSet | None,
               table: ElboTable | None = None) -> str:
    """One sentence: models with hashes, selection and evaluation data (origin, split, n), grid."""
    parts = ["Models: " + "; ".join(f"{k} = `{v}`" for k, v in models.items()) + "."]
    if train is not None:
        parts.append(f"Selection (table and DP): {_data_origin(train)}.")
    if test is not None:
        parts.append(f"Evaluation: {_data_origin(test)}, fresh noise, paired across paths.")
    if table is not None:
        parts.append(f"Grid `{table.meta.get('grid', 'all')}`: {len(table.nodes)} nodes of T = {table.T}.")
    return " ".join(parts)


def figure_provenance(models: Mapping[str, str], train: ImageSet | None = None, test: ImageSet | None = None) -> str:
    """One sentence for a figure's caption: the models with their hashes, the held-out images the
    plotted numbers were measured on and the training images that chose the paths (origin, split, n)."""
    named = [f"`{v}`" if k == "model" else f"{k} = `{v}`" for k, v in models.items()]
    parts = [("Model: " if len(named) == 1 else "Models: ") + "; ".join(named)]
    sets = [(label, ds) for label, ds in (("held-out", test), ("selection", train)) if ds is not None]
    notes = {_origin_note(ds) for _, ds in sets}
    shared = len(sets) > 1 and len(notes) == 1
    parts += [f"{label}: {_data_origin(ds, note=not shared)}" for label, ds in sets]
    text = "; ".join(parts)
    if shared and notes != {""}:
        text += f" (both {notes.pop()})"
    return text + "."
