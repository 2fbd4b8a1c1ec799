"""`diffsolve train`: fit a small network on the linear VP schedule (ε-prediction) or the rectified flow (velocity).

Loss, t ~ U[t_min, t_max], ε ~ N(0, I), x_t = α_t x0 + σ_t ε, τ the network's time (schedule.model_time):
  --schedule linear: E ‖ε_θ(x_t, τ) − ε‖² (denoising score matching);
  --schedule flow:   E ‖v_θ(x_t, τ) − (α' x0 + σ' ε)‖² (flow matching; rectified flow: v = ε − x0, τ = σ = t).
Adam with cosine learning-rate decay; an exponential moving average (EMA) of the weights is what gets saved.
"""

from __future__ import annotations

import argparse
import copy
import math
import platform
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from . import nets
from .checks import Option
from .errors import DiffsolveError
from .schedules import Flow, Schedule, VPLinear, from_config
from .threads import checked_threads
from .userpaths import named_path


@dataclass
class Task:
    """What `diffsolve train NAME` fits: an architecture, its config and a data sampler."""

    arch: str
    config: dict[str, Any]
    steps: int
    batch: int
    lr: float
    data: str
    extra: dict[str, Any] = field(default_factory=dict)


TASKS: dict[str, Task] = {
    "toy-2d": Task("mlp", {"dim": 2, "hidden": 128, "depth": 3, "temb": 32}, steps=8000, batch=512, lr=2e-3,
                   data="ring of 8 Gaussians, radius 1.5, std 0.15 (diffsolve.nets.toy_2d)"),
    "digits-8x8": Task("unet", {"channels": 32, "temb": 128}, steps=6000, batch=64, lr=1e-3,
                       data="sklearn digits, train split (1,500 images), x = 2(v+u)/17 - 1",
                       extra={"data_scale": 2.0 / nets.DIGIT_LEVELS, "levels": nets.DIGIT_LEVELS}),
}
SCHEDULE_CONFIG = VPLinear(0.1, 20.0, 1e-3, 1.0).to_config()  # written as Schedule.to_config(), the one format
# the numbers of a training run: their kind and a range that fits one CPU's memory and time (checked before any
# work: the command line checks them before its destination, `train` before its first step)
MAX_BATCH = 65_536  # toy-2d's MLP holds ~2 KiB of activations per sample: 1e9 samples asked for ~2 TB
MAX_TRAIN_STEPS = 10_000_000
STEPS = Option("steps", "int", None, "optimizer steps", low=1, high=MAX_TRAIN_STEPS)
BATCH = Option("batch", "int", None, "samples per optimizer step, bounded by one CPU's memory", low=1, high=MAX_BATCH)
LR = Option("lr", "float", None, "Adam's learning rate: above 1 the steps overshoot and training diverges", low=0,
            open_low=True, high=1)
SEED = Option("seed", "int", 0, "seeds init, data, t and noise", low=0)
EMA = Option("ema", "float", 0.999, "decay of the weights' moving average", low=0, high=1, open_high=True)
FLOW_SCHEDULE_CONFIG = Flow(1e-3, 1.0 - 1e-3, 1.0).to_config()
# --schedule NAME → (schedule config, what the network predicts, checkpoint suffix)
TRAIN_SCHEDULES: dict[str, tuple[dict[str, Any], str, str]] = {
    "linear": (SCHEDULE_CONFIG, "eps", ""),
    "flow": (FLOW_SCHEDULE_CONFIG, "velocity", "-flow"),
}


def data_sampler(name: str, gen: torch.Generator) -> Callable[[int], Tensor]:
    """batch → a fresh training batch of task `name`, drawn from the seeded generator."""
    if name == "toy-2d":
        return lambda n: nets.toy_2d(n, int(torch.randint(2**62, (1,), generator=gen)))
    if name == "digits-8x8":
        levels = nets.digits_levels("train")

        def draw(n: int) -> Tensor:
            idx = torch.randint(levels.shape[0], (n,), generator=gen)
            return nets.dequantize(levels[idx], gen)

        return draw
    raise DiffsolveError(f"unknown training task {name!r}; valid ones are {', '.join(TASKS)}")


def dsm_loss(net: nn.Module, x0: Tensor, schedule: Schedule, gen: torch.Generator,
             prediction: str = "eps") -> Tensor:
    """‖net(α_t x0 + σ_t ε, τ_t) − target‖² averaged, t ~ U[t_min, t_max]; target ε, or v = α' x0 + σ' ε."""
    b = x0.shape[0]
    t = schedule.t_min + (schedule.t_max - schedule.t_min) * torch.rand(b, generator=gen, dtype=torch.float64)
    shape = (b,) + (1,) * (x0.ndim - 1)
    a = schedule.alpha(t).to(x0.dtype).reshape(shape)
    s = schedule.sigma(t).to(x0.dtype).reshape(shape)
    eps = torch.randn(x0.shape, generator=gen, dtype=x0.dtype)
    target = eps
    if prediction == "velocity":
        da, dsig = (c.to(x0.dtype).reshape(shape) for c in schedule.velocity_coefficients(t))
        target = da * x0 + dsig * eps
    return ((net(a * x0 + s * eps, schedule.model_time(t).to(x0.dtype)) - target) ** 2).mean()


