"""`diffsolve train`: fit a small network (toy-2d, digits-8x8) on the CPU (diffsolve.training)."""

from __future__ import annotations

import argparse
from typing import Any

from . import common


def add_parser(sub: Any) -> argparse.ArgumentParser:
    from .. import training

    p = sub.add_parser("train", help="train a small eps-network (toy-2d, digits-8x8) on the CPU",
                       description=training.__doc__)
    training.add_arguments(p)
    return p


def run(args: argparse.Namespace) -> int:
    from .. import training

    training.check_arguments(args)
    common.writable_file(training.destination(args), "--out", f"{args.task}.pt")  # before the training
    return training.run(args)
