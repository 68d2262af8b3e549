"""SGD step time of every normalization over torch's BatchNorm2d, interleaved in one run.

Usage: ``.tools/bin/uv run python benchmarks/norm_step_ratios.py [--repeats 15] [--threads 2] [--device cpu]``

For each of the book's three convolutional networks (SimpleNet at batch 64 on MNIST-sized
inputs, VGG11 at quarter width at batch 128 and ResNet18 at batch 64 on CIFAR-sized inputs) it
times one full SGD step (forward, cross-entropy, backward, update) with every normalization,
round-robin (one step of each in turn, ``repeats`` rounds, after warm-up), and prints the median
step time of each over BN's: the machine's speed cancels in the ratio. Then FN at batch size 1
(each estimator) over the unnormalized SimpleNet at batch size 1. Targets (issue "FN's
gradient"; issue 36 for chapter 38's successors): every FN estimator, Batch Renorm and each successor at most
1.10 times BN; FN at batch size 1 at most 1.5 times the unnormalized step. BN with precise statistics
(chapter 38) trains as BN; its cost is one extra forward pass over the training set per evaluation. With ``--device cuda`` each timed step is bracketed by
``torch.cuda.synchronize()``, so a step's time includes its kernels, not only their launch;
``norm_step_ratios_h100.txt`` beside this file is one such run on a lent H100 (before chapter 38's layers), and
``norm_step_ratios_cpu.txt`` one on two threads of an idle AMD EPYC, which chapter 38 reads. Not a test: the
numbers depend on the machine.
"""

import argparse
import statistics
import time
from types import SimpleNamespace

import torch
from torch import nn

from revisit_bn.models import SIMPLE_ONLY_NORMS, build_model, norm_layer, resnet18, vgg

NORMS = ("bn", "fn", "fn_decoupled", "fn_exact", "fn_const", "brn", "lp1", "lp2", "lpinf",
         "gn", "online", "mabn", "frn", "evonorm")  # the last five: chapter 38's successors
NETWORKS = (  # (label, model, width, batch size, channels, image side)
    ("SimpleNet, batch 64", "simple", 1.0, 64, 1, 28),
    ("VGG11 x0.25, batch 128", "vgg11", 0.25, 128, 3, 32),
    ("ResNet18, batch 64", "resnet18", 1.0, 64, 3, 32),
)


def model_for(model: str, norm: str, width: float, channels: int, side: int) -> nn.Module:
    """The network with ``norm``; the norms the book runs in SimpleNet only (MABN, FRN, EvoNorm) are dropped into
    torchvision's VGG11 and ResNet18 as plain norm layers (their ReLU kept, MABN's convolutions not centred): the
    layer's own cost is what is timed."""
    config = SimpleNamespace(model=model, norm=norm, norm_momentum=0.1, fn_momentum_power=0.0, norm_group_size=None,
                             brn_warmup_steps=0, brn_ramp_steps=10, noise_mean_max=1.0, noise_scale_max=2.0,
                             noise_std=0.5, width=width)
    torch.manual_seed(0)
    if norm in SIMPLE_ONLY_NORMS and model == "vgg11":
        return vgg(model, norm_layer(norm), 10, channels, width, side)
    if norm in SIMPLE_ONLY_NORMS and model == "resnet18":
        return resnet18(norm_layer(norm), 10, channels)
    return build_model(config, channels, side, 10)


def sgd_step(model: nn.Module, images: torch.Tensor, labels: torch.Tensor):
    device = images.device
    model = model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def step() -> None:
        sync()
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
        sync()
    return step


def runnable(steps: dict, failures: list) -> dict:
    """The steps that run once without error; each that fails is noted in ``failures`` and left out."""
    ok = {}
    for name, step in steps.items():
        try:
            step()
            ok[name] = step
        except RuntimeError as exc:
            failures.append(f"{name}: {str(exc).splitlines()[0][:150]}")
    return ok


def interleaved_medians(steps: dict, repeats: int, warmup: int = 3) -> dict:
    for step in steps.values():
        for _ in range(warmup):
            step()
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def _w(name: str) -> int:
    """A column's width: its norm's name and one space, at least 8."""
    return max(8, len(name) + 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available on this machine; use --device cpu")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{args.threads} CPU threads"
    print(f"torch {torch.__version__}, {where}, median of {args.repeats} interleaved steps; "
          f"ratio = step time / BN's (target <= 1.10)")
    print(f"{'network':24s}" + "".join(f"{n:>{_w(n)}s}" for n in NORMS) + "  BN ms/step")
    for label, model, width, batch, channels, side in NETWORKS:
        gen = torch.Generator().manual_seed(0)
        images = torch.randn(batch, channels, side, side, generator=gen).to(device)
        labels = torch.randint(0, 10, (batch,), generator=gen).to(device)
        failures = []
        steps = runnable({n: sgd_step(model_for(model, n, width, channels, side).train(), images, labels) for n in NORMS},
                         failures)
        t = interleaved_medians(steps, args.repeats)
        print(f"{label:24s}" + "".join(f"{t[n] / t['bn']:{_w(n)}.2f}" if n in t else f"{'failed':>{_w(n)}s}" for n in NORMS)
              + f"  {1e3 * t['bn']:.1f}")
        for failure in failures:
            print(f"    failed: {failure}")
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(1, 1, 28, 28, generator=gen).to(device)
    labels = torch.randint(0, 10, (1,), generator=gen).to(device)
    one = ("none", "fn", "fn_decoupled", "fn_exact", "fn_const", "online", "mabn", "frn", "evonorm")
    failures = []
    steps = runnable({n: sgd_step(model_for("simple", n, 1.0, 1, 28).train(), images, labels) for n in one}, failures)
    t = interleaved_medians(steps, 10 * args.repeats)
    print("SimpleNet, batch 1, over the unnormalized step (target <= 1.5): "
          + ", ".join(f"{n} {t[n] / t['none']:.2f}" if n in t else f"{n} failed" for n in one[1:])
          + f"; unnormalized {1e3 * t['none']:.2f} ms/step")
    for failure in failures:
        print(f"    failed: {failure}")


if __name__ == "__main__":
    main()
