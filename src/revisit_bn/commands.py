"""The commands that fill and check the results store: ``make results``, ``verify``, ``status`` and ``migrate``.

Command line (the Makefile's targets call it)::

    python -m revisit_bn.commands results [--profile book|paper|ci|next] [--chapter NAME] [--experiment NAME]
                                          [--shard K/N]
    python -m revisit_bn.commands verify [--profile book] [--sample N] [--seed S]
    python -m revisit_bn.commands status [--profile book]
    python -m revisit_bn.commands migrate [--profile book]

A stored run is *current*, *stale* (computed under other code and not yet replayed under this one) or
*orphaned* (no chapter's spec needs it): see :mod:`revisit_bn.results`. ``results`` computes every run
of a profile that is not current; ``migrate`` replays the stale ones and records those that match in
the profile's validation index, renaming and rewriting no run file; ``verify`` replays stored runs
and reports; ``status`` counts them, prints each chapter's compute and projects what the missing runs
will take (:class:`_RunCosts`).

Several processes may fill one store at once, on one machine or many that share it (a Slurm job
array): each claims a run with a lock file (``<key>.lock``, created exclusively) before computing
it, so that no run is computed twice, and writes it atomically, so that no file is ever half
written. ``--shard K/N`` only spreads where the processes start in the list.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import socket
import sys
import time
from pathlib import Path
from typing import Iterable

from . import results as results_mod
from .data import DATASET_SIZES, DatasetNotFoundError
from .experiments import BOOK, CHAPTERS, NEXT, STAGED_PROFILES, Config, resolve, store_profile, profile_configs
from .ledger import claims_dir
from .store import replay, replay_rule, run, run_state, store_path

LOCK_SUFFIX = ".lock"


def kept_configs(profile: str) -> list[tuple[str, Config]]:
    """``(chapter, config)`` of every run ``profile``'s store keeps: its own runs, and in the
    ``book`` store also the :data:`~revisit_bn.specs.NEXT` runs being computed."""
    store = store_profile(profile)
    # stale_ok: after a code edit, a tuned chapter's runs at its chosen step sizes stay kept (and migrate replays them)
    return profile_configs(store, stale_ok=True) + (profile_configs(NEXT, stale_ok=True) if store == BOOK else [])


def run_states(profile: str = "book") -> dict[str, list[Path]]:
    """The stored run files of ``profile``'s store by state: ``"current"``, ``"stale"`` (a chapter needs
    the run, but it was computed under other code and has not been replayed under this one, or its
    file has a format-2 name: ``make migrate``), ``"orphaned"`` (no chapter's spec needs it, a
    :data:`~revisit_bn.specs.NEXT` run counting as needed) and ``"damaged"``."""
    root = results_mod.results_root(store_profile(profile))
    wanted = {store_path(c, root): c for _, c in kept_configs(profile)}
    legacy = {p.parent / f"{results_mod.legacy_key(c.key_params())}{results_mod.RUN_SUFFIX}" for p, c in wanted.items()}
    states: dict[str, list[Path]] = {"current": [], "stale": [], "orphaned": [], "damaged": []}
    for path in results_mod.stored_runs(root):
        config = wanted.get(path)
        if config is None:  # a format-2 name: computed under any code, its legacy key is not today's
            states["stale" if path in legacy or _legacy_name_of_wanted(path, wanted) else "orphaned"].append(path)
            continue
        state, _ = run_state(config, root, report=lambda msg: None)
        states["damaged" if state == "missing" else state].append(path)
    return states


def _legacy_name_of_wanted(path: Path, wanted) -> bool:
    """Whether ``path`` is a run of ``wanted`` stored under its format-2 name (a hash holding the code
    fingerprint of the code that computed it, whatever code that was): ``make migrate`` renames it."""
    try:
        params = json.loads(results_mod.read_run_text(path))["params"]
        target = path.with_name(results_mod.params_key(params) + results_mod.RUN_SUFFIX)
    except (OSError, ValueError, KeyError, TypeError, results_mod.StoreError):
        return False
    return results_mod.legacy_key(params) == results_mod.run_key(path) and target in wanted


def stale_runs(profile: str = "book") -> list[Path]:
    """Stored run files of ``profile``'s store that no chapter reads under the current code and spec:
    stale, orphaned or damaged ones (see :func:`run_states`)."""
    states = run_states(profile)
    return sorted(states["stale"] + states["orphaned"] + states["damaged"])


def _of_experiments(todo: list[tuple[str, Config]], experiments: Iterable[str] | None,
                    profile: str) -> list[tuple[str, Config]]:
    """The runs of ``todo`` whose experiment is one of ``experiments`` (all of them for ``None``).

    Raises:
        ValueError: an experiment that none of ``todo`` has (the message lists theirs).
    """
    if experiments is None:
        return todo
    known = sorted({c.experiment for _, c in todo})
    unknown = sorted(set(experiments) - set(known))
    if unknown:
        raise ValueError(f"--experiment {', '.join(unknown)}: no run of profile {profile!r} (in the chosen chapters) has it; "
                         f"their experiments are {', '.join(known)}")
    return [(name, c) for name, c in todo if c.experiment in set(experiments)]


def _lock_path(path: Path) -> Path:
    return path.with_name(results_mod.run_key(path) + LOCK_SUFFIX)


def _claim(path: Path) -> bool:
    """Create ``path``'s lock file exclusively (holding this host, process and time); ``False`` if another
    process holds it. A lock left on this host by a process that no longer runs is taken over."""
    lock = _lock_path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    mine = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()})
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(lock.read_text())
            except (OSError, ValueError):
                return False  # being written by its holder right now
            if holder.get("host") == socket.gethostname() and not _alive(holder.get("pid")):
                lock.unlink(missing_ok=True)  # its process was killed: take the run over
                continue
            return False
        with os.fdopen(fd, "w") as fh:
            fh.write(mine)
        return True
    return False


def _alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def compute_missing(profile: str = "book", chapters: Iterable[str] | None = None, out=None,
                    shard: tuple[int, int] = (0, 1), experiments: Iterable[str] | None = None) -> int:
    """Compute (and store) every run of ``profile`` that is not current in the store; resumable: each run
    is written when done.

    ``chapters`` and ``experiments`` (e.g. ``["santurkar_dln"]``: the deep linear network's runs of
    chapters 23 and 25, which a CPU computes in 20 minutes at the paper's scale, without their
    VGG runs) restrict it to those chapters' runs and those experiments' runs. A stale run (stored,
    computed under other code) is recomputed too: ``make migrate`` first keeps, without
    recomputing, each one whose first steps this code replays.

    Each run is claimed with a lock file before it is computed (see the module docstring), so any
    number of processes can fill one store; ``shard=(k, n)`` makes process ``k`` of ``n`` start with
    the missing runs ``k, k + n, k + 2n, ...`` and then help with the others, so that ``n`` processes
    started together share the work evenly. Prints the total at the start and one line per run (its
    label, seconds, status); a run another process holds is skipped and named at the end.

    Returns:
        The number of runs this process computed.

    Raises:
        ValueError: ``shard`` is not ``(k, n)`` with ``0 <= k < n``, or ``experiments`` names an
            experiment that no run of the profile has.
        revisit_bn.results.StoreError: the results root cannot be written (checked before any work).
    """
    for name, names in (("chapters", chapters), ("experiments", experiments)):
        if isinstance(names, str) or (names is not None and not all(isinstance(x, str) for x in names)):
            raise ValueError(f"{name} must be a list of names (e.g. [{names!r}]) or None, got {names!r}")
    if not (isinstance(shard, tuple) and len(shard) == 2):
        raise ValueError(f"shard must be (k, n) with 0 <= k < n, e.g. (0, 4) for the first of 4 processes; got {shard!r}")
    k, n = shard
    if not (isinstance(k, int) and isinstance(n, int) and 0 <= k < n):
        raise ValueError(f"shard must be (k, n) with 0 <= k < n, e.g. (0, 4) for the first of 4 processes; got {shard!r}")
    _of_experiments(profile_configs(profile, chapters), experiments, profile)  # names an unknown experiment first
    out = out or sys.stdout
    root = results_mod.results_root(store_profile(profile))
    results_mod.check_writable(root)
    for left in results_mod.clean_temporary(root):
        print(f"removed a temporary file left by a killed write: {left}", file=out)
    start, done, held, tried = time.perf_counter(), 0, [], set()
    while True:  # a chapter that tunes its step sizes lists its runs at them once its tuning runs are stored
        todo = _of_experiments(profile_configs(profile, chapters), experiments, profile)
        states = [(name, c, run_state(c, root, report=lambda m: print(m, file=out))[0]) for name, c in todo]
        # seed-major: every setting's first seed before any setting's second, so that a computation stopped
        # early (or a scale at which a gate fails) shows the whole grid at one seed first
        missing = sorted(((name, c) for name, c, state in states if state != "current" and c not in tried),
                         key=lambda nc: getattr(nc[1], "seed", 0))
        if not missing:
            break
        stale = sum(state == "stale" for *_, state in states)
        print(f"profile '{profile}': {len(todo)} runs, {len(todo) - len(missing)} stored, {len(missing)} to compute"
              + (f" ({stale} of them stored under other code: `make migrate` keeps those it replays)" if stale else "")
              + (f" (shard {k}/{n}: starting with {len(missing[k::n])} of them)" if n > 1 else ""), file=out, flush=True)
        mine = missing[k::n] + [m for i, m in enumerate(missing) if i % n != k]
        for name, config in mine:
            tried.add(config)
            path = store_path(config, root)
            if not _claim(path):
                held.append(config.label())
                continue
            try:
                if run_state(config, root, report=lambda m: None)[0] == "current":  # another process finished it
                    continue
                t0 = time.perf_counter()
                result = run(config, recompute=True, root=root)
                done += 1
                print(f"[{done}] {name} | {config.label()} | {time.perf_counter() - t0:.1f} s | "
                      f"{result.status_text}", file=out, flush=True)
            finally:
                _lock_path(path).unlink(missing_ok=True)
    print(f"done: {done} runs in {(time.perf_counter() - start) / 60:.1f} min", file=out)
    if held:
        print(f"{len(held)} runs were held by other processes (their lock files, {LOCK_SUFFIX}, beside the runs; one "
              f"left on another host by a killed process must be deleted by hand): " + "; ".join(held[:5])
              + (" ..." if len(held) > 5 else ""), file=out)
    return done


def migrate(profile: str = "book", out=None) -> tuple[int, list[str]]:
    """Show that this code still gives the stale runs of ``profile``, by replay, and record it; rewrite nothing.

    An edit to a numeric module changes the code fingerprint (:func:`revisit_bn.results.code_fingerprint`),
    and every stored run computed under the old code is stale until shown to replay. For each
    stale run some chapter needs, this replays its first ``replay_steps`` SGD steps with this code
    (:func:`revisit_bn.store.replay`: exact on the arithmetic the run was made on, within the
    tolerant rule on another); if they match, the run is recorded in the profile's validation index
    (:class:`revisit_bn.results.ValidationIndex`) under the current code. Files with a format-2 name
    (a key that held the code fingerprint) are renamed to their key first, their bytes unchanged.
    No run file is rewritten: the index is the only file that changes, a few kB a migration. Index
    entries of codes no run needs now are dropped. A run that does not replay stays stale for
    ``make results``.

    The replay checks the first steps only: use it after edits that add code paths, not after
    edits to a path a stored run takes (those need ``make results``).

    Returns:
        ``(validated, left)``: the count of runs recorded and one line per stale run left, with the reason.
    """
    out = out or sys.stdout
    root = results_mod.results_root(store_profile(profile))
    results_mod.check_writable(root)
    wanted = {store_path(c, root): c for _, c in kept_configs(profile)}
    renamed = _rename_legacy(root, wanted, out)
    index = results_mod.ValidationIndex.read(root)
    stale = [(path, config) for path, config in wanted.items()
             if path.exists() and run_state(config, root, report=lambda m: None)[0] == "stale"]
    print(f"profile '{profile}': {len(stale)} stale runs" + (f" ({renamed} renamed from format-2 names)" if renamed else ""),
          file=out, flush=True)
    validated, left, codes = 0, [], {}
    for i, (path, config) in enumerate(stale, 1):
        name = results_mod.run_name(path)
        payload = results_mod.validate(path)
        stored, replayed, match = replay(payload)
        if not match:
            left.append(f"{name}: this code gives other losses ({replayed} vs {stored}); run `make results`")
            print(f"[{i}/{len(stale)}] {name}: DIFFERS", file=out, flush=True)
            continue
        code = results_mod.code_of(config.key_params())
        index.add(name, code, replay_rule(payload["provenance"]))
        codes[code] = codes.get(code, 0) + 1
        validated += 1
        print(f"[{i}/{len(stale)}] {name}: first {len(stored)} step losses match", file=out, flush=True)
    for code, count in codes.items():
        index.note_replay(code, count)
    dropped = index.prune({results_mod.code_of(c.key_params()) for c in wanted.values()})
    index.write()
    print(f"{validated} runs validated under this code (recorded in {index.path.name}), {len(left)} left stale"
          + (f"; {len(dropped)} entries of older code dropped" if dropped else ""), file=out)
    for line in left:
        print(f"  left: {line}", file=out)
    return validated, left


def _rename_legacy(root: Path, wanted: dict[Path, Config], out) -> int:
    """Rename the files of ``wanted`` runs stored under their format-2 name (:func:`~revisit_bn.results.legacy_key`)
    to their key, bytes unchanged (git stores a renamed file's content once)."""
    renamed = 0
    for path, config in wanted.items():
        old = path.with_name(results_mod.legacy_key(config.key_params()) + results_mod.RUN_SUFFIX)
        if path.exists() or not old.exists():
            continue
        os.replace(old, path)
        renamed += 1
    for path in results_mod.stored_runs(root):  # runs stored under an older code's format-2 name
        try:
            payload = json.loads(results_mod.read_run_text(path))
            params = payload["params"]
            key = results_mod.params_key(params)
        except (ValueError, KeyError, TypeError, results_mod.StoreError):
            continue
        target = path.with_name(key + results_mod.RUN_SUFFIX)
        if path.name != target.name and results_mod.legacy_key(params) == results_mod.run_key(path) and target in wanted \
                and not target.exists():
            os.replace(path, target)
            renamed += 1
    if renamed:
        print(f"renamed {renamed} runs from their format-2 names (a key holding the code fingerprint) to their keys",
              file=out)
    return renamed


def sample_runs(profile: str = "book", size: int = 24, seed: int = 0) -> list[Path]:
    """A seeded sample of ``size`` stored runs spread over every experiment (round-robin over experiment folders).

    Raises:
        ValueError: ``size`` is not a positive integer.
    """
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"the sample size must be a positive integer (runs to replay), got {size!r}")
    root = results_mod.results_root(store_profile(profile))
    by_experiment: dict[str, list[Path]] = {}
    for path in results_mod.stored_runs(root):
        by_experiment.setdefault(path.parent.name, []).append(path)
    rng = random.Random(seed)
    for paths in by_experiment.values():
        rng.shuffle(paths)
    chosen: list[Path] = []
    while len(chosen) < size and any(by_experiment.values()):
        for name in sorted(by_experiment):
            if by_experiment[name] and len(chosen) < size:
                chosen.append(by_experiment[name].pop())
    return chosen


