"""The README's code blocks, each with the marker comment on the line before it, and the times of the first-day ones.

Markers (an HTML comment alone on the line before the opening fence):
  <!-- slow -->              a Python block that the test suite runs only with `-m slow`
  <!-- not run: REASON -->   a Python block that is not run (the reason is shown as the test's skip reason)
  <!-- runnable -->          a shell block that the test suite runs (`diffsolve` there is this checkout's)
  <!-- runnable slow -->     the same, only with `-m slow`
Unmarked Python blocks run in the default test run; unmarked shell blocks are not run.

    OMP_NUM_THREADS=1 python -m tests.readme_blocks     # time the "First day" blocks, each in a fresh process

prints the wall time of each block under a "### I …" heading of "## First day", run as a file in an empty folder with
this checkout on the import path (the times the README quotes).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w+)\s*$")
MARKER = re.compile(r"^<!--\s*(.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced code block: its language, code, the marker before it ("" if none), the heading it sits under and
    the line of its opening fence (1-based)."""

    lang: str
    code: str
    marker: str
    heading: str
    line: int

    @property
    def slow(self) -> bool:
        return self.marker in ("slow", "runnable slow")

    @property
    def skipped(self) -> str | None:
        """The reason the block is not run, or None."""
        if self.marker.startswith("not run"):
            return self.marker.partition(":")[2].strip() or "marked not run"
        if self.lang == "bash" and not self.marker.startswith("runnable"):
            return "a shell block not marked runnable"
        return None


def blocks(path: Path = README) -> list[Block]:
    """Every fenced block of the file, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    out, heading, i = [], "", 0
    while i < len(lines):
        if lines[i].startswith("#"):
            heading = lines[i].lstrip("#").strip()
        m = FENCE.match(lines[i])
        if m:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            before = MARKER.match(lines[i - 1]) if i else None
            out.append(Block(m.group(1), "\n".join(lines[i + 1:end]) + "\n", before.group(1) if before else "",
                             heading, i + 1))
            i = end
        i += 1
    return out


def first_day(path: Path = README) -> list[Block]:
    """The walk-throughs: the Python and runnable shell blocks under the '### I …' headings."""
    return [b for b in blocks(path) if b.heading.startswith("I ") and b.skipped is None]


def run_block(block: Block, folder: Path) -> subprocess.CompletedProcess[str]:
    """Run a block as a file in `folder` with OMP_NUM_THREADS=1 (Python with this checkout first on the import path;
    shell with `diffsolve` meaning this checkout's command line)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    if block.lang == "python":
        (folder / "block.py").write_text(block.code, encoding="utf-8")
        return subprocess.run([sys.executable, "block.py"], cwd=folder, env=env, capture_output=True, text=True)
    bin_dir = folder / ".bin"
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / "diffsolve"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m diffsolve "$@"\n', encoding="utf-8")
    shim.chmod(0o755)
    env["PATH"] = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), env.get("PATH", "")])
    return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", block.code], cwd=folder, env=env,
                          capture_output=True, text=True)


def main() -> None:
    print("| heading | block (README line) | wall s | exit |\n|---|---|---|---|")
    for block in first_day():
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            proc = run_block(block, Path(tmp))
            print(f"| {block.heading} | {block.lang} ({block.line}) | {time.perf_counter() - t0:.1f} | "
                  f"{proc.returncode} |", flush=True)
            if proc.returncode:
                print(proc.stderr[-2000:], file=sys.stderr)


if __name__ == "__main__":
    main()
