"""Runs in the results store: read, compute and write, replay.

:func:`run` reads a configuration's run from the store (:mod:`revisit_bn.results`) or computes
and writes it; :func:`replay` retrains a stored run's first steps and compares them with the
stored losses, to show that the stored numbers come from this code; :func:`run_state` says whether
a configuration's run is stored and current, stored but stale (computed under other code and not
yet replayed under this one), or missing. This module holds no numerics (it is not part of the
code fingerprint): editing it keeps every stored run current.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import results as results_mod
from .bounds import BoundsConfig
from .distributed import DistributedConfig
from .gradient_bias import GradientBiasConfig
from .train import McsgdConfig, TrainConfig, resolve_device

Config = TrainConfig | McsgdConfig | BoundsConfig | GradientBiasConfig | DistributedConfig


@dataclass
class RunResult:
    """A finished (or stored) run: parameters, per-epoch metrics, per-step losses, tables, status, provenance."""

    params: dict[str, Any]
    metrics: dict[str, list]
    provenance: dict[str, Any]
    status: str = "ok"
    diverged_at: int | None = None
    steps: dict[str, list] = field(default_factory=dict)
    tables: dict[str, dict] = field(default_factory=dict)
    cached: bool = False
    path: str | None = None
    steps_every: int = 1  # > 1: ``steps`` holds the steps of :func:`revisit_bn.results.kept_steps`
    steps_total: int | None = None

    @classmethod
    def from_payload(cls, payload: dict[str, Any], cached: bool, path=None) -> "RunResult":
        return cls(payload["params"], payload["metrics"], payload["provenance"], payload["status"],
                   payload.get("diverged_at"), payload["steps"], payload.get("tables", {}), cached,
                   str(path) if path else None, payload.get("steps_every", 1), payload.get("steps_total"))

    @property
    def status_text(self) -> str:
        """``"ok"`` or ``"diverged at step N"``."""
        return "ok" if self.status == "ok" else f"diverged at step {self.diverged_at}"

    def _frame(self, data):
        import pandas as pd

        frame = pd.DataFrame(data)
        frame["status"] = self.status_text
        return frame

    def to_frame(self):
        """One row per epoch with every metric (non-finite numbers as ``NaN``) and ``status``."""
        return self._frame({k: [np.nan if v is None else v for v in vals] for k, vals in self.metrics.items()})

    def steps_frame(self):
        """One row per stored SGD step: ``step`` (from 0) and ``train_loss`` (the batch's loss before the
        step); every step, or for a long run the steps :func:`revisit_bn.results.kept_steps` names."""
        losses = [np.nan if v is None else v for v in self.steps.get("train_loss", [])]
        steps = (results_mod.kept_steps(self.steps_total, self.steps_every) if self.steps_every > 1
                 else range(len(losses)))
        return self._frame({"step": steps, "train_loss": losses})

    def table_frame(self, name: str):
        """The stored table ``name`` (``"probes"``, ``"trace"`` or ``"log"``) as a DataFrame.

        Raises:
            KeyError: the run has no such table; the message lists those it has.
        """
        if name not in self.tables:
            raise KeyError(f"this run stored no table {name!r}; it has {sorted(self.tables)}")
        return self._frame({k: [np.nan if v is None else v for v in vals] for k, vals in self.tables[name].items()})


def _first_nonfinite(values: list) -> int | None:
    for i, v in enumerate(values):
        if v is None or not math.isfinite(v):
            return i
    return None


def compute(config: Config, progress: bool = False) -> dict[str, Any]:
    """Compute ``config`` now and return its payload (status, provenance; not yet written or digested)."""
    start = time.perf_counter()
    out = config.compute(progress=progress)
    return _payload(config, out, time.perf_counter() - start)


def _payload(config: Config, out: dict[str, Any], seconds: float) -> dict[str, Any]:
    """The payload of ``config``'s computed ``out`` (``{"metrics", "steps", "tables"}``), ``seconds`` its wall time."""
    params = config.key_params()
    losses = out["steps"]["train_loss"]
    diverged_at = _first_nonfinite(losses)
    nonfinite_metric = any(v is None or not math.isfinite(v) for vals in out["metrics"].values() for v in vals)
    if diverged_at is None and nonfinite_metric:
        diverged_at = len(losses)  # the losses were finite, the evaluation after the last step was not
    device = config.run_device if isinstance(config, DistributedConfig) else str(resolve_device(config.device))
    prov = results_mod.provenance(device, seconds, config.threads)
    return results_mod.compact_steps(results_mod.finite_or_none({
        "format": results_mod.FORMAT, "key": results_mod.params_key(params), "experiment": config.experiment,
        "params": params, "status": "ok" if diverged_at is None else "diverged", "diverged_at": diverged_at,
        "metrics": out["metrics"], "steps": out["steps"], "tables": out["tables"],
        "replay_steps": min(getattr(config, "replay_steps", results_mod.REPLAY_STEPS), len(losses)), "provenance": prov,
    }), limit=getattr(config, "max_step_losses", results_mod.MAX_STEP_LOSSES))


