"""Experiments as data: one spec per chapter, the runs each profile needs, and the commands that fill and check the store.

Each :class:`Chapter` names its notebook, the claims it checks, its parameters under each profile
(``ci``: seconds, trains on the fly; ``book``: the stored runs the book renders; ``paper``: the
papers' scale, for a GPU; and, while it is being computed across sessions, ``next``: the ``book``
profile it will become, whose runs wait in the book store, see :data:`NEXT`), the grid of runs
those parameters give, and the scale line printed under its results. A notebook's setup cell
calls :func:`setup`, which checks the papermill parameters, resolves the profile, validates every
run before any training and, for the ``book`` and ``paper`` profiles, stops with a message naming
``make results`` when a run is missing (a notebook never trains for an hour silently).

The specs are data: :class:`~revisit_bn.specs.Chapter`, :class:`~revisit_bn.specs.Tuning` and the profiles in
:mod:`revisit_bn.specs`, the chapters in :mod:`revisit_bn.chapters`; this module re-exports what notebooks use.
The commands that fill and check the store (``make results``, ``verify``, ``status``, ``migrate``)
are in :mod:`revisit_bn.commands`.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from . import results as results_mod
from .chapters import (CHAPTERS, GROUPING_FREE, SETTINGS_38, SUCCESSOR_METHODS, chapter, dln_scale, profile_configs,
                       setting_38)
from .distributed import DistributedConfig
from .specs import (BOOK, CI, NEXT, PAPER, PROFILES, STAGED_PROFILES, Chapter, StepSizes, Tuning, resolve,
                    _plain, _unique, store_profile)
from .store import Config, RunResult, lookup, run_many, run_state, store_path
from .train import McsgdConfig, TrainConfig

__all__ = ["BOOK", "CHAPTERS", "CI", "GROUPING_FREE", "NEXT", "PAPER", "PROFILES", "SETTINGS_38", "STAGED_PROFILES",
           "SUCCESSOR_METHODS", "Chapter", "ChapterRun", "Config", "StepSizes", "Tuning", "beside", "chapter",
           "dln_scale", "missing_error", "profile_configs", "resolve", "setting_38", "setup", "store_profile",
           "stored_profile", "unknown_parameters"]

# Names a notebook's namespace holds besides its parameters (IPython's own), never taken as parameters.
_IPYTHON_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}
_LITERALS = (bool, int, float, str, list, dict, tuple, type(None))


# ----------------------------------------------------------------------------------------------
# Setup of a notebook, and what it reads
# ----------------------------------------------------------------------------------------------


@dataclass
class ChapterRun:
    """A chapter with its profile resolved: parameters, runs, and where they are stored (see :func:`setup`)."""

    chapter: Chapter
    profile: str
    params: dict[str, Any]
    configs: list[Config]
    root: Path
    recompute: bool = False
    # Runs already read or computed, by config: setup's existence check, frame() and record() share them.
    _loaded: dict = dataclasses.field(default_factory=dict, repr=False)
    # Each method's step size where the profile chooses it on the validation split (Tuning), else None.
    step_sizes: StepSizes | None = None

    @property
    def scale(self) -> str:
        """The chapter's scale line, ending with the profile (e.g. ``"..., 3 seeds, profile 'book'"``)."""
        line = self.chapter.scale(self.params) if self.chapter.scale else ""
        return f"{line}, profile '{self.profile}'" if line else f"profile '{self.profile}'"

    def describe(self) -> str:
        """One line per parameter group: the profile, its values, and the runs it reads."""
        import textwrap

        from .verdicts import OUTPUT_WIDTH

        values = ", ".join(f"{k}={v}" for k, v in self.params.items())
        where = "computed now if missing" if self.profile == "ci" else "read from the results store"
        runs = (f"{len(self.configs)} runs ({where})" if self.configs
                else "this page trains nothing and reads no runs of its own")
        return textwrap.fill(f"Profile '{self.profile}': {values}", OUTPUT_WIDTH, subsequent_indent="    ") + f"\n{runs}"

    def results(self, configs: list[Config] | None = None) -> list[RunResult]:
        """Every run of ``configs`` (default: the chapter's), from the store or, for ``ci`` or ``recompute``, computed."""
        out = []
        configs = configs if configs is not None else self.configs
        if self.recompute or self.profile == "ci":  # computed now (data-parallel runs share torchrun launches)
            todo = [c for c in configs if c not in self._loaded]
            self._loaded.update(zip(todo, run_many(todo, recompute=self.recompute, root=self.root)))
        for config in configs:
            if config not in self._loaded:
                stored = lookup(config, self.root)
                if stored is None:
                    raise missing_error(self.chapter, self.profile, [config])
                self._loaded[config] = stored
            out.append(self._loaded[config])
        return out

    def select(self, **where: Any) -> list[Config]:
        """The chapter's configs whose fields equal ``where`` (e.g. ``experiment="santurkar_dln"``);
        a list, tuple or set value matches any of its members (``norm=["none", "bn"]``)."""
        return _selected(self.configs, where)

    def frame(self, table: str = "epochs", **where: Any):
        """One long DataFrame of the selected runs' ``table`` with every parameter they vary as a column.

        Args:
            table: ``"epochs"`` (per-epoch metrics), ``"steps"`` (per-step losses), or a stored
                table name (``"probes"``, ``"trace"``, ``"log"``).
            where: field filters, as :meth:`select`.

        Columns always include ``status`` (``"ok"`` or ``"diverged at step N"``) and, for network
        runs, ``model, norm, batch_order, batch_size, lr, seed``.
        """
        import textwrap

        import pandas as pd

        from .verdicts import OUTPUT_WIDTH

        configs = self.select(**where)
        if not configs:
            raise ValueError(f"no run of chapter {self.chapter.name} matches {where}")
        varied = [f.name for f in dataclasses.fields(configs[0])
                  if f.name != "device" and len({getattr(c, f.name) for c in configs}) > 1]
        always = (["model", "norm", "batch_order", "batch_size", "lr", "seed"] if isinstance(configs[0], TrainConfig)
                  else ["method", "workers", "labels_per_worker", "batch_size", "lr", "seed"]
                  if isinstance(configs[0], DistributedConfig)
                  else ["method", "seed"] if isinstance(configs[0], McsgdConfig) else ["seed"])
        columns = list(dict.fromkeys(always + varied))
        frames = []
        for config, result in zip(configs, self.results(configs)):
            if table == "epochs":
                frame = result.to_frame()
            elif table == "steps":
                frame = result.steps_frame()
            else:
                frame = result.table_frame(table)
            for name in columns:
                frame[name] = getattr(config, name)
            frames.append(frame)
            if result.status != "ok" and table == "epochs":
                # Said where the reader sees the table: a diverged run's NaNs are not numbers to compare.
                print(textwrap.fill(f"Note: {config.label()} {result.status_text}; its rows say so in the status column.",
                                    OUTPUT_WIDTH, subsequent_indent="    "))
        return pd.concat(frames, ignore_index=True)

    def diverged(self, configs: list[Config] | None = None) -> list[str]:
        """Labels of the runs of ``configs`` (default: the chapter's) stored as diverged
        (``"<run>: diverged at step N"``)."""
        configs = self.configs if configs is None else configs
        return [f"{c.label()}: {r.status_text}" for c, r in zip(configs, self.results(configs)) if r.status != "ok"]

    def made_on(self) -> str:
        """Where the chapter's runs were computed, in one line: device (GPU name), torch, dates, mean seconds a run.

        E.g. ``"60 runs on cuda (NVIDIA H100 80GB HBM3), torch 2.11.0+cu130, 2026-11-23, 164 s a run"``;
        several devices or versions are listed with their counts.
        """
        from collections import Counter

        runs = self.results()
        if not runs:
            return "no stored runs"
        where = Counter(f"{r.provenance.get('device', '?')}" + (f" ({r.provenance['gpu']})" if r.provenance.get("gpu") else "")
                        for r in runs)
        torch_versions = Counter(str(r.provenance.get("torch", "?")) for r in runs)
        days = sorted({str(r.provenance.get("created", "?"))[:10] for r in runs})
        seconds = sum(float(r.provenance.get("seconds", 0.0)) for r in runs) / len(runs)
        listed = lambda counts: ", ".join(k if len(counts) == 1 else f"{k} x{n}" for k, n in counts.items())  # noqa: E731
        return (f"{len(runs)} runs on {listed(where)}, torch {listed(torch_versions)}, "
                f"{days[0] if len(days) == 1 else days[0] + ' to ' + days[-1]}, {seconds:.0f} s a run")

    def record(self, verdict, where: dict[str, Any] | None = None,
               measures_divergence: dict[str, Any] | None = None) -> Path:
        """Store ``verdict`` for the ledger with the profile, the parameters, the code and the runs it read.

        Args:
            verdict: a :class:`revisit_bn.verdicts.Verdict`.
            where: the runs the verdict read, as :meth:`select` filters (default: all the chapter's).
            measures_divergence: filters of the runs among those whose divergence is what the check
                measures (e.g. a claim that a network stops training); their divergence is part of
                the verdict's measurement instead of making it inconclusive.

        A verdict over any other diverged run is recorded as inconclusive (see
        :func:`revisit_bn.ledger.record`).

        Raises:
            ValueError: ``where`` matches none of the chapter's runs.
        """
        from . import ledger

        configs = self.select(**where) if where else self.configs
        if where and not configs:
            raise ValueError(f"where={where} matches none of chapter {self.chapter.name}'s runs; "
                             "filter on fields its runs vary (see chapter.frame() columns)")
        exempt = set(self.select(**measures_divergence)) if measures_divergence else set()
        # the runs behind it: its own, and the tuning runs its step sizes were chosen from
        tuned = list(self.step_sizes.runs) if self.step_sizes is not None else []
        runs = [results_mod.run_key(store_path(c, self.root)) for c in _unique(configs + tuned)]
        return ledger.record(verdict, self.chapter.name, profile=self.profile, params=self.params, runs=runs,
                             diverged=self.diverged([c for c in configs if c not in exempt]))