def train(name: str, *, steps: int | None = None, batch: int | None = None, lr: float | None = None,
          seed: int = 0, ema: float = 0.999, log_every: int = 500, schedule: str = "linear",
          log: Callable[[str], None] = print) -> tuple[nn.Module, dict[str, Any]]:
    """Train task `name` on `schedule` (linear: ε; flow: velocity); returns (EMA network, checkpoint dict)."""
    if name not in TASKS:
        raise DiffsolveError(f"unknown training task {name!r}; valid ones are {', '.join(TASKS)}")
    if schedule not in TRAIN_SCHEDULES:
        raise DiffsolveError(f"unknown training schedule {schedule!r}; valid ones are {', '.join(TRAIN_SCHEDULES)}")
    task = TASKS[name]
    steps = STEPS.check(task.steps if steps is None else steps, fix=f"omit it for the task's {task.steps}")
    batch = BATCH.check(task.batch if batch is None else batch, fix=f"omit it for the task's {task.batch}")
    lr = LR.check(task.lr if lr is None else lr, fix=f"omit it for the task's {task.lr}, or give e.g. 1e-3")
    seed = SEED.check(seed)
    ema = EMA.check(ema)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    schedule_config, prediction, suffix = TRAIN_SCHEDULES[schedule]
    sched_obj = from_config(schedule_config)
    net = nets.build_net(task.arch, task.config)
    avg = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * i / steps)))
    draw = data_sampler(name, gen)
    history: list[tuple[int, float]] = []
    running, start = 0.0, time.perf_counter()
    for i in range(1, steps + 1):
        loss = dsm_loss(net, draw(batch), sched_obj, gen, prediction)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            decay = min(ema, (1 + i) / (10 + i))
            for pa, p in zip(avg.parameters(), net.parameters()):
                pa.lerp_(p, 1 - decay)
        running += float(loss.detach())
        if i % log_every == 0 or i == steps:
            n = log_every if i % log_every == 0 else i % log_every
            history.append((i, running / n))
            log(f"step {i:6d}  loss {running / n:.5f}  ({time.perf_counter() - start:.0f} s)")
            running = 0.0
    ckpt = {
        "name": name + suffix, "arch": task.arch, "config": task.config, "schedule": schedule_config,
        "prediction": prediction, "data": task.data, **task.extra,
        "seed": seed, "steps": steps, "batch": batch, "lr": lr, "ema": ema, "loss_history": history,
        "train_seconds": round(time.perf_counter() - start, 1),
        "torch": str(torch.__version__), "machine": f"{platform.machine()} {platform.system()}",
    }
    return avg, ckpt


def save(net: nn.Module, ckpt: dict[str, Any], path: str | Path, command: str) -> Path:
    """Write the checkpoint (float32 weights + metadata + the command that made it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().contiguous() for k, v in net.state_dict().items()}
    torch.save({**ckpt, "command": command, "state_dict": state}, path)
    return path


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `diffsolve train` (shared by the CLI and `python -m diffsolve.training`)."""
    p.add_argument("task", choices=sorted(TASKS), help="what to train")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (default: the task's)")
    p.add_argument("--batch", type=int, default=None, help="batch size (default: the task's)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default: the task's)")
    p.add_argument("--schedule", choices=sorted(TRAIN_SCHEDULES), default="linear",
                   help="linear: ε-prediction on the linear VP schedule; flow: velocity on the rectified flow "
                        "(checkpoint <task>-flow.pt)")
    p.add_argument("--seed", type=int, default=0, help="seeds init, data, t and noise")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--out", default=None, help="checkpoint path (default: ./<task>.pt)")


def command_line(args: argparse.Namespace) -> str:
    """The canonical `diffsolve train …` command that reproduces a run (stored in the checkpoint)."""
    words = ["diffsolve", "train", args.task]
    for opt in ("steps", "batch", "lr"):
        if getattr(args, opt) is not None:
            words += [f"--{opt}", str(getattr(args, opt))]
    if args.schedule != "linear":
        words += ["--schedule", args.schedule]
    words += ["--seed", str(args.seed), "--out", str(destination(args))]
    return shlex.join(words)


def default_out(args: argparse.Namespace) -> str:
    """./<task>.pt, or ./<task>-flow.pt for --schedule flow."""
    return f"{args.task}{TRAIN_SCHEDULES[args.schedule][2]}.pt"


def destination(args: argparse.Namespace) -> Path:
    """The checkpoint path: --out, else ./<task>.pt (./<task>-flow.pt for --schedule flow)."""
    return Path(default_out(args) if args.out is None else args.out)


def check_arguments(args: argparse.Namespace) -> None:
    """The command line's numbers (threads, steps, batch, lr, seed) and destination, checked before any training."""
    checked_threads(args.threads, "--threads")
    task = TASKS[args.task]
    for option, value, default in ((STEPS, args.steps, task.steps), (BATCH, args.batch, task.batch),
                                   (LR, args.lr, task.lr), (SEED, args.seed, 0)):
        if value is not None:
            option.check(value, fix=f"give a valid --{option.name}, or leave it out for {default}")
    if args.out is not None:  # '' (an unset shell variable) is not a request for the default
        named_path(args.out, "--out", "checkpoint file")
    target = destination(args)
    if target.is_dir():
        raise DiffsolveError(f"--out {str(target)!r} is a folder; give a checkpoint file such as "
                             f"{target / args.task}.pt")
    if target.resolve().parent == nets.checkpoint_path(args.task).resolve().parent:
        raise DiffsolveError(f"--out {str(target)!r} is inside the packaged checkpoints folder; diffsolve train never "
                             f"overwrites the shipped models: write elsewhere, e.g. --out {args.task}.pt, and "
                             f"benchmark it with `diffsolve bench --problem {args.task}.pt`")


def run(args: argparse.Namespace) -> int:
    """Train and save; returns an exit code."""
    check_arguments(args)
    torch.set_num_threads(args.threads)
    net, ckpt = train(args.task, steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed,
                      schedule=args.schedule)
    out = save(net, ckpt, destination(args), command_line(args))
    print(f"saved {out} ({out.stat().st_size / 1024:.0f} KiB)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="diffsolve train", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