def store_path(config: Config, root=None):
    """Where ``config``'s run is (or would be) stored under ``root`` (default the ``book`` profile's folder)."""
    return results_mod.result_path(config.experiment, config.key_params(), root)


def run_state(config: Config, root=None, report=None) -> tuple[str, dict[str, Any] | None]:
    """``(state, payload)`` of ``config``'s run under ``root``: ``"current"`` (stored, and computed or
    replayed under this code: :func:`revisit_bn.results.is_current`), ``"stale"`` (stored, computed under
    other code and not replayed under this one: ``make migrate``), or ``"missing"`` (no valid file; a
    damaged one is reported and counts as missing)."""
    path = store_path(config, root)
    params = config.key_params()
    payload = results_mod.load(path, params, report=report)
    if payload is None:
        return "missing", None
    return ("current" if results_mod.is_current(path, payload, params) else "stale"), payload


def lookup(config: Config, root=None, report=None) -> RunResult | None:
    """The stored run of ``config`` under ``root`` if it is current (see :func:`run_state`), else ``None``."""
    state, payload = run_state(config, root, report)
    return RunResult.from_payload(payload, cached=True, path=store_path(config, root)) if state == "current" else None


def run(config: Config, recompute: bool = False, progress: bool = False, root=None) -> RunResult:
    """Read ``config``'s run from the store under ``root`` or, if it is not there (or ``recompute``), compute and store it.

    Args:
        config: the run.
        recompute: train even if a stored result exists (and overwrite it).
        progress: tqdm progress bar on stderr.
        root: a profile's folder of the store; default :func:`revisit_bn.results.results_root` of ``"book"``.

    Returns:
        The :class:`RunResult`; ``cached`` tells whether it was read from disk.

    Raises:
        DatasetNotFoundError: the dataset is missing offline or damaged (see :mod:`revisit_bn.data`).
        revisit_bn.results.StoreError: the store cannot be written, or a folder stands where the run's file
            goes (checked before any training).
    """
    if not recompute:
        stored = lookup(config, root)
        if stored is not None:
            return stored
    path = store_path(config, root)
    _check_target(path)
    payload = compute(config, progress=progress)
    results_mod.write_json_atomic(path, payload, digest=True)
    return RunResult.from_payload(payload, cached=False, path=path)


def run_many(configs: list[Config], recompute: bool = False, root=None) -> list[RunResult]:
    """:func:`run` for each of ``configs``, in order (a run listed twice is computed once); the
    data-parallel runs to compute share ``torchrun`` launches
    (:func:`revisit_bn.distributed_batch.compute_many`: one per worker count), each stored as :func:`run`
    stores it, with its own training time in the provenance (the launch left out).

    Raises: as :func:`run`; the data-parallel runs' targets are all checked before their launch.
    """
    parallel = [c for c in dict.fromkeys(configs)
                if isinstance(c, DistributedConfig) and (recompute or lookup(c, root) is None)]
    computed: dict[Config, RunResult] = {}
    if len(parallel) > 1:
        from .distributed_batch import compute_many, group_by_launch

        for c in parallel:
            _check_target(store_path(c, root))
        for group in group_by_launch(parallel):
            for config, out in zip(group, compute_many(group)):
                path = store_path(config, root)
                payload = _payload(config, out, out.pop("seconds"))
                results_mod.write_json_atomic(path, payload, digest=True)
                computed[config] = RunResult.from_payload(payload, cached=False, path=path)
    for c in dict.fromkeys(configs):  # each run once, however often it is listed
        if c not in computed:
            computed[c] = run(c, recompute=recompute, root=root)
    return [computed[c] for c in configs]


def _check_target(path) -> None:
    results_mod.check_writable(path.parent.parent)  # before training, not after it
    if path.is_dir() or path.parent.exists() and not path.parent.is_dir():
        blocked = path if path.is_dir() else path.parent
        raise results_mod.StoreError(f"{blocked} is in the way of the run file {path.name}: a "
                                     f"{'folder' if blocked.is_dir() else 'file'} where the store writes; move it "
                                     "away (nothing was trained)")


def config_from_params(params: dict[str, Any], device: str = "cpu") -> Config:
    """Rebuild the config of a stored run from its ``params`` (the key fields ``data``, ``code``,
    ``bounds_code``, ``bias_code`` and ``distributed_code`` dropped)."""
    fields = {k: v for k, v in params.items() if k not in ("data", *results_mod.CODE_FIELDS)}
    if "workers" in fields and fields.get("backend") == "nccl" and device == "cpu":
        device = "auto"  # an NCCL run's workers take the GPUs (a replay on a machine without them says so)
    cls = (DistributedConfig if "workers" in fields else McsgdConfig if "method" in fields else BoundsConfig if "per_size" in fields
           else GradientBiasConfig if "max_exact" in fields else TrainConfig)
    return cls(**fields, device=device)


# How a run made on other arithmetic (a GPU, or another kind of CPU) must replay here (see replay()):
# the losses before any update, after the first and after the second update, within these relative
# tolerances (plus REPLAY_ATOL nats after an update); later losses are compared only for finiteness.
REPLAY_RTOLS = (1e-5, 1e-4, 1e-2)
REPLAY_ATOL = 1e-6