def _matches(value: Any, wanted: Any) -> bool:
    return value in wanted if isinstance(wanted, (list, tuple, set, frozenset)) else value == wanted


def _selected(configs: list[Config], where: dict[str, Any]) -> list[Config]:
    """The configs whose fields equal ``where``'s values (a list, tuple or set matches any member)."""
    return [c for c in configs if all(_matches(getattr(c, k, None), v) for k, v in where.items())]


def unknown_parameters(namespace: dict[str, Any], known: Iterable[str]) -> list[str]:
    """Literal-valued names in a notebook's namespace that are not parameters (papermill's injected unknowns)."""
    known = set(known) | _IPYTHON_NAMES
    return sorted(name for name, value in namespace.items()
                  if not name.startswith("_") and name not in known and isinstance(value, _LITERALS))


def missing_error(chapter: Chapter, profile: str, configs: list[Config],
                  stale: int = 0) -> results_mod.MissingRunsError:
    """The error a notebook stops with when ``configs`` are not current in the store; ``stale`` of them are
    stored but computed under other code (``make migrate`` replays them)."""
    command = "make results" + ("" if profile == "book" else f" PROFILE={profile}")
    shown = "\n".join(f"  {c.label()}" for c in configs[:10])
    more = f"\n  ... and {len(configs) - 10} more" if len(configs) > 10 else ""
    migrate = ("" if not stale else
               f"{stale} of them are stored but were computed under other code: `make migrate"
               f"{'' if profile == 'book' else f' PROFILE={profile}'}` replays their first steps under this code and "
               "keeps each one that matches; ")
    return results_mod.MissingRunsError(
        f"{len(configs)} run(s) of chapter {chapter.name} (profile '{profile}') are not current in the results store "
        f"{results_mod.results_root(profile)}:\n{shown}{more}\n{migrate}compute the others with `{command}` (or rerun "
        f"this notebook with -p recompute True); nothing was trained."
    )


