"""``python -m ddpmdp`` (and ``torchrun -m ddpmdp``) runs the command line."""
import sys

from .cli import main

sys.exit(main())