def verify(profile: str = "book", sample: int | None = None, seed: int = 0, out=None) -> list[str]:
    """Replay the first steps of stored runs (all, or a seeded ``sample``) and report; return the failures.

    Each line names the rule the run replayed under (:func:`revisit_bn.store.replay_rule`: ``exact`` on
    the arithmetic it was made on, ``tolerant`` on another). Also reports stale, orphaned and damaged
    files (:func:`run_states`).

    Raises:
        ValueError: ``sample`` is not a positive integer.
        revisit_bn.results.StoreError: the profile's folder holds no stored run (a misspelt
            ``$REVISIT_BN_RESULTS``, say): nothing to replay is not a pass.
    """
    out = out or sys.stdout
    root = results_mod.results_root(store_profile(profile))
    paths = results_mod.stored_runs(root) if sample is None else sample_runs(profile, sample, seed)
    if not paths:
        raise results_mod.StoreError(f"no stored run of profile '{profile}' under {root}: nothing to replay (is "
                                     f"{results_mod.RESULTS_ENV} set to the store's root?)")
    failures = []
    states = run_states(profile)
    bad = {p: state for state in ("stale", "orphaned", "damaged") for p in states[state]}
    print(f"profile '{profile}': replaying {len(paths)} stored runs", file=out, flush=True)
    for i, path in enumerate(paths, 1):
        name = results_mod.run_name(path)
        try:
            payload = results_mod.validate(path)
        except results_mod.StoreError as exc:
            failures.append(str(exc))
            print(f"[{i}/{len(paths)}] {name}: DAMAGED ({exc})", file=out, flush=True)
            continue
        if path in bad:
            why = {"stale": "computed under other code and not replayed under this one; run `make migrate`",
                   "orphaned": "no chapter's spec needs it; delete it", "damaged": "damaged"}[bad[path]]
            failures.append(f"{path} is {bad[path]}: {why}")
            print(f"[{i}/{len(paths)}] {name}: {bad[path].upper()}", file=out, flush=True)
            continue
        try:
            stored, replayed, match = replay(payload)
        except Exception as exc:  # a run this code cannot rebuild is a failure to report, not a crash of verify
            failures.append(f"{path}: cannot be replayed ({type(exc).__name__}: {exc})")
            print(f"[{i}/{len(paths)}] {name}: CANNOT REPLAY ({type(exc).__name__}: {exc})", file=out, flush=True)
            continue
        rule = replay_rule(payload["provenance"])
        line = f"first {len(stored)} step losses {'match' if match else 'DIFFER'} ({rule})"
        if not match:
            failures.append(f"{path}: replayed losses {replayed} differ from the stored {stored} (rule: {rule})")
        print(f"[{i}/{len(paths)}] {name}: {line}", file=out, flush=True)
    print(f"{len(paths) - len(failures)} passed, {len(failures)} failed", file=out)
    return failures


