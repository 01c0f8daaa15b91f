"""What a notebook reads: data and models (loaded quietly, described portably) and the variance
rule of a run.

:func:`variance_rule` is the one place in :mod:`ddpmdp.book` that picks a variance rule: the
drivers, :func:`ddpmdp.book.runtime.table_cache.cached_table` and :func:`describe_model` all ask it.
"""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Literal

import torch

from ddpmdp.data.images import ImageSet, data_root
from ddpmdp.data.specs import load_images
from ddpmdp.errors import DdpmdpError, require
from ddpmdp.models.adapter import DiffusionModel
from ddpmdp.variances import VarianceRule, resolve_rule

__all__ = ["variance_rule", "load_data", "describe_data", "load_experiment_model", "describe_model",
           "notebook_terms"]


def variance_rule(requested: str | None, model: DiffusionModel) -> VarianceRule:
    """The variance rule a run uses for ``model``: ``requested`` if given, else the model's own rule
    (:func:`ddpmdp.variances.resolve_rule`, which also refuses a rule the model cannot use)."""
    return resolve_rule(requested, model)


# ---- errors in a notebook's words -------------------------------------------------------------------
_FLAG_TO_PARAMETER = [
    (re.compile(r"set \$?DDPMDP_DATA or pass --data-dir"), "set the data_dir parameter or $DDPMDP_DATA"),
    (re.compile(r"\$?DDPMDP_DATA\s*/\s*--data-dir"), "the data_dir parameter or $DDPMDP_DATA"),
    (re.compile(r"the data_dir parameter\s*/\s*--data-dir"), "the data_dir parameter"),
    (re.compile(r"pass --data-dir"), "set the data_dir parameter"),
    (re.compile(r"--data-dir"), "the data_dir parameter"),
    (re.compile(r"--device cuda"), "device: cuda"),
    (re.compile(r"--device"), "the device parameter"),
]


def notebook_terms(message: str) -> str:
    """A library error message in the words of a notebook: command-line flags (``--data-dir``)
    become the notebook parameters that set the same thing (``data_dir``)."""
    for pattern, words in _FLAG_TO_PARAMETER:
        message = pattern.sub(words, message)
    return message


# ---- data ---------------------------------------------------------------------------------------
def load_data(spec: str, n: int | None = None, *, data_dir: str | os.PathLike | None = None) -> ImageSet:
    """The first ``n`` images (all when None) of a data spec (:func:`ddpmdp.data.specs.load_images`).

    Warnings raised while loading (e.g. "differs from the official files") are not printed;
    they are kept in the returned set's ``notes`` (and hence in every table's metadata). Errors
    name the notebook's parameters (``data_dir``), not the command line's flags (:func:`notebook_terms`).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = load_images(spec, data_dir)
        except DdpmdpError as err:  # "pass --data-dir" means nothing to a notebook user
            raise DdpmdpError(notebook_terms(str(err))) from None
    extra = [str(w.message) for w in caught if str(w.message) not in ds.notes]
    ds = ds.subset(n)
    ds.notes.extend(extra)
    return ds


def _portable(text: str, data_dir: str | os.PathLike | None = None) -> str:
    """``text`` with the data folder written as ``$DDPMDP_DATA`` (outputs independent of the machine)."""
    root = data_root(data_dir)
    if root is not None:
        for form in {str(root), str(Path(root).resolve())}:
            text = text.replace(form, "$DDPMDP_DATA")
    return text


def describe_data(ds: ImageSet, data_dir: str | os.PathLike | None = None) -> str:
    """One paragraph about an image set: identity, split, N, shape, d and its notes, with the data
    folder written as ``$DDPMDP_DATA``."""
    C, H, W = ds.images.shape[1:]
    lines = [f"{ds.identity}: split {ds.split}, {len(ds):,} images of {C}×{H}×{W} (d = {ds.dims:,})"]
    lines += [f"  note: {_portable(n, data_dir)}" for n in ds.notes]
    return "\n".join(lines)


# ---- models -------------------------------------------------------------------------------------
def load_experiment_model(spec: str, *, noise_schedule: str | None = None, device: str = "cpu",
                          dtype: Literal["float32", "float64"] = "float32",
                          data_dir: str | os.PathLike | None = None) -> DiffusionModel:
    """A model adapter from a model spec (:func:`ddpmdp.models.specs.load_model`): an embedded
    model name, ``iddpm:PRESET[:PATH]``, ``ho[:PATH]``, ``gaussian:DATA`` or ``module:callable``.
    ``noise_schedule`` (``linear:T``, ``cosine:T``, a ``.npy`` of ᾱ) is for the specs that need
    or accept one; ``dtype`` is the network's arithmetic. Loader warnings are suppressed (data
    notes travel with the data instead); errors name notebook parameters (:func:`notebook_terms`)."""
    from ddpmdp.models.adapter import Numerics
    from ddpmdp.models.specs import load_model

    if device.startswith("cuda"):
        require(torch.cuda.is_available(), f"device {device!r}: CUDA is not available here; use device='cpu'")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return load_model(spec, device=device, data_dir=data_dir, schedule=noise_schedule,
                              numerics=Numerics(dtype=dtype))
        except DdpmdpError as err:
            raise DdpmdpError(notebook_terms(str(err))) from None


def describe_model(model: DiffusionModel, variance: str | None = None) -> str:
    """One line: identity, noise schedule, T and the variance rule in use (:func:`variance_rule`)."""
    return (f"{model.identity}: {model.schedule.describe()}, T = {model.schedule.T}, "
            f"variance {variance_rule(variance, model)}")
