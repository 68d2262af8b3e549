"""Cost of Santurkar et al.'s probes and of noisy BN, as ratios measured in one run.

Usage: ``.tools/bin/uv run python benchmarks/probe_cost.py [--width 0.25] [--batch-size 128] [--repeats 10]``

On the book's VGG11 (CIFAR-sized input), prints the median time of

- one landscape probe (5 step sizes) over one SGD step,
- one internal-covariate-shift probe (every conv/linear layer) over one SGD step,
- one SGD step with noisy BN, FN and no normalization over one with BN,

so the machine's speed cancels. A probe every ``k`` steps adds about ``(landscape + ics) / k``
to the training time. Not a test: the numbers depend on the machine.
"""

import argparse
import copy

import torch
from torch import nn

from norm_step_ratios import interleaved_medians  # the benchmarks' shared timer (this script's folder is on sys.path)
from revisit_bn.landscape import internal_covariate_shift, landscape_probe
from revisit_bn.models import norm_layer, vgg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    def median_seconds(step, repeats: int) -> float:
        return interleaved_medians({"step": step}, repeats)["step"]

    torch.manual_seed(0)
    x, y = torch.randn(args.batch_size, 3, 32, 32), torch.randint(0, 10, (args.batch_size,))

    def sgd_step(model):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

        def step():
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return step

    models = {n: vgg("vgg11", norm_layer(n), width=args.width) for n in ("bn", "noisy_bn", "fn", "none")}
    step = {n: median_seconds(sgd_step(m), args.repeats) for n, m in models.items()}
    bn = models["bn"]
    closure = lambda: nn.functional.cross_entropy(bn(x), y)
    before = copy.deepcopy(bn.state_dict())
    landscape = median_seconds(lambda: landscape_probe(bn, closure), args.repeats)
    ics = median_seconds(lambda: internal_covariate_shift(bn, closure, before), args.repeats)
    print(f"VGG11 width {args.width}, batch {args.batch_size}, BN network:")
    print(f"  landscape probe / SGD step: {landscape / step['bn']:.1f}")
    print(f"  ICS probe (9 layers) / SGD step: {ics / step['bn']:.1f}")
    for n in ("noisy_bn", "fn", "none"):
        print(f"  SGD step {n} / bn: {step[n] / step['bn']:.2f}")


if __name__ == "__main__":
    main()
