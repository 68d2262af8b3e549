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

import numpy as np
from pathlib import Path

import torch

DATA_ENV = "REVISIT_BN_DATA"

# Per-channel pixel mean and std of the training sets (pixels scaled to [0, 1]).
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


class DatasetNotFoundError(RuntimeError):
    """A dataset is missing (neither under the data root nor downloadable) or damaged."""


# Sizes of MNIST's uncompressed IDX files (torchvision reads only these); a file of another size is damaged.
MNIST_RAW_SIZES = {
    "train-images-idx3-ubyte": 47_040_016,
    "train-labels-idx1-ubyte": 60_008,
    "t10k-images-idx3-ubyte": 7_840_016,
    "t10k-labels-idx1-ubyte": 10_008,
}
# MD5s of those files: the exact decompressions of the .gz files whose MD5s torchvision lists (MNIST.resources);
# recorded by this project from the offline data folder's README and checked at every load.
MNIST_RAW_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
# SHA-256 of the offline CIFAR-10 arrays (cifar10/cifar10.npz: the original pixels and labels in their order; the
# data folder's README says how they were checked). torchvision checks its own pickled files' MD5s itself.
CIFAR10_NPZ_SHA256 = "8683afb7f9f44b57934bfaa6d00b27bedd9711b49b686bb037107d5091a13529"
NUM_CLASSES = 10  # MNIST's and CIFAR-10's
CIFAR10_NPZ_SHAPES = {"x_train": (50000, 32, 32, 3), "y_train": (50000,), "x_test": (10000, 32, 32, 3), "y_test": (10000,)}


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
        images: float32 tensor, shape ``(N, C, H, W)``, standardized per channel (``(N, D)`` for feature vectors).
        labels: int64 tensor, shape ``(N,)``.

    Raises:
        ValueError: ``images`` or ``labels`` not a torch tensor (NumPy arrays: convert them with
            ``torch.from_numpy``), images not floating-point, labels not a 1-D int64 tensor of class indices, or the
            two disagreeing on the sample count.
    """

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if not isinstance(self.images, torch.Tensor) or not isinstance(self.labels, torch.Tensor):
            raise ValueError(f"images and labels must be torch tensors, got {type(self.images).__name__} and "
                             f"{type(self.labels).__name__}; convert NumPy arrays with torch.from_numpy (labels "
                             "with .long())")
        if self.images.dim() < 1 or not self.images.is_floating_point():
            raise ValueError(f"images must be a floating-point tensor (N, ...), got dtype {self.images.dtype} of shape "
                             f"{tuple(self.images.shape)}; convert it with .float()")
        if self.labels.dim() != 1 or self.labels.dtype != torch.int64:
            raise ValueError(f"labels must be a 1-D int64 tensor of class indices (N,), got dtype {self.labels.dtype} "
                             f"of shape {tuple(self.labels.shape)}; convert whole-number labels with .long()")
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


def _root(root) -> Path:
    """A dataset root: a path (``None``: :func:`data_root`).

    Raises:
        ValueError: ``root`` is not a path or a string.
    """
    if root is None:
        return data_root()
    if not isinstance(root, (str, os.PathLike)):
        raise ValueError(f"root must be a folder's path (a str or pathlib.Path), got {root!r}")
    return Path(root)


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
            ``REVISIT_BN_DATA``. A damaged file is named: a raw file of the wrong size or MD5, or a ``.gz`` whose
            MD5 is not the one torchvision lists, beside a missing raw file.

    Source: Lian & Liu (2019), Section 6 (MNIST experiments, Figures 4, 7 and 9).
    """
    from torchvision.datasets import MNIST

    root = _root(root)
    for name, size in MNIST_RAW_SIZES.items():
        path = root / "MNIST" / "raw" / name
        if path.is_file():
            found = path.stat().st_size
            if found != size or file_digest(path, "md5") != MNIST_RAW_MD5[name]:
                what = f"{found:,} bytes where MNIST's file has {size:,}" if found != size else "its MD5 is not MNIST's"
                raise DatasetNotFoundError(
                    f"{path} is damaged: {what}. Delete it (torchvision re-extracts it from the .gz beside it, or "
                    f"downloads it), or set {DATA_ENV} to an intact copy (for example ../shared/data)."
                )
    splits = []
    for train in (True, False):
        try:
            ds = MNIST(str(root), train=train, download=download)
        except Exception as exc:  # torchvision raises RuntimeError (missing) or URLError (offline)
            # torchvision extracts a missing raw file from the .gz beside it when the .gz's MD5 is right; otherwise it
            # downloads it, and offline says only that the download failed: a damaged .gz is named instead
            raw = root / "MNIST" / "raw"
            damaged = [raw / gz for gz, md5 in getattr(MNIST, "resources", ())
                       if not (raw / gz[: -len(".gz")]).is_file() and (raw / gz).is_file()
                       and file_digest(raw / gz, "md5") != md5]
            if damaged:
                first = str(exc).splitlines()[0].rstrip(":") if str(exc) else ""
                tried = f" (downloading it again failed: {type(exc).__name__}: {first})" if download else ""
                raise DatasetNotFoundError(
                    f"{', '.join(map(str, damaged))} {'is' if len(damaged) == 1 else 'are'} damaged: the MD5 is not "
                    f"the one torchvision lists for MNIST's file, and the raw file it holds is missing beside it"
                    f"{tried}. "
                    f"Delete it and run once with network access (torchvision downloads it again), or set {DATA_ENV} "
                    f"to an intact copy (for example ../shared/data)."
                ) from exc
            raise DatasetNotFoundError(
                f"MNIST is not under {root / 'MNIST' / 'raw'} and could not be downloaded "
                f"({type(exc).__name__}: {exc}). Set {DATA_ENV} to a folder that holds MNIST/raw "
                f"(for example ../shared/data), or run once with network access."
            ) from exc
        _check_labels(ds.targets.long(), root / "MNIST" / "raw")
        images = ds.data.unsqueeze(1).float().div_(255.0).sub_(MNIST_MEAN).div_(MNIST_STD)
        splits.append(TensorSplit(images, ds.targets.long()))
    return splits[0], splits[1]


