"""One training loop for every experiment, with evaluation in training and inference mode.

:class:`TrainConfig` holds every parameter of a run and validates it; :func:`run` trains (or reads
the cached result of) one configuration; :func:`run_grid` runs the product of a few variations and
returns one long :class:`pandas.DataFrame` for plots and verdicts.

Per epoch a run records

- ``train_loss``: mean cross-entropy over the epoch's batches, in training mode (what the optimizer
  saw: BN normalizes with batch statistics, FN with its estimates);
- ``train_eval_loss``, ``train_eval_acc``: the whole training set in evaluation mode;
- ``test_loss``, ``test_acc``: the test set in evaluation mode.

Losses are in nats (natural-log cross-entropy), accuracies are fractions in [0, 1].
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
from torch import nn
from tqdm import tqdm

from . import results as results_mod
from .data import (
    BATCH_ORDERS,
    TensorSplit,
    large_variance_classification,
    linear_teacher,
    load_cifar10,
    load_mnist,
    make_batch_order,
    scaled_copy,
    three_points,
)
from .landscape import TrainingProbe, norm_positions
from .layers import check_noise
from .models import (
    MLP3,
    MODELS,
    NOISE_DEFAULTS,
    NORMS,
    VGG_CONFIGS,
    DeepLinearNet,
    LogisticRegression,
    SimpleNet,
    norm_layer,
    resnet18,
    vgg,
)

DATASETS = ("mnist", "cifar10", "mnist_scaled", "three_points", "large_variance", "linear_teacher")
# Figure 9's random multiplier (our choice; the paper's range is lost): log-uniform in [0.1, 10].
MNIST_SCALE_RANGE = (0.1, 10.0)

_DATA_CACHE: dict[str, tuple[TensorSplit, TensorSplit]] = {}


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; otherwise ``torch.device(device)``.

    Raises:
        ValueError: an unknown device string, or ``"cuda"`` on a machine without CUDA.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda'") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available; use device='auto' or 'cpu'")
    return dev


def seed_everything(seed: int) -> None:
    """Seed torch's generators and ask for deterministic kernels (warn where none exists)."""
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def _positive_int(name: str, value: Any, allow_none: bool = False) -> None:
    if allow_none and value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class TrainConfig:
    """Every parameter of one training run; validated on construction.

    Attributes:
        experiment: folder name under the results root (e.g. ``"mnist_batch_construction"``).
        dataset: ``"mnist"``, ``"cifar10"``, ``"mnist_scaled"`` (every MNIST image times its
            own log-uniform factor in :data:`MNIST_SCALE_RANGE`, Figure 9), ``"three_points"``
            (Figure 1), ``"large_variance"`` (Figure 3) or ``"linear_teacher"`` (Santurkar et al.'s
            deep linear network, :func:`revisit_bn.data.linear_teacher`).
        model: ``"simple"`` (:class:`~revisit_bn.models.SimpleNet`), ``"simple_wide"`` (the same
            with widths 32, 64, for colour input), ``"resnet18"`` (torchvision's), ``"vgg11"`` /
            ``"vgg16"`` (torchvision's VGG for 32x32, :func:`revisit_bn.models.vgg`), ``"mlp3"``
            (Figure 1), ``"logreg"`` (Figure 3) or ``"deep_linear"`` (25 linear layers,
            :class:`~revisit_bn.models.DeepLinearNet`); the last three use 1-D normalization layers.
        norm: a name of :data:`revisit_bn.models.NORMS`.
        batch_order: ``"shuffled"`` or ``"label_sorted"``.
        batch_size: samples per training batch.
        epochs: passes over the training set.
        lr: SGD step size.
        momentum: SGD (heavy-ball) momentum in [0, 1).
        weight_decay: L2 penalty of SGD, >= 0.
        norm_momentum: BN's running-average rate; FN's estimate rate (or its floor).
        fn_momentum_power: FN's rate decays as ``max(norm_momentum, k^-p)`` when ``p > 0``.
        seed: seeds the weights and the batch order.
        train_subset, test_subset: use a seeded random subset of this size (``None``: all).
        eval_batch_size: batch size of the evaluation passes (does not change the numbers of
            a BN/FN network in evaluation mode, only memory).
        norm_group_size: normalize microbatches of this many samples (``None``: the whole batch).
        brn_warmup_steps, brn_ramp_steps: Batch Renorm's schedule (see
            :func:`revisit_bn.models.norm_layer`).
        width: VGG's channel multiplier (1.0 = torchvision's 64...512 channels).
        noise_mean_max, noise_scale_max, noise_std: noisy BN's noise (see
            :class:`revisit_bn.layers.NoisyBatchNorm2d`); used only with ``norm="noisy_bn"``.
        probe_every: run the landscape, internal-covariate-shift and activation probes of
            :class:`revisit_bn.landscape.TrainingProbe` every this many steps (``None``: never).
            Each probe costs about ``len(etas) + layers + 3`` extra forward(-backward) passes
            (``benchmarks/probe_cost.py`` measures it in SGD steps).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``; not part of the results key.

    Raises:
        ValueError: any invalid field; the message names the field and the allowed values.
    """

    experiment: str
    dataset: str = "mnist"
    model: str = "simple"
    norm: str = "bn"
    batch_order: str = "shuffled"
    batch_size: int = 64
    epochs: int = 3
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.0
    norm_momentum: float = 0.1
    fn_momentum_power: float = 0.0
    seed: int = 0
    train_subset: int | None = None
    test_subset: int | None = None
    eval_batch_size: int = 2000
    norm_group_size: int | None = None
    brn_warmup_steps: int = 5000
    brn_ramp_steps: int = 35000
    width: float = 1.0
    noise_mean_max: float = NOISE_DEFAULTS[0]
    noise_scale_max: float = NOISE_DEFAULTS[1]
    noise_std: float = NOISE_DEFAULTS[2]
    probe_every: int | None = None
    device: str = field(default="auto", compare=False)

    def __post_init__(self) -> None:
        for name, allowed in (("dataset", DATASETS), ("model", MODELS), ("norm", NORMS), ("batch_order", BATCH_ORDERS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; choose one of {allowed}")
        for name in ("batch_size", "epochs", "eval_batch_size"):
            _positive_int(name, getattr(self, name))
        for name in ("train_subset", "test_subset", "norm_group_size", "probe_every"):
            _positive_int(name, getattr(self, name), allow_none=True)
        for name in ("brn_warmup_steps", "brn_ramp_steps"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {getattr(self, name)!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum (SGD) must lie in [0, 1), got {self.momentum!r}")
        if not self.weight_decay >= 0.0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not 0.0 < self.norm_momentum <= 1.0:
            raise ValueError(f"norm_momentum must lie in (0, 1], got {self.norm_momentum!r}")
        if not 0.0 <= self.fn_momentum_power <= 1.0:
            raise ValueError(f"fn_momentum_power must lie in [0, 1], got {self.fn_momentum_power!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not (isinstance(self.width, (int, float)) and 0 < self.width < math.inf):
            raise ValueError(f"width (VGG's channel multiplier) must be a positive number, got {self.width!r}")
        check_noise(self.noise_mean_max, self.noise_scale_max, self.noise_std)
        if not self.experiment or "/" in self.experiment:
            raise ValueError(f"experiment must be a plain folder name, got {self.experiment!r}")
        resolve_device(self.device)

    def key_params(self) -> dict[str, Any]:
        """The parameters that determine the numbers (all but ``device``), plus the code fingerprint."""
        params = dataclasses.asdict(self)
        params.pop("device")
        params["code"] = results_mod.code_fingerprint()
        return params

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)


def load_dataset(name: str) -> tuple[TensorSplit, TensorSplit]:
    """Train and test splits of ``name``, loaded once per process and kept in memory."""
    if name not in _DATA_CACHE:
        if name == "mnist":
            _DATA_CACHE[name] = load_mnist()
        elif name == "cifar10":
            _DATA_CACHE[name] = load_cifar10()
        elif name == "mnist_scaled":
            train, test = load_dataset("mnist")
            _DATA_CACHE[name] = (scaled_copy(train, *MNIST_SCALE_RANGE, seed=0), scaled_copy(test, *MNIST_SCALE_RANGE, seed=1))
        elif name == "three_points":
            _DATA_CACHE[name] = three_points()
        elif name == "large_variance":
            _DATA_CACHE[name] = large_variance_classification()
        elif name == "linear_teacher":
            _DATA_CACHE[name] = linear_teacher()
        else:
            raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}")
    return _DATA_CACHE[name]


def _subset(split: TensorSplit, size: int | None, seed: int) -> TensorSplit:
    if size is None or size >= len(split):
        return split
    idx = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:size]
    return TensorSplit(split.images[idx], split.labels[idx])


def build_model(config: TrainConfig, in_channels: int, image_size: int, num_classes: int) -> nn.Module:
    """The model named by ``config.model`` with the normalization ``config.norm`` (and its options)."""
    dim = 1 if config.model in ("mlp3", "logreg", "deep_linear") else 2
    factory = norm_layer(config.norm, dim, config.norm_momentum, config.fn_momentum_power, config.norm_group_size,
                         config.brn_warmup_steps, config.brn_ramp_steps,
                         (config.noise_mean_max, config.noise_scale_max, config.noise_std))
    if config.model == "deep_linear":
        return DeepLinearNet(factory, in_channels, num_classes)
    if config.model in VGG_CONFIGS:
        return vgg(config.model, factory, num_classes, in_channels, config.width, image_size)
    if config.model == "mlp3":
        return MLP3(factory, in_channels, num_classes)
    if config.model == "logreg":
        return LogisticRegression(factory, in_channels, num_classes)
    if config.model == "resnet18":
        return resnet18(factory, num_classes, in_channels)
    widths = (32, 64) if config.model == "simple_wide" else (16, 32)
    return SimpleNet(config.norm, in_channels=in_channels, num_classes=num_classes, widths=widths,
                     image_size=image_size, norm_factory=factory)


@torch.no_grad()
def evaluate(model: nn.Module, split: TensorSplit, batch_size: int = 2000) -> tuple[float, float]:
    """Mean cross-entropy (nats) and accuracy of ``model`` in evaluation mode over ``split``.

    The model is put in ``eval()`` mode and left there.
    """
    model.eval()
    loss_sum, correct = 0.0, 0
    for images, labels in zip(split.images.split(batch_size), split.labels.split(batch_size)):
        logits = model(images)
        loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
        correct += (logits.argmax(1) == labels).sum().item()
    return loss_sum / len(split), correct / len(split)


@dataclass
class RunResult:
    """A finished (or cached) run: its parameters, per-epoch metrics and provenance."""

    params: dict[str, Any]
    metrics: dict[str, list[float]]
    provenance: dict[str, Any]
    cached: bool = False
    steps: dict[str, list[float]] = field(default_factory=dict)
    probes: dict[str, list] = field(default_factory=dict)

    def _with_params(self, frame):
        for name in ("model", "norm", "batch_order", "batch_size", "seed", "lr"):
            frame[name] = self.params[name]
        return frame

    def to_frame(self):
        """One row per epoch with every metric and the varied parameters as columns."""
        import pandas as pd

        return self._with_params(pd.DataFrame(self.metrics))

    def steps_frame(self):
        """One row per SGD step: ``step`` (from 0) and ``train_loss`` (the batch's loss before the step), with parameters."""
        import pandas as pd

        return self._with_params(pd.DataFrame(self.steps))

    def probes_frame(self):
        """The probes' long table (``step, quantity, layer, value``; see :class:`~revisit_bn.landscape.TrainingProbe`)."""
        import pandas as pd

        return self._with_params(pd.DataFrame(self.probes, columns=["step", "quantity", "layer", "value"]))


def train_model(
    config: TrainConfig,
    train_split: TensorSplit,
    test_split: TensorSplit,
    progress: bool = True,
    on_step: Callable[[nn.Module, torch.Tensor, torch.Tensor, int], None] | None = None,
    record: dict[str, dict] | None = None,
) -> dict[str, list[float]]:
    """Train a fresh model on in-memory splits; return the per-epoch metrics.

    Args:
        config: the run's parameters (subsets are not applied here; see :func:`run`).
        train_split, test_split: tensors ``(N, C, H, W)`` and labels ``(N,)``, on any device.
        progress: show a tqdm bar on stderr.
        on_step: called as ``on_step(model, images, labels, step)`` before each SGD step (``step``
            counts from 0), in training mode; probes (e.g. theorem checks) attach here. It must
            not change the model.
        record: if given, filled with ``record["steps"]`` (``step``, ``train_loss`` of every step) and
            ``record["probes"]`` (the long table of :class:`~revisit_bn.landscape.TrainingProbe`, when
            ``config.probe_every`` is set).

    Returns:
        ``{"epoch", "train_loss", "train_eval_loss", "train_eval_acc", "test_loss", "test_acc"}``,
        lists of length ``epochs`` (shorter if the loss became non-finite: training stops there,
        and the last entry records ``nan``).
    """
    device = resolve_device(config.device)
    seed_everything(config.seed)
    train_split, test_split = train_split.to(device), test_split.to(device)
    channels = train_split.images.shape[1]
    image_size = train_split.images.shape[2] if train_split.images.dim() == 4 else 1
    num_classes = int(train_split.labels.max().item()) + 1
    model = build_model(config, channels, image_size, num_classes).to(device)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    order = make_batch_order(config.batch_order, train_split.labels.cpu(), config.batch_size, config.seed)
    metrics: dict[str, list[float]] = {k: [] for k in
                                       ("epoch", "train_loss", "train_eval_loss", "train_eval_acc", "test_loss", "test_acc")}
    probe = None
    if config.probe_every is not None:
        probe = TrainingProbe(config.probe_every, activations=norm_positions(model))
    step_losses: list[torch.Tensor] = []
    label = f"{config.norm}/{config.batch_order}/bs{config.batch_size}/seed{config.seed}"
    bar = tqdm(total=config.epochs, desc=label, disable=not progress, unit="epoch", leave=True)
    step = 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        batches = order.batches(epoch)
        running = torch.zeros((), device=device)
        for idx in batches:
            idx = idx.to(device)
            if on_step is not None:
                on_step(model, train_split.images[idx], train_split.labels[idx], step)
            if probe is not None:
                probe.before_step(model, train_split.images[idx], train_split.labels[idx], step)
            loss = nn.functional.cross_entropy(model(train_split.images[idx]), train_split.labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if probe is not None:
                probe.after_step(model)
            step += 1
            running += loss.detach()
            step_losses.append(loss.detach())
        train_loss = (running / len(batches)).item()
        tr_loss, tr_acc = evaluate(model, train_split, config.eval_batch_size)
        te_loss, te_acc = evaluate(model, test_split, config.eval_batch_size)
        for name, value in zip(metrics, (epoch, train_loss, tr_loss, tr_acc, te_loss, te_acc)):
            metrics[name].append(value)
        bar.update(1)
        bar.set_postfix(train=f"{train_loss:.3f}", test=f"{te_loss:.3f}")
        if not math.isfinite(train_loss):
            break
    bar.close()
    if record is not None:
        losses = torch.stack(step_losses).tolist() if step_losses else []
        record["steps"] = {"step": list(range(len(losses))), "train_loss": losses}
        record["probes"] = probe.rows if probe is not None else {}
    return metrics


def run(
    config: TrainConfig,
    data: tuple[TensorSplit, TensorSplit] | None = None,
    recompute: bool = False,
    progress: bool = True,
    root=None,
) -> RunResult:
    """Train ``config`` or, if a result with the same parameters is stored, read it.

    Args:
        config: the run.
        data: ``(train, test)`` splits; default :func:`load_dataset` of ``config.dataset``. When
            given, ``config.dataset`` must still name them (it is part of the results key).
        recompute: train even if a stored result exists (and overwrite it).
        progress: tqdm progress bar on stderr.
        root: results root; default :func:`revisit_bn.results.results_root`.

    Returns:
        The :class:`RunResult`; ``cached`` tells whether it was read from disk.

    Raises:
        DatasetNotFoundError: the dataset is missing offline (see :mod:`revisit_bn.data`).
    """
    params = config.key_params()
    path = results_mod.result_path(config.experiment, params, root)
    if not recompute:
        stored = results_mod.load(path, params)
        if stored is not None:
            return RunResult(stored["params"], stored["metrics"], stored["provenance"], cached=True,
                             steps=stored.get("steps", {}), probes=stored.get("probes", {}))
    train_split, test_split = data if data is not None else load_dataset(config.dataset)
    train_split = _subset(train_split, config.train_subset, config.seed)
    test_split = _subset(test_split, config.test_subset, config.seed)
    start = time.perf_counter()
    record: dict[str, dict] = {}
    metrics = train_model(config, train_split, test_split, progress, record=record)
    prov = results_mod.provenance(str(resolve_device(config.device)), time.perf_counter() - start)
    results_mod.write_json_atomic(path, {"key": path.stem, "params": params, "metrics": metrics, "provenance": prov,
                                         "steps": record["steps"], "probes": record["probes"]})
    return RunResult(params, metrics, prov, steps=record["steps"], probes=record["probes"])


def run_grid(base: TrainConfig, progress: bool = True, recompute: bool = False, table: str = "epochs",
             **variations: Iterable[Any]):
    """Run every combination of ``variations`` on top of ``base``; one long DataFrame.

    Example: ``run_grid(cfg, norm=["bn", "fn"], batch_order=["shuffled", "label_sorted"])``.

    Args:
        table: ``"epochs"`` (:meth:`RunResult.to_frame`), ``"steps"`` (:meth:`RunResult.steps_frame`)
            or ``"probes"`` (:meth:`RunResult.probes_frame`).

    Returns:
        :class:`pandas.DataFrame`, the chosen table of every run stacked.

    Raises:
        ValueError: unknown ``table``.
    """
    import pandas as pd

    tables = {"epochs": RunResult.to_frame, "steps": RunResult.steps_frame, "probes": RunResult.probes_frame}
    if table not in tables:
        raise ValueError(f"unknown table {table!r}; choose one of {tuple(tables)}")

    names = list(variations)
    frames = []
    for values in itertools.product(*(list(variations[n]) for n in names)):
        result = run(base.replace(**dict(zip(names, values))), progress=progress, recompute=recompute)
        frames.append(tables[table](result))
    return pd.concat(frames, ignore_index=True)


def smoke_step(config: TrainConfig) -> float:
    """Build ``config``'s model on the CPU and take one SGD step on its first real batch.

    Used to check that a profile's configurations (e.g. the papers' scale, meant for a GPU) are
    well formed without training them. Returns the step's loss.
    """
    config = config.replace(device="cpu")
    seed_everything(config.seed)
    train_split, _ = load_dataset(config.dataset)
    train_split = _subset(train_split, config.train_subset, config.seed)
    order = make_batch_order(config.batch_order, train_split.labels, config.batch_size, config.seed)
    idx = order.batches(1)[0]
    images = train_split.images[idx]
    channels = images.shape[1]
    image_size = images.shape[2] if images.dim() == 4 else 1
    model = build_model(config, channels, image_size, int(train_split.labels.max()) + 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum)
    model.train()
    loss = nn.functional.cross_entropy(model(images), train_split.labels[idx])
    loss.backward()
    optimizer.step()
    return loss.item()