def status(profile: str = "book", out=None) -> dict[str, float]:
    """Print how many runs ``profile`` needs, has current, stale and missing, and each chapter's compute
    (minutes, summed from the stored runs' provenance, each run counted under the first chapter that
    reads it) with the hours its missing runs are projected to take, those a tuned chapter will add at
    its chosen step sizes included (:class:`_RunCosts`, :func:`_after_tuning`); return the minutes by
    chapter."""
    out = out or sys.stdout
    root = results_mod.results_root(store_profile(profile))
    todo = profile_configs(profile)
    found = {c: run_state(c, root, report=lambda m: None) for _, c in todo}
    count = lambda state: sum(s == state for s, _ in found.values())  # noqa: E731
    states = run_states(profile)
    print(f"profile '{profile}': {len(todo)} runs needed, {count('current')} current, {count('stale')} stale "
          f"(`make migrate`), {count('missing')} missing; {len(states['orphaned'])} orphaned files", file=out)
    minutes: dict[str, float] = {}
    runs: dict[str, int] = {}
    for name, config in todo:
        _, payload = found[config]
        minutes[name] = minutes.get(name, 0.0) + (payload["provenance"]["seconds"] / 60 if payload else 0.0)
        runs[name] = runs.get(name, 0) + (payload is not None)
    total = sum(minutes.values())
    staged = profile_configs(NEXT) if profile == BOOK else []
    stored = [(name, run_state(c, root, report=lambda m: None)[1]) for name, c in staged]
    # every run the store keeps informs the projection (for `--profile next`, the book's runs too)
    read = {c: payload for c, (_, payload) in found.items()} | {c: p for (_, c), (_, p) in zip(staged, stored)}
    costs = _RunCosts(read[c] if c in read else run_state(c, root, report=lambda m: None)[1]
                      for _, c in kept_configs(profile))
    print(f"compute of the stored runs (provenance seconds): {total:.1f} min ({total / 60:.1f} h)", file=out)
    for name, m in minutes.items():
        left = [c for n, c in todo if n == name and found[c][1] is None]
        print(f"  {name}: {runs[name]} runs, {m:.1f} min" + _projected(costs, name, profile, left, root), file=out)
    if staged:
        done = [p for _, p in stored if p is not None]
        spent = sum(p["provenance"]["seconds"] for p in done) / 60
        print(f"next book scale: {len(staged)} runs, {len(done)} stored ({spent:.1f} min), {len(staged) - len(done)} "
              f"missing (`make results PROFILE={NEXT}`; a chapter that tunes lists its runs at the chosen step sizes "
              "once its tuning runs are stored)", file=out)
        for name in dict.fromkeys(name for name, _ in staged):
            mine = [p for n, p in stored if n == name]
            have = [p for p in mine if p is not None]
            left = [c for (n, c), (_, p) in zip(staged, stored) if n == name and p is None]
            print(f"  {name}: {len(mine)} runs, {len(have)} stored ("
                  f"{sum(p['provenance']['seconds'] for p in have) / 60:.1f} min), {len(mine) - len(have)} missing"
                  + _projected(costs, name, NEXT, left, root), file=out)
    projected_runs = [c for n, c in todo if found[c][1] is None] + [c for (_, c), (_, p) in zip(staged, stored) if p is None]
    projected_runs += [c for name in dict.fromkeys(n for n, _ in todo) for c in _after_tuning(name, profile, root)]
    projected_runs += [c for name in dict.fromkeys(n for n, _ in staged) for c in _after_tuning(name, NEXT, root)]
    if projected_runs:
        fastest, median, scaled, unknown = costs.projection(projected_runs)
        print(f"projected compute left: {fastest / 60:.1f} h at the fastest stored run of each kind (idle cores), "
              f"{median / 60:.1f} h at their median, for {len(projected_runs)} runs (the missing ones and those a tuned "
              f"chapter adds at its chosen step sizes; {_projection_note(scaled, unknown)})", file=out)
    for state in ("stale", "orphaned", "damaged"):
        for path in states[state]:
            print(f"  {state}: {path}", file=out)
    return minutes


