"""ddpmdp: ELBO-optimal inference schedules for pretrained DDPMs (Watson, Ho, Norouzi & Chan 2021).

The public API in one place::

    table = estimate_table(model, train_images, variance="learned_range")   # selection split
    sol = solve(table.L, k_max=256, nodes=table.nodes)                       # every budget at once
    scores = evaluate_paths(model, test_images, {"dp": sol.path(32)}, variance="learned_range")

Variances chosen with the path (``variance="optimal"``/``"analytic"``/``"best"``)::

    table = estimate_table(model, train_images, variance="optimal")         # σ² fixed on train
    sched = InferenceSchedule.from_table(table, solve(table.L, 32, table.nodes).path(32))
    scores = evaluate_paths(model, test_images, {"dp": sched})              # each edge its σ²
    other = rescore(table, "analytic")                                      # no network

Sample-fidelity paths for DDIM η = 0 (``method.md`` §13)::

    traj = estimate_trajectory_table(model, n_seeds=256)                     # C(t, s) from teacher runs
    sol = solve(traj.L, k_max=64, nodes=traj.nodes)
    scores = teacher_distance(model, {"dp": sol.path(16), "even": even_stride(T, 16)}, n_seeds=256)

The paper's core is the flat modules of this package; ``ddpmdp.models`` and ``ddpmdp.data`` say
where networks and images come from; ``ddpmdp.training``, ``ddpmdp.fid``, ``ddpmdp.book`` and
``ddpmdp.cli`` build on the core and are never imported by it.

The names below are loaded on first use (PEP 562): ``import ddpmdp`` (and importing any
submodule, such as the command line's ``ddpmdp.cli``) imports neither torch nor the rest of the
API until one of its names, or a submodule such as ``ddpmdp.schedules``, is asked for.
"""
from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

from ddpmdp.version import __version__

if TYPE_CHECKING:  # the same names for type checkers and IDEs; at run time they load lazily
    from ddpmdp.dp import DPSolution, solve
    from ddpmdp.errors import DdpmdpError
    from ddpmdp.evaluate import PathScore, evaluate_paths, path_from_table
    from ddpmdp.inference_schedule import InferenceSchedule
    from ddpmdp.models.adapter import DiffusionModel, ModelOutput, Numerics, TorchModelAdapter
    from ddpmdp.models.gaussian_data import GaussianDataModel
    from ddpmdp.rescore import rescore
    from ddpmdp.sampling import sample, sample_ancestral, sample_ddim
    from ddpmdp.schedule_file import SolvedSchedules, read_schedule_file, write_schedule_file
    from ddpmdp.schedules import Schedule, cosine_schedule, linear_schedule
    from ddpmdp.strides import even_stride, quadratic_stride
    from ddpmdp.table import ElboTable, load_table
    from ddpmdp.table_estimation import estimate_table
    from ddpmdp.trajectory import TeacherScore, estimate_trajectory_table, teacher_distance

#: public name → the module that defines it
_API: dict[str, str] = {
    "DPSolution": "ddpmdp.dp", "solve": "ddpmdp.dp",
    "DdpmdpError": "ddpmdp.errors",
    "PathScore": "ddpmdp.evaluate", "evaluate_paths": "ddpmdp.evaluate", "path_from_table": "ddpmdp.evaluate",
    "InferenceSchedule": "ddpmdp.inference_schedule",
    "DiffusionModel": "ddpmdp.models.adapter", "ModelOutput": "ddpmdp.models.adapter",
    "Numerics": "ddpmdp.models.adapter", "TorchModelAdapter": "ddpmdp.models.adapter",
    "GaussianDataModel": "ddpmdp.models.gaussian_data",
    "rescore": "ddpmdp.rescore",
    "sample": "ddpmdp.sampling", "sample_ancestral": "ddpmdp.sampling", "sample_ddim": "ddpmdp.sampling",
    "SolvedSchedules": "ddpmdp.schedule_file", "read_schedule_file": "ddpmdp.schedule_file",
    "write_schedule_file": "ddpmdp.schedule_file",
    "Schedule": "ddpmdp.schedules", "cosine_schedule": "ddpmdp.schedules", "linear_schedule": "ddpmdp.schedules",
    "even_stride": "ddpmdp.strides", "quadratic_stride": "ddpmdp.strides",
    "ElboTable": "ddpmdp.table", "load_table": "ddpmdp.table",
    "estimate_table": "ddpmdp.table_estimation",
    "estimate_trajectory_table": "ddpmdp.trajectory", "teacher_distance": "ddpmdp.trajectory",
    "TeacherScore": "ddpmdp.trajectory",
}

__all__ = [
    "__version__", "DPSolution", "solve", "ElboTable", "estimate_table", "load_table", "DdpmdpError", "PathScore",
    "evaluate_paths", "path_from_table", "DiffusionModel", "GaussianDataModel", "ModelOutput", "Numerics",
    "TorchModelAdapter", "sample", "sample_ancestral", "sample_ddim", "Schedule", "cosine_schedule",
    "linear_schedule", "even_stride", "quadratic_stride", "InferenceSchedule", "rescore",
    "SolvedSchedules", "read_schedule_file", "write_schedule_file", "estimate_trajectory_table", "teacher_distance",
    "TeacherScore",
]


def __getattr__(name: str) -> Any:
    """Load a public name (or a submodule, ``ddpmdp.schedules``) on first access."""
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
    elif not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
