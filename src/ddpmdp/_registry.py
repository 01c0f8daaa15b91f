"""Imports the modules that register built-in model and data specs."""
from __future__ import annotations

from . import checkpoints, cifar10, imagenet64  # noqa: F401
from . import embedded  # noqa: F401