class _RunCosts:
    """What a run is likely to take, from the provenance seconds of stored runs of its kind.

    A run's kind, most specific first: the same network, width, data, batch size and length, whatever its norm
    and experiment (FN's, Batch Renorm's and GroupNorm's steps are within about 1.1 times BN's, the l_p norms'
    and the successors' up to 1.9 times: ``benchmarks/norm_step_ratios_cpu.txt``); the same network, width,
    dataset and batch size at another length or training-set size, scaled per training image and epoch; the same
    at any batch size. The estimates are the fastest and the median of the stored runs of the first kind that has
    any. Provenance seconds are wall time, so a run that shared the cores counts long: the fastest run of a kind
    is the cost on idle cores, the median what the runs took as they were computed.
    """

    def __init__(self, payloads) -> None:
        self._seconds: dict[tuple, list[float]] = {}
        for payload in payloads:
            if payload is None:
                continue
            params = payload.get("params", {})
            seconds = payload.get("provenance", {}).get("seconds")
            if not isinstance(seconds, (int, float)) or seconds <= 0:
                continue
            for key, per_image_epoch in self.kinds(params):
                self._seconds.setdefault(key, []).append(seconds / per_image_epoch if per_image_epoch else seconds)

    @staticmethod
    def kinds(params) -> list[tuple[tuple, int | None]]:
        """The keys of a run's kinds (:class:`_RunCosts`), most specific first, each with the training images
        times epochs its seconds are divided by (``None``: whole runs). ``params``: a run's stored ``params``
        or a config's ``key_params()``."""
        g = params.get
        data = (g("dataset"), g("model"), g("width"), g("train_subset"), g("test_subset"), g("validation_size"),
                g("augment"), g("probe_every"), g("threads"))
        kinds = [(("run", *data, g("batch_size"), g("norm_group_size"), g("epochs"), g("workers")), None)]
        images = training_images(params)
        if isinstance(g("epochs"), int) and g("epochs") > 0 and images and images > 0 and g("workers") is None:
            kinds += [(("per image", g("dataset"), g("model"), g("width"), g("batch_size"), g("norm_group_size")),
                       images * g("epochs")),
                      (("per image, any batch size", g("dataset"), g("model"), g("width")), images * g("epochs"))]
        return kinds

    def minutes(self, config) -> tuple[tuple[float, float] | None, bool]:
        """``((fastest, median), scaled)``: the estimates for ``config`` in minutes, from the fastest stored run
        of its kind (a run on idle cores) and from their median (``None``: no stored run of any of its kinds),
        and whether they were scaled from runs of another length, training-set size or batch size."""
        import statistics

        for key, per_image_epoch in self.kinds(config.key_params()):
            seconds = self._seconds.get(key)
            if seconds:
                factor = (per_image_epoch or 1) / 60
                return (min(seconds) * factor, statistics.median(seconds) * factor), per_image_epoch is not None
        return None, False

    def projection(self, configs) -> tuple[float, float, int, int]:
        """``(fastest, median, scaled, unknown)`` over ``configs``: the summed estimates in minutes (see
        :meth:`minutes`), how many were scaled from runs of another length, size or batch size, and how many
        have no estimate (not in the minutes)."""
        estimates = [self.minutes(c) for c in configs]
        known = [(m, s) for m, s in estimates if m is not None]
        return (sum(m[0] for m, _ in known), sum(m[1] for m, _ in known), sum(s for _, s in known),
                len(estimates) - len(known))


