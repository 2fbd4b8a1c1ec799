"""`python -m diffsolve …` runs the `diffsolve` command line, through the script's entry point (diffsolve.console:
the SIGINT/SIGTERM handlers are in place before diffsolve.cli is imported)."""

import sys

from .console import main

sys.exit(main())
