"""One training loop for every experiment, with evaluation in training and inference mode, and the store behind it.

:class:`TrainConfig` holds every parameter of a network run and validates it; :class:`McsgdConfig`
the MCSGD rate experiment's. Both have ``key_params()`` (everything that changes the numbers) and
``compute(max_steps=None)``; :mod:`revisit_bn.store` reads runs from the results store or computes
and writes them.

Per epoch a network run records

- ``train_loss``: mean cross-entropy over the epoch's batches, in training mode (what the optimizer
  saw: BN normalizes with batch statistics, FN with its estimates);
- ``train_eval_loss``, ``train_eval_acc``: the whole training set in evaluation mode (without
  augmentation, and without the validation split);
- ``val_loss``, ``val_acc``: the validation split held out of the training set, in evaluation mode
  (only for a run with ``validation_size``: step sizes are chosen on it);
- ``test_loss``, ``test_acc``: the test set in evaluation mode;
- ``test_loss_precise``, ``test_acc_precise`` (and ``val_loss_precise``, ``val_acc_precise``): the same
  with BN's population statistics recomputed on the training set (only for a run with ``precise_bn``);

and per SGD step the batch's loss before the step. Losses are in nats (natural-log
cross-entropy), accuracies are fractions in [0, 1]. A run whose loss stops being finite ends
there and is stored with ``status="diverged"`` and the step (never as a crash or a silent NaN).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from . import results as results_mod
from .data import (
    BATCH_ORDERS,
    DATASET_SIZES,
    DATASETS,
    TensorSplit,
    augment_generator,
    check_batch_order,
    cifar_padding_fill,
    dataset_checksum,
    hold_out,
    load_dataset,
    make_batch_order,
    random_crop_flip,
    subset,
    synthetic_regression,
    tensors_checksum,
)
from .landscape import TheoremTrace, TrainingProbe, norm_positions
from .layers import FullNorm1d, PolynomialMomentum, check_noise
from .models import FN_BACKWARDS, MODELS, NOISE_DEFAULTS, NORMS, SIMPLE_ONLY_NORMS, FNRegressor, build_model

DEFAULT_THREADS = 2


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; otherwise ``torch.device(device)`` if torch can train there.

    Raises:
        ValueError: not a string, an unknown device string, a device type this project does not
            train on (``mps``, ``meta``, ...), or ``"cuda"`` on a machine without CUDA.
    """
    if not isinstance(device, str):
        raise ValueError(f"device must be a string ('auto', 'cpu' or 'cuda'), got {device!r}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda'") from exc
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r} cannot train these runs (only CPU and CUDA are supported); use 'auto' or 'cpu'")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available; use device='auto' or 'cpu'")
    return dev


def seed_everything(seed: int) -> None:
    """Seed torch's generators and ask for deterministic kernels (warn where none exists)."""
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