def _projection_note(scaled: int, unknown: int) -> str:
    notes = [f"{scaled} scaled per training image and epoch from runs of another length, size or batch size" if scaled else
             "each from runs of the same length and batch size"]
    if unknown:
        notes.append(f"{unknown} with no stored run of their kind, not counted")
    return "; ".join(notes)


def _after_tuning(name: str, profile: str, root: Path) -> list:
    """The runs chapter ``name`` will add at its chosen step sizes, while its tuning runs are not all stored
    (its grid's runs that no tuning run stands for; a widened grid's extra tuning runs are not foreseen)."""
    spec = CHAPTERS.get(name)
    if spec is None or spec.tune is None or not spec.grid or profile not in spec.profiles:
        return []
    params = resolve(spec, profile)
    tuning = spec.tune(params)
    if tuning is None:
        return []
    _, choice = tuning.stages(root, stale_ok=True)
    if choice is not None:
        return []
    tuned = {without_lr(c) for c in tuning.runs}  # a tuning run at the chosen step size is one of the chapter's runs
    return [c for c in spec.grid(params) if without_lr(c) not in tuned]


def training_images(params) -> int | None:
    """The images a run trains on per epoch, from its ``params`` (a dict): the dataset's training set less the
    validation split, cut to ``train_subset`` (as :class:`revisit_bn.train.TrainConfig` draws them); ``None`` for a
    dataset without a fixed size."""
    sizes = DATASET_SIZES.get(params.get("dataset"))
    if not sizes:
        return None
    total = sizes[0] - (params.get("validation_size") or 0)
    return total if params.get("train_subset") is None else min(params["train_subset"], total)


