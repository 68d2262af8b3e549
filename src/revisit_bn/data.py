"""Datasets as in-memory tensors, and the batch orders of the experiments.

Datasets come from :mod:`torchvision.datasets` under a *data root*: the environment variable
``REVISIT_BN_DATA`` when set, else the ``data/`` folder of the project (ignored by git). When the
files are missing, torchvision downloads them if the network allows; offline, a missing dataset
raises :class:`DatasetNotFoundError` naming the variable to set. Nothing is ever substituted.

Batch orders are small seeded objects with one method, ``batches(epoch) -> list[Tensor]`` of
index tensors, so that a training loop slices in-memory tensors (no per-sample Python) and a
rerun with the same seed visits the same batches.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

DATA_ENV = "REVISIT_BN_DATA"

# Per-channel pixel mean and std of the MNIST training set (pixels scaled to [0, 1]).
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


class DatasetNotFoundError(RuntimeError):
    """A dataset is neither under the data root nor downloadable."""


def project_root() -> Path:
    """The folder holding ``pyproject.toml`` for a source checkout, else the working directory."""
    here = Path(__file__).resolve().parents[2]
    return here if (here / "pyproject.toml").is_file() else Path.cwd()


def data_root() -> Path:
    """The dataset root: ``$REVISIT_BN_DATA`` if set, else ``<project>/data``.

    Returns:
        An absolute path (it may not exist yet; downloads create it).
    """
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser().resolve() if env else project_root() / "data"


@dataclass(frozen=True)
class TensorSplit:
    """One split of a dataset, held in memory.

    Attributes:
        images: float32 tensor, shape ``(N, C, H, W)``, standardized per channel.
        labels: int64 tensor, shape ``(N,)``.
    """

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.shape[0] != self.labels.shape[0]:
            raise ValueError(
                f"images and labels disagree on the sample count: {self.images.shape[0]} vs "
                f"{self.labels.shape[0]}"
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to(self, device: torch.device | str) -> "TensorSplit":
        """The same split on ``device``."""
        return TensorSplit(self.images.to(device), self.labels.to(device))


def load_mnist(root: Path | str | None = None, download: bool = True) -> tuple[TensorSplit, TensorSplit]:
    """MNIST train (60,000) and test (10,000) splits as standardized tensors.

    Read once through :class:`torchvision.datasets.MNIST`; pixels are scaled to [0, 1] and
    standardized with the training-set mean 0.1307 and std 0.3081.

    Args:
        root: dataset root holding ``MNIST/raw``; default :func:`data_root`.
        download: let torchvision download missing files (needs the network).

    Returns:
        ``(train, test)``; images of shape ``(N, 1, 28, 28)``, float32; labels ``(N,)``, int64.

    Raises:
        DatasetNotFoundError: the files are missing and could not be downloaded; the message names
            ``REVISIT_BN_DATA``.

    Source: Lian & Liu (2019), Section 6 (MNIST experiments, Figures 4, 7 and 9).
    """
    from torchvision.datasets import MNIST

    root = Path(root) if root is not None else data_root()
    splits = []
    for train in (True, False):
        try:
            ds = MNIST(str(root), train=train, download=download)
        except Exception as exc:  # torchvision raises RuntimeError (missing) or URLError (offline)
            raise DatasetNotFoundError(
                f"MNIST is not under {root / 'MNIST' / 'raw'} and could not be downloaded "
                f"({type(exc).__name__}: {exc}). Set {DATA_ENV} to a folder that holds MNIST/raw "
                f"(for example ../shared/data), or run once with network access."
            ) from exc
        images = ds.data.unsqueeze(1).float().div_(255.0).sub_(MNIST_MEAN).div_(MNIST_STD)
        splits.append(TensorSplit(images, ds.targets.long()))
    return splits[0], splits[1]


# ----------------------------------------------------------------------------------------------
# Batch orders
# ----------------------------------------------------------------------------------------------


def _check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    # One generator per (seed, epoch): any epoch's batches can be rebuilt on their own.
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))


class BatchOrder:
    """Base class: a seeded rule that splits ``range(N)`` into batches, anew each epoch."""

    name: str = "base"

    def batches(self, epoch: int) -> list[torch.Tensor]:  # pragma: no cover - interface
        """Index tensors (int64, shape ``(b,)``) of every batch of ``epoch``, in visiting order."""
        raise NotImplementedError


class ShuffledOrder(BatchOrder):
    """Random batches: a new permutation of the dataset every epoch.

    Args:
        num_samples: dataset size N.
        batch_size: samples per batch; the last batch of an epoch may be smaller.
        seed: seed of the permutations (epoch ``e`` uses its own generator).

    Raises:
        ValueError: non-positive ``batch_size`` or ``num_samples``.

    Source: Lian & Liu (2019), Section 6.2, "shuffled case" (Figures 7 and 8).
    """

    name = "shuffled"

    def __init__(self, num_samples: int, batch_size: int, seed: int = 0) -> None:
        _check_batch_size(batch_size)
        if num_samples < 1:
            raise ValueError(f"num_samples must be positive, got {num_samples}")
        self.num_samples, self.batch_size, self.seed = int(num_samples), batch_size, int(seed)

    def batches(self, epoch: int) -> list[torch.Tensor]:
        perm = torch.randperm(self.num_samples, generator=_epoch_generator(self.seed, epoch))
        return list(perm.split(self.batch_size))


class LabelSortedOrder(BatchOrder):
    """Single-label batches: every batch holds ``batch_size`` samples of one label.

    Each epoch, the samples of every label are permuted and cut into full batches (the
    remainder of each label, fewer than ``batch_size`` samples, sits out that epoch and is drawn
    again the next), and the batches of all labels are visited in a random order.

    Our choice: the paper's "unshuffled" setting says only that each batch of 64 holds a single
    label. Visiting the labels in a fixed sequence (all 0s, then all 1s, ...) would make every
    method forget earlier labels within an epoch, whatever its normalization; randomizing the
    order *of the batches* keeps the batch statistics label-specific, which is the effect the
    paper studies, and leaves SGD's sampling of labels unbiased.

    Args:
        labels: int64 tensor of shape ``(N,)``.
        batch_size: samples per batch (each label needs at least this many samples).
        seed: seed of the per-epoch permutations.

    Raises:
        ValueError: non-positive ``batch_size``, wrong ``labels`` shape, or a label with fewer
            than ``batch_size`` samples.

    Source: Lian & Liu (2019), Section 6.2, "unshuffled case" (Figure 4: MNIST, batch size 64).
    """

    name = "label_sorted"

    def __init__(self, labels: torch.Tensor, batch_size: int, seed: int = 0) -> None:
        _check_batch_size(batch_size)
        if labels.dim() != 1:
            raise ValueError(f"labels must have shape (N,), got {tuple(labels.shape)}")
        self.batch_size, self.seed = batch_size, int(seed)
        self.groups = [torch.nonzero(labels == c).flatten() for c in torch.unique(labels)]
        small = [len(g) for g in self.groups if len(g) < batch_size]
        if small:
            raise ValueError(
                f"every label needs at least batch_size={batch_size} samples; the smallest has {min(small)}"
            )

    def batches(self, epoch: int) -> list[torch.Tensor]:
        gen = _epoch_generator(self.seed, epoch)
        chunks: list[torch.Tensor] = []
        for group in self.groups:
            shuffled = group[torch.randperm(len(group), generator=gen)]
            full = len(group) // self.batch_size * self.batch_size
            chunks.extend(shuffled[:full].split(self.batch_size))
        order = torch.randperm(len(chunks), generator=gen)
        return [chunks[i] for i in order.tolist()]


BATCH_ORDERS = ("shuffled", "label_sorted")


def make_batch_order(name: str, labels: torch.Tensor, batch_size: int, seed: int = 0) -> BatchOrder:
    """Build a batch order by name.

    Args:
        name: one of :data:`BATCH_ORDERS`.
        labels: int64 tensor ``(N,)`` of the training split.
        batch_size: samples per batch.
        seed: seed of the order.

    Raises:
        ValueError: unknown ``name`` (the message lists the known ones) or bad ``batch_size``.
    """
    if name == "shuffled":
        return ShuffledOrder(len(labels), batch_size, seed)
    if name == "label_sorted":
        return LabelSortedOrder(labels, batch_size, seed)
    raise ValueError(f"unknown batch order {name!r}; choose one of {BATCH_ORDERS}")
