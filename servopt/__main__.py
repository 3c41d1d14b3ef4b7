"""``python -m servopt``: the ``servopt`` command line (see :mod:`servopt.cli`)."""

import sys

from servopt.cli import main

sys.exit(main())