def without_lr(config) -> tuple:
    """A run's fields but its step size (and device), hashable: the runs a chapter lists at a stand-in step size
    and the same runs at their chosen ones compare equal (what a run costs does not depend on its step size)."""
    import dataclasses

    return tuple(sorted((k, repr(v)) for k, v in dataclasses.asdict(config).items() if k not in ("lr", "device")))


def _projected(costs: _RunCosts, name: str, profile: str, left: list, root: Path) -> str:
    """``"; projected for the rest: ..."`` for a status line (empty when nothing is left)."""
    later = _after_tuning(name, profile, root)
    if not left and not later:
        return ""
    fastest, median, _, unknown = costs.projection(left + later)
    text = f"; the rest projected at {fastest / 60:.1f}-{median / 60:.1f} h"
    if later:
        text += f" (with the {len(later)} runs its chosen step sizes add)"
    if unknown:
        text += f", {unknown} runs not estimated"
    return text


def _arithmetic(provenance: dict) -> str:
    """Where a run was computed, in words: the GPU's name, or the CPU as its provenance records it
    (runs made before provenance recorded the CPU say so)."""
    if provenance.get("gpu"):
        return str(provenance["gpu"])
    cpu = provenance.get("cpu")
    return re.sub(r", flags \w+\)", ")", str(cpu)) if cpu else "CPU (model not recorded)"