def replay_allowance(stored: np.ndarray) -> np.ndarray:
    """How far each replayed loss may be from ``stored`` under the tolerant rule of :func:`replay` (inf: no bound)."""
    stored = np.abs(np.asarray(stored, dtype=np.float64))
    allowance = np.full(stored.shape, np.inf)
    for step, rtol in enumerate(REPLAY_RTOLS[: stored.size]):
        allowance[step] = (REPLAY_ATOL if step else 0.0) + rtol * stored[step]
    return allowance


def tolerant_replay_match(stored: np.ndarray, replayed: np.ndarray) -> bool:
    """Whether float32 losses ``replayed`` here match ``stored`` ones made on other arithmetic (the rule of :func:`replay`)."""
    stored, replayed = np.asarray(stored, dtype=np.float64), np.asarray(replayed, dtype=np.float64)
    if stored.shape != replayed.shape:
        return False
    finite = np.isfinite(stored)
    if not np.array_equal(finite, np.isfinite(replayed)):
        return False  # a loss that diverged on one machine and not on the other
    stored, replayed = np.where(finite, stored, 0.0), np.where(finite, replayed, 0.0)
    return bool(np.all(np.abs(replayed - stored) <= replay_allowance(stored)))


def replay_rule(provenance: dict[str, Any], device: str = "cpu") -> str:
    """``"exact"`` where a run was made on the arithmetic it is replayed on (same device kind and, on the
    CPU, the same :func:`revisit_bn.results.cpu_arithmetic`), else ``"tolerant"`` (see :func:`replay`).

    A run that records no CPU (made before it was recorded) is taken as made on another one.
    """
    made_on = str(provenance.get("device", "cpu"))
    if made_on.startswith("cuda") or device.startswith("cuda"):
        same_gpu = made_on.startswith("cuda") and device.startswith("cuda") and \
            provenance.get("gpu") == results_mod.gpu_provenance(device).get("gpu")
        return "exact" if same_gpu else "tolerant"
    return "exact" if provenance.get("cpu") == results_mod.cpu_arithmetic() else "tolerant"


def replay(payload: dict[str, Any], device: str = "cpu") -> tuple[list[float], list[float], bool]:
    """Retrain the first ``replay_steps`` SGD steps of a stored run and compare their losses with the stored ones.

    A run made on this arithmetic (:func:`replay_rule`: the same kind of CPU, or GPU) must match
    exactly (as float32) at its recorded thread count. A run made on other arithmetic (a GPU, or a
    CPU of another kind, whose MKL and torch kernels sum in another order) differs in the last
    bits, and SGD amplifies that, in a ResNet or at a large step size by an order of magnitude or
    more per step. The tolerant rule compares the losses before their differences have grown: the
    loss before any update (initialization, data, batch order, model) within a relative 1e-5, the
    loss after the first update (gradient, step size, weight decay) within 1e-4 and after the
    second (momentum) within 1e-2, each after an update plus 1e-6 nats (:data:`REPLAY_RTOLS`,
    :data:`REPLAY_ATOL`); every later loss must be finite where the stored one is, and only there.
    Measured by ``benchmarks/replay_tolerance.py`` (outputs kept beside it). The 339 book runs made
    on an earlier CPU, replayed on an AVX-512 Xeon: the first three losses within 4.7e-7, 1.2e-6
    and 6.7e-4 (at most 7 % of the allowance), the later ones up to 0.17 apart by step 7; the 60
    runs of chapter 31 made on an H100: within 1.9e-7, 1.6e-5 and 3.7e-3 (at most 16 %). A 10 %
    larger step size is rejected in 318 of the 339 and 55 of the 60; the others are runs whose
    first losses do not see the step size at this precision: BN under single-label batches
    (losses 0 after the first step) and VGG runs on CIFAR-10 whose loss has barely moved after
    three steps (13 of the VGG runs of chapters 21-24, 3 of chapter 35's).

    Returns:
        ``(stored, replayed, match)``.

    Raises:
        revisit_bn.results.StoreError: ``replay_steps`` is not a positive integer.
    """
    k = payload["replay_steps"]
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise results_mod.StoreError(f"a run's replay_steps must be a positive integer, got {k!r}: nothing to "
                                     "replay would vouch for nothing (the file is damaged)")
    config = config_from_params(payload["params"], device=device)
    stored = payload["steps"]["train_loss"][:k]
    replayed = config.compute(progress=False, max_steps=k)["steps"]["train_loss"][:k]
    as32 = lambda vals: np.array([np.nan if v is None else v for v in vals], dtype=np.float32)  # noqa: E731
    a, b = as32(stored), as32(replayed)
    if a.shape != b.shape:
        return stored, replayed, False
    if replay_rule(payload["provenance"], device) == "exact":
        return stored, replayed, bool(np.array_equal(a, b, equal_nan=True))
    return stored, replayed, tolerant_replay_match(a, b)
