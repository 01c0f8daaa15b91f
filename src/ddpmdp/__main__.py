"""``python -m ddpmdp`` (and ``torchrun -m ddpmdp``) runs the command line."""
import sys

from ddpmdp.cli.main import main

sys.exit(main())