def setup(name: str, namespace: dict[str, Any], where: dict[str, Any] | None = None) -> ChapterRun:
    """Everything a chapter's setup cell does before any training or reading.

    Checks, in order (and, once all pass, sets the resolved parameters in ``namespace``): no
    unknown (injected) parameter; ``profile`` is one of the chapter's;
    ``recompute`` is a bool; every parameter's type (``None`` means "the profile's value");
    every run's configuration (:class:`~revisit_bn.train.TrainConfig` validates); for ``ci`` or
    ``recompute``, that the results root can be written; for ``book`` and ``paper``, that every
    run is in the store. A damaged run file is reported by path and counts as missing.

    Args:
        name: the chapter (notebook stem).
        namespace: the notebook's ``globals()`` after its parameters cell (and papermill's injected one).
        where: only the runs matching these :meth:`ChapterRun.select` filters (e.g.
            ``{"experiment": "santurkar_dln"}``): a chapter's section on one part of another
            profile, whose other runs need not be stored (default: every run).

    Raises:
        ValueError: a bad parameter (named), or ``where`` matches none of the chapter's runs.
        revisit_bn.results.StoreError: an unwritable results root (names ``REVISIT_BN_RESULTS``).
        revisit_bn.results.MissingRunsError: runs missing from the store (names ``make results``).
    """
    if name not in CHAPTERS:
        raise ValueError(f"unknown chapter {name!r}; chapters are {', '.join(CHAPTERS)}")
    if not isinstance(namespace, dict):
        raise ValueError(f"namespace must be the notebook's globals() (a dict), got {type(namespace).__name__}")
    chapter = CHAPTERS[name]
    unknown = unknown_parameters(namespace, chapter.parameters + ("profile", "recompute"))
    if unknown:
        raise ValueError(f"unknown parameter(s) {', '.join(unknown)} for chapter {name}; its parameters are "
                         f"profile, recompute, {', '.join(chapter.parameters)}")
    profile = namespace.get("profile", "book")
    if not isinstance(profile, str):
        raise ValueError(f"parameter profile must be one of {PROFILES} (a str), got {profile!r}")
    if where is not None and not isinstance(where, dict):
        raise ValueError(f"where must be a dict of run filters (e.g. {{'experiment': 'santurkar_dln'}}), got {where!r}")
    if profile == NEXT:
        raise ValueError(f"profile {NEXT!r} is a book scale still being computed (`make results PROFILE={NEXT}`); a "
                         f"notebook renders it once the chapter's book profile takes its values; choose one of {PROFILES}")
    recompute = _plain(namespace.get("recompute", False))
    if not isinstance(recompute, bool):
        raise ValueError(f"parameter recompute must be True or False, got {recompute!r}")
    params = resolve(chapter, profile, {k: namespace.get(k) for k in chapter.parameters})
    root = results_mod.results_root(profile)
    tuning = chapter.tune(params) if chapter.grid and chapter.tune else None
    tuning_runs, step_sizes = [], None
    if tuning is not None:
        chapter.grid(params)  # every run built (so validated) at a stand-in step size before any tuning run trains
        if recompute or profile == "ci":  # the step sizes decide which runs the chapter reads
            results_mod.check_writable(root)
        trained = set()
        while True:  # a grid widened at an edge pick (Tuning.widen) asks for more runs once the first are stored
            tuning_runs, step_sizes = tuning.stages(root)
            todo = [c for c in _unique(tuning_runs) if c not in trained] if (recompute or profile == "ci") else []
            if not todo:
                break
            run_many(todo, recompute=recompute, root=root)  # data-parallel runs share torchrun launches
            trained.update(todo)
    if tuning is not None and step_sizes is None:  # book or paper profile: tuning runs missing
        missing = [c for c in tuning_runs if lookup(c, root) is None]
        raise missing_error(chapter, profile, missing)
    configs = _unique(chapter.grid(params, step_sizes) if tuning is not None else chapter.grid(params)) \
        if chapter.grid else []
    if where:
        configs = _selected(configs, where)
        if not configs:
            raise ValueError(f"where={where} matches none of chapter {name}'s runs at profile {profile!r}; "
                             "filter on fields its runs have (e.g. experiment)")
    if configs and (recompute or profile == "ci"):
        results_mod.check_writable(root)
    loaded = {}
    if configs and not recompute and profile != "ci":
        states = {c: run_state(c, root, report=lambda msg: print(msg, file=sys.stderr)) for c in configs}
        missing = [c for c, (state, _) in states.items() if state != "current"]
        if missing:
            raise missing_error(chapter, profile, missing, stale=sum(states[c][0] == "stale" for c in missing))
        loaded = {c: RunResult.from_payload(payload, cached=True, path=store_path(c, root))
                  for c, (_, payload) in states.items()}
    if chapter.claims:
        results_mod.check_writable(root / "claims")  # verdicts are recorded there
    namespace.update(params)  # the notebook's cells read the resolved values by name
    return ChapterRun(chapter, profile, params, configs, root, recompute, loaded, step_sizes)


