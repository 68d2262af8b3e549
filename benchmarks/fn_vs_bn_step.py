"""Step-time and memory ratios of FullNorm2d over torch.nn.BatchNorm2d, measured in one run.

Usage: ``.tools/bin/uv run python benchmarks/fn_vs_bn_step.py [--batch-size 64] [--repeats 50]``

Prints, for one layer and for the whole SimpleNet SGD step, the median time of FN over BN (a
ratio, so the machine's speed cancels) and the ratio of peak autograd-saved bytes. Not a test:
the numbers depend on the machine.
"""

import argparse
import statistics
import time

import torch
from torch import nn

from revisit_bn.layers import FullNorm2d
from revisit_bn.models import SimpleNet


def median_seconds(step, repeats: int) -> float:
    for _ in range(5):  # warm-up
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def saved_bytes(module: nn.Module, x: torch.Tensor) -> int:
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module(x).sum()
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    torch.manual_seed(0)

    x = torch.randn(args.batch_size, 32, 14, 14, requires_grad=True)
    layers = {"bn": nn.BatchNorm2d(32), "fn": FullNorm2d(32)}

    def layer_step(layer):
        return lambda: layer(x).square().sum().backward()

    t = {k: median_seconds(layer_step(m), args.repeats) for k, m in layers.items()}
    mem = {k: saved_bytes(m, x) for k, m in layers.items()}
    print(f"single layer (N={args.batch_size}, C=32, 14x14): FN/BN step time {t['fn'] / t['bn']:.2f}, "
          f"FN/BN saved bytes {mem['fn'] / mem['bn']:.2f}")

    images = torch.randn(args.batch_size, 1, 28, 28)
    labels = torch.randint(0, 10, (args.batch_size,))

    def net_step(model, opt):
        def step():
            opt.zero_grad()
            nn.functional.cross_entropy(model(images), labels).backward()
            opt.step()
        return step

    nets = {k: SimpleNet(k) for k in ("bn", "fn")}
    t = {k: median_seconds(net_step(m, torch.optim.SGD(m.parameters(), lr=0.01)), args.repeats) for k, m in nets.items()}
    print(f"SimpleNet SGD step (batch {args.batch_size}): FN/BN step time {t['fn'] / t['bn']:.2f}")


if __name__ == "__main__":
    main()
