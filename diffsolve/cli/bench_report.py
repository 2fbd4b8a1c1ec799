"""`diffsolve bench`'s ending: the report written and printed, the failures listed, the exit status."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .common import EXIT_ALL_FAILED, EXIT_OK, EXIT_SOME_FAILED


def finish(args: argparse.Namespace, res: Any, fmt: str, out: Any = None) -> int:
    """Write the report and print it in `fmt`; the exit status says whether every cell, some or none succeeded."""
    out = out or args.merge
    failed = res.failed
    if res.records and len(failed) == len(res.records):
        print(f"every cell failed ({len(failed)}); no report written. The failures:", file=sys.stderr)
        print("\n".join(failure_lines(failed)), file=sys.stderr)
        return EXIT_ALL_FAILED
    written = [f"{out}/results.jsonl"]
    if not args.no_report and res.records:
        written += [str(p) for p in res.write(out)]
    if fmt == "json" and not args.merge:  # the cells were printed as they finished: the best-per-NFE rows follow
        print("".join(json.dumps(r, allow_nan=False) + "\n" for r in res.best_rows()), end="", flush=True)
    elif res.records:
        print(res.format(fmt), end="" if fmt in ("csv", "json") else "\n")
    print("wrote " + ", ".join(written), file=sys.stderr)
    if failed:
        print(f"{len(failed)} of {len(res.records)} cells failed (the report shows 'failed' there):", file=sys.stderr)
        print("\n".join(failure_lines(failed, full=1)), file=sys.stderr)
        return EXIT_SOME_FAILED
    return EXIT_OK


def failure_lines(failed: list[dict[str, Any]], full: int = 3) -> list[str]:
    """The first `full` failures with their whole message (and traceback when not a DiffsolveError), then one
    line per other failed cell."""
    lines = []
    for i, r in enumerate(failed):
        where = (f"{r['problem']} {r['solver']}{'[' + r['options_label'] + ']' if r.get('options_label') else ''} "
                 f"{r['grid']} {r['variable']} " + (f"tol={r['tol']:g}" if r.get("tol") is not None
                                                     else f"nfe={r['nfe_target']}") + f" seed={r['seed']}")
        if i < full:
            lines.append(f"  {where}: {r['error']}" + (f"\n{r['traceback']}" if r.get("traceback") else ""))
        else:
            lines.append(f"  {where}: {str(r['error']).splitlines()[0][:100]}")
    return lines
