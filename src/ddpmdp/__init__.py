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

The paper's core is the flat modules of this package; ``ddpmdp.models`` and ``ddpmdp.data`` say
where networks and images come from; ``ddpmdp.training``, ``ddpmdp.fid``, ``ddpmdp.book`` and
``ddpmdp.cli`` build on the core and are never imported by it.
"""
from ddpmdp.dp import DPSolution, solve
from ddpmdp.errors import DdpmdpError
from ddpmdp.evaluate import PathScore, evaluate_paths, path_from_table
from ddpmdp.inference_schedule import InferenceSchedule
from ddpmdp.models.adapter import DiffusionModel, ModelOutput, Numerics, TorchModelAdapter
from ddpmdp.models.gaussian_data import GaussianDataModel
from ddpmdp.rescore import rescore
from ddpmdp.sampling import sample, sample_ancestral, sample_ddim
from ddpmdp.schedules import Schedule, cosine_schedule, linear_schedule
from ddpmdp.strides import even_stride, quadratic_stride
from ddpmdp.table import ElboTable, load_table
from ddpmdp.table_estimation import estimate_table
from ddpmdp.version import __version__

__all__ = [
    "__version__", "DPSolution", "solve", "ElboTable", "estimate_table", "load_table", "DdpmdpError", "PathScore",
    "evaluate_paths", "path_from_table", "DiffusionModel", "GaussianDataModel", "ModelOutput", "Numerics",
    "TorchModelAdapter", "sample", "sample_ancestral", "sample_ddim", "Schedule", "cosine_schedule",
    "linear_schedule", "even_stride", "quadratic_stride", "InferenceSchedule", "rescore",
]
