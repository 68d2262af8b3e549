"""Chapter 13's random-instance checks of Santurkar et al.'s Theorems 4.1 and 4.2 as a stored run.

:class:`BoundsConfig` is a run kind of the results store beside :class:`revisit_bn.train.TrainConfig`
and :class:`revisit_bn.train.McsgdConfig`: it draws the instances of
:func:`revisit_bn.theory.check_bounds` batch size by batch size and stores their counts (instances
and violations per statement, printed form, batch size, convexity, setting of epsilon and Theorem
4.2's named conditions), so that a chapter can show a scale it would take minutes to recompute
(the `paper` profile's 1.2 million instances per statement, batch sizes up to 1,024). Its key holds
the code fingerprint of the numeric modules (:func:`revisit_bn.results.code_fingerprint`, which
covers :mod:`revisit_bn.theory`) and this module's own (:func:`revisit_bn.results.source_fingerprint`),
so that editing either makes its runs stale while the training runs stay valid.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from . import results as results_mod
from .train import DEFAULT_THREADS, _check_common, _positive_int, torch_threads

COUNT_KEYS = ("statement", "form", "m", "convex", "eps_zero", "conditions")


@functools.lru_cache(maxsize=1)
def bounds_fingerprint() -> str:
    """A 12-hex-digit hash of this module's syntax tree (its docstrings and comments do not count)."""
    return results_mod.source_fingerprint(Path(__file__).read_text())[:12]


def counts(frame):
    """Instances and violations per :data:`COUNT_KEYS` of a per-instance frame of
    :func:`revisit_bn.theory.check_bounds` (columns ``statement, form, m, convex, eps_zero,
    conditions, violated``): a :class:`pandas.DataFrame` with ``instances`` and ``violations``."""
    grouped = frame.groupby(list(COUNT_KEYS), sort=True).violated
    return grouped.agg(instances="size", violations="sum").reset_index()


def violation_table(counted):
    """Chapter 13's table from :func:`counts`: per statement and printed form, the instances tried,
    the violations, those at eps = 0 and at eps > 0, and for Theorem 4.2 the instances under its
    named conditions (``H`` PSD and <g, y_hat> >= 0) and the violations there (``Int64``; missing
    where a statement has no such instances). The table :func:`revisit_bn.claims.check_theorem_bounds` reads."""
    by = ["statement", "form"]
    total = counted.groupby(by)[["instances", "violations"]].sum()
    zero = counted[counted.eps_zero].groupby(by).violations.sum().rename("at eps = 0")
    positive = counted[~counted.eps_zero].groupby(by).violations.sum().rename("at eps > 0")
    named = (counted[(counted.statement == "Theorem 4.2") & counted.conditions]
             .groupby(by)[["instances", "violations"]].sum())
    named.columns = ["under named conditions", "violations there"]
    return total.join(zero).join(positive).join(named).astype("Int64")


@dataclass(frozen=True)
class BoundsConfig:
    """The random-instance checks of chapter 13 at one scale, a run of the results store.

    Attributes:
        batch_sizes: the batch sizes ``m`` (each at least 2), in the order they are drawn.
        per_size: instances per batch size and convexity (:func:`revisit_bn.theory.check_bounds`).
        seed: the draws' seed; chunk: instances drawn at once (memory, not the draws: the seeds
            are per chunk, so ``chunk`` is part of the key).
        experiment, threads, device: as in :class:`revisit_bn.train.TrainConfig` (the checks run
            in float64 on the CPU; ``device`` is recorded, not used).

    Raises:
        ValueError: any invalid field, named.

    Source: Santurkar et al. (2018), Theorems 4.1 and 4.2; the instances and printed forms of
    :mod:`revisit_bn.theory`.
    """

    batch_sizes: tuple[int, ...] = (2, 4, 16, 64, 256)
    per_size: int = 20_000
    seed: int = 0
    chunk: int = 5_000
    experiment: str = "bound_checks"
    threads: int = DEFAULT_THREADS
    device: str = field(default="cpu", compare=False)
    # a replay recomputes the first two batch sizes (the cheapest), not a whole paper-scale check
    replay_steps: ClassVar[int] = 2

    def __post_init__(self) -> None:
        _check_common(self.experiment, self.seed, self.threads, self.device)
        object.__setattr__(self, "batch_sizes", tuple(self.batch_sizes))
        if not self.batch_sizes or any(isinstance(m, bool) or not isinstance(m, int) or m < 2 for m in self.batch_sizes):
            raise ValueError(f"batch_sizes must be a non-empty list of integers of at least 2, got {list(self.batch_sizes)!r}")
        _positive_int("per_size", self.per_size)
        _positive_int("chunk", self.chunk)

    def key_params(self) -> dict[str, Any]:
        params = dataclasses.asdict(self)
        params.pop("device")
        params["batch_sizes"] = list(self.batch_sizes)
        params["code"] = results_mod.code_fingerprint()
        params["bounds_code"] = bounds_fingerprint()
        return params

    def replace(self, **changes: Any) -> "BoundsConfig":
        return dataclasses.replace(self, **changes)

    def label(self) -> str:
        return f"{self.experiment}: m in {list(self.batch_sizes)}, {self.per_size:,} per size/seed{self.seed}"

    def compute(self, progress: bool = False, max_steps: int | None = None) -> dict[str, Any]:
        """Draw and check the instances, batch size by batch size (a "step" is one batch size).

        Returns ``{"metrics": {}, "steps": {"train_loss": [...]}, "tables": {"counts": ...}}``:
        ``steps`` holds, per batch size, the violations over every statement and form (the values a
        replay of the first batch sizes recomputes, :func:`revisit_bn.store.replay`), ``counts`` the
        table of :func:`counts`. ``max_steps``: only the first batch sizes.
        """
        import pandas as pd
        from tqdm import tqdm

        from .theory import check_bounds

        sizes = self.batch_sizes if max_steps is None else self.batch_sizes[:max_steps]
        parts, per_step = [], []
        with torch_threads(self.threads):
            for m in tqdm(sizes, desc=self.label(), disable=not progress, leave=False):
                # the seeds are (seed, m, convex, chunk start): batch size by batch size draws what one call draws
                counted = counts(check_bounds(batch_sizes=[m], per_size=self.per_size, seed=self.seed,
                                              chunk=self.chunk, progress=False))
                parts.append(counted)
                per_step.append(float(counted.violations.sum()))
        table = pd.concat(parts).sort_values(list(COUNT_KEYS)).reset_index(drop=True)  # as counts() of all at once
        columns = {c: [v.item() if hasattr(v, "item") else v for v in table[c]] for c in table.columns}
        return {"metrics": {}, "steps": {"train_loss": per_step}, "tables": {"counts": columns}}
