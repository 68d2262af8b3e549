"""What a chapter's profile would cost on this machine: SGD step times of its runs' kinds, times their steps.

Usage::

    .tools/bin/uv run python benchmarks/profile_cost.py CHAPTER PROFILE [--set NAME=VALUE ...] [--threads 2]

For a chapter's profile, with parameters changed by ``--set`` (a Python literal, as papermill would pass it:
``--set width=0.25 --set epochs=30``), it lists every run the profile computes: its step-size tuning runs,
and the runs its chosen step sizes add (one run at a stand-in step size each: a step costs the same at any
step size). It groups them by what a step costs (network, width, normalization, batch and group size,
input), times one full SGD step of each group (forward, cross-entropy, backward, momentum update; median
of ``--repeats``, the groups interleaved) and multiplies by the runs' steps. Training steps only:
evaluation, probes, data loading and augmentation come on top, so the hours printed are a lower bound.
Where some of the profile's runs are stored, it compares their provenance seconds with their steps timed
here: what the rest added, on the CPUs that made them. Data-parallel runs (chapter 39) are timed as one
process at the global batch, a lower bound for K workers sharing the cores.

Not a test: the numbers depend on the machine; run it on idle cores (pause ``make results``). Outputs kept
beside this file, ``profile_cost_cpu.txt``, one block per command.
"""

import argparse
import ast
import dataclasses
import math
from types import SimpleNamespace

import torch

from norm_step_ratios import interleaved_medians  # the benchmarks' shared timer (this script's folder is on sys.path)
from revisit_bn.commands import training_images, without_lr
from revisit_bn.experiments import CHAPTERS, resolve, store_profile
from revisit_bn.models import build_model
from revisit_bn.results import cpu_arithmetic, results_root
from revisit_bn.store import run_state

# (channels, side) of the image datasets; the vector datasets' runs (chapters 13, 14, 32, 33) are not timed
IMAGES = {"mnist": (1, 28), "mnist_scaled": (1, 28), "mnist_scaled_wide": (1, 28), "cifar10": (3, 32)}
NORM_OF_METHOD = {"sync_bn": "bn"}  # chapter 39's methods as the layer a single process times


def _parse_set(text: str) -> tuple[str, object]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--set takes NAME=VALUE (a Python literal), got {text!r}")
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError) as exc:
        raise argparse.ArgumentTypeError(f"--set {name}: {value!r} is not a Python literal ({exc})") from exc


def profile_runs(name: str, profile: str, overrides: dict) -> list:
    """Every run ``profile`` of chapter ``name`` computes: the runs it lists now (its tuning runs and, once they are
    stored, the runs at the chosen step sizes), and while its step sizes are not chosen, the grid's runs that no
    tuning run stands for, at the profile's stand-in step size."""
    spec = CHAPTERS[name]
    runs = spec.configs(profile, **overrides)
    params = resolve(spec, profile, overrides)
    listed = {without_lr(c) for c in runs}
    return runs + [c for c in spec.grid(params) if without_lr(c) not in listed]


def step_kind(config) -> tuple | None:
    """``(dataset, model, width, norm, group size, batch)`` of one SGD step of ``config`` (``None``: not timed)."""
    if getattr(config, "dataset", None) not in IMAGES or not hasattr(config, "model"):
        return None
    if hasattr(config, "workers"):  # a data-parallel run: one process at the global batch
        return (config.dataset, config.model, config.width, NORM_OF_METHOD.get(config.method, config.method), None,
                config.batch_size * config.workers)
    return (config.dataset, config.model, config.width, config.norm, config.norm_group_size, config.batch_size)


def steps_of(config) -> int:
    """SGD steps of ``config``: its training images (after the validation split) over its batch, times epochs."""
    if hasattr(config, "workers"):
        return math.ceil(config.train_size / (config.batch_size * config.workers)) * config.epochs
    images = training_images(dataclasses.asdict(config))
    return math.ceil(images / config.batch_size) * config.epochs


def time_steps(kinds: list[tuple], repeats: int) -> dict:
    """Median seconds of one SGD step of each kind, interleaved."""
    steps = {}
    for kind in kinds:
        dataset, model, width, norm, group, batch = kind
        channels, side = IMAGES[dataset]
        config = SimpleNamespace(model=model, norm=norm, width=width, norm_group_size=group, norm_momentum=0.1,
                                 fn_momentum_power=0.0, brn_warmup_steps=0, brn_ramp_steps=10, noise_mean_max=1.0,
                                 noise_scale_max=2.0, noise_std=0.5)
        torch.manual_seed(0)
        net = build_model(config, channels, side, 10)
        optimizer = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
        x, y = torch.randn(batch, channels, side, side), torch.randint(0, 10, (batch,))

        def step(net=net, optimizer=optimizer, x=x, y=y):
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(net(x), y).backward()
            optimizer.step()

        steps[kind] = step
    return interleaved_medians(steps, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapter", choices=[n for n, s in CHAPTERS.items() if s.grid], metavar="CHAPTER")
    parser.add_argument("profile", choices=("ci", "book", "paper", "next"), metavar="PROFILE")
    parser.add_argument("--set", dest="overrides", type=_parse_set, action="append", default=[])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    if args.profile not in CHAPTERS[args.chapter].profiles:
        parser.error(f"chapter {args.chapter} has no profile {args.profile!r}; it has {list(CHAPTERS[args.chapter].profiles)}")
    overrides = dict(args.overrides)
    try:
        runs = profile_runs(args.chapter, args.profile, overrides)
    except ValueError as exc:
        parser.error(str(exc))
    torch.set_num_threads(args.threads)
    timed = [c for c in runs if step_kind(c)]
    kinds = list(dict.fromkeys(step_kind(c) for c in timed))
    seconds = time_steps(kinds, args.repeats)
    changed = ", ".join(f"{k}={v!r}" for k, v in overrides.items()) or "as registered"
    print(f"{args.chapter}, profile '{args.profile}' ({changed}): {len(runs)} runs ({len(runs) - len(timed)} not "
          f"timed); torch {torch.__version__}, {args.threads} threads of an {cpu_arithmetic()}, median of "
          f"{args.repeats} interleaved steps; training steps only")
    print(f"  {'dataset':8} {'model':15} {'width':>5} {'norm':13} {'group':>5} {'batch':>5} {'runs':>4} {'steps/run':>9} "
          f"{'ms/step':>8} {'hours':>6}")
    total = 0.0
    for kind in kinds:
        mine = [c for c in timed if step_kind(c) == kind]
        hours = sum(steps_of(c) for c in mine) * seconds[kind] / 3600
        total += hours
        dataset, model, width, norm, group, batch = kind
        print(f"  {dataset:8} {model:15} {width:5g} {norm:13} {group or '':>5} {batch:5d} {len(mine):4d} "
              f"{round(sum(steps_of(c) for c in mine) / len(mine)):9,d} {seconds[kind] * 1e3:8.1f} {hours:6.1f}")
    print(f"  at least {total:.1f} h of training steps for the {len(timed)} timed runs")
    root = results_root(store_profile(args.profile))
    stored = [(c, run_state(c, root, report=lambda m: None)[1]) for c in timed]
    stored = [(c, p) for c, p in stored if p is not None]
    if stored:
        took = sum(p["provenance"]["seconds"] for _, p in stored) / 3600
        steps = sum(steps_of(c) * seconds[step_kind(c)] for c, _ in stored) / 3600
        print(f"  {len(stored)} of them are stored: they took {took:.1f} h (provenance seconds, on the CPUs that made "
              f"them), {took / steps:.2f} times their training steps timed here")


if __name__ == "__main__":
    main()
