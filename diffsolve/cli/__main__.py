"""`python -m diffsolve.cli …` runs the `diffsolve` command line through the script's entry point (diffsolve.console).

Python imports this package before it runs this file, so a signal in those first milliseconds is Python's own; use
`diffsolve` or `python -m diffsolve`, whose handlers are in place before diffsolve.cli is imported."""

import sys

from ..console import main

sys.exit(main())
