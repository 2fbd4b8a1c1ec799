"""diffsolve's benchmark scripts, run from the repository root as `python -m benchmarks.NAME`.

Each script checks what it reports and exits 1 when a claim fails; `--smoke` runs it at tiny sizes into a temporary
folder; `python -m benchmarks.smoke` runs every smoke mode; `python -m benchmarks.results_md` regenerates the tables of
benchmarks/RESULTS.md from the committed result files (`--check`: exit 1 when they differ).
"""