@contextlib.contextmanager
def caller_state_kept(device: torch.device | None = None) -> Iterator[None]:
    """Run the block, then give the caller back torch's global random state (CPU, and ``device``'s if it
    is a GPU) and its deterministic-algorithms setting, which :func:`seed_everything` changes."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    devices = [device.index or 0] if device is not None and device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(threads)``; restore the previous count after."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _positive_int(name: str, value: Any, allow_none: bool = False) -> None:
    if allow_none and value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


# Seeds are below this: the per-epoch generators are seeded with seed * 1,000,003 + epoch (and more), within 64 bits.
MAX_SEED = 2**32


def _plain_fields(config) -> None:
    """Replace NumPy scalars in a frozen config's fields by the Python numbers they are (``np.float64(0.02)``
    is 0.02), and whole numbers in float fields by floats (``lr=1`` is ``lr=1.0``), so that they validate,
    compare and key as those numbers do: two equal configurations have one key."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, np.generic):
            value = value.item()
        if f.type in ("float", float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        object.__setattr__(config, f.name, value)


def _check_common(experiment: str, seed: Any, threads: Any, device: Any) -> None:
    if not isinstance(experiment, str) or not experiment or experiment.startswith(".") \
            or any(sep in experiment for sep in ("/", "\\")):
        raise ValueError(f"experiment must be a plain folder name (no separators, not starting with '.'), got {experiment!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < MAX_SEED:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    _positive_int("threads", threads)
    resolve_device(device)


@dataclass(frozen=True)
class TrainConfig:
    r"""Every parameter of one training run; validated on construction.

    Attributes:
        experiment: folder name under the results store (e.g. ``"mnist_batch_construction"``).
        dataset: a name of :data:`revisit_bn.data.DATASETS` (see :func:`revisit_bn.data.load_dataset`).
        model: ``"simple"`` (:class:`~revisit_bn.models.SimpleNet`), ``"simple_wide"`` (the same
            with widths 32, 64, for colour input), ``"resnet18"`` (torchvision's),
            ``"resnet18_cifar"`` (with the CIFAR stem, :func:`revisit_bn.models.resnet18_cifar`), ``"vgg11"`` /
            ``"vgg16"`` (torchvision's VGG for 32x32, :func:`revisit_bn.models.vgg`), ``"mlp3"``
            (Figure 1), ``"logreg"`` (Figure 3) or ``"deep_linear"`` (25 linear layers,
            :class:`~revisit_bn.models.DeepLinearNet`); the last three use 1-D normalization layers.
        norm: a name of :data:`revisit_bn.models.NORMS`.
        batch_order: a name of :data:`revisit_bn.data.BATCH_ORDERS`.
        batch_size: samples per training batch.
        epochs: passes over the training set.
        lr: SGD step size.
        momentum: SGD (heavy-ball) momentum in [0, 1).
        weight_decay: L2 penalty of SGD, >= 0.
        norm_momentum: BN's running-average rate; FN's estimate rate (or its floor).
        fn_momentum_power: FN's rate decays as ``max(norm_momentum, k^-p)`` when ``p > 0``.
        seed: seeds the weights and the batch order.
        train_subset, test_subset: use a seeded random subset of this size (``None``: all); at
            most the dataset's size (:data:`revisit_bn.data.DATASET_SIZES`).
        eval_batch_size: batch size of the evaluation passes (does not change the numbers of
            a BN/FN network in evaluation mode, only memory).
        norm_group_size: normalize microbatches of this many samples (``None``: the whole batch).
        brn_warmup_steps, brn_ramp_steps: Batch Renorm's schedule (see
            :func:`revisit_bn.models.norm_layer`).
        width: channel multiplier of VGG and ``resnet18_cifar`` (1.0 = torchvision's 64...512 channels).
        noise_mean_max, noise_scale_max, noise_std: noisy BN's noise (see
            :class:`revisit_bn.layers.NoisyBatchNorm2d`); used only with ``norm="noisy_bn"`` or ``"noisy_none"``.
        augment: the standard CIFAR-10 augmentation on every training batch, random crops of the image
            padded by 4 black pixels and left-right flips (:func:`revisit_bn.data.random_crop_flip`;
            image datasets only). Our choice (Santurkar et al. do not say).
        validation_size: hold this many training samples out as the validation split (the same draw
            for every run: :func:`revisit_bn.data.hold_out`), train on the others, and record
            ``val_loss``/``val_acc`` each epoch (``None``: train on the whole training set).
        probe_every: run the landscape, internal-covariate-shift and activation probes of
            :class:`revisit_bn.landscape.TrainingProbe` every this many steps (``None``: never).
            Each probe costs about ``len(etas) + layers + 3`` extra forward(-backward) passes
            (``benchmarks/probe_cost.py`` measures it in SGD steps).
        trace_every: evaluate both sides of Santurkar et al.'s Theorems 4.1/4.2 at the second BN
            layer every this many steps (:class:`revisit_bn.landscape.TheoremTrace`; BN SimpleNet only).
        lr_power, lr_decay_steps: a decaying step size
            :math:`\gamma_k = \mathrm{lr}\,(1 + k/\text{lr\_decay\_steps})^{-\text{lr\_power}}` at SGD step
            ``k = 0, 1, ...`` (:class:`torch.optim.lr_scheduler.LambdaLR`); ``lr_power = 0`` keeps it
            constant. With ``fn_momentum_power`` it gives Corollary 3's pair of polynomially decaying
            rates (Lian & Liu 2019; our choice of the shift and exponents).
        lr_schedule: ``"polynomial"`` (the decay above; constant when ``lr_power`` is 0) or ``"cosine"``:
            :math:`\gamma_k = \mathrm{lr}\,\tfrac12\,(1 + \cos(\pi k / K))` over the run's ``K`` SGD steps
            (:class:`torch.optim.lr_scheduler.CosineAnnealingLR`; Loshchilov & Hutter 2017, without restarts),
            with ``lr_power`` 0.
        precise_bn: also evaluate, after each epoch, with population statistics recomputed on the training set
            (Wu & Johnson 2021's PreciseBN, :func:`precise_statistics`), recorded as ``test_loss_precise``,
            ``test_acc_precise`` (and ``val_loss_precise``, ``val_acc_precise``); the run's other numbers and
            its training are those of the same run without it. BN (``norm="bn"``) only.
        threads: torch's intra-op thread count while training (float32 sums depend on it, so it
            is part of the key). Default 2, the CI machine's core count.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``; recorded in the provenance, not part of the key.

    Raises:
        ValueError: any invalid field; the message names the field and the allowed values. Also a ``batch_size``,
            ``train_subset``, ``validation_size`` or ``norm_group_size`` that would give a normalization layer a batch
            (or micro-batch) of one sample where that is one value per channel and the layer cannot normalize it
            (:data:`ONE_VALUE_NORMS`: ``batch_size=1``, a last shuffled batch of 1 sample, a micro-batch of 1),
            which torch's BatchNorm would refuse only at that step, after the others trained. And a setting the run
            would ignore (the noise with a norm without it, ``norm_momentum`` with a norm that takes no rate from it,
            ``lr_decay_steps`` at a constant or cosine step size, a micro-batch of the whole batch): two keys of the
            same numbers otherwise. Not refused, because stored runs carry them in their keys: Batch Renorm's
            schedule with other norms (chapters 35, 37 and 38 set it on every run of their grids) and micro-batches
            with a norm they do not change (GroupNorm, Online Norm, FRN, EvoNorm: chapter 38 runs every method in
            its micro-batch settings).
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
    lr_power: float = 0.0
    lr_decay_steps: int = 1000
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
    trace_every: int | None = None
    augment: bool = False
    validation_size: int | None = None
    lr_schedule: str = "polynomial"
    precise_bn: bool = False
    threads: int = DEFAULT_THREADS
    device: str = field(default="auto", compare=False)
    # Fields added after runs were stored: at their default they are left out of the key, so that those runs keep it.
    LATER_FIELDS: ClassVar[tuple[str, ...]] = ("augment", "validation_size", "lr_schedule", "precise_bn")
    # Chapters read the per-epoch metrics and tables; of a long run's step losses about this many are kept
    # (results.compact_steps): every step of chapter 31's 20 epochs would take 230 kB a run.
    max_step_losses: ClassVar[int] = 2_000

    def __post_init__(self) -> None:
        _plain_fields(self)
        _check_common(self.experiment, self.seed, self.threads, self.device)
        for name, allowed in (("dataset", DATASETS), ("model", MODELS), ("norm", NORMS), ("batch_order", BATCH_ORDERS)):
            if not isinstance(getattr(self, name), str) or getattr(self, name) not in allowed:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; choose one of {allowed}")
        if (self.model in VECTOR_MODELS) == (self.dataset in IMAGE_DATASETS):
            kind = "feature vectors" if self.model in VECTOR_MODELS else "images"
            fits = [d for d in DATASETS if (d in IMAGE_DATASETS) != (self.model in VECTOR_MODELS)]
            raise ValueError(f"model {self.model!r} takes {kind}, which dataset {self.dataset!r} does not hold; "
                             f"use it with {fits}")
        for name in ("batch_size", "epochs", "eval_batch_size"):
            _positive_int(name, getattr(self, name))
        check_batch_order(self.batch_order, self.batch_size)
        for name in ("train_subset", "test_subset", "norm_group_size", "probe_every", "trace_every"):
            _positive_int(name, getattr(self, name), allow_none=True)
        self._check_fit()
        for name, size in zip(("train_subset", "test_subset"), DATASET_SIZES[self.dataset]):
            if getattr(self, name) is not None and getattr(self, name) > size:
                raise ValueError(f"{name}={getattr(self, name):,} is larger than {self.dataset}'s {size:,} samples; "
                                 f"use at most {size:,} (or None for all)")
        for name in ("brn_warmup_steps", "brn_ramp_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        if not _number("lr", self.lr) > 0:
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if not 0.0 <= _number("momentum", self.momentum) < 1.0:
            raise ValueError(f"momentum (SGD) must lie in [0, 1), got {self.momentum!r}")
        if not _number("weight_decay", self.weight_decay) >= 0.0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not 0.0 < _number("norm_momentum", self.norm_momentum) <= 1.0:
            raise ValueError(f"norm_momentum must lie in (0, 1], got {self.norm_momentum!r}")
        if not 0.0 <= _number("fn_momentum_power", self.fn_momentum_power) <= 1.0:
            raise ValueError(f"fn_momentum_power must lie in [0, 1], got {self.fn_momentum_power!r}")
        if not 0.0 <= _number("lr_power", self.lr_power) <= 2.0:
            raise ValueError(f"lr_power must lie in [0, 2], got {self.lr_power!r}")
        _positive_int("lr_decay_steps", self.lr_decay_steps)
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"unknown lr_schedule {self.lr_schedule!r}; choose one of {LR_SCHEDULES}")
        if self.lr_schedule == "cosine" and self.lr_power != 0:
            raise ValueError(f"lr_schedule='cosine' sets the step size's decay itself; lr_power must be 0, got {self.lr_power!r}")
        if not _number("width", self.width) > 0:
            raise ValueError(f"width (the channel multiplier of VGG and resnet18_cifar) must be a positive number, got {self.width!r}")
        for name in ("noise_mean_max", "noise_scale_max", "noise_std"):
            _number(name, getattr(self, name))
        check_noise(self.noise_mean_max, self.noise_scale_max, self.noise_std)
        if not isinstance(self.augment, bool):
            raise ValueError(f"augment must be True or False, got {self.augment!r}")
        if self.augment and self.dataset not in IMAGE_DATASETS:
            raise ValueError(f"augment crops and flips images; dataset {self.dataset!r} is not one of {IMAGE_DATASETS}")
        _positive_int("validation_size", self.validation_size, allow_none=True)
        if self.validation_size is not None:
            total = DATASET_SIZES[self.dataset][0]
            rest = total - self.validation_size
            if rest < 1 or (self.train_subset is not None and self.train_subset > rest):
                raise ValueError(f"validation_size={self.validation_size:,} leaves {max(rest, 0):,} of {self.dataset}'s "
                                 f"{total:,} training samples, fewer than train_subset={self.train_subset}; lower one")
        if self.trace_every is not None and (self.norm != "bn" or self.model not in ("simple", "simple_wide")):
            raise ValueError(f"trace_every evaluates the theorems at a BN layer of SimpleNet; got norm={self.norm!r}, "
                             f"model={self.model!r} (use norm='bn', model='simple')")
        self._check_batches_of_one()

    def _check_batches_of_one(self) -> None:
        """Refuse a run that would normalize a batch (or micro-batch) of one sample where that gives a layer one value
        per channel and the layer cannot normalize it (:data:`ONE_VALUE_NORMS`): torch's BatchNorm raises "expected
        more than 1 value per channel when training" there, at that step, after the steps before it trained."""
        if self.model not in ONE_VALUE_NORMS or self.norm not in ONE_VALUE_NORMS[self.model]:
            return
        why = (f"norm {self.norm!r} normalizes with the batch's statistics, and in model {self.model!r} one sample "
               f"gives it one value per channel, which it cannot normalize (torch.nn.BatchNorm: 'expected more than 1 "
               f"value per channel when training')")
        fits = "or a norm that trains on one sample ('bn_ref', BN that accepts it, or FN: 'fn')"
        if self.batch_size == 1:
            raise ValueError(f"batch_size=1 cannot train: {why}; use batch_size >= 2, {fits}")
        total = DATASET_SIZES[self.dataset][0] - (self.validation_size or 0)
        samples = total if self.train_subset is None else min(self.train_subset, total)
        sizes = {self.batch_size}
        if self.batch_order == "shuffled" and samples % self.batch_size:  # the other orders cut full batches only
            sizes.add(samples % self.batch_size)
        if 1 in sizes:
            if self.train_subset is not None:
                where = f"train_subset={self.train_subset:,}"
            elif self.validation_size is not None:
                where = (f"{self.dataset}'s {DATASET_SIZES[self.dataset][0]:,} training samples less "
                         f"validation_size={self.validation_size:,}")
            else:
                where = f"{self.dataset}'s {total:,} training samples"
            raise ValueError(f"{where} in shuffled batches of batch_size={self.batch_size} leave a last batch of 1 "
                             f"sample every epoch ({samples:,} % {self.batch_size} = 1): {why}; change batch_size or "
                             f"train_subset (or validation_size) so that the remainder is not 1, {fits}")
        group = self.norm_group_size
        if group == 1:
            raise ValueError(f"norm_group_size=1 normalizes every sample alone: {why}; use norm_group_size >= 2, "
                             f"{fits}")
        for size in sorted(sizes) if group is not None else ():
            if size > group and size % group == 1:
                raise ValueError(f"norm_group_size={group} cuts a batch of {size} samples into micro-batches, the last "
                                 f"of 1 sample ({size} % {group} = 1): {why}; use a norm_group_size that leaves no "
                                 f"micro-batch of 1 sample (one that does not divide {size - 1}), {fits}")

    def _check_fit(self) -> None:
        """Settings that the chosen model, norm and data would ignore or could not take, refused when made (two
        configurations differing only in an ignored setting would be two stored runs of the same numbers): width
        outside the width models, FN's rate power and the noise with other norms,
        ``lr_decay_steps`` at a constant step size, ``norm_group_size`` of the whole batch or more."""
        if self.model in VGG_MODELS and self.dataset != "cifar10":
            raise ValueError(f"model {self.model!r} takes 32x32 images (five max-pools): use it with 'cifar10', "
                             f"not {self.dataset!r}")
        if self.width != 1.0 and self.model not in WIDTH_MODELS:
            raise ValueError(f"width (the channel multiplier) applies to {WIDTH_MODELS}; model {self.model!r} ignores it: "
                             f"leave width at 1.0")
        if self.fn_momentum_power != 0.0 and self.norm not in FN_BACKWARDS:
            raise ValueError(f"fn_momentum_power (FN's decaying estimate rate) applies to {tuple(FN_BACKWARDS)}; norm "
                             f"{self.norm!r} ignores it: leave it at 0.0")
        if self.norm in SIMPLE_ONLY_NORMS and self.model not in ("simple", "simple_wide"):
            raise ValueError(f"norm {self.norm!r} runs in SimpleNet only; use model 'simple' or 'simple_wide', not "
                             f"{self.model!r}")
        if not isinstance(self.precise_bn, bool):
            raise ValueError(f"precise_bn must be True or False, got {self.precise_bn!r}")
        if self.precise_bn and self.norm != "bn":
            raise ValueError(f"precise_bn recomputes BatchNorm's population statistics; norm {self.norm!r} has none: use "
                             "it with norm='bn' or leave it False")
        if self.norm_group_size is not None and self.norm in ("none", "noisy_none"):
            raise ValueError(f"norm_group_size splits normalization layers' batches; norm {self.norm!r} has none: leave "
                             "it None")
        fields = self.__dataclass_fields__
        # Batch Renorm's schedule is not checked so: chapters 35, 37 and 38 set it on every run of their grids, and
        # their stored runs (BN's, FN's, ...) carry it in their keys
        ignored = [(("noise_mean_max", "noise_scale_max", "noise_std"), self.norm not in ("noisy_bn", "noisy_none"),
                    f"the noise applies to norms 'noisy_bn' and 'noisy_none'; norm {self.norm!r} ignores it"),
                   (("lr_decay_steps",), self.lr_power == 0,
                    "lr_decay_steps sets the polynomial decay's pace; " + (
                        "the cosine schedule ignores it (it decays over the run's steps)"
                        if self.lr_schedule == "cosine" else "lr_power=0 (a constant step size) ignores it")),
                   (("norm_momentum",), self.norm in NO_RUNNING_RATE,
                    f"norm_momentum is the running statistics' rate; norm {self.norm!r} has none it sets (Batch "
                    "Renorm keeps Ioffe's 0.01; GroupNorm, Online Norm, MABN, FRN and EvoNorm their own)")]
        for names, unused, why in ignored:
            changed = [name for name in names if unused and getattr(self, name) != fields[name].default]
            if changed:
                raise ValueError(f"{', '.join(f'{n}={getattr(self, n)!r}' for n in changed)}: {why}; leave "
                                 f"{'it' if len(changed) == 1 else 'them'} at the default "
                                 f"({', '.join(f'{n}={fields[n].default!r}' for n in changed)})")
        if self.norm_group_size is not None and self.norm_group_size >= self.batch_size:
            raise ValueError(f"norm_group_size={self.norm_group_size} is no micro-batching at batch_size="
                             f"{self.batch_size} (one group holds the whole batch): leave it None, or use a group "
                             f"size below the batch size")
        if self.batch_order in ("label_sorted", "unshuffled") and self.train_subset is not None and \
                self.dataset in TEN_LABELS and self.train_subset < 10 * self.batch_size:
            raise ValueError(f"{self.batch_order} batches need a full batch of every label: train_subset="
                             f"{self.train_subset:,} leaves fewer than {self.batch_size} samples of some of {self.dataset}'s "
                             f"10 labels; use train_subset >= {10 * self.batch_size:,} or a smaller batch_size")

    def key_params(self) -> dict[str, Any]:
        """Everything that determines the numbers: the fields (not ``device``), the data checksum and the code fingerprint."""
        params = dataclasses.asdict(self)
        params.pop("device")
        for name in self.LATER_FIELDS:
            if params[name] == self.__dataclass_fields__[name].default:
                params.pop(name)
        params["data"] = dataset_checksum(self.dataset)
        params["code"] = results_mod.code_fingerprint()
        return params

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    def splits(self) -> tuple[TensorSplit, TensorSplit, TensorSplit | None]:
        """The run's train, test and validation splits (``None`` without ``validation_size``), on the CPU:
        the validation split held out of the training set first, then the subsets applied."""
        train_split, test_split = load_dataset(self.dataset)
        val_split = None
        if self.validation_size is not None:
            train_split, val_split = hold_out(train_split, self.validation_size)
        return (subset(train_split, self.train_subset, self.seed), subset(test_split, self.test_subset, self.seed),
                val_split)

    def label(self) -> str:
        """A short human label for progress lines: experiment, norm, order, batch size, seed."""
        return f"{self.experiment}: {self.norm}/{self.batch_order}/bs{self.batch_size}/lr{self.lr}/seed{self.seed}"

    def compute(self, progress: bool = False, max_steps: int | None = None) -> dict[str, Any]:
        """Train; return ``{"metrics", "steps", "tables"}`` (see :func:`train_model`)."""
        train_split, test_split, val_split = self.splits()
        record: dict[str, Any] = {}
        metrics = train_model(self, train_split, test_split, progress, record=record, max_steps=max_steps,
                              val_split=val_split)
        return {"metrics": metrics, "steps": record["steps"], "tables": record["tables"]}


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


EPOCH_METRICS = ("epoch", "train_loss", "train_eval_loss", "train_eval_acc", "test_loss", "test_acc")
# recorded after them by a run with a validation split
VALIDATION_METRICS = ("val_loss", "val_acc")
# recorded after those by a run with precise_bn (the test and validation sets under recomputed population statistics)
PRECISE_METRICS = ("test_loss_precise", "test_acc_precise")
PRECISE_VALIDATION_METRICS = ("val_loss_precise", "val_acc_precise")


@torch.no_grad()
def precise_statistics(model: nn.Module, split: TensorSplit, batch_size: int, seed: int, epoch: int) -> dict:
    """Recompute every BatchNorm layer's population statistics on ``split``; return the state to restore after.

    One pass over ``split`` in a shuffled order (its own generator, seeded by ``seed`` and ``epoch``: the
    training's random stream is not touched), in batches of ``batch_size`` (the last, smaller one dropped), the
    network in training mode as it trains (so microbatches normalize as in training), each layer's statistics
    the plain average of the batches' (:func:`torch.optim.swa_utils.update_bn`: BN's unbiased batch variance).

    Args:
        model: a network with :class:`torch.nn.BatchNorm2d` layers (any other layer is left alone).
        split: the training split, images ``(N, C, H, W)`` on the model's device.
        batch_size: samples per batch, at most ``N``.

    Returns:
        The model's ``state_dict`` before the update (cloned): load it to continue training as if nothing ran.

    Raises:
        ValueError: ``batch_size`` larger than the split.

    Source: Wu & Johnson (2021), "Rethinking 'Batch' in BatchNorm", Section 3 (PreciseBN: population statistics
    recomputed after training with the model fixed). Our choice: one pass over the training set at the training
    batch size, after every epoch.
    """
    if not 1 <= batch_size <= len(split):
        raise ValueError(f"batch_size must lie in [1, {len(split)}] (the split's size), got {batch_size}")
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(len(split), generator=generator).to(split.images.device)
    batches = [split.images[idx] for idx in order.split(batch_size) if len(idx) == batch_size]
    torch.optim.swa_utils.update_bn(batches, model)
    return saved
# how a run's step size moves (TrainConfig.lr_schedule)
LR_SCHEDULES = ("polynomial", "cosine")
# datasets of images (N, C, H, W), which augment can crop and flip and the convolutional models take
IMAGE_DATASETS = ("mnist", "cifar10", "mnist_scaled", "mnist_scaled_wide")
# models of feature vectors (N, D): every other dataset's
VECTOR_MODELS = ("mlp3", "logreg", "deep_linear")
# models sized by TrainConfig.width, and the VGGs (which need 32x32 images)
WIDTH_MODELS = ("vgg11", "vgg16", "resnet18_cifar")
VGG_MODELS = ("vgg11", "vgg16")
# norms whose layers take no running-statistics rate from norm_momentum (models.norm_layer passes it to none of them)
NO_RUNNING_RATE = ("none", "brn", "gn", "noisy_none", "online", "mabn", "frn", "evonorm")
# datasets of ten balanced labels
TEN_LABELS = ("mnist", "cifar10", "mnist_scaled", "mnist_scaled_wide")
# The norms that cannot normalize one value per channel in training (torch's BatchNorm and noisy BN, Batch Renorm, the
# l_p norms; GroupNorm of one channel a group on feature vectors), by each model where one sample gives them that:
# every layer of the models of feature vectors (GroupNorm: their widths, 16 and 32, and the datasets' 2 to 32 features
# are at most 32, one channel a group), and torchvision's ResNet18, whose last stage sees 1x1 maps of 28- and 32-pixel
# images. SimpleNet, VGG (2x2 maps before the last pool) and resnet18_cifar (4x4) keep several values; FN, bn_ref and
# the successors train on one sample. TrainConfig refuses a batch or micro-batch of one sample for these pairs.
ONE_VALUE_NORMS = {**{model: ("bn", "noisy_bn", "brn", "lp1", "lp2", "lpinf", "gn") for model in VECTOR_MODELS},
                   "resnet18": ("bn", "noisy_bn", "brn", "lp1", "lp2", "lpinf")}


def train_model(
    config: TrainConfig,
    train_split: TensorSplit,
    test_split: TensorSplit,
    progress: bool = True,
    on_step: Callable[[nn.Module, torch.Tensor, torch.Tensor, int], None] | None = None,
    record: dict[str, Any] | None = None,
    max_steps: int | None = None,
    val_split: TensorSplit | None = None,
) -> dict[str, list[float]]:
    """Train a fresh model on in-memory splits with ``config.threads`` torch threads; return the per-epoch metrics.

    The caller's thread count, global random state and deterministic-algorithms setting are
    restored afterwards (:func:`caller_state_kept`).

    Args:
        config: the run's parameters (subsets are not applied here; see :meth:`TrainConfig.splits`).
        train_split, test_split: tensors ``(N, C, H, W)`` and labels ``(N,)``, on any device.
        progress: show a tqdm bar on stderr.
        on_step: called as ``on_step(model, images, labels, step)`` before each SGD step (``step``
            counts from 0), in training mode. It must not change the model.
        record: if given, filled with ``record["steps"] = {"train_loss": [...]}`` (every step's
            loss) and ``record["tables"]``: ``"probes"`` (:class:`~revisit_bn.landscape.TrainingProbe`,
            with ``config.probe_every``) and ``"trace"`` (:class:`~revisit_bn.landscape.TheoremTrace`,
            with ``config.trace_every``), columnar.
        max_steps: stop after this many SGD steps without evaluating (a replay); ``None``: all epochs.
        val_split: the validation split (:meth:`TrainConfig.splits`); its metrics are recorded as
            ``val_loss`` and ``val_acc``.

    Returns:
        The lists of :data:`EPOCH_METRICS` (and the validation metrics), one entry per finished epoch. If the loss becomes
        non-finite, training stops at the end of that epoch and its metrics may hold ``nan``.

    Raises:
        ValueError: before any work, a split that is not a :class:`~revisit_bn.data.TensorSplit` or holds no samples,
            labels below 0, or test or validation labels outside the training split's classes ``0..max label``.
    """
    _check_splits(train_split, test_split, val_split)
    device = resolve_device(config.device)
    with torch_threads(config.threads), caller_state_kept(device):
        seed_everything(config.seed)
        train_split, test_split = train_split.to(device), test_split.to(device)
        val_split = val_split.to(device) if val_split is not None else None
        channels = train_split.images.shape[1]
        image_size = train_split.images.shape[2] if train_split.images.dim() == 4 else 1
        num_classes = int(train_split.labels.max().item()) + 1
        model = build_model(config, channels, image_size, num_classes).to(device)
        optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                    weight_decay=config.weight_decay)
        order = make_batch_order(config.batch_order, train_split.labels.cpu(), config.batch_size, config.seed)
        schedule = None
        if config.lr_schedule == "cosine":
            total = len(order.batches(1)) * config.epochs
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
        elif config.lr_power > 0:
            decay = lambda k: (1.0 + k / config.lr_decay_steps) ** -config.lr_power  # noqa: E731
            schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, decay)
        names = EPOCH_METRICS + (VALIDATION_METRICS if val_split is not None else ())
        if config.precise_bn:
            names += PRECISE_METRICS + (PRECISE_VALIDATION_METRICS if val_split is not None else ())
        metrics: dict[str, list[float]] = {k: [] for k in names}
        fill = cifar_padding_fill().to(device) if config.dataset == "cifar10" else 0.0
        probes = []
        if config.probe_every is not None:
            probes.append(("probes", TrainingProbe(config.probe_every, activations=norm_positions(model))))
        if config.trace_every is not None:
            probes.append(("trace", TheoremTrace(config.trace_every)))
        step_losses: list[torch.Tensor] = []
        bar = tqdm(total=config.epochs, desc=config.label(), disable=not progress, unit="epoch", leave=False)
        step = 0
        for epoch in range(1, config.epochs + 1):
            model.train()
            batches = order.batches(epoch)
            augment = augment_generator(config.seed, epoch) if config.augment else None
            running = torch.zeros((), device=device)
            for idx in batches:
                if max_steps is not None and step >= max_steps:
                    break
                idx = idx.to(device)
                images, labels = train_split.images[idx], train_split.labels[idx]
                if augment is not None:
                    images = random_crop_flip(images, augment, padding=4, fill=fill)
                if on_step is not None:
                    on_step(model, images, labels, step)
                for _, probe in probes:
                    probe.before_step(model, images, labels, step)
                loss = nn.functional.cross_entropy(model(images), labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if schedule is not None:
                    schedule.step()
                for _, probe in probes:
                    if isinstance(probe, TrainingProbe):
                        probe.after_step(model)
                step += 1
                running += loss.detach()
                step_losses.append(loss.detach())
            if max_steps is not None and step >= max_steps:
                break
            train_loss = (running / len(batches)).item()
            tr_loss, tr_acc = evaluate(model, train_split, config.eval_batch_size)
            te_loss, te_acc = evaluate(model, test_split, config.eval_batch_size)
            values = (epoch, train_loss, tr_loss, tr_acc, te_loss, te_acc)
            if val_split is not None:
                values += evaluate(model, val_split, config.eval_batch_size)
            if config.precise_bn:
                saved = precise_statistics(model, train_split, config.batch_size, config.seed, epoch)
                values += evaluate(model, test_split, config.eval_batch_size)
                if val_split is not None:
                    values += evaluate(model, val_split, config.eval_batch_size)
                model.load_state_dict(saved)
            for name, value in zip(metrics, values):
                metrics[name].append(value)
            bar.update(1)
            if not math.isfinite(train_loss):
                break
        bar.close()
    if record is not None:
        record["steps"] = {"train_loss": float32_list(torch.stack(step_losses)) if step_losses else []}
        record["tables"] = {name: probe.rows for name, probe in probes}
    return metrics


def _check_splits(train_split: TensorSplit, test_split: TensorSplit, val_split: TensorSplit | None) -> None:
    """What :func:`train_model` needs of its splits (TensorSplit checks their types and shapes): samples, and labels
    that are class indices of the model it builds (``max training label + 1`` outputs).

    Raises:
        ValueError: naming the split and the fix.
    """
    named = [("train_split", train_split), ("test_split", test_split)] + ([("val_split", val_split)] if val_split
                                                                           is not None else [])
    for name, split in named:
        if not isinstance(split, TensorSplit):
            raise ValueError(f"{name} must be a revisit_bn.data.TensorSplit (images and int64 labels), got "
                             f"{type(split).__name__}")
        if len(split) == 0:
            raise ValueError(f"{name} holds no samples; pass a split with at least one (a subset of size >= 1)")
    classes = int(train_split.labels.max().item()) + 1
    for name, split in named:
        low, high = int(split.labels.min().item()), int(split.labels.max().item())
        if low < 0 or high >= classes:
            raise ValueError(f"{name}'s labels must be class indices in 0..{classes - 1} (the model gets {classes} "
                             f"outputs, one per class of train_split up to its largest label), got labels "
                             f"{low}..{high}; number the classes from 0")


def float32_list(values: torch.Tensor) -> list[float]:
    """float32 values as the shortest decimals that read back to the same float32 (compact, exact)."""
    return [float(np.format_float_positional(v, unique=True)) if np.isfinite(v) else float(v)
            for v in values.detach().cpu().to(torch.float32).numpy()]


# ----------------------------------------------------------------------------------------------
# The MCSGD rate experiment (Lian & Liu, Lemma 1 / Theorem 2 / Corollary 3)
# ----------------------------------------------------------------------------------------------


def exact_fn_state(model: FNRegressor, x: torch.Tensor, t: torch.Tensor) -> tuple[list, float]:
    """The exact dataset statistics of each FN layer's input and :math:`\\|\\nabla f(\\theta)\\|^2` of objective (10).

    Objective (10) normalizes every layer with the statistics of the *whole dataset*, the lower
    layers normalized the same way; a full-batch pass with batch statistics computes exactly that.
    """
    inputs: list[torch.Tensor] = []
    h = model.l1(x)
    inputs.append(h)
    h = torch.tanh(nn.functional.batch_norm(h, None, None, model.n1.weight, model.n1.bias, True, 0.0, model.n1.eps))
    h = model.l2(h)
    inputs.append(h)
    out = model.l3(torch.tanh(nn.functional.batch_norm(h, None, None, model.n2.weight, model.n2.bias, True, 0.0, model.n2.eps)))
    loss = 0.5 * (out - t).square().mean()
    grads = torch.autograd.grad(loss, [p for p in model.parameters()])
    stats = [(a.detach().mean(0), a.detach().var(0, unbiased=False)) for a in inputs]
    return stats, float(sum(gr.square().sum() for gr in grads))


def exact_plain_grad_norm(model: FNRegressor, x, t) -> float:
    """:math:`\\|\\nabla f(\\theta)\\|^2` of objective (8) for the unnormalized network."""
    loss = 0.5 * (model(x) - t).square().mean()
    return float(sum(gr.square().sum() for gr in torch.autograd.grad(loss, list(model.parameters()))))


MCSGD_METHODS = {"mcsgd": "MCSGD (FN)", "mcsgd_decoupled": "MCSGD (FN, decoupled)", "sgd": "SGD (no normalization)"}
# the FN layers' gradient estimator of each MCSGD method (FullNorm1d's ``backward``; layers.BACKWARDS)
_MCSGD_BACKWARD = {"mcsgd": "mcsgd", "mcsgd_decoupled": "decoupled"}


@dataclass(frozen=True)
class McsgdConfig:
    r"""One run of the MCSGD rate experiment: MCSGD on a two-FN-layer regressor (objective 10), or plain SGD (objective 8).

    Step sizes :math:`\gamma_k = \gamma_0 k^{-a}` (``lr``, ``lr_power``) for both methods; FN's
    estimate rates :math:`\alpha_k = k^{-b}` (``rate_power``). At ``num_logs`` geometrically
    spaced iterations the run records, per FN layer, the squared error of the estimates against
    the exact dataset statistics at the current parameters, and the exact squared gradient norm
    of the method's objective (table ``"log"``: ``step``, ``quantity``, ``value``).

    Attributes:
        method: ``"mcsgd"`` (FN's layers take the statistics' terms of their gradient from the current
            batch, Algorithm 4), ``"mcsgd_decoupled"`` (from previous batches, so that the batch that
            moves the estimates does not also bias the gradient: Remark 1, chapter 15) or ``"sgd"``.
        steps, lr, lr_power, rate_power, batch_size, hidden, seed, n, d, num_logs: as above;
            ``n`` samples of dimension ``d`` from :func:`revisit_bn.data.synthetic_regression`.
        threads, device: as in :class:`TrainConfig`.

    Raises:
        ValueError: any invalid field, named.

    Source: Lian & Liu (2019), Algorithm 3, Lemma 1, Theorem 2, Corollary 3. Our choice: the
    network, data, batch size and exponents (the paper's are lost).
    """

    method: str
    experiment: str = "mcsgd_convergence"
    steps: int = 20_000
    lr: float = 0.05
    lr_power: float = 0.5
    rate_power: float = 0.25
    batch_size: int = 8
    hidden: int = 16
    seed: int = 0
    n: int = 512
    d: int = 8
    num_logs: int = 60
    threads: int = DEFAULT_THREADS
    device: str = field(default="cpu", compare=False)
    # the figures read the "log" table, not the step losses: keep about this many of them (results.compact_steps)
    max_step_losses: ClassVar[int] = 2_000

    def __post_init__(self) -> None:
        _plain_fields(self)
        _check_common(self.experiment, self.seed, self.threads, self.device)
        if self.method not in MCSGD_METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of {tuple(MCSGD_METHODS)}")
        for name in ("steps", "batch_size", "hidden", "n", "d", "num_logs"):
            _positive_int(name, getattr(self, name))
        if not _number("lr", self.lr) > 0:
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        for name in ("lr_power", "rate_power"):
            if not 0 < _number(name, getattr(self, name)) <= 1:
                raise ValueError(f"{name} must lie in (0, 1], got {getattr(self, name)!r}")

    def key_params(self) -> dict[str, Any]:
        params = dataclasses.asdict(self)
        params.pop("device")
        params["data"] = tensors_checksum(*synthetic_regression(self.n, self.d, self.seed))
        params["code"] = results_mod.code_fingerprint()
        return params

    def replace(self, **changes: Any) -> "McsgdConfig":
        return dataclasses.replace(self, **changes)

    def label(self) -> str:
        return f"{self.experiment}: {self.method}/seed{self.seed}"

    def compute(self, progress: bool = False, max_steps: int | None = None) -> dict[str, Any]:
        """Run the method; return ``{"metrics": {}, "steps", "tables": {"log"}}``."""
        x, t = synthetic_regression(self.n, self.d, self.seed)
        total = self.steps if max_steps is None else min(self.steps, max_steps)
        logs = set(np.unique(np.geomspace(1, self.steps, self.num_logs).astype(int)).tolist())
        log: dict[str, list] = {"step": [], "quantity": [], "value": []}
        losses = []
        with torch_threads(self.threads), caller_state_kept():
            torch.manual_seed(self.seed)
            backward = _MCSGD_BACKWARD.get(self.method)
            norm = ((lambda c: FullNorm1d(c, momentum=PolynomialMomentum(self.rate_power), eps=1e-5, backward=backward))
                    if backward else None)
            model = FNRegressor(self.d, self.hidden, norm).double()
            opt = torch.optim.SGD(model.parameters(), lr=self.lr)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: (k + 1) ** (-self.lr_power))
            batches = torch.randint(0, self.n, (self.steps, self.batch_size), generator=torch.Generator().manual_seed(self.seed + 1))
            for k in tqdm(range(1, total + 1), desc=self.label(), disable=not progress, mininterval=2.0, leave=False):
                idx = batches[k - 1]
                loss = 0.5 * (model(x[idx]) - t[idx]).square().mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                losses.append(loss.detach())
                if k in logs and max_steps is None:
                    if norm is not None:
                        stats, grad_norm = exact_fn_state(model, x, t)
                        for i, (layer, (mu, var)) in enumerate(zip((model.n1, model.n2), stats), start=1):
                            err = (layer.running_mean - mu).square().sum() + (layer.running_var - var).square().sum()
                            for key, value in zip(log, (k, f"estimation error, layer {i}", err.item())):
                                log[key].append(value)
                    else:
                        grad_norm = exact_plain_grad_norm(model, x, t)
                    for key, value in zip(log, (k, "squared gradient norm", grad_norm)):
                        log[key].append(value)
        return {"metrics": {}, "steps": {"train_loss": [float(v) for v in torch.stack(losses).tolist()]}, "tables": {"log": log}}


def smoke_step(config: TrainConfig) -> float:
    """Build ``config``'s model on the CPU and take one SGD step on its first real batch.

    Used to check that a profile's configurations (e.g. the papers' scale, meant for a GPU) are
    well formed without training them. Returns the step's loss.
    """
    config = config.replace(device="cpu")
    return config.compute(progress=False, max_steps=1)["steps"]["train_loss"][0]
