"""``python -m bioplausible ...`` (and ``torchrun -m bioplausible ...``): the command line."""

import sys

from .cli import main

sys.exit(main())
