"""ddpmdp: ELBO-optimal inference schedules for pretrained DDPMs (Watson, Ho, Norouzi & Chan 2021).

The public API in one place::

    table = estimate_table(model, train_images, variance="learned_range")   # selection split
    sol = solve(table.L, k_max=256, nodes=table.nodes)                       # every budget at once
    scores = evaluate_paths(model, test_images, {"dp": sol.path(32)}, variance="learned_range")
"""
__version__ = "0.1.0"

from .dp import DPSolution, solve  # noqa: E402
from .elbo_table import ElboTable, estimate_table, load_table  # noqa: E402
from .errors import DdpmdpError  # noqa: E402
from .evaluate import PathScore, evaluate_paths, path_from_table  # noqa: E402
from .models import DiffusionModel, GaussianDataModel, ModelOutput, TorchModelAdapter  # noqa: E402
from .sampling import sample, sample_ancestral, sample_ddim  # noqa: E402
from .schedules import Schedule, cosine_schedule, linear_schedule  # noqa: E402
from .strides import even_stride, quadratic_stride  # noqa: E402

__all__ = [
    "DPSolution", "solve", "ElboTable", "estimate_table", "load_table", "DdpmdpError", "PathScore",
    "evaluate_paths", "path_from_table", "DiffusionModel", "GaussianDataModel", "ModelOutput",
    "TorchModelAdapter", "sample", "sample_ancestral", "sample_ddim", "Schedule", "cosine_schedule",
    "linear_schedule", "even_stride", "quadratic_stride",
]
