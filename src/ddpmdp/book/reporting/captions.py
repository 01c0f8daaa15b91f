"""Provenance captions: which models, data (origin, split, image count) and grid stand behind a
table, in one sentence the book prints under it."""
from __future__ import annotations

from collections.abc import Mapping

from ddpmdp.data.images import ImageSet
from ddpmdp.table import ElboTable

__all__ = ["provenance"]


def _data_origin(ds: ImageSet) -> str:
    copy = any("differs from the official" in n or "MD5 mismatch" in n for n in ds.notes)
    origin = " (a local copy that differs from the official files)" if copy else ""
    if copy and ds.identity.startswith("cifar10:"):
        origin = " (the shared copy decoded from JPEG, not the official pixels)"
    if ds.identity.startswith("tiny-imagenet64"):
        origin = " (Tiny-ImageNet 64×64, standing in for ImageNet 64×64)"
    return f"{len(ds):,} {ds.split} images of `{ds.identity}`{origin}"


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
