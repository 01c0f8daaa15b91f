"""Models: one adapter protocol for every ε-prediction network, and where networks come from.

* :mod:`~ddpmdp.models.adapter` — the :class:`DiffusionModel` protocol and :class:`TorchModelAdapter`;
* :mod:`~ddpmdp.models.gaussian_data` — the exact denoiser for Gaussian data (closed-form tests);
* :mod:`~ddpmdp.models.specs` — model specs (strings) → adapters, :func:`load_model`;
* :mod:`~ddpmdp.models.state_dicts` — the one strict, safe state_dict loader;
* :mod:`~ddpmdp.models.checkpoints` — improved-diffusion and Ho et al. checkpoints;
* :mod:`~ddpmdp.models.embedded` — the small models shipped in ``weights/`` and their cards;
* :mod:`~ddpmdp.models.info` — ``model-info``;
* :mod:`~ddpmdp.models.nets` — the network definitions.
"""
from ddpmdp.models.adapter import DiffusionModel, ModelInfo, ModelOutput, Numerics, TorchModelAdapter
from ddpmdp.models.gaussian_data import GaussianDataModel

__all__ = ["DiffusionModel", "ModelInfo", "ModelOutput", "Numerics", "TorchModelAdapter", "GaussianDataModel"]
