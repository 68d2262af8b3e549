r"""Data-parallel training on label-skewed shards, on ``torch.distributed``, launched with ``torchrun``.

Lian & Liu (2019, Section 1, on Figure 3) name the setting where a batch-dependent objective hurts in
practice: "distributed training algorithms where each worker only has its local dataset, and the
local datasets are very different". Hsieh et al. (ICML 2020, "The Non-IID Data Quagmire of
Decentralized Machine Learning") found BN hit hardest by label skew across workers, and GroupNorm
recovering much of the loss. This module trains one network on ``K`` workers, each holding a shard
of the training set with ``c`` of the 10 labels (:func:`label_skew_shards`), with
:class:`torch.nn.parallel.DistributedDataParallel` (DDP: every step averages the workers'
parameter gradients), and one of five methods (:data:`DIST_METHODS`):

- ``"bn"``: :class:`torch.nn.BatchNorm2d` on each worker's own batch (local statistics). Evaluated
  twice: with rank 0's running statistics, which is what DDP's default leaves on rank 0, the worker
  that usually evaluates and checkpoints (``broadcast_buffers=True`` also copies rank 0's buffers to
  the others before every training forward), and with the running statistics *pooled* over the
  workers (:func:`pool_running_stats`);
- ``"sync_bn"``: cross-worker BN, whose batch moments are all-reduced every step
  (:class:`CrossWorkerBatchNorm2d`; :class:`torch.nn.SyncBatchNorm` refuses CPU tensors, PyTorch
  issue 78081);
- ``"fn_decoupled"``: FN with the decoupled estimator (:class:`revisit_bn.layers.FullNorm2d`),
  its estimates taking every worker's batch moments (:class:`CrossWorkerFullNorm2d`) and its
  gradient terms averaged over workers after each backward (:func:`average_fn_terms`);
- ``"gn"``: :class:`torch.nn.GroupNorm` with :func:`revisit_bn.models.group_count` groups, no batch
  statistics (in SimpleNet, whose 16 and 32 channels give 16 and 32 groups, that is instance
  normalization: one channel a group);
- ``"none"``: no normalization.

Training with ``broadcast_buffers=False``: in training mode BN's forward does not read its
buffers, so the parameters are the same as under DDP's default, and rank 0 (the source of the
broadcasts, which never receives one) ends with the same buffers; the other workers keep their own,
which the pooled evaluation needs (``tests/test_distributed.py`` checks both statements).

A run (:class:`DistributedConfig`) is computed by ``torchrun`` (``python -m torch.distributed.run``)
with ``K`` worker processes (:meth:`DistributedConfig.compute`), gloo on the CPU or NCCL on ``K``
GPUs; rank 0 writes the result, stored like any other run (:mod:`revisit_bn.store`); a replay starts
the same number of workers. The same worker runs across machines:
``torchrun --nnodes N --nproc-per-node K/N --rdzv-backend c10d --rdzv-endpoint HOST:PORT
-m revisit_bn.distributed CONFIG.json OUT.json`` (see the README).

Source: Lian & Liu (2019), Section 1; Hsieh et al. (2020), Sections 4-5 (label-skewed partitions,
BN and GroupNorm).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from . import results as results_mod
from .data import DATASET_SIZES, TensorSplit, dataset_checksum, hold_out, load_dataset
from .layers import FullNorm2d
from .models import NOISE_DEFAULTS, build_model

# The methods of a data-parallel run (see the module docstring); display labels in revisit_bn.names.
DIST_METHODS = ("bn", "sync_bn", "fn_decoupled", "gn", "none")
# torch.distributed backends: gloo (CPU tensors here), nccl (one GPU per worker)
BACKENDS = ("gloo", "nccl")
# the model of each method before conversion (models.norm_layer's names)
_BASE_NORM = {"bn": "bn", "sync_bn": "bn", "fn_decoupled": "fn_decoupled", "gn": "gn", "none": "none"}
NUM_LABELS = 10
DIST_DATASETS = ("mnist", "cifar10")
DIST_MODELS = ("simple", "simple_wide", "vgg11")


def distributed_fingerprint() -> str:
    """A 12-hex-digit hash of this module's syntax tree (its docstrings and comments do not count)."""
    return results_mod.source_fingerprint(Path(__file__).read_text())[:12]


