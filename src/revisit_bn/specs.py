"""Chapter specs as data: :class:`Chapter` (a chapter's profiles, the grid of runs they give, its scale line),
:class:`Tuning` and :class:`StepSizes` (each method's step size chosen on a validation split), the resolution and
type check of a profile's parameters, and the profiles (:data:`NEXT`: a book scale computed across sessions).

The book's chapters are in :mod:`revisit_bn.chapters`; a notebook's setup, and what it reads, in
:mod:`revisit_bn.experiments`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from . import results as results_mod
from .store import Config, RunResult, run_state

PROFILES = results_mod.PROFILES


@dataclass(frozen=True)
class Chapter:
    """One chapter of the book as data.

    Attributes:
        name: the notebook's stem, e.g. ``"31-mnist-batch-construction"``.
        title: the paper items it reproduces.
        claims: ids of the claims its verdicts record (the ledger's rows).
        profiles: ``{"ci": {...}, "book": {...}, "paper": {...}}``, every parameter of the
            notebook's parameters cell (but ``profile`` and ``recompute``) with its value; and,
            while a larger book scale is being computed, ``"next"`` (see :data:`NEXT`).
        grid: ``params -> [configs]``, the runs the chapter reads (``None``: no stored runs); a chapter
            that tunes its step sizes takes ``(params, chosen)``, ``chosen`` the step size of each method
            (:class:`StepSizes`).
        scale: ``params -> str``, the scale line of its tables and verdicts.
        tune: ``params -> Tuning | None``: where a profile chooses each method's step size on the
            validation split (:class:`Tuning`), its first stage; ``None`` (or a ``None`` result): the
            profile's step sizes are its parameters.
    """

    name: str
    title: str
    claims: tuple[str, ...]
    profiles: dict[str, dict[str, Any]]
    grid: Callable[..., list[Config]] | None = None
    scale: Callable[[dict[str, Any]], str] | None = None
    tune: Callable[[dict[str, Any]], "Tuning | None"] | None = None

    @property
    def parameters(self) -> tuple[str, ...]:
        """The chapter's parameter names (those of its ``book`` profile), in order."""
        return tuple(self.profiles["book"])

    def configs(self, profile: str = "book", root: Path | None = None, stale_ok: bool = False,
                **overrides: Any) -> list[Config]:
        """The validated runs of ``profile`` (with ``overrides``), duplicates removed, in grid order.

        For a profile that tunes its step sizes (:class:`Tuning`): its tuning runs and, once they are all
        stored under ``root`` (default the profile's store), the runs at each method's chosen step size;
        ``stale_ok``: chosen from tuning runs stored under other code too (which runs the store keeps, for
        ``make migrate`` and ``make status``: after a code edit the chosen runs stay needed, not orphaned).
        """
        if not self.grid:
            return []
        params = resolve(self, profile, overrides)
        tuning = self.tune(params) if self.tune else None
        if tuning is None:
            return _unique(self.grid(params))
        self.grid(params)  # every run built (so validated) at a stand-in step size before any tuning run trains
        runs, choice = tuning.stages(root or results_mod.results_root(store_profile(profile)), stale_ok=stale_ok)
        return _unique(runs + (self.grid(params, choice) if choice is not None else []))


def _unique(configs: Iterable[Config]) -> list[Config]:
    seen, out = set(), []
    for c in configs:
        if c not in seen:
            seen.add(c)
            out.append(c)
    return out


@dataclass(frozen=True)
class StepSizes:
    """Each method's step size, chosen on the validation split (:meth:`Tuning.choose`).

    Attributes:
        chosen: ``{method: step size}``.
        table: one row per method and step size of the grid: ``method``, ``lr``, ``val_loss`` (the mean over
            the tuning seeds of the last epoch's validation loss, nats), ``seeds``, ``diverged`` (runs that
            stopped being finite) and ``chosen``.
    """

    chosen: dict
    table: Any
    runs: tuple = ()  # the tuning runs it was chosen from

    def __getitem__(self, method) -> float:
        return self.chosen[method]


@dataclass(frozen=True)
class Tuning:
    """The first stage of a chapter that chooses each method's step size on a validation split.

    Every method trains at every step size of a stated grid, on the tuning seeds, each run holding the
    validation split out of its training set (:attr:`revisit_bn.train.TrainConfig.validation_size`, one
    draw for every run); the step size with the lowest mean validation loss at the last epoch is the
    method's (:meth:`choose`); the chapter's runs then train each method at its own step size, on the
    same training set (so that a tuning run at the chosen step size is one of them). The test set is
    never read to choose.

    With ``widen`` (a factor above 1), a method whose choice is at an edge of the step sizes it has tried
    is tried one step further out (the edge times or divided by ``widen``, on the same tuning seeds), and
    chosen again, at most ``max_widen`` times: a pick at the grid's edge says the best step size may lie
    beyond it. The widened runs are part of the tuning (:meth:`stages`), registered with the grid.

    Attributes:
        runs: the tuning runs of the stated grid.
        method: ``config -> key``: which method a run is (e.g. its norm, batch order and schedule).
        views: optional ``config -> [(key, metric), ...]``: the methods a run stands for, each with the validation
            loss it is judged by (default ``[(method(config), "val_loss")]``). A run evaluated two ways (BN with and
            without recomputed population statistics, ``val_loss_precise``) is then two methods, each tuned on its
            own evaluation. Not with ``widen`` (a run standing for two methods cannot be widened for one).
        widen: ``None`` (the grid is final) or the factor by which an edge pick is widened (> 1).
        max_widen: how many times a method's grid may be widened (a positive integer).

    Raises:
        ValueError: ``widen`` is not a number above 1, ``max_widen`` not a positive integer, or ``widen`` is
            given with ``views``.

    Source: our rule, registered before the runs (the chapter states its grid); the papers give no step sizes.
    """

    runs: list
    method: Callable[[Any], Any]
    views: Callable[[Any], list] | None = None
    widen: float | None = None
    max_widen: int = 2

    def __post_init__(self) -> None:
        if self.widen is not None:
            if isinstance(self.widen, bool) or not isinstance(self.widen, (int, float)) or not self.widen > 1 \
                    or not math.isfinite(self.widen):
                raise ValueError(f"widen must be None or a factor above 1 (e.g. 2.0), got {self.widen!r}")
            if self.views is not None:
                raise ValueError("widen cannot be used with views: a run that stands for several methods cannot be "
                                 "widened for one of them; give one of the two")
        if isinstance(self.max_widen, bool) or not isinstance(self.max_widen, int) or self.max_widen < 1:
            raise ValueError(f"max_widen must be a positive integer (how often a grid may be widened), got "
                             f"{self.max_widen!r}")

    def choose(self, root: Path, stale_ok: bool = False) -> StepSizes | None:
        """Each method's step size from the tuning runs stored under ``root``; ``None`` while any is not current
        (``stale_ok``: not stored; a run stored under other code counts with its stored numbers).

        The rule: per method, the mean over tuning seeds of the last epoch's ``val_loss``; a step size at
        which a run diverged never wins; the lowest mean wins, the smaller step size on a tie. A method whose
        every step size diverged takes the grid's smallest (its table rows say so). With ``widen``, the
        choice after every widening the stored runs call for (:meth:`stages`).
        """
        return self.stages(root, stale_ok)[1]

    def stages(self, root: Path, stale_ok: bool = False) -> tuple[list, StepSizes | None]:
        """The tuning runs needed so far and, once all of them are stored, the step sizes chosen on them.

        Without ``widen`` the runs are :attr:`runs`. With it, each stored choice at an edge adds that method's
        runs one factor further out, until no choice is at an edge or ``max_widen`` widenings were made; the
        choice is ``None`` while any run so far is not current (``stale_ok`` as in :meth:`choose`).
        """
        runs = list(self.runs)
        for round_ in range(self.max_widen + 1):
            sizes = self._choose(runs, root, stale_ok)
            if sizes is None or self.widen is None or round_ == self.max_widen:
                return runs, sizes
            extra = self._widened(runs, sizes)
            if not extra:
                return runs, sizes
            runs += extra
        raise AssertionError("unreachable: the loop returns at its last round")

    def _widened(self, runs: list, sizes: StepSizes) -> list:
        """The runs one ``widen`` factor beyond each method's edge pick (none where a choice is inside its grid)."""
        extra = []
        for key, chosen in sizes.chosen.items():
            mine = [c for c in runs if self.method(c) == key]
            tried = {c.lr for c in mine}
            if len(tried) < 2:  # a grid of one step size is a setting, not a search: nothing to widen
                continue
            if chosen == max(tried):
                further = chosen * self.widen
            elif chosen == min(tried):
                further = chosen / self.widen
            else:
                continue
            further = float(f"{further:.6g}")  # 0.1 * 3 as 0.3, so that a key reads as the step size it is
            extra += [c.replace(lr=further) for c in mine if c.lr == chosen]
        return _unique(c for c in extra if c not in set(runs))

    def _choose(self, runs: list, root: Path, stale_ok: bool) -> StepSizes | None:
        import pandas as pd

        rows = []
        for config in runs:
            state, payload = run_state(config, root, report=lambda message: None)
            if state == "missing" or (state == "stale" and not stale_ok):
                return None
            stored = RunResult.from_payload(payload, cached=True)
            for method, metric in (self.views(config) if self.views else [(self.method(config), "val_loss")]):
                last = stored.metrics[metric][-1] if stored.metrics.get(metric) else None
                ok = stored.status == "ok" and last is not None and math.isfinite(last)
                rows.append({"method": method, "lr": config.lr, "seed": config.seed,
                             "val_loss": last if ok else float("nan"), "diverged": not ok})
        frame = pd.DataFrame(rows)
        table = (frame.groupby(["method", "lr"], sort=False)
                 .agg(val_loss=("val_loss", "mean"), seeds=("seed", "count"), diverged=("diverged", "sum"))
                 .reset_index())
        table.loc[table.diverged > 0, "val_loss"] = float("nan")
        chosen = {}
        for method, part in table.groupby("method", sort=False):
            finite = part[part.val_loss.notna()].sort_values(["val_loss", "lr"])
            chosen[method] = float(finite.lr.iloc[0] if len(finite) else part.lr.min())
        table["chosen"] = [chosen[m] == lr for m, lr in zip(table.method, table.lr)]
        return StepSizes(chosen, table, tuple(runs))


def _allowed_types(chapter: Chapter, name: str) -> tuple[set[type], set[type]]:
    """Types a parameter takes across the profiles, and (for lists) its elements' types."""
    kinds, elements = set(), set()
    for values in chapter.profiles.values():
        value = values[name]
        kinds.add(type(value))
        if isinstance(value, list):
            elements.update(type(v) for v in value)
    if float in kinds:
        kinds.add(int)
    if float in elements:
        elements.add(int)
    return kinds, elements


def _plain(value: Any) -> Any:
    """NumPy scalars (``np.float64(0.02)``, ``np.int64(3)``, ``np.bool_``) as the Python numbers they are, in lists too."""
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# Parameters that are step sizes (one, or a list of them): each must be a positive finite number
STEP_SIZE_PARAMETERS = ("lr", "lrs", "lr_grid", "dln_lrs", "variance_lrs", "constant_step_lr")


def _check_value(chapter: Chapter, name: str, value: Any) -> None:
    _check_type(chapter, name, value)
    if name in STEP_SIZE_PARAMETERS:
        bad = [v for v in (value if isinstance(value, list) else [value])
               if isinstance(v, (int, float)) and not (math.isfinite(v) and v > 0)]
        if bad:
            raise ValueError(f"parameter {name} must hold positive finite step sizes (the book profile has "
                             f"{chapter.profiles['book'][name]!r}), got {bad[0]!r}")


def _check_type(chapter: Chapter, name: str, value: Any) -> None:
    kinds, elements = _allowed_types(chapter, name)
    names = lambda types: " or ".join(sorted("None" if t is type(None) else t.__name__ for t in types))  # noqa: E731
    book = chapter.profiles["book"][name]
    if type(value) not in kinds or (isinstance(value, bool) and bool not in kinds):
        raise ValueError(f"parameter {name} must be {names(kinds)} (the book profile has {book!r}), got {value!r}")
    if isinstance(value, list):
        # an optional check's list (a sensitivity check's seeds or datasets) may be empty where a profile has it so
        optional = any(isinstance(v[name], list) and not v[name] for v in chapter.profiles.values())
        if not value and not optional:
            raise ValueError(f"parameter {name} must be a non-empty list (the book profile has {book!r}), got []")
        bad = [v for v in value if type(v) not in elements or (isinstance(v, bool) and bool not in elements)]
        if bad:
            raise ValueError(f"parameter {name} must hold {names(elements)} values (the book profile has {book!r}), "
                             f"got {bad[0]!r} in {value!r}")
        # 1 and 1.0 are one value (one run): compare numbers as floats, name them as given
        same = [repr(float(v)) if isinstance(v, (int, float)) and not isinstance(v, bool) else repr(v) for v in value]
        twice = sorted({repr(v) for v, k in zip(value, same) if same.count(k) > 1})
        if twice:  # seeds=[0, 0] would make a table say "2 seeds" over one run
            raise ValueError(f"parameter {name} lists {', '.join(twice)} more than once ({value!r}); list each value once")


def resolve(chapter: Chapter, profile: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The parameters of ``profile`` with ``overrides`` (``None`` values ignored), type-checked.

    Raises:
        ValueError: unknown profile, unknown parameter, or a value of the wrong type (an int where
            a list of seeds is expected, an empty list, a string momentum...); the message names it.
    """
    if profile not in chapter.profiles:
        raise ValueError(f"profile must be one of {tuple(chapter.profiles)}, got {profile!r}")
    params = dict(chapter.profiles[profile])
    for name, value in (overrides or {}).items():
        if name not in params:
            raise ValueError(f"unknown parameter {name!r} for chapter {chapter.name}; its parameters are "
                             f"{', '.join(chapter.parameters)}")
        if value is None:
            continue
        value = _plain(value)
        _check_value(chapter, name, value)
        params[name] = value
    return params


CI, BOOK, PAPER = "ci", "book", "paper"
# A chapter's next `book` scale, while it is being computed: runs too long for one session are
# computed across sessions (`make results PROFILE=next`) into the book store and committed as they
# land; they are not stale there, and no notebook reads them. Once all are stored, the chapter's
# `book` profile takes the `next` values (its runs are then in place: a key does not name its
# profile), `next` is removed, and the old book runs turn stale, to be deleted.
NEXT = "next"
STAGED_PROFILES = (*PROFILES, NEXT)


def store_profile(profile: str) -> str:
    """The profile whose store holds ``profile``'s runs: :data:`NEXT` runs wait in the ``book`` store."""
    return BOOK if profile == NEXT else profile


def _profiles(book: dict[str, Any], ci: dict[str, Any] | None = None, paper: dict[str, Any] | None = None,
              next: dict[str, Any] | None = None) -> dict:
    profiles = {CI: {**book, **(ci or {})}, BOOK: dict(book), PAPER: {**book, **(paper or {})}}
    if next:
        profiles[NEXT] = {**book, **next}
    return profiles


def _count(n: int, noun: str) -> str:
    """``"1 epoch"``, ``"3 epochs"``."""
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _images(n: int | None, total: int) -> str:
    return f"{n or total:,}"


def _split(label: str, p: dict[str, Any], train_total: int, test_total: int) -> str:
    """``"<label> 3,000 train / 2,000 test images"`` from a profile's subsets (``None``: the whole split)."""
    return f"{label} {_images(p['train_subset'], train_total)} train / {_images(p['test_subset'], test_total)} test images"
