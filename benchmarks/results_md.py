"""benchmarks/RESULTS.md's tables, generated from the committed result files under benchmarks/results.

Between `<!-- generated: NAME -->` and `<!-- end generated -->` RESULTS.md holds what SECTIONS[NAME] renders from the
files; every other table sits under a `<!-- hand-written: WHY -->` note (it applies until the next heading), saying
why no file gives it. `python -m benchmarks.results_md` rewrites the generated parts; `--check` writes nothing and
exits 1 — printing a diff — when RESULTS.md differs from what the files give, when a marker is unknown, missing or
unbalanced, or when a table is neither generated nor marked hand-written.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from diffsolve.bench.metrics import fitted_order

from . import defaults, gpu_timing, learned, lower_order_final, peers_accuracy, sde_orders, tuned_grids, tuning_cost
from .common import REPO, RESULTS, read_json

RESULTS_MD = REPO / "benchmarks" / "RESULTS.md"
START = re.compile(r"^<!-- generated: ([\w.-]+) -->$")
END = "<!-- end generated -->"
HAND = re.compile(r"^<!-- hand-written: .+ -->$")
VARIABLE = {"t": "t", "sigma": "σ̄", "sigma_bar": "σ̄", "lambda": "λ"}
TUNED_RUNS = ("tuned-gmm-2d", "tuned-gmm-64", "tuned-toy-2d", "tuned-digits-8x8")  # the defaults table's order


def bench_tables(results: Path, folder: str, *metrics: str) -> str:
    """The `**METRIC** on …` blocks (heading and tables) of FOLDER/table.md that `diffsolve bench` wrote."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in (results / folder / "table.md").read_text(encoding="utf-8").splitlines():
        head = re.match(r"^\*\*(\w+)\*\* on ", line)
        if head:
            current = blocks.setdefault(head.group(1), [])
        elif not line.startswith("|") and line.strip():
            current = None  # a legend or a note ends the block
        if current is not None:
            current.append(line)
    return "\n\n".join("\n".join(blocks[m]).strip() for m in metrics)