def stored_profile(name: str, profile: str, out=None, where: dict[str, Any] | None = None) -> ChapterRun | None:
    """Chapter ``name`` at another profile's own parameters, if every run it needs is in that profile's store.

    How a chapter rendered at the ``book`` profile shows the papers' scale beside its own: the
    ``paper`` runs are computed on a GPU (``make results PROFILE=paper``) and committed; until all
    of them are, this prints one line saying how many are missing and returns ``None``, so the
    chapter says so instead of stopping.

    Args:
        name: the chapter (notebook stem).
        profile: ``"paper"`` (or any of :data:`PROFILES` but ``"ci"``, which trains instead of reading).
        out: where the line about missing runs goes (default stdout).
        where: only the runs matching these filters must be stored, and only they are read (see
            :func:`setup`), e.g. ``{"experiment": "santurkar_dln"}`` for a chapter whose CIFAR-10
            runs at the paper's scale need a GPU but whose deep linear network's do not.

    Returns:
        A :class:`ChapterRun` over the stored runs (its ``record`` writes to that profile's
        claims), or ``None``.

    Raises:
        ValueError: an unknown chapter or profile, or ``"ci"``.
    """
    if name not in CHAPTERS:
        raise ValueError(f"unknown chapter {name!r}; chapters are {', '.join(CHAPTERS)}")
    if profile not in PROFILES or profile == CI:
        raise ValueError(f"profile must be one of the stored profiles {[p for p in PROFILES if p != CI]}, got {profile!r}")
    try:
        return setup(name, {"profile": profile}, where=where)
    except results_mod.MissingRunsError:
        configs, root = CHAPTERS[name].configs(profile), results_mod.results_root(profile)
        if where:
            configs = _selected(configs, where)
        missing = sum(lookup(c, root) is None for c in configs)
        import textwrap

        from .verdicts import OUTPUT_WIDTH

        print(textwrap.fill(f"The '{profile}' profile of this chapter is not in the results store yet ({missing} of its "
                            f"{len(configs)} runs missing; `make results PROFILE={profile}` computes them).",
                            OUTPUT_WIDTH), file=out or sys.stdout)
        return None