_DIGESTS: dict[tuple[str, str, int, int], str] = {}


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """The hex digest of a file (read in 1 MiB blocks), computed once per process for a given file state."""
    import hashlib

    stat = Path(path).stat()
    key = (str(Path(path).resolve()), algorithm, stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.new(algorithm)
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def _check_labels(labels: torch.Tensor, where: Path) -> None:
    """Labels of MNIST or CIFAR-10 must be 0..9, every class present.

    Raises:
        DatasetNotFoundError: naming ``where`` and what is wrong.
    """
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= NUM_CLASSES or len(torch.unique(labels)) != NUM_CLASSES:
        raise DatasetNotFoundError(
            f"the labels read from {where} are damaged: they range over {low}..{high} with "
            f"{len(torch.unique(labels))} distinct values, where the dataset has the {NUM_CLASSES} classes 0..9. Replace "
            f"the files with an intact copy, or set {DATA_ENV} to one (for example ../shared/data)."
        )


def _standardize_cifar(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 ``(N, 32, 32, 3)`` -> float32 ``(N, 3, 32, 32)`` standardized per channel."""
    images = pixels.permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    return images.sub_(mean).div_(std)


def load_cifar10(root: Path | str | None = None, download: bool = True) -> tuple[TensorSplit, TensorSplit]:
    """CIFAR-10 train (50,000) and test (10,000) splits as standardized tensors.

    Read through :class:`torchvision.datasets.CIFAR10` when its files are under ``root`` (or can
    be downloaded); offline, from ``root/cifar10/cifar10.npz``, the verified arrays with the same
    pixels, labels and order as torchvision's ``.data`` / ``.targets`` (see that folder's README).

    Returns:
        ``(train, test)``; images ``(N, 3, 32, 32)`` float32 standardized with the training-set
        channel means and stds; labels ``(N,)`` int64.

    Raises:
        DatasetNotFoundError: neither form is present and downloading failed; names ``REVISIT_BN_DATA``.

    Source: Lian & Liu (2019), Figures 2, 5 and 8; Santurkar et al. (2018), Section 3.
    """
    import numpy as np
    from torchvision.datasets import CIFAR10

    root = _root(root)
    npz = root / "cifar10" / "cifar10.npz"
    errors = []
    for allow_download in ((False, True) if download else (False,)):
        if allow_download and npz.is_file():
            break
        try:
            train = CIFAR10(str(root), train=True, download=allow_download)  # checks its files' MD5s
            test = CIFAR10(str(root), train=False, download=allow_download)
            for ds in (train, test):
                _check_labels(torch.tensor(ds.targets, dtype=torch.long), root / "cifar-10-batches-py")
            return tuple(
                TensorSplit(_standardize_cifar(torch.from_numpy(ds.data)), torch.tensor(ds.targets, dtype=torch.long))
                for ds in (train, test)
            )
        except Exception as exc:  # missing files (RuntimeError) or no network (URLError)
            errors.append(f"{type(exc).__name__}: {exc}")
    if npz.is_file():
        if file_digest(npz) != CIFAR10_NPZ_SHA256:
            raise DatasetNotFoundError(
                f"{npz} is damaged or not the CIFAR-10 arrays this project reads: its SHA-256 is not "
                f"{CIFAR10_NPZ_SHA256} (the data folder's README). Replace it with an intact copy, or set {DATA_ENV} "
                f"to a folder that holds one (for example ../shared/data)."
            )
        try:
            with np.load(npz) as arrays:
                parts = {name: arrays[name] for name in ("x_train", "y_train", "x_test", "y_test")}
        except Exception as exc:  # BadZipFile, KeyError, ValueError, EOFError, zlib.error...
            raise DatasetNotFoundError(
                f"{npz} is damaged or not CIFAR-10's arrays ({type(exc).__name__}: {exc}). Replace it with an "
                f"intact copy (its SHA-256 is in the data folder's README), or set {DATA_ENV} to a folder that "
                f"holds one (for example ../shared/data)."
            ) from exc
        shapes = {name: tuple(a.shape) for name, a in parts.items()}
        if shapes != CIFAR10_NPZ_SHAPES:
            raise DatasetNotFoundError(f"{npz} holds arrays of shapes {shapes}, not CIFAR-10's {CIFAR10_NPZ_SHAPES}; "
                                       f"replace it with an intact copy or set {DATA_ENV}.")
        if parts["x_train"].dtype != np.uint8 or parts["x_test"].dtype != np.uint8:
            raise DatasetNotFoundError(f"{npz} holds images of dtype {parts['x_train'].dtype}, not CIFAR-10's uint8 pixels "
                                       f"0-255; replace it with an intact copy or set {DATA_ENV}.")
        for name in ("y_train", "y_test"):
            _check_labels(torch.from_numpy(parts[name]).long(), npz)
        return (
            TensorSplit(_standardize_cifar(torch.from_numpy(parts["x_train"])), torch.from_numpy(parts["y_train"]).long()),
            TensorSplit(_standardize_cifar(torch.from_numpy(parts["x_test"])), torch.from_numpy(parts["y_test"]).long()),
        )
    raise DatasetNotFoundError(
        f"CIFAR-10 is neither under {root / 'cifar-10-batches-py'} nor at {npz}, and could not be downloaded "
        f"({'; '.join(errors)}). Set {DATA_ENV} to a folder that holds either (for example ../shared/data)."
    )


def scaled_copy(split: TensorSplit, low: float, high: float, seed: int) -> TensorSplit:
    """Every sample multiplied by its own scalar drawn log-uniformly from ``[low, high]`` (seeded, fixed).

    Source: Lian & Liu (2019), Figure 9 ("multiplying a random number into each sample"). Our
    choice: the range (the paper's is lost) and log-uniform sampling, so that scales below and
    above 1 are equally likely.

    Raises:
        ValueError: ``0 < low <= high < inf`` does not hold.
    """
    if not 0 < low <= high < float("inf"):
        raise ValueError(f"need 0 < low <= high < inf (finite scales), got low={low}, high={high}")
    gen = torch.Generator().manual_seed(seed)
    logs = torch.empty(len(split)).uniform_(float(np.log(low)), float(np.log(high)), generator=gen)
    factors = _machine_independent(logs.double().exp()).view(-1, *([1] * (split.images.dim() - 1)))
    return TensorSplit(split.images * factors, split.labels)


def _machine_independent(values: torch.Tensor) -> torch.Tensor:
    """float64 ``values`` rounded to float32, so that every machine generates the same data.

    A matrix product or ``exp`` gives results that differ in the last bits between kinds of CPU
    (MKL and torch pick kernels by vendor and vector width: seen between the CPUs this project
    ran on). Computed in float64 and rounded to float32, two machines' values agree unless one
    lies within a float64 rounding error of a float32 rounding boundary (odds about 2^-29 per
    value), so the dataset checksum in every run's key is the same everywhere.
    """
    return values.to(torch.float64).float()


def three_points() -> tuple[TensorSplit, TensorSplit]:
    """Figure 1's dataset: three 2-D points of three classes; the test set is the same three points.

    Our choice: the points (0, 0), (1, 1), (2, 0) with labels 0, 1, 2 (the paper gives only "a
    classification dataset with only 3 samples").

    Returns: ``(train, test)`` with images ``(3, 2)`` float32 and labels ``(3,)``.
    """
    x = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
    y = torch.tensor([0, 1, 2])
    return TensorSplit(x, y), TensorSplit(x.clone(), y.clone())


def large_variance_classification(n: int = 2000, d: int = 10, seed: int = 0,
                                  scale_range: tuple[float, float] = (0.01, 100.0)) -> tuple[TensorSplit, TensorSplit]:
    """Figure 3's data: a linearly separable-ish binary task whose samples differ in scale by 10^4.

    ``z ~ N(0, I_d)``, label ``1[w^T z + 0.5 * noise > 0]`` for a fixed random ``w``; the sample is
    ``x = s * (z + 3)`` with ``s`` log-uniform in ``scale_range`` (default [0.01, 100]) per sample.
    The shift makes every feature's mean non-zero, and the factor ``s`` gives the dataset a large
    variance that one small batch estimates badly. Train and test are independent draws (``n`` each).

    Our choice: the generator (the paper's is lost; it says only "a synthesized dataset" with
    "large variance"); :data:`LARGE_VARIANCE_RANGES` gives the other ranges that test it.

    Returns: ``(train, test)``, images ``(n, d)`` float32, labels ``(n,)``.

    Raises:
        ValueError: ``n`` or ``d`` not an integer >= 1, or ``scale_range`` not two numbers with
            ``0 < low <= high < inf``.
    """
    n, d = _integer(n, "n (samples per split)"), _integer(d, "d (the dimension)")
    numbers = isinstance(scale_range, (tuple, list)) and len(scale_range) == 2 and all(
        not isinstance(v, bool) and isinstance(v, (int, float, np.integer, np.floating)) for v in scale_range)
    if not numbers or not 0 < scale_range[0] <= scale_range[1] < float("inf"):
        raise ValueError(f"scale_range must be two finite numbers (low, high) with 0 < low <= high, got "
                         f"{scale_range!r}")
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(d, generator=gen)

    def draw():
        z = torch.randn(n, d, generator=gen).double()
        labels = ((z @ w.double() + 0.5 * torch.randn(n, generator=gen).double()) > 0).long()
        low, high = (float(np.log(v)) for v in scale_range)
        scale = torch.exp(torch.empty(n, 1).uniform_(low, high, generator=gen).double())
        return TensorSplit(_machine_independent(scale * (z + 3.0)), labels)

    return draw(), draw()


def linear_teacher(n: int = 1000, d: int = 32, num_classes: int = 10, seed: int = 0) -> tuple[TensorSplit, TensorSplit]:
    """Data for the deep linear network: Gaussian inputs labelled by a random linear teacher.

    ``x ~ N(0, I_d)``, label ``argmax_k (A^T x)_k`` for a fixed Gaussian ``A`` of shape
    ``(d, num_classes)``; train and test are independent draws of ``n`` samples each.

    Our choice: Santurkar et al. (2018, Section 2.2) train a 25-layer deep linear network with
    full-batch gradient descent but do not give its data or loss; we use this classification task
    with cross-entropy, so the same training loop and probes serve VGG and the linear network.

    Returns: ``(train, test)``, inputs ``(n, d)`` float32, labels ``(n,)`` int64 in ``[0, num_classes)``.

    Raises:
        ValueError: a non-positive size.
    """
    if min(n, d, num_classes) < 1:
        raise ValueError(f"n, d and num_classes must be positive, got n={n}, d={d}, num_classes={num_classes}")
    gen = torch.Generator().manual_seed(seed)
    teacher = torch.randn(d, num_classes, generator=gen)

    def draw():
        x = torch.randn(n, d, generator=gen)
        return TensorSplit(x, (x.double() @ teacher.double()).argmax(1))

    return draw(), draw()


def synthetic_regression(n: int = 512, d: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A regression set for the MCSGD rate experiment: non-zero means, unequal scales, a tanh teacher.

    ``x ~ N(2, diag(s^2))`` with ``s`` evenly spaced in [0.5, 4], ``t = tanh((x - 2) w) + 0.1 noise``.

    Our choice: Lian & Liu (2019) give no data for Lemma 1 / Corollary 3; this set makes the
    dataset statistics matter (means far from 0, scales differing by 8x).

    Returns: ``(x, t)`` of shapes ``(n, d)`` and ``(n, 1)``, float64 holding float32 values (rounded
    so that every machine generates the same set, see :func:`_machine_independent`).
    """
    import math

    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64) * torch.linspace(0.5, 4.0, d, dtype=torch.float64) + 2.0
    teacher = torch.randn(d, 1, generator=gen, dtype=torch.float64) / math.sqrt(d)
    t = torch.tanh((x - 2.0) @ teacher) + 0.1 * torch.randn(n, 1, generator=gen, dtype=torch.float64)
    return _machine_independent(x).double(), _machine_independent(t).double()


# ----------------------------------------------------------------------------------------------
# The datasets of the experiments, by name: loaded once per process, checksummed, subsetted
# ----------------------------------------------------------------------------------------------

# Figure 3's data at other spreads of the per-sample scale than the book's 10^4 (our choice, tested): 10^2 and 10^6.
LARGE_VARIANCE_RANGES = {"large_variance_narrow": (0.1, 10.0), "large_variance_wide": (0.001, 1000.0)}
# Figure 9's random multiplier (our choice; the paper's range is lost): log-uniform in [0.1, 10]; a second range, a
# hundred times wider, tests that choice (chapter 34's sensitivity check). Both draw with the same seeds, so each
# image's factor in the wider range is the square of its factor in the first: the check changes the spread alone.
MNIST_SCALE_RANGES = {"mnist_scaled": (0.1, 10.0), "mnist_scaled_wide": (0.01, 100.0)}
MNIST_SCALE_RANGE = MNIST_SCALE_RANGES["mnist_scaled"]
DATASETS = ("mnist", "cifar10", *MNIST_SCALE_RANGES, "three_points", "large_variance", "linear_teacher",
            *LARGE_VARIANCE_RANGES)
# (train, test) sizes of each dataset, checked before any training (a subset must fit).
DATASET_SIZES = {"mnist": (60000, 10000), "cifar10": (50000, 10000),
                 **{name: (60000, 10000) for name in MNIST_SCALE_RANGES},
                 "three_points": (3, 3), "large_variance": (2000, 2000), "linear_teacher": (1000, 1000),
                 **{name: (2000, 2000) for name in LARGE_VARIANCE_RANGES}}

_DATA_CACHE: dict[str, tuple[TensorSplit, TensorSplit]] = {}
_CHECKSUMS: dict[str, str] = {}


def load_dataset(name: str) -> tuple[TensorSplit, TensorSplit]:
    """Train and test splits of the dataset ``name`` (one of :data:`DATASETS`), kept in memory.

    ``"mnist_scaled"`` is MNIST with every image times its own log-uniform factor in
    :data:`MNIST_SCALE_RANGE` (Figure 9), ``"mnist_scaled_wide"`` the same in the range of
    :data:`MNIST_SCALE_RANGES` a hundred times wider; ``"three_points"``, ``"large_variance"`` and
    ``"linear_teacher"`` are :func:`three_points`, :func:`large_variance_classification` and
    :func:`linear_teacher`.

    Raises:
        ValueError: unknown ``name``.
        DatasetNotFoundError: the files are missing offline or damaged.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}")
    if name not in _DATA_CACHE:
        if name == "mnist":
            _DATA_CACHE[name] = load_mnist()
        elif name == "cifar10":
            _DATA_CACHE[name] = load_cifar10()
        elif name in MNIST_SCALE_RANGES:
            train, test = load_dataset("mnist")
            scales = MNIST_SCALE_RANGES[name]
            _DATA_CACHE[name] = (scaled_copy(train, *scales, seed=0), scaled_copy(test, *scales, seed=1))
        elif name == "three_points":
            _DATA_CACHE[name] = three_points()
        elif name == "large_variance":
            _DATA_CACHE[name] = large_variance_classification()
        elif name in LARGE_VARIANCE_RANGES:
            _DATA_CACHE[name] = large_variance_classification(scale_range=LARGE_VARIANCE_RANGES[name])
        else:
            _DATA_CACHE[name] = linear_teacher()
    return _DATA_CACHE[name]


def tensors_checksum(*tensors: torch.Tensor) -> str:
    """A 16-hex-digit SHA-256 of the tensors' dtypes, shapes and bytes (in order)."""
    import hashlib

    digest = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        digest.update(f"{t.dtype}{tuple(t.shape)}".encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()[:16]


def dataset_checksum(name: str) -> str:
    """Checksum of the dataset ``name`` as the runs read it (both splits, after standardization).

    Part of every run's key: a run computed from other data (a changed file, a changed generator)
    is not reused. Computed once per process.
    """
    if name not in _CHECKSUMS:
        train, test = load_dataset(name)
        _CHECKSUMS[name] = tensors_checksum(train.images, train.labels, test.images, test.labels)
    return _CHECKSUMS[name]


def subset(split: TensorSplit, size: int | None, seed: int) -> TensorSplit:
    """A seeded random subset of ``size`` samples (``None`` or ``size >= len(split)``: the whole split).

    Raises:
        ValueError: ``size`` not ``None`` or an integer >= 1 (naming it).
    """
    if size is not None:
        size = _integer(size, "size (the subset's samples)")
    if size is None or size >= len(split):
        return split
    idx = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:size]
    return TensorSplit(split.images[idx], split.labels[idx])


def augment_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of an epoch's augmentation draws: its own stream, apart from the batch order's."""
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch) + 7_919 * 1_000_003 ** 2)


def cifar_padding_fill() -> torch.Tensor:
    """The value, per channel ``(3, 1, 1)``, that a black pixel has after :func:`load_cifar10`'s standardization."""
    return (-torch.tensor(CIFAR10_MEAN) / torch.tensor(CIFAR10_STD)).view(3, 1, 1)


def random_crop_flip(images: torch.Tensor, generator: torch.Generator, padding: int = 4,
                     fill: torch.Tensor | float = 0.0) -> torch.Tensor:
    r"""The standard CIFAR-10 augmentation on a batch: each image padded by ``padding`` pixels of ``fill``,
    cropped back to its size at a random offset, and flipped left-right with probability 1/2.

    The same as torchvision's ``RandomCrop(size, padding=padding, fill=...)`` followed by
    ``RandomHorizontalFlip()``, image by image (a test compares them), but vectorized over the batch
    and with the draws from ``generator``: per image an offset :math:`(i, j) \in \{0..2p\}^2` and a
    flip, drawn in that order.

    Args:
        images: ``(N, C, H, W)``.
        generator: a CPU generator (:func:`augment_generator`).
        padding: pixels added on each side, >= 0.
        fill: the padding value, a number or per channel ``(C, 1, 1)`` (black pixels of standardized
            CIFAR-10: :func:`cifar_padding_fill`).

    Returns:
        ``(N, C, H, W)``, a new tensor on ``images``' device.

    Raises:
        ValueError: ``images`` is not 4-D, ``padding`` is not an integer >= 0 (a bool is not one), or ``fill`` is not
            finite or neither one number nor one per channel ``(C, 1, 1)``.

    Source: He et al. (2016), Section 4.2 (the augmentation of Lee et al. 2015), the usual CIFAR-10
    recipe; Santurkar et al. (2018) do not say which augmentation they used (our choice).
    """
    if images.dim() != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
    if isinstance(padding, (bool, np.bool_)) or not isinstance(padding, (int, np.integer)) or padding < 0:
        raise ValueError(f"padding must be a non-negative integer, got {padding!r}")
    padding = int(padding)
    if not torch.isfinite(torch.as_tensor(fill, dtype=torch.float64)).all():
        raise ValueError(f"fill must be finite (a number, or one per channel), got {fill!r}")
    n, c, h, w = images.shape
    fill_shape = tuple(torch.as_tensor(fill).shape)
    if torch.as_tensor(fill).numel() != 1 and fill_shape != (c, 1, 1):
        raise ValueError(f"fill must be one number or one per channel of shape ({c}, 1, 1) for images of {c} "
                         f"channel(s), got shape {fill_shape}")
    offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    fill = torch.as_tensor(fill, dtype=images.dtype).to(images.device)
    padded = fill.expand(c, h + 2 * padding, w + 2 * padding).repeat(n, 1, 1, 1)
    padded[:, :, padding:padding + h, padding:padding + w] = images
    rows = (offsets[:, 0:1] + torch.arange(h)).to(images.device)  # (N, H)
    cols = (offsets[:, 1:2] + torch.arange(w)).to(images.device)  # (N, W)
    cols = torch.where(flips.to(images.device)[:, None], cols.flip(1), cols)
    out = padded.gather(2, rows[:, None, :, None].expand(n, c, h, w + 2 * padding))
    return out.gather(3, cols[:, None, None, :].expand(n, c, h, w))


# The draw of every validation split: one held-out set for every run, method and seed of a dataset.
VALIDATION_SEED = 20_190_416


def hold_out(split: TensorSplit, size: int) -> tuple[TensorSplit, TensorSplit]:
    """``(rest, validation)``: ``size`` samples of ``split`` drawn once for every run (seed
    :data:`VALIDATION_SEED`), and the others in their order.

    Step sizes are chosen on the validation split, never on the test set; the same draw for every run
    makes the methods' and seeds' validation numbers comparable.

    Raises:
        ValueError: ``size`` is not a positive integer smaller than the split.
    """
    if isinstance(size, (bool, np.bool_)) or not isinstance(size, (int, np.integer)) or not 0 < size < len(split):
        raise ValueError(f"validation_size must be a positive integer below the training set's {len(split):,} samples, "
                         f"got {size!r}")
    size = int(size)
    held = torch.zeros(len(split), dtype=torch.bool)
    held[torch.randperm(len(split), generator=torch.Generator().manual_seed(VALIDATION_SEED))[:size]] = True
    return TensorSplit(split.images[~held], split.labels[~held]), TensorSplit(split.images[held], split.labels[held])


# ----------------------------------------------------------------------------------------------
# Batch orders
# ----------------------------------------------------------------------------------------------


def _integer(value, name: str, least: int = 1) -> int:
    """``value`` as a Python int of at least ``least``: an int or a NumPy integer, not a bool or a float.

    Raises:
        ValueError: naming ``name``.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < least:
        raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    return int(value)


def _check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, (bool, np.bool_)) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


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
        ValueError: ``batch_size`` or ``num_samples`` not an integer >= 1.

    Source: Lian & Liu (2019), Section 6.2, "shuffled case" (Figures 7 and 8).
    """

    name = "shuffled"

    def __init__(self, num_samples: int, batch_size: int, seed: int = 0) -> None:
        batch_size = _check_batch_size(batch_size)
        num_samples = _integer(num_samples, "num_samples")
        self.num_samples, self.batch_size, self.seed = num_samples, batch_size, int(seed)

    def batches(self, epoch: int) -> list[torch.Tensor]:
        perm = torch.randperm(self.num_samples, generator=_epoch_generator(self.seed, epoch))
        return list(perm.split(self.batch_size))


def _label_pieces(groups: list[torch.Tensor], piece: int, gen: torch.Generator) -> list[torch.Tensor]:
    """Each label's indices shuffled and cut into full pieces of ``piece``; all pieces in random order."""
    pieces: list[torch.Tensor] = []
    for group in groups:
        shuffled = group[torch.randperm(len(group), generator=gen)]
        if len(group) >= piece:  # a label with fewer samples gives no piece (not an empty one)
            pieces.extend(shuffled[: len(group) // piece * piece].split(piece))
    return [pieces[i] for i in torch.randperm(len(pieces), generator=gen).tolist()]


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
        batch_size = _check_batch_size(batch_size)
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
        return _label_pieces(self.groups, self.batch_size, _epoch_generator(self.seed, epoch))


class UnshuffledOrder(LabelSortedOrder):
    """The literal "unshuffled" order: every batch holds one label, and the labels come in sequence.

    Each epoch visits all full batches of label 0, then all of label 1, and so on (the samples
    within a label are permuted every epoch; a label's remainder sits out as in
    :class:`LabelSortedOrder`). This is what an unshuffled, label-sorted dataset fed in order
    gives; the book's main single-label setting (:class:`LabelSortedOrder`) randomizes the order
    of the batches instead.

    Args, Raises: as :class:`LabelSortedOrder`.

    Source: Lian & Liu (2019), Section 6.2, "unshuffled case" (Figure 4), read literally (our
    choice of the within-label permutation).
    """

    name = "unshuffled"

    def batches(self, epoch: int) -> list[torch.Tensor]:
        gen = _epoch_generator(self.seed, epoch)
        out: list[torch.Tensor] = []
        for group in self.groups:
            shuffled = group[torch.randperm(len(group), generator=gen)]
            out.extend(shuffled[: len(group) // self.batch_size * self.batch_size].split(self.batch_size))
        return out


class LabelLimitedOrder(BatchOrder):
    """Batches drawing on at most ``max_labels`` labels each.

    Each epoch, every label's samples are shuffled and cut into pieces of
    ``ceil(batch_size / max_labels)``; the pieces of all labels are shuffled and grouped
    ``max_labels`` at a time, and each group is cut to ``batch_size`` samples. So a batch holds
    pieces of at most ``max_labels`` labels (fewer when two pieces share a label).

    Args:
        labels: int64 ``(N,)``.
        batch_size: samples per batch.
        max_labels: the limit ``k`` (the paper's CIFAR-10 setting is 3).
        seed: seed of the per-epoch permutations.

    Raises:
        ValueError: bad ``batch_size``, ``max_labels < 1``, or ``max_labels > batch_size``.

    Source: Lian & Liu (2019), Section 6.2 and Figure 5 ("no more than 3 labels per batch").
    Our choice: the construction (the paper gives only the limit).
    """

    name = "label_limited"

    def __init__(self, labels: torch.Tensor, batch_size: int, max_labels: int = 3, seed: int = 0) -> None:
        batch_size = _check_batch_size(batch_size)
        if not 1 <= max_labels <= batch_size:
            raise ValueError(f"max_labels must lie in 1..batch_size, got {max_labels}")
        self.batch_size, self.max_labels, self.seed = batch_size, max_labels, int(seed)
        self.piece = -(-batch_size // max_labels)
        self.groups = [torch.nonzero(labels == c).flatten() for c in torch.unique(labels)]
        short = {int(c): len(g) for c, g in zip(torch.unique(labels), self.groups) if len(g) < self.piece}
        if short or len(self.groups) < max_labels:
            raise ValueError(f"label_limited batches of {batch_size} take pieces of {self.piece} samples from each of "
                             f"{max_labels} labels; labels {short or 'too few'} have fewer in the training set (a "
                             "train_subset too small for the batch size): use a smaller batch_size or a larger train_subset")

    def batches(self, epoch: int) -> list[torch.Tensor]:
        pieces, k = _label_pieces(self.groups, self.piece, _epoch_generator(self.seed, epoch)), self.max_labels
        return [torch.cat(pieces[s:s + k])[: self.batch_size] for s in range(0, len(pieces) - k + 1, k)]


class LabelPairsOrder(BatchOrder):
    """Ioffe's non-i.i.d. batches: ``num_labels`` labels drawn with replacement, ``per_label`` images each.

    Each batch draws its labels uniformly with replacement, then for each drawn label
    ``per_label`` of its images uniformly (with replacement across the epoch); an epoch has
    ``N // (num_labels * per_label)`` batches.

    Args:
        labels: int64 ``(N,)``.
        num_labels, per_label: 16 and 2 in Ioffe (2017), a batch of 32.
        seed: seed of the draws.

    Raises:
        ValueError: ``num_labels`` or ``per_label`` not an integer >= 1.

    Source: Ioffe (2017), Section 4.3 ("16 labels sampled with replacement x 2 images each").
    """

    name = "label_pairs"

    def __init__(self, labels: torch.Tensor, num_labels: int = 16, per_label: int = 2, seed: int = 0) -> None:
        num_labels, per_label = _integer(num_labels, "num_labels"), _integer(per_label, "per_label")
        self.num_labels, self.per_label, self.seed = num_labels, per_label, int(seed)
        groups = [torch.nonzero(labels == c).flatten() for c in torch.unique(labels)]
        self.counts = torch.tensor([len(g) for g in groups])
        width = int(self.counts.max())
        # Padded (labels x max count) table, so a draw is two tensor indexings.
        self.table = torch.stack([torch.cat([g, g.new_zeros(width - len(g))]) for g in groups])
        self.per_epoch = max(1, len(labels) // (num_labels * per_label))

    def batches(self, epoch: int) -> list[torch.Tensor]:
        gen = _epoch_generator(self.seed, epoch)
        drawn = torch.randint(len(self.counts), (self.per_epoch, self.num_labels), generator=gen)
        drawn = drawn.repeat_interleave(self.per_label, dim=1)
        position = (torch.rand(drawn.shape, generator=gen) * self.counts[drawn]).long()
        return list(self.table[drawn, position].unbind(0))


BATCH_ORDERS = ("shuffled", "label_sorted", "unshuffled", "label_limited", "label_pairs")


def check_batch_order(name: str, batch_size: int) -> None:
    """What a batch order asks of the batch size alone, checked before any data is read.

    Raises:
        ValueError: unknown ``name``, a bad ``batch_size``, ``label_limited`` with a batch smaller than its
            3 labels, or ``label_pairs`` with an odd batch; the message names the fix.
    """
    if name not in BATCH_ORDERS:
        raise ValueError(f"unknown batch order {name!r}; choose one of {BATCH_ORDERS}")
    batch_size = _check_batch_size(batch_size)
    if name == "label_limited" and batch_size < 3:
        raise ValueError(f"label_limited batches draw on up to 3 labels, so batch_size must be at least 3, got {batch_size}")
    if name == "label_pairs" and batch_size % 2:
        raise ValueError(f"label_pairs takes 2 images per label, so batch_size must be even, got {batch_size}")


def make_batch_order(name: str, labels: torch.Tensor, batch_size: int, seed: int = 0) -> BatchOrder:
    """Build a batch order by name.

    Args:
        name: one of :data:`BATCH_ORDERS`.
        labels: int64 tensor ``(N,)`` of the training split.
        batch_size: samples per batch.
        seed: seed of the order.

    Raises:
        ValueError: unknown ``name`` (the message lists the known ones) or a bad ``batch_size``
            (:func:`check_batch_order`).
    """
    check_batch_order(name, batch_size)
    if name == "shuffled":
        return ShuffledOrder(len(labels), batch_size, seed)
    if name == "label_sorted":
        return LabelSortedOrder(labels, batch_size, seed)
    if name == "unshuffled":
        return UnshuffledOrder(labels, batch_size, seed)
    if name == "label_limited":
        return LabelLimitedOrder(labels, batch_size, max_labels=3, seed=seed)
    return LabelPairsOrder(labels, num_labels=batch_size // 2, per_label=2, seed=seed)