def compute_record(profile: str = "book"):
    """What computing ``profile``'s runs took, one row per chapter, from the stored runs' provenance.

    Columns: ``chapter``; ``runs`` (needed by the chapter's spec, each run counted under the first
    chapter that reads it); ``stored`` (current runs in the store); ``minutes`` (summed ``seconds``
    of their provenance: wall time, an upper bound where other work shared the cores); ``median s``
    and ``longest s`` (per run); ``computed on`` (the distinct CPUs or GPUs, with how many runs
    each); ``from`` and ``to`` (the first and last ``created`` date). For the ``book`` profile a last
    row, ``next (being computed)``, counts the :data:`~revisit_bn.specs.NEXT` runs stored so far.

    Returns:
        pandas.DataFrame, empty when ``profile`` needs no runs.

    Raises:
        ValueError: ``profile`` is not one of the stores' profiles.
    """
    import pandas as pd

    from .experiments import PROFILES

    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {list(PROFILES)}, got {profile!r}")
    root = results_mod.results_root(profile)
    groups: dict[str, list[tuple[Config, dict | None]]] = {}
    for name, config in profile_configs(profile):
        state, payload = run_state(config, root, report=lambda m: None)
        groups.setdefault(name, []).append((config, payload if state == "current" else None))
    if profile == BOOK:
        for _, config in profile_configs(NEXT):
            groups.setdefault(f"{NEXT} (being computed)", []).append((config, run_state(config, root, lambda m: None)[1]))
    rows = []
    for name, runs in groups.items():
        stored = [p["provenance"] for _, p in runs if p is not None]
        seconds = sorted(p["seconds"] for p in stored)
        where: dict[str, int] = {}
        for p in stored:
            where[_arithmetic(p)] = where.get(_arithmetic(p), 0) + 1
        dates = sorted(p["created"][:10] for p in stored)
        rows.append({"chapter": name, "runs": len(runs), "stored": len(stored),
                     "minutes": round(sum(seconds) / 60, 1),
                     "median s": round(seconds[len(seconds) // 2], 1) if seconds else None,
                     "longest s": round(seconds[-1], 1) if seconds else None,
                     "computed on": "; ".join(f"{k}: {n}" for k, n in sorted(where.items(), key=lambda kv: -kv[1])),
                     "from": dates[0] if dates else "", "to": dates[-1] if dates else ""})
    return pd.DataFrame(rows, columns=["chapter", "runs", "stored", "minutes", "median s", "longest s",
                                       "computed on", "from", "to"])


def ensure_recorded(profile: str = "book", notebooks: Path | None = None, run: bool = True) -> list[str]:
    """Execute (papermill, with ``profile``) every chapter whose claims (its spec in :mod:`revisit_bn.chapters`) lack a verdict.

    Returns:
        The chapters executed (or, with ``run=False``, those that would be).
    """
    import tempfile

    from .data import project_root

    notebooks = notebooks or project_root() / "notebooks"
    missing = [chapter for chapter, ids in ((c.name, c.claims) for c in CHAPTERS.values()) if ids
               if not all((claims_dir(profile) / f"{claim_id}.json").is_file() for claim_id in ids)]
    if run and missing:
        import papermill

        with tempfile.TemporaryDirectory() as tmp:
            for chapter in missing:
                papermill.execute_notebook(str(notebooks / f"{chapter}.ipynb"), str(Path(tmp) / f"{chapter}.ipynb"),
                                           parameters={"profile": profile}, cwd=str(notebooks), progress_bar=False,
                                           kernel_name="python3")
    return missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m revisit_bn.commands", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("results", "verify", "status", "migrate"):
        p = sub.add_parser(name)
        p.add_argument("--profile", default="book", choices=STAGED_PROFILES)
        if name == "results":
            p.add_argument("--chapter", action="append", choices=list(CHAPTERS), help="only these chapters' runs")
            p.add_argument("--experiment", action="append",
                           help="only these experiments' runs (e.g. santurkar_dln: chapters 23 and 25's deep linear network)")
            p.add_argument("--shard", default="0/1", metavar="K/N",
                           help="start with every N-th missing run from the K-th (N processes sharing the work)")
        if name == "verify":
            p.add_argument("--sample", type=int, default=None, help="replay a seeded sample of this many runs (default: all)")
            p.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        return _command(parser, args)
    except (DatasetNotFoundError, results_mod.StoreError) as exc:  # their messages name the file or variable
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.command == "results":
        try:
            k, n = (int(x) for x in args.shard.split("/"))
        except ValueError:
            parser.error(f"--shard must be K/N with integers, e.g. 0/4; got {args.shard!r}")
        if not 0 <= k < n:
            parser.error(f"--shard K/N needs 0 <= K < N (K counts from 0), e.g. 0/4 .. 3/4; got {args.shard!r}")
        try:  # checked before any work, as the shard
            _of_experiments(profile_configs(args.profile, args.chapter), args.experiment, args.profile)
        except ValueError as exc:
            parser.error(str(exc))
        compute_missing(args.profile, args.chapter, shard=(k, n), experiments=args.experiment)
        return 0
    if args.command == "verify":
        if args.sample is not None and args.sample < 1:
            parser.error(f"--sample must be a positive number of runs to replay, got {args.sample}")
        return 1 if verify(args.profile, args.sample, args.seed) else 0
    if args.command == "migrate":
        return 1 if migrate(args.profile)[1] else 0
    status(args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