def records(results: Path, folder: str) -> list[dict[str, Any]]:
    """The cells of FOLDER/results.jsonl."""
    lines = (results / folder / "results.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def curves(cells: list[dict[str, Any]], label: Callable[[dict[str, Any]], str]) -> dict[str, dict[int, dict]]:
    """label → NFE → cell, labels in the order they first appear."""
    out: dict[str, dict[int, dict]] = {}
    for c in cells:
        out.setdefault(label(c), {})[c["nfe_target"]] = c
    return out


def sde_strong(results: Path) -> str:
    """The strong-error table of the sde suite (n = 256, the same Brownian path), fitted order over the last 3 NFE."""
    rows = curves([c for c in records(results, "sde") if c["kind"] == "sde" and c["n"] == 256],
                  lambda c: f"{c['solver']} / {c['grid']}")
    nfes = sorted({n for row in rows.values() for n in row})
    body, used = [], set()
    for name, row in rows.items():
        errs = [row[n]["rmse"] for n in nfes]
        order, fit = fitted_order(nfes, errs)
        used.add((fit[0], fit[-1]))
        theory = next(iter(row.values()))["order_theory"]
        body.append(f"| {name} | " + " | ".join(f"{e:.2e}" for e in errs) + f" | {order:.2f} | {theory:g} |")
    (first, last), = used  # one NFE range for every row
    return "\n".join(["| solver / grid | " + " | ".join(map(str, nfes)) + f" | fitted order (NFE {first:g}–{last:g}) "
                      "| theory |", "|---" * (len(nfes) + 3) + "|"] + body)


def sde_vs_ode(results: Path) -> str:
    """SW2 of the stochastic and deterministic samplers at equal NFE (the sde suite's n = 4096 cells)."""
    rows = curves([c for c in records(results, "sde") if c["n"] == 4096],
                  lambda c: f"{c['solver']} / {c['grid']} / {VARIABLE[c['variable']]} ({c['kind'].upper()})")
    nfes = sorted({n for row in rows.values() for n in row})
    lines = ["| solver / grid / variable | " + " | ".join(map(str, nfes)) + " |", "|---" * (len(nfes) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(f"{row[n]['sw2']:.2e}" for n in nfes) + " |" for name, row in rows.items()]
    return "\n".join(lines)


def tuned(name: str, render: Callable[[Any], str]) -> Callable[[Path], str]:
    return lambda results: render(read_json(results / f"{name}.json"))


SECTIONS: dict[str, Callable[[Path], str]] = {
    "default-suite": lambda r: bench_tables(r, "default", "rmse", "sw2"),
    "tuned-gmm-64": tuned("tuned-gmm-64", tuned_grids.markdown_main),
    "tuned-gmm-64-large": tuned("tuned-gmm-64", tuned_grids.markdown_large),
    "tuned-gmm-2d": tuned("tuned-gmm-2d", tuned_grids.markdown),
    "tuned-toy-2d": tuned("tuned-toy-2d", tuned_grids.markdown),
    "tuned-digits-8x8": tuned("tuned-digits-8x8", tuned_grids.markdown),
    "peers-gmm-64": tuned("peers-gmm-64", peers_accuracy.markdown),
    **{f"tuning-cost-{case}": tuned(f"tuning-cost-{case}", tuning_cost.markdown)
       for case in ("gmm", "digits", "unet", "objectives")},
    **{f"learned-{case}": tuned(f"learned-{case}", learned.markdown) for case in ("toy", "digits")},
    "learned-objectives": lambda r: learned.objectives_table(
        {o: read_json(r / f"learned-toy{'' if o == 'log' else '-' + o}.json") for o in ("log", "mean", "trimmed")}),
    "defaults": lambda r: tuned_grids.defaults([read_json(r / f"{n}.json") for n in TUNED_RUNS]),
    "defaults-measured": lambda r: defaults.markdown_all([read_json(r / f"defaults-{n}.json")
                                                          for n in defaults.PROBLEMS]),
    "lower-order-final": tuned("lower-order-final", lower_order_final.markdown),
    "lower-order-final-digits": tuned("lower-order-final-digits", lower_order_final.markdown),
    "grids-suite": lambda r: bench_tables(r, "grids", "rmse", "sw2"),
    "gpu": lambda r: gpu_timing.markdown(read_json(r / "gpu" / "gpu_check.json")),
    "gpu-h200": lambda r: gpu_timing.markdown(read_json(r / "gpu-h200" / "gpu_check.json")),
    "sde-strong": sde_strong,
    "sde-orders": tuned("sde-orders", sde_orders.markdown),
    "sde-vs-ode": sde_vs_ode,
    "trained": lambda r: bench_tables(r, "trained-toy2d", "rmse", "sw2") + "\n\n"
                         + bench_tables(r, "trained-digits", "rmse"),
}


def generate(text: str, results: Path = RESULTS) -> str:
    """`text` with every generated section rendered afresh from the files under `results`.

    Raises ValueError for an unknown, repeated, missing or unclosed section."""
    out: list[str] = []
    seen: list[str] = []
    lines = iter(text.splitlines())
    for line in lines:
        out.append(line)
        start = START.match(line)
        if line == END:
            raise ValueError(f"'{END}' without a '<!-- generated: NAME -->' before it")
        if not start:
            continue
        name = start.group(1)
        if name not in SECTIONS or name in seen:
            raise ValueError(f"section {name!r} is {'repeated' if name in seen else 'unknown'}; "
                             f"the sections are {', '.join(SECTIONS)}")
        seen.append(name)
        if not any(line == END for line in lines):
            raise ValueError(f"section {name!r} has no '{END}'")
        out += ["", SECTIONS[name](results).strip(), "", END]
    missing = [n for n in SECTIONS if n not in seen]
    if missing:
        raise ValueError(f"RESULTS.md lacks the generated sections {', '.join(missing)}")
    return "\n".join(out) + "\n"


def unmarked_tables(text: str) -> list[int]:
    """Line numbers of tables that are neither in a generated section nor under a hand-written note."""
    bad, generated, hand, previous = [], False, False, ""
    for number, line in enumerate(text.splitlines(), 1):
        if START.match(line) or line == END:
            generated = line != END
        elif line.startswith("#"):
            hand = False
        elif HAND.match(line):
            hand = True
        elif line.startswith("|") and not previous.startswith("|") and not generated and not hand:
            bad.append(number)
        previous = line
    return bad


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 when RESULTS.md is not up to date")
    p.add_argument("--file", default=str(RESULTS_MD), help="the markdown file (default benchmarks/RESULTS.md)")
    p.add_argument("--results", default=str(RESULTS), help="the result files (default benchmarks/results)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    path = Path(args.file)
    text = path.read_text(encoding="utf-8")
    try:
        new = generate(text, Path(args.results))
    except ValueError as e:
        print(f"FAIL results_md: {path}: {e}")
        return 1
    bad = unmarked_tables(new)
    for number in bad:
        print(f"FAIL results_md: {path}:{number}: a table neither generated nor under '<!-- hand-written: WHY -->'")
    if new == text:
        print(f"ok   results_md: {path} is what the result files give ({len(SECTIONS)} generated sections)")
        return 1 if bad else 0
    if args.check:
        sys.stdout.writelines(difflib.unified_diff(text.splitlines(True), new.splitlines(True), str(path),
                                                   "from the result files"))
        print(f"FAIL results_md: {path} differs from what the result files give; run python -m benchmarks.results_md")
        return 1
    path.write_text(new, encoding="utf-8")
    print(f"wrote {path} ({len(SECTIONS)} generated sections)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
