"""What every benchmark script shares: output arguments, the smoke mode, and claims checked before exit."""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def smoke_argument(p: argparse.ArgumentParser) -> None:
    """--smoke: tiny sizes, few NFEs, output into a temporary folder (never over the committed results)."""
    p.add_argument("--smoke", action="store_true",
                   help="tiny sizes and few NFEs, written into a temporary folder: checks that the script and its "
                        "checks run (python -m benchmarks.smoke runs every script so)")


def output_arguments(p: argparse.ArgumentParser) -> None:
    """--out OUT and --render OUT.json (print the table of a finished run, check its claims, write nothing)."""
    p.add_argument("--out", default=None, help="write OUT.json and OUT.md (as the rows finish)")
    p.add_argument("--render", default=None, help="only print the table of a finished run's OUT.json and check it")


def out_path(args: argparse.Namespace, name: str, default: str | Path | None = None) -> Path | None:
    """Where this run writes: --out, else `default`; in smoke mode --out or a fresh temporary folder, and never a
    path under benchmarks/results (the committed results)."""
    if not getattr(args, "smoke", False):
        return Path(args.out) if args.out else (Path(default) if default is not None else None)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix=f"diffsolve-smoke-{name}-")) / name
    if out.resolve().is_relative_to(RESULTS):
        raise SystemExit(f"--smoke writes into a temporary folder, not {out} (under {RESULTS}, the committed "
                         f"results); drop --out or give a folder elsewhere")
    return out


def smoke_sizes(args: argparse.Namespace, **sizes: Any) -> None:
    """In smoke mode, replace the arguments named in `sizes` by these tiny values."""
    if args.smoke:
        for k, v in sizes.items():
            setattr(args, k, v)


def read_json(path: str | Path) -> Any:
    """The JSON document in `path` (UTF-8)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write(out: str | Path, rows: Any, render: Callable[[Any], str]) -> None:
    """OUT.json (the rows) and OUT.md (their table, by `render`)."""
    out = str(out)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out + ".json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    Path(out + ".md").write_text(render(rows) + "\n", encoding="utf-8")


def report(args: argparse.Namespace, claims: Claims, measure: Callable[[Path | None], Any],
           render: Callable[[Any], str], check: Callable[[Any, Claims], None]) -> int:
    """The end of a script that writes rows: with --render the rows of that file, else measure(OUT) (written to
    OUT.json and OUT.md when there is an OUT); print render(rows), check(rows, claims); the exit status."""
    if args.render:
        rows = read_json(args.render)
    else:
        out = out_path(args, claims.script)
        rows = measure(out)
        if out:
            write(out, rows, render)
    print(render(rows))
    check(rows, claims)
    return claims.exit_status()


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def check_png(path: Path, claims: Claims) -> None:
    """The claim that `path` is a non-empty PNG file."""
    data = path.read_bytes() if path.is_file() else b""
    claims.check(data.startswith(PNG_SIGNATURE) and len(data) > 1000,
                 f"{path} is a PNG of {len(data)} bytes" if data else f"{path} was written")


class Claims:
    """The claims a script makes about what it measured, each checked: `check` prints an `ok` or a `FAIL` line,
    `skip` says which claim was not checked and why, `exit_status` is 1 when any claim failed.

    In a smoke run a claim that only a full-size measurement supports (a timing ratio, a mean over the full problem
    set) is printed with its outcome but not asserted: the smoke run checks that the measuring and the checking run.
    """

    def __init__(self, script: str, smoke: bool = False):
        self.script, self.smoke = script, smoke
        self.failed: list[str] = []
        self.passed = 0
        self.skipped = 0

    def check(self, ok: bool, claim: str, full_size_only: bool = False) -> bool:
        """Record `claim` (a sentence with its numbers) as holding or not; print it either way."""
        if self.smoke and full_size_only:
            self.skipped += 1
            print(f"smoke {self.script}: {claim} — {'holds' if ok else 'does not hold'} at smoke size; asserted at "
                  f"full size only", flush=True)
            return bool(ok)
        if ok:
            self.passed += 1
        else:
            self.failed.append(claim)
        print(f"{'ok  ' if ok else 'FAIL'} {self.script}: {claim}", flush=True)
        return bool(ok)

    def skip(self, claim: str, why: str) -> None:
        """A claim not checked in this run, and why (e.g. a peer that is not installed)."""
        self.skipped += 1
        print(f"skip {self.script}: {claim} ({why})", flush=True)

    def exit_status(self) -> int:
        """Print the summary line; 1 when a claim failed, else 0."""
        skipped = f", {self.skipped} not asserted" if self.skipped else ""
        if self.failed:
            print(f"FAIL {self.script}: {len(self.failed)} of {len(self.failed) + self.passed} claims failed{skipped}",
                  flush=True)
            return 1
        print(f"ok   {self.script}: all {self.passed} claims hold{skipped}", flush=True)
        return 0
