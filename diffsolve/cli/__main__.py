"""`python -m diffsolve.cli …` runs the `diffsolve` command line."""

import sys

from . import main

sys.exit(main())
