"""torch's intra-op CPU threads: one Option for every boundary that takes a number of threads.

The bound is a few threads per core of this machine (os.cpu_count()): more only slows the run down, and a huge
number makes OpenMP fail to allocate its thread pool (libgomp: out of memory) instead of giving a message.
"""

from __future__ import annotations

import os

from .checks import Option

PER_CORE = 4  # at most this many threads per core


def threads_option(name: str = "threads") -> Option:
    """The Option of a number of threads called `name` (--threads at the command line), 1 … PER_CORE × cores."""
    cores = os.cpu_count() or 1
    return Option(name, "int", 1, f"torch intra-op CPU threads; this machine has {cores} core(s), and more than "
                  f"{PER_CORE} per core only slows the run", low=1, high=PER_CORE * cores)


def checked_threads(value: object, name: str = "threads") -> int:
    """`value` as a number of threads, or the validation layer's DiffsolveError naming it and the cores."""
    return threads_option(name).check(value, fix=f"give the number of CPU threads to use, e.g. 1 (at most "
                                                 f"{threads_option().high:g} here)")
