"""Path specs: strings that name an inference path (``even:K``, ``quadratic:K``,
``dp:SOLVED.json:K``, ``nodes:0,…,T``), shared by the CLI and the notebooks."""
from __future__ import annotations

import numpy as np

from ddpmdp.errors import DdpmdpError, require
from ddpmdp.inference_schedule import InferenceSchedule
from ddpmdp.schedule_file import read_schedule_spec
from ddpmdp.strides import even_stride, quadratic_stride, validate_path

__all__ = ["parse_path_spec", "parse_schedule_spec"]


def parse_path_spec(spec: str, T: int) -> np.ndarray:
    """The nodes of a path spec (see :func:`parse_schedule_spec` for the nodes with per-edge variances)."""
    return parse_schedule_spec(spec, T).nodes


def parse_schedule_spec(spec: str, T: int, *, allow_other_model: bool = False) -> InferenceSchedule:
    """Resolve a path spec to an :class:`InferenceSchedule` (int64 nodes 0 = t₀ < … < t_K = T).

    ``even:K`` and ``quadratic:K`` (:mod:`ddpmdp.strides`), ``dp:SOLVED.json:K`` (a budget of a
    solved-schedule file, :mod:`ddpmdp.schedule_file`: it carries the identity of the model and
    noise schedule it was solved for, and each edge's rule and σ² when the file records them;
    ``allow_other_model`` lets it go to another model of the same noise schedule) or
    ``nodes:0,…,T``. Only ``dp:`` schedules carry per-edge variances and an identity."""
    kind, _, rest = spec.partition(":")
    if kind in ("even", "quadratic"):
        try:
            K = int(rest)
        except ValueError:
            raise DdpmdpError(f"path spec {spec!r}: expected {kind}:K with an integer K") from None
        return InferenceSchedule((even_stride if kind == "even" else quadratic_stride)(T, K))
    if kind == "nodes":
        try:
            nodes = [int(x) for x in rest.split(",") if x.strip()]
        except ValueError:
            raise DdpmdpError(f"path spec {spec!r}: nodes must be comma-separated integers") from None
        return InferenceSchedule(validate_path(np.asarray(nodes, dtype=np.int64), T))
    if kind == "dp":
        file, _, k = rest.rpartition(":")
        require(bool(file) and k.isdigit(), f"path spec {spec!r}: expected dp:SOLVED.json:K")
        solved, K = read_schedule_spec(rest)
        noise = f"noise schedule {solved.identity.noise_schedule}, " if solved.identity is not None else ""
        require(solved.T == T, f"{file} was solved for {noise}T = {solved.T}, not T = {T}; a schedule never "
                "transfers to another noise schedule")
        return solved.schedule(K, allow_other_model=allow_other_model)
    raise DdpmdpError(f"unknown path spec {spec!r}: use even:K, quadratic:K, dp:SOLVED.json:K or nodes:0,…,T")