def beside(chapter: ChapterRun, verdicts: list, verdicts_of: Callable[[ChapterRun], list], profile: str = "paper",
           labels: tuple[str, str] | None = None, where: dict[str, Any] | None = None,
           scale_of: Callable[[ChapterRun], str] | None = None):
    """A chapter's section on another profile: the same checks on that profile's stored runs, beside its own.

    If ``chapter`` is rendered at ``profile`` already, or that profile's runs are not all stored
    (see :func:`stored_profile`), prints one line saying so and returns ``(None, [])``. Otherwise
    prints where the runs were computed (:meth:`ChapterRun.made_on`), displays each verdict (its badge),
    records the verdicts in ``profile``'s claims (the ledger's papers'-scale column) and
    displays :func:`revisit_bn.ledger.compare_scales` of both scales.

    Args:
        chapter: the chapter as rendered (from :func:`setup`).
        verdicts: its verdicts at its own profile.
        verdicts_of: the chapter's checks, ``ChapterRun -> [Verdict]``, the same function that
            gave ``verdicts``.
        profile: the other profile (default ``"paper"``).
        labels: the two scales' column labels in the comparison (default the profiles' names).
        where: only the runs matching these filters (see :func:`stored_profile`): a section on the
            part of ``profile`` that is stored, e.g. ``{"experiment": "santurkar_dln"}``.
        scale_of: the other profile's scale line for the printed header, ``ChapterRun -> str``
            (default its :attr:`ChapterRun.scale`; a part with its own scale line passes its own).

    Returns:
        ``(the other ChapterRun, its verdicts)``, or ``(None, [])``.
    """
    from IPython.display import display

    from . import ledger
    from .verdicts import OUTPUT_WIDTH

    if chapter.profile == profile:
        print(f"This page is rendered at the '{profile}' profile already: the sections above are its scale.")
        return None, []
    other = stored_profile(chapter.chapter.name, profile, where=where)
    if other is None:
        return None, []
    import textwrap

    scale = scale_of(other) if scale_of else other.scale
    print(textwrap.fill(f"The '{profile}' profile: {scale}. Computed: {other.made_on()}.", OUTPUT_WIDTH,
                        subsequent_indent="    "))
    found = verdicts_of(other)
    for verdict in found:  # shown as every verdict of the book is: its badge, the claim, what was measured
        other.record(verdict)
        display(verdict)
    mine, theirs = labels or (chapter.profile, profile)
    import pandas as pd

    with pd.option_context("display.max_colwidth", None):  # a verdict in parts lists every part's effect
        display(ledger.compare_scales({mine: verdicts, theirs: found}).set_index("claim"))
    return other, found
