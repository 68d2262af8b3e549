"""Training memory of every normalization over torch's BatchNorm2d: the bytes autograd keeps for backward.

Usage: ``.tools/bin/uv run python benchmarks/norm_memory_ratios.py``

For the networks and batch sizes of ``norm_step_ratios.py`` (SimpleNet at batch 64 on MNIST-sized inputs, VGG11 at
quarter width at batch 128 and ResNet18 at batch 64 on CIFAR-sized inputs), it runs one training-mode forward and
cross-entropy with each normalization and sums the bytes of the distinct storages that autograd saves for backward
(``torch.autograd.graph.saved_tensors_hooks``; a storage saved by two operations, such as a norm's output that the
next convolution also keeps, counts once). That is the activation memory a training step holds at its peak, less
the transient buffers of the kernels; parameters and buffers (running statistics, estimates) are printed apart, in
KiB. The counts are exact and do not depend on the machine's speed, so this need not run on an idle machine. Target
(issue 36): each successor at most the memory of BN, or a statement of by how much and why.
"""

import torch
from torch import nn

from norm_step_ratios import NETWORKS, NORMS, _w, model_for  # this script's folder is on sys.path


def saved_bytes(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> int:
    """Bytes of the distinct storages autograd saves in one training forward of ``model`` with cross-entropy."""
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = nn.functional.cross_entropy(model(images), labels)
    loss.backward()  # the graph runs once, as in training
    return sum(storages.values())


def state_bytes(model: nn.Module) -> int:
    """Bytes of the parameters and buffers (running statistics, estimates, windows)."""
    return sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))


def main() -> None:
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, float32, one training-mode forward; ratio = bytes saved for backward / BN's")
    print(f"{'network':24s}" + "".join(f"{n:>{_w(n)}s}" for n in NORMS) + "  BN MiB")
    states = {}
    for label, model_name, width, batch, channels, side in NETWORKS:
        gen = torch.Generator().manual_seed(0)
        images = torch.randn(batch, channels, side, side, generator=gen)
        labels = torch.randint(0, 10, (batch,), generator=gen)
        saved, states[label] = {}, {}
        for norm in NORMS:
            model = model_for(model_name, norm, width, channels, side).train()
            saved[norm] = saved_bytes(model, images, labels)
            states[label][norm] = state_bytes(model)
        print(f"{label:24s}" + "".join(f"{saved[n] / saved['bn']:{_w(n)}.2f}" for n in NORMS)
              + f"  {saved['bn'] / 2**20:.1f}")
    print("parameters and buffers, KiB:")
    for label, sizes in states.items():
        print(f"{label:24s}" + "".join(f"{sizes[n] / 1024:{_w(n)}.0f}" for n in NORMS))


if __name__ == "__main__":
    main()
