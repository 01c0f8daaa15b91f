"""Path specs: strings that name an inference path, shared by the CLI and the notebooks.

* ``even:K``, ``quadratic:K``, ``ddim-quadratic:K``, ``logsnr:K``, ``edm:K`` — the baselines of
  :mod:`ddpmdp.strides` (``method.md`` §7, §13.6; ``logsnr`` and ``edm`` need the noise schedule);
* ``dp:SOLVED.json:K`` — a budget of a solved-schedule file (:mod:`ddpmdp.schedule_file`);
* ``nodes:0,…,T`` — explicit nodes.
"""
from __future__ import annotations

import numpy as np

from ddpmdp.errors import DdpmdpError, require
from ddpmdp.inference_schedule import InferenceSchedule
from ddpmdp.schedule_file import read_schedule_spec
from ddpmdp.strides import BASELINES, NEEDS_SCHEDULE, baseline_stride, validate_path

__all__ = ["parse_path_spec", "parse_schedule_spec", "SPEC_HELP"]

SPEC_HELP = ("even:K, quadratic:K, ddim-quadratic:K, logsnr:K, edm:K, dp:SOLVED.json:K or nodes:0,…,T")
"""The path specs, for help texts and error messages."""


def _T_and_schedule(T):
    """(T, the Schedule or None) from an int T or a :class:`~ddpmdp.schedules.Schedule`."""
    if hasattr(T, "alphas_cumprod"):
        return int(T.T), T
    return int(T), None


def parse_path_spec(spec: str, T) -> np.ndarray:
    """The nodes of a path spec (see :func:`parse_schedule_spec` for the nodes with per-edge variances)."""
    return parse_schedule_spec(spec, T).nodes


def parse_schedule_spec(spec: str, T, *, allow_other_model: bool = False,
                        allow_other_sampler: bool = False) -> InferenceSchedule:
    """Resolve a path spec to an :class:`InferenceSchedule` (int64 nodes 0 = t₀ < … < t_K = T).

    ``T``: the number of steps, or the noise schedule (a :class:`~ddpmdp.schedules.Schedule`,
    e.g. ``model.schedule``), which ``logsnr:K`` and ``edm:K`` need for ᾱ. Specs: the baselines
    ``even:K``, ``quadratic:K``, ``ddim-quadratic:K``, ``logsnr:K``, ``edm:K``
    (:data:`ddpmdp.strides.BASELINES`, 1 <= K <= T), ``dp:SOLVED.json:K`` (a budget of a
    solved-schedule file: it carries the identity of the model and noise schedule it was solved
    for, its objective and the sampler it is valid for, and each edge's rule and σ² when the file
    records them; ``allow_other_model`` lets it go to another model of the same noise schedule,
    ``allow_other_sampler`` to a sampler it was not solved for) or ``nodes:0,…,T``. Only ``dp:``
    schedules carry per-edge variances and an identity. Every problem is one
    :class:`~ddpmdp.errors.DdpmdpError` line."""
    T, schedule = _T_and_schedule(T)
    kind, _, rest = str(spec).partition(":")
    if kind in BASELINES:
        try:
            K = int(rest)
        except ValueError:
            raise DdpmdpError(f"path spec {spec!r}: expected {kind}:K with an integer K") from None
        require(1 <= K <= T, f"path spec {spec!r}: K must lie in 1..T = {T}, got {K}")
        if kind in NEEDS_SCHEDULE and schedule is None:
            raise DdpmdpError(f"path spec {spec!r} needs the noise schedule (ᾱ), not only T = {T}")
        return InferenceSchedule(baseline_stride(kind, T, K, schedule))
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
        return solved.schedule(K, allow_other_model=allow_other_model, allow_other_sampler=allow_other_sampler)
    raise DdpmdpError(f"unknown path spec {spec!r}: use {SPEC_HELP}")
