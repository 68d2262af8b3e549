"""What chapter 36 would cost at a wider ResNet18: SGD step times at its batch sizes, and its runs' training time.

Usage: ``.tools/bin/uv run python benchmarks/resnet18_width_cost.py [--widths 0.125 0.25] [--epochs 30] [--threads 2]``

Issue 35 asks for chapter 36's ResNet18 (CIFAR stem) at a width of at least a quarter, at a length where BN at
the larger batch reaches 85 % test accuracy. For each width and each of the chapter's batch sizes (book
profile), this times one full SGD step (forward, cross-entropy, backward, momentum update) with BN and with
FN, interleaved (median of ``repeats``), and multiplies by the steps of the chapter's runs at ``--epochs``
epochs: every run of its book grid (main runs, the constant-step check, the unscaled step-size check) at that
width and length. Training steps only: evaluation, data loading and augmentation come on top, so the hours
printed are a lower bound. Not a test: the numbers depend on the machine; run it on idle cores.
"""

import argparse
import math

import torch

from norm_step_ratios import interleaved_medians  # the benchmarks' shared timer (this script's folder is on sys.path)
from revisit_bn.chapters import chapter
from revisit_bn.data import DATASET_SIZES
from revisit_bn.experiments import resolve
from revisit_bn.models import norm_layer, resnet18_cifar
from revisit_bn.results import cpu_arithmetic, results_root
from revisit_bn.store import run_state

NAME = "36-resnet18-batch-sizes"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=float, nargs="+", default=[0.125, 0.25])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    if args.epochs < 1:
        parser.error(f"--epochs must be a positive integer, got {args.epochs}")
    if any(not (w > 0 and math.isfinite(w)) for w in args.widths):
        parser.error(f"--widths must be positive numbers, got {args.widths}")
    torch.set_num_threads(args.threads)
    spec = chapter(NAME)
    book = resolve(spec, "book")
    train_images = DATASET_SIZES["cifar10"][0]
    print(f"torch {torch.__version__}, {args.threads} threads of an {cpu_arithmetic()}, "
          f"median of {args.repeats} interleaved steps; chapter 36's book grid at {args.epochs} epochs, "
          f"{train_images:,} training images; training steps only (evaluation and data on top)")
    seconds: dict = {}
    for width in args.widths:
        for batch in book["batch_sizes"]:
            torch.manual_seed(0)
            x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
            steps = {}
            for norm in ("bn", "fn"):
                model = resnet18_cifar(norm_layer(norm), 10, 3, width)
                optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

                def step(model=model, optimizer=optimizer, x=x, y=y):
                    optimizer.zero_grad(set_to_none=True)
                    torch.nn.functional.cross_entropy(model(x), y).backward()
                    optimizer.step()

                steps[norm] = step
            for norm, median in interleaved_medians(steps, args.repeats).items():
                seconds[width, batch, norm] = median
            per_epoch = math.ceil(train_images / batch)
            print(f"width {width:g}, batch {batch:>3}: BN {seconds[width, batch, 'bn'] * 1e3:6.1f} ms/step, "
                  f"FN {seconds[width, batch, 'fn'] * 1e3:6.1f} ms/step; BN {per_epoch * seconds[width, batch, 'bn'] / 60:.1f}"
                  f" min/epoch ({per_epoch:,} steps)")
    for width in args.widths:
        runs = spec.grid({**book, "width": width, "epochs": args.epochs})
        hours = sum(math.ceil(train_images / c.batch_size) * c.epochs * seconds[width, c.batch_size, c.norm]
                    for c in runs) / 3600
        print(f"width {width:g}: the book grid's {len(runs)} runs at {args.epochs} epochs take at least {hours:.1f} h "
              f"of training steps")
    # the book's own runs (its width and length), as stored: what evaluation, data and the CPU they ran on add
    stored = [run_state(c, results_root("book"), report=lambda m: None)[1] for c in spec.grid(book)]
    if book["width"] in args.widths and all(stored):
        steps = sum(math.ceil(train_images / c.batch_size) * c.epochs * seconds[book["width"], c.batch_size, c.norm]
                    for c in spec.grid(book)) / 3600
        took = sum(p["provenance"]["seconds"] for p in stored) / 3600
        print(f"the book's {len(stored)} stored runs (width {book['width']:g}, {book['epochs']} epochs) took {took:.1f} h "
              f"(provenance seconds, on the CPUs that made them), {took / steps:.2f} times their training steps timed here")
    if len(args.widths) > 1:
        narrow, wide = min(args.widths), max(args.widths)
        ratios = [seconds[wide, b, n] / seconds[narrow, b, n] for b in book["batch_sizes"] for n in ("bn", "fn")]
        print(f"step time at width {wide:g} over width {narrow:g}: {min(ratios):.2f} to {max(ratios):.2f}")


if __name__ == "__main__":
    main()
