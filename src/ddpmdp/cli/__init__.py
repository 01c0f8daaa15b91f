"""The ``ddpmdp`` command line: :mod:`~ddpmdp.cli.main` (table, solve, evaluate, sample, models,
model-info), :mod:`~ddpmdp.cli.train` and :mod:`~ddpmdp.cli.reproduce`."""
from ddpmdp.cli.main import main

__all__ = ["main"]
