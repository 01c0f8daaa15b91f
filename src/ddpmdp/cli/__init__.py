"""The ``ddpmdp`` command line: :mod:`~ddpmdp.cli.main` (the entry point), :mod:`~ddpmdp.cli.registry`
(the commands, one module each, imported lazily) and :mod:`~ddpmdp.cli.args` (the shared argument
groups)."""
from ddpmdp.cli.main import main

__all__ = ["main"]