def _world() -> tuple[int, int]:
    """``(rank, world size)`` of the default process group; ``(0, 1)`` where none is initialized."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


# --- shards -------------------------------------------------------------------------------------

def worker_labels(workers: int, labels_per_worker: int, num_labels: int = NUM_LABELS) -> list[tuple[int, ...]]:
    """The labels each worker holds: worker ``k`` the ``c`` labels ``k*c, k*c + 1, ...`` (mod ``num_labels``).

    With ``K * c`` a multiple of ``num_labels`` every label is held by the same number of workers,
    ``K * c / num_labels``, so that the union of the shards keeps the labels balanced. ``c =
    num_labels`` is the i.i.d. split (every worker every label).

    Raises:
        ValueError: ``workers`` or ``labels_per_worker`` not a positive integer, ``c`` above
            ``num_labels``, or ``K * c`` not a multiple of ``num_labels`` (the message lists the ``c`` that fit).

    Source: our construction of Hsieh et al.'s (2020) label-skewed partitions (each worker ``c`` labels).
    """
    for name, value in (("workers", workers), ("labels_per_worker", labels_per_worker)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    workers, c = int(workers), int(labels_per_worker)
    if c > num_labels:
        raise ValueError(f"labels_per_worker must be at most the {num_labels} labels, got {c}")
    if (workers * c) % num_labels:
        fits = [k for k in range(1, num_labels + 1) if (workers * k) % num_labels == 0]
        raise ValueError(f"labels_per_worker={c} with workers={workers} holds some labels on more workers than "
                         f"others (workers x labels_per_worker = {workers * c} is not a multiple of {num_labels}), "
                         f"which unbalances the union of the shards; with {workers} workers use one of {fits}")
    return [tuple((k * c + j) % num_labels for j in range(c)) for k in range(workers)]


def label_skew_shards(labels: torch.Tensor, workers: int, labels_per_worker: int, train_size: int,
                      seed: int) -> list[torch.Tensor]:
    """Indices into ``labels`` of each worker's shard: ``train_size / K`` samples, an equal share of each of its labels.

    Each label's samples are shuffled (seeded by ``seed``) and split among the workers that hold it
    (:func:`worker_labels`); each takes ``train_size / (K c)`` of its part. Every shard has the same
    size (DDP's workers take the same number of steps) and the union holds every label equally often.

    Args:
        labels: int64 ``(N,)``, values in ``[0, 10)``.
        workers, labels_per_worker: ``K`` and ``c``.
        train_size: the samples of all shards together; a multiple of ``K * c``.
        seed: the draw.

    Returns:
        ``K`` int64 tensors of ``train_size / K`` indices each, sorted by label within a shard.

    Raises:
        ValueError: ``train_size`` not a positive multiple of ``K * c``, or a label with too few
            samples for its holders (the message says how many it has and needs).
    """
    holders = worker_labels(workers, labels_per_worker)
    k, c = len(holders), int(labels_per_worker)
    if isinstance(train_size, bool) or not isinstance(train_size, (int, np.integer)) or train_size < 1 \
            or train_size % (k * c):
        raise ValueError(f"train_size must be a positive multiple of workers x labels_per_worker = {k * c}, "
                         f"got {train_size!r}")
    per_label = int(train_size) // (k * c)
    generator = torch.Generator().manual_seed(int(seed))
    shards: list[list[torch.Tensor]] = [[] for _ in range(k)]
    for label in range(NUM_LABELS):
        owners = [w for w, held in enumerate(holders) if label in held]
        pool = torch.nonzero(labels == label).flatten()
        pool = pool[torch.randperm(len(pool), generator=generator)]
        if len(owners) * per_label > len(pool):
            raise ValueError(f"label {label} has {len(pool):,} samples; its {len(owners)} workers need "
                             f"{len(owners) * per_label:,} ({per_label:,} each): lower train_size")
        part = len(pool) // len(owners)
        for i, w in enumerate(owners):
            shards[w].append(pool[i * part: i * part + per_label])
    return [torch.cat(s) for s in shards]


# --- layers -------------------------------------------------------------------------------------

class CrossWorkerBatchNorm2d(nn.BatchNorm2d):
    r""":class:`torch.nn.BatchNorm2d` whose batch moments are those of every worker's batch together.

    In training, each worker's channel sums :math:`\sum x` and then :math:`\sum (x - \mu)^2` are
    summed over the workers with the autograd-aware
    :func:`torch.distributed.nn.functional.all_reduce` (two passes, as BN's kernel, so the variance
    does not cancel), so that the forward *and* the backward are BN's on the concatenation of the
    workers' batches: the input gradient of a worker includes what its samples contribute to every
    worker's loss through the shared moments (as :class:`torch.nn.SyncBatchNorm` does on GPUs, which
    refuses CPU tensors). The running statistics take the pooled moments (the unbiased variance
    over all ``K N H W`` values), so every worker keeps the same ones. Without a process group (or
    with one worker) and in evaluation mode it is :class:`torch.nn.BatchNorm2d`.

    Every worker must call it with the same number of channels; an empty local batch is allowed
    (it adds nothing to the moments) as long as some worker's is not.

    Shape: input ``(N, C, H, W)``, output the same. Computed in float32 for half-precision inputs
    (as BN's statistics are), in float64 for float64 ones.

    Source: Ioffe & Szegedy (2015), Algorithm 1, over the union of the workers' batches;
    the all-reduce of the moments as in :class:`torch.nn.SyncBatchNorm`.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, world = _world()
        if not self.training or world == 1:
            return super().forward(x)
        if x.dim() != 4:
            raise ValueError(f"expected 4D input (N, C, H, W), got {x.dim()}D")
        from torch.distributed.nn.functional import all_reduce

        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        xc = x.to(dtype)
        dims = (0, 2, 3)
        count = torch.tensor([float(x.numel() // x.shape[1])], dtype=torch.float64, device=x.device)
        dist.all_reduce(count)
        n = float(count.item())
        if n < 2:
            raise ValueError(f"expected more than 1 value per channel over all workers when training, got {n:g}")
        mean = all_reduce(xc.sum(dims)) / n
        centred = xc - mean.view(1, -1, 1, 1)
        var = all_reduce(centred.square().sum(dims)) / n
        out = centred * torch.rsqrt(var + self.eps).view(1, -1, 1, 1)
        if self.affine:
            out = out * self.weight.to(dtype).view(1, -1, 1, 1) + self.bias.to(dtype).view(1, -1, 1, 1)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                rate = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), rate)
                self.running_var.lerp_((var.detach() * (n / (n - 1))).to(self.running_var.dtype), rate)
        return out.to(x.dtype)


class CrossWorkerFullNorm2d(FullNorm2d):
    r""":class:`revisit_bn.layers.FullNorm2d` whose estimates take every worker's batch moments.

    Each training forward all-reduces the workers' channel sums (then the centred squares) before FN's
    estimate update (MCSGD Step 2), so every worker updates its estimates with the moments of the
    concatenated batch and all keep the same estimates: FN's on the union. The decoupled estimator's
    gradient terms are averaged over the workers after each backward by :func:`average_fn_terms`
    (their update is linear in the batch's terms, so the average is the union's; in units of the
    local loss, ``K`` times the single-process buffers, as the local gradients are). Without a
    process group it is :class:`~revisit_bn.layers.FullNorm2d`.

    Shape: input ``(N, C, H, W)``, output the same.

    Source: Lian & Liu (2019), Algorithm 4 Step 2, with the batch moments of every worker.
    """

    def _batch_statistics(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, world = _world()
        if world == 1:
            return super()._batch_statistics(x)
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        xc = x.to(dtype)
        dims = (0, 2, 3)
        sums = torch.cat([xc.sum(dims), xc.new_tensor([float(x.numel() // x.shape[1])])])
        dist.all_reduce(sums)
        n = sums[-1]
        mean = sums[:-1] / n
        squares = (xc - mean.view(1, -1, 1, 1)).square().sum(dims)
        dist.all_reduce(squares)
        return mean, squares / n


def average_fn_terms(model: nn.Module) -> None:
    """Average the decoupled FN gradient terms (``running_grad_mean``, ``running_grad_xhat_mean``) over the workers.

    Call after each backward, before the next forward, so that every worker's next backward uses the
    same terms (the union's). Nothing happens without a process group or without such layers.
    """
    _, world = _world()
    if world == 1:
        return
    buffers = [b for m in model.modules() if isinstance(m, FullNorm2d)
               for b in (getattr(m, "running_grad_mean", None), getattr(m, "running_grad_xhat_mean", None))
               if b is not None]
    if not buffers:
        return
    flat = torch.cat([b.flatten() for b in buffers])
    dist.all_reduce(flat)
    flat /= world
    for b, part in zip(buffers, flat.split([b.numel() for b in buffers])):
        b.copy_(part.view_as(b))


@torch.no_grad()
def pool_running_stats(model: nn.Module) -> None:
    r"""Replace each BN layer's running statistics by those pooled over the workers (every worker calls it).

    The pooled mean is the workers' average of ``running_mean``; the pooled variance averages the
    raw second moment, :math:`\bar v = \operatorname{mean}_k(v_k + m_k^2) - \bar m^2`, so it keeps the
    spread of the workers' means (which under label skew is much of the variance), where averaging
    ``running_var`` alone would drop it. Our choice of pooling (the law of total variance).
    """
    _, world = _world()
    layers = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d) and m.track_running_stats]
    if world == 1 or not layers:
        return
    flat = torch.cat([torch.cat([m.running_mean, m.running_var + m.running_mean.square()]) for m in layers]).double()
    dist.all_reduce(flat)
    flat /= world
    for m, part in zip(layers, flat.split([2 * m.num_features for m in layers])):
        mean, second = part[: m.num_features], part[m.num_features:]
        m.running_mean.copy_(mean.to(m.running_mean.dtype))
        m.running_var.copy_((second - mean.square()).clamp_min(0).to(m.running_var.dtype))


def convert(model: nn.Module, method: str) -> nn.Module:
    """Turn the BN layers of ``model`` into :class:`CrossWorkerBatchNorm2d` (``"sync_bn"``) or its FN
    layers into :class:`CrossWorkerFullNorm2d` (``"fn_decoupled"``), in place, state kept; other methods unchanged."""
    target = {"sync_bn": (nn.BatchNorm2d, CrossWorkerBatchNorm2d),
              "fn_decoupled": (FullNorm2d, CrossWorkerFullNorm2d)}.get(method)
    if target is None:
        return model
    source, cls = target
    for module in model.modules():
        if type(module) is source:
            module.__class__ = cls
    return model


# --- runs ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DistributedConfig:
    """Every parameter of one data-parallel run on label-skewed shards; validated on construction.

    Attributes:
        experiment: folder name under the results store.
        dataset: ``"mnist"`` or ``"cifar10"``.
        model: ``"simple"``, ``"simple_wide"`` or ``"vgg11"`` (:func:`revisit_bn.models.build_model`).
        method: a name of :data:`DIST_METHODS`.
        workers: ``K``, the worker processes (``torchrun --nproc-per-node``).
        labels_per_worker: ``c``, the labels of each worker's shard (10: i.i.d.; :func:`worker_labels`).
        train_size: training samples of all shards together (a multiple of ``K * c``).
        batch_size: samples per step *on each worker* (what a BN layer normalizes over); a step of
            all workers takes ``K * batch_size``.
        epochs: passes over each shard (each worker shuffles its own shard every epoch).
        lr, momentum, weight_decay: SGD's.
        norm_momentum: the running-average rate of BN and FN.
        width: VGG's channel multiplier.
        validation_size: samples held out of the training set before the shards are drawn
            (:func:`revisit_bn.data.hold_out`); their loss and accuracy are recorded each epoch.
        test_subset: evaluate on this many test samples (``None``: all).
        seed: the weights (every worker starts from the same), the shards and the batch orders.
        backend: ``"gloo"`` (CPU tensors) or ``"nccl"`` (one GPU per worker).
        threads: torch's intra-op threads *per worker* (part of the key).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``: where the workers compute; ``"auto"`` is CUDA only
            with ``backend="nccl"``. Recorded in the provenance, not the key.

    Raises:
        ValueError: any invalid field, named, with the allowed values (a ``validation_size`` that leaves too few
            training samples for ``train_size`` is named as such). NumPy scalars are taken as the Python numbers
            they are, and whole numbers in float fields as floats (``lr=1`` is ``lr=1.0``: one key), as in
            :class:`revisit_bn.train.TrainConfig`.
    """

    experiment: str
    dataset: str = "mnist"
    model: str = "simple"
    method: str = "bn"
    workers: int = 2
    labels_per_worker: int = 10
    train_size: int = 12_000
    batch_size: int = 32
    epochs: int = 3
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.0
    norm_momentum: float = 0.1
    width: float = 1.0
    validation_size: int | None = None
    test_subset: int | None = None
    seed: int = 0
    backend: str = "gloo"
    threads: int = 1
    device: str = field(default="auto", compare=False)
    replay_steps: int = dataclasses.field(default=results_mod.REPLAY_STEPS, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        from .train import _check_common, _number, _plain_fields, _positive_int

        _plain_fields(self)  # NumPy scalars as the Python numbers they are, lr=1 as lr=1.0: as TrainConfig
        _check_common(self.experiment, self.seed, self.threads, self.device)
        for name, allowed in (("dataset", DIST_DATASETS), ("model", DIST_MODELS), ("method", DIST_METHODS),
                              ("backend", BACKENDS)):
            if not isinstance(getattr(self, name), str) or getattr(self, name) not in allowed:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; choose one of {allowed}")
        if self.model == "vgg11" and self.dataset != "cifar10":
            raise ValueError(f"model 'vgg11' takes 32x32 images: use it with 'cifar10', not {self.dataset!r}")
        for name in ("batch_size", "epochs"):
            _positive_int(name, getattr(self, name))
        _positive_int("validation_size", self.validation_size, allow_none=True)
        _positive_int("test_subset", self.test_subset, allow_none=True)
        worker_labels(self.workers, self.labels_per_worker)
        size = DATASET_SIZES[self.dataset][0]
        total = size - (self.validation_size or 0)
        k, c = self.workers, self.labels_per_worker
        if self.validation_size is not None and total < k * c:
            raise ValueError(f"validation_size={self.validation_size:,} leaves {max(total, 0):,} of {self.dataset}'s "
                             f"{size:,} training samples, fewer than the {k * c} (workers x labels_per_worker) of the "
                             f"smallest shards; lower validation_size to at most {size - k * c:,}")
        if isinstance(self.train_size, bool) or not isinstance(self.train_size, int) or self.train_size < 1 \
                or self.train_size % (k * c):
            raise ValueError(f"train_size must be a positive multiple of workers x labels_per_worker = {k * c}, at "
                             f"most the {total:,} training samples left, got {self.train_size!r}")
        if self.train_size > total:
            left = (f"that validation_size={self.validation_size:,} leaves of {self.dataset}'s {size:,}"
                    if self.validation_size is not None else f"of {self.dataset}")
            raise ValueError(f"train_size must be at most the {total:,} training samples {left}, got "
                             f"{self.train_size:,}; lower train_size"
                             + (" or validation_size" if self.validation_size is not None else ""))
        if self.batch_size > self.train_size // k:
            raise ValueError(f"batch_size={self.batch_size} (per worker) is larger than a worker's shard of "
                             f"{self.train_size // k:,} samples; lower it or raise train_size")
        if self.test_subset is not None and self.test_subset > DATASET_SIZES[self.dataset][1]:
            raise ValueError(f"test_subset={self.test_subset:,} is larger than {self.dataset}'s test set")
        if not _number("lr", self.lr) > 0:
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if not 0.0 <= _number("momentum", self.momentum) < 1.0:
            raise ValueError(f"momentum (SGD) must lie in [0, 1), got {self.momentum!r}")
        if not _number("weight_decay", self.weight_decay) >= 0.0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not 0.0 < _number("norm_momentum", self.norm_momentum) <= 1.0:
            raise ValueError(f"norm_momentum must lie in (0, 1], got {self.norm_momentum!r}")
        if not _number("width", self.width) > 0 or (self.width != 1.0 and self.model != "vgg11"):
            raise ValueError(f"width (VGG's channel multiplier) must be positive, and 1.0 for model {self.model!r}; "
                             f"got {self.width!r}")
        if self.backend == "nccl" and self.device == "cpu":
            raise ValueError("backend 'nccl' runs on GPUs; use backend='gloo' with device='cpu'")

    def key_params(self) -> dict[str, Any]:
        """Everything that determines the numbers: the fields (not ``device``), the data checksum and both code fingerprints."""
        params = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init and f.name != "device"}
        params["data"] = dataset_checksum(self.dataset)
        params["code"] = results_mod.code_fingerprint()
        params["distributed_code"] = distributed_fingerprint()
        return params

    def replace(self, **changes: Any) -> "DistributedConfig":
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    def label(self) -> str:
        return (f"{self.experiment}: {self.method}/K{self.workers}/c{self.labels_per_worker}/bs{self.batch_size}/"
                f"lr{self.lr}/seed{self.seed}")

    @property
    def uses_cuda(self) -> bool:
        return self.backend == "nccl"

    @property
    def run_device(self) -> str:
        """Where the workers compute, for the provenance: ``"cuda"`` with NCCL, else ``"cpu"``."""
        return "cuda" if self.uses_cuda else "cpu"

    def compute(self, progress: bool = False, max_steps: int | None = None) -> dict[str, Any]:
        """Train with ``torchrun``: ``K`` worker processes on this machine; return ``{"metrics", "steps", "tables"}``.

        Raises:
            RuntimeError: a worker failed (the message ends with torchrun's last output), or
                ``backend="nccl"`` without ``K`` GPUs (before any worker starts).
        """
        if self.uses_cuda and torch.cuda.device_count() < self.workers:
            raise RuntimeError(f"backend 'nccl' needs one GPU per worker: {self.workers} workers, "
                               f"{torch.cuda.device_count()} GPUs here; use backend='gloo'")
        with tempfile.TemporaryDirectory(prefix="revisit-bn-ddp-") as tmp:
            config_path, out_path = Path(tmp) / "config.json", Path(tmp) / "result.json"
            write_config(self, config_path, max_steps=max_steps)
            command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                       f"--nproc-per-node={self.workers}", "-m", "revisit_bn.distributed",
                       str(config_path), str(out_path)]
            env = dict(os.environ, OMP_NUM_THREADS=str(self.threads))
            done = subprocess.run(command, env=env, capture_output=not progress, text=True)
            if done.returncode != 0 or not out_path.exists():
                tail = "" if progress else (done.stderr or "")[-3000:]
                raise RuntimeError(f"torchrun exited with {done.returncode} for {self.label()}:\n{tail}")
            return json.loads(out_path.read_text())


def write_config(config: DistributedConfig, path: Path | str, max_steps: int | None = None) -> None:
    """Write ``config`` as the JSON file the workers read (``python -m revisit_bn.distributed CONFIG OUT``)."""
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.init}
    Path(path).write_text(json.dumps({"config": fields, "max_steps": max_steps}))


def _epoch_order(size: int, seed: int, rank: int, epoch: int) -> torch.Tensor:
    state = np.random.SeedSequence([seed, rank, epoch]).generate_state(1)[0]
    return torch.randperm(size, generator=torch.Generator().manual_seed(int(state)))


def _resolve(config: DistributedConfig, local_rank: int) -> torch.device:
    if config.backend == "nccl":
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    if config.device == "cuda":
        raise ValueError("backend 'gloo' runs on CPU tensors here; use device='cpu' or 'auto', or backend='nccl'")
    return torch.device("cpu")


def train_worker(config: DistributedConfig, max_steps: int | None = None) -> dict[str, Any] | None:
    """One worker's training, inside a process group of ``config.workers`` processes (torchrun's environment).

    Every worker builds the same model (same seed; DDP also broadcasts rank 0's parameters), trains on
    its shard with DDP, and takes part in the collectives of the evaluation; rank 0 evaluates and
    returns ``{"metrics", "steps", "tables"}``, the others ``None``.

    Per epoch (rank 0): ``train_loss`` (mean over the epoch's steps of the loss over all workers'
    batches, in training mode), ``test_loss``/``test_acc`` (and ``val_loss``/``val_acc``) in evaluation
    mode with rank 0's buffers; for ``"bn"`` also ``test_loss_pooled``/``test_acc_pooled`` (and the
    validation ones) with the buffers pooled over the workers (:func:`pool_running_stats`). Per step:
    ``train_loss``, the loss over all workers' batches before the step. Losses in nats.

    Raises:
        RuntimeError: the process group's size is not ``config.workers``.
    """
    import copy

    from torch.nn.parallel import DistributedDataParallel

    from .train import evaluate, float32_list, seed_everything

    rank, world = dist.get_rank(), dist.get_world_size()
    if world != config.workers:
        raise RuntimeError(f"the process group has {world} workers but the run's workers={config.workers}; start "
                           f"torchrun with {config.workers} processes in all")
    device = _resolve(config, int(os.environ.get("LOCAL_RANK", 0)))
    torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    train_split, test_split = load_dataset(config.dataset)
    val_split = None
    if config.validation_size is not None:
        train_split, val_split = hold_out(train_split, config.validation_size)
    if config.test_subset is not None:
        from .data import subset

        test_split = subset(test_split, config.test_subset, config.seed)
    shards = label_skew_shards(train_split.labels, config.workers, config.labels_per_worker, config.train_size,
                               config.seed)
    shard = TensorSplit(train_split.images[shards[rank]], train_split.labels[shards[rank]]).to(device)
    spec = SimpleNamespace(model=config.model, norm=_BASE_NORM[config.method], norm_momentum=config.norm_momentum,
                           fn_momentum_power=0.0, norm_group_size=None, brn_warmup_steps=0, brn_ramp_steps=0,
                           noise_mean_max=NOISE_DEFAULTS[0], noise_scale_max=NOISE_DEFAULTS[1],
                           noise_std=NOISE_DEFAULTS[2], width=config.width)
    model = build_model(spec, shard.images.shape[1], shard.images.shape[2], NUM_LABELS)
    model = convert(model, config.method).to(device)
    ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                  broadcast_buffers=False)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    per_epoch = len(shard) // config.batch_size
    names = ["epoch", "train_loss", "test_loss", "test_acc"] + (["val_loss", "val_acc"] if val_split else [])
    if config.method == "bn":
        names += ["test_loss_pooled", "test_acc_pooled"] + (["val_loss_pooled", "val_acc_pooled"] if val_split else [])
    metrics: dict[str, list[float]] = {n: [] for n in names}
    losses: list[torch.Tensor] = []
    step = 0
    test_split = test_split.to(device)
    val_split = val_split.to(device) if val_split is not None else None
    for epoch in range(1, config.epochs + 1):
        ddp.train()
        order = _epoch_order(len(shard), config.seed, rank, epoch).to(device)
        running = torch.zeros((), dtype=torch.float64, device=device)
        for b in range(per_epoch):
            if max_steps is not None and step >= max_steps:
                break
            idx = order[b * config.batch_size:(b + 1) * config.batch_size]
            loss = nn.functional.cross_entropy(ddp(shard.images[idx]), shard.labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            average_fn_terms(model)
            optimizer.step()
            whole = loss.detach().double().clone()
            dist.all_reduce(whole)
            whole /= world
            losses.append(whole.float())
            running += whole
            step += 1
        if max_steps is not None and step >= max_steps:
            break
        train_loss = (running / per_epoch).item()
        values = [epoch, train_loss]
        if rank == 0:
            values += list(evaluate(model, test_split, 2000))
            if val_split is not None:
                values += list(evaluate(model, val_split, 2000))
        if config.method == "bn":
            pooled = copy.deepcopy(model)
            pool_running_stats(pooled)
            if rank == 0:
                values += list(evaluate(pooled, test_split, 2000))
                if val_split is not None:
                    values += list(evaluate(pooled, val_split, 2000))
        dist.barrier()
        if rank == 0:
            for name, value in zip(names, values):
                metrics[name].append(value)
        if not math.isfinite(train_loss):
            break
    if rank != 0:
        return None
    return {"metrics": metrics, "steps": {"train_loss": float32_list(torch.stack(losses)) if losses else []},
            "tables": {}}


def main(argv: list[str] | None = None) -> int:
    """``python -m revisit_bn.distributed CONFIG OUT`` under torchrun: train one worker; rank 0 writes OUT (JSON)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: torchrun --nproc-per-node K -m revisit_bn.distributed CONFIG.json OUT.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[0]).read_text())
    config = DistributedConfig(**spec["config"])
    dist.init_process_group(config.backend)
    try:
        start = time.perf_counter()
        out = train_worker(config, spec.get("max_steps"))
        if out is not None:
            out["seconds"] = time.perf_counter() - start
            tmp = Path(argv[1]).with_suffix(".partial")
            tmp.write_text(json.dumps(out))
            os.replace(tmp, argv[1])
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
