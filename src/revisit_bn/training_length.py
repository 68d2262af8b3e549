"""The training-length rule: a verdict decided at the end of a run's training but not one epoch short of it is
decided by the length the book chose, not by the claim, and reads inconclusive (or "in part"). Each chapter's
verdicts are computed twice, on the whole runs and on the runs cut one epoch short (every schedule at the same
fraction), and merged by :func:`on_training_length`.

Beside it, :func:`with_sensitivity` reports a verdict's sensitivity check: the same check on a second setting the
papers leave open, named in the verdict's measured text (and so in the ledger), a flip included.
"""

from __future__ import annotations

import dataclasses
import re

from .verdicts import SUPPORTING, Verdict, merged

# The columns of an epochs frame that are measured, not configured (:meth:`revisit_bn.store.RunResult.to_frame`).
EPOCH_MEASURES = ("epoch", "status", "test_acc", "test_loss", "train_eval_acc", "train_eval_loss", "train_loss")


def _run_columns(frame) -> list[str]:
    """The fewest columns besides ``seed`` and :data:`EPOCH_MEASURES` under which each run's epochs are
    unique: a column a notebook derived from the measures (e.g. ``test_error``) identifies no run and is
    left out (columns with the most distinct values are tried first)."""
    seed = ["seed"] if "seed" in frame.columns else []
    unique = lambda cols: not (frame.groupby(cols + seed, dropna=False).epoch  # noqa: E731
                               .apply(lambda e: e.duplicated().any()).any() if cols or seed
                               else frame.epoch.duplicated().any())
    columns = [c for c in frame.columns if c not in EPOCH_MEASURES and c != "seed"]
    if not unique(columns):
        raise ValueError("frame: a run has an epoch twice; pass one epochs frame per set of runs "
                         "(not a frame concatenated with itself)")
    for column in sorted(columns, key=lambda c: -frame[c].nunique(dropna=False)):
        if unique([c for c in columns if c != column]):
            columns.remove(column)
    return columns


def _schedules(frame):
    """Each row's run configuration's last epoch over its runs that did not diverge (a Series aligned
    with ``frame``; NaN where every run of the configuration diverged: their stored rows stop there)."""
    if "epoch" not in frame.columns or frame.empty:
        raise ValueError("frame: an epochs frame with an 'epoch' column and rows is needed "
                         "(chapter.frame() of trained runs)")
    config = _run_columns(frame)
    finished = frame.epoch.where(frame.status == "ok") if "status" in frame.columns else frame.epoch
    if finished.isna().all():
        raise ValueError("frame: every run diverged; there is no schedule to cut one epoch short")
    if not config:
        return frame.epoch * 0 + finished.max()
    return finished.groupby([frame[c] for c in config], dropna=False).transform("max")


def _cut(last):
    """The last epoch kept for each row of schedules ``last`` (see :func:`one_epoch_short`)."""
    shortest = int(last.min())
    if shortest < 2:
        raise ValueError(f"frame: a run configuration has {shortest} epoch; one epoch short leaves nothing "
                         "(train at least 2 epochs for a verdict read at the end of training)")
    return (last * (shortest - 1)) // shortest


def one_epoch_short(frame):
    """``frame`` (an epochs frame, one row per run and epoch) as if every run had been trained one
    epoch less: the rows up to the epoch before each run configuration's last.

    Runs of different lengths in one comparison (chapter 34 at equal SGD steps: 2 epochs at batch
    size 1, 32 at 16) are cut at the same fraction of their schedules, the fraction one epoch short of
    the shortest: epoch ``floor(E * (E_min - 1) / E_min)`` of a run of ``E`` epochs (1 of 2 and 16 of
    32), so that a comparison at equal steps stays one. A diverged run keeps its stored rows up to the
    cut and its status. Our choice, the frame behind :func:`on_training_length`.

    Raises:
        ValueError: no ``epoch`` column or rows; a run with an epoch twice; every run diverged; a
            schedule of one epoch (nothing is left one epoch short).
    """
    cut = _cut(_schedules(frame))
    return frame[(frame.epoch <= cut) | cut.isna()].reset_index(drop=True)


def _cut_text(frame) -> str:
    """``"epoch 19 of 20"`` or ``"epochs 1 of 2 and 16 of 32"``: where :func:`one_epoch_short` cuts ``frame``."""
    last = _schedules(frame)
    cut = _cut(last)
    pairs = sorted({(int(c), int(e)) for c, e in zip(cut, last) if e == e})
    words = [f"{c} of {e}" for c, e in pairs]
    return ("epoch " if len(words) == 1 else "epochs ") + (words[0] if len(words) == 1
                                                           else ", ".join(words[:-1]) + " and " + words[-1])


def on_training_length(verdicts_of, frame):
    """The training-length rule: a verdict read at the end of training must keep its category one epoch short.

    ``verdicts_of(frame)`` gives a :class:`Verdict` or a list of them from an epochs frame (the
    chapter's whole check: gates, chosen step sizes and the claim's effect); it is called on
    ``frame`` and on :func:`one_epoch_short` of it. A decided verdict whose category differs one
    epoch short is inconclusive (our rule, the training length's counterpart of
    :func:`one_more_seed` and :func:`on_probe_halves`: a verdict that one epoch less would flip
    depends on where training stopped), except that one reproduced at one length and reproduced in
    part at the other is reproduced in part (the part that differs is inconclusive, the rest holds at
    both: :func:`combine`). Its measured text names the category there, its interval and any gate it
    failed. An inconclusive verdict stays so. The rule compares whole verdicts: a claim in part at
    both lengths on different parts keeps its category. Statistics over probes taken during
    training keep their own rule (:func:`on_probe_halves`); ``verdicts_of`` may read them whole.

    A decided verdict after a single epoch of training (the `ci` profile's) cannot be checked so and
    is inconclusive.

    Returns:
        What ``verdicts_of(frame)`` returns, each verdict after the rule.

    Raises:
        ValueError: from :func:`one_epoch_short` (a single epoch aside); or the two calls give
            different claims.
    """
    now = verdicts_of(frame)
    single = isinstance(now, Verdict)
    now_list = [now] if single else list(now)
    if _single_epoch(frame):  # nothing to recompute one epoch short
        ruled = [v if v.category == "inconclusive" else dataclasses.replace(
            v, category="inconclusive", reproduced=False,
            measured=f"{v.measured}; {v.category} after a single epoch, which the training-length rule cannot "
                     "check one epoch short: inconclusive") for v in now_list]
        return ruled[0] if single else ruled
    short_list = one_epoch_short_verdicts(verdicts_of, frame)
    if [v.claim_id for v in now_list] != [v.claim_id for v in short_list]:
        raise ValueError("verdicts_of: gives different claims one epoch short "
                         f"({[v.claim_id for v in now_list]} vs {[v.claim_id for v in short_list]}); "
                         "it must return the same verdicts, in the same order, for any epochs frame")
    where = _cut_text(frame)
    ruled = [_one_epoch_short_rule(v, e, where) for v, e in zip(now_list, short_list)]
    return ruled[0] if single else ruled


def _single_epoch(frame) -> bool:
    """Whether a run configuration of ``frame`` trained a single epoch (nothing is left one epoch short)."""
    return int(_schedules(frame).min()) < 2


def one_epoch_short_verdicts(verdicts_of, frame) -> list[Verdict]:
    """``verdicts_of`` (as for :func:`on_training_length`) on :func:`one_epoch_short` of ``frame``, as a
    list: the recomputation the training-length rule compares with, for a chapter's summary to quote;
    ``[]`` where a run configuration trained a single epoch (nothing is left one epoch short).

    Raises:
        ValueError: from :func:`one_epoch_short`, except for a single epoch.
    """
    if _single_epoch(frame):
        return []
    short = verdicts_of(one_epoch_short(frame))
    return [short] if isinstance(short, Verdict) else list(short)


def _one_epoch_short_rule(verdict: Verdict, short: Verdict, where: str) -> Verdict:
    """``verdict`` after :func:`on_training_length`'s rule, given its recomputation ``short`` at ``where``.

    A claim of several parts, ungated at both lengths (its category is its parts' :func:`merged`), is ruled part by
    part: a part whose category differs one epoch short is inconclusive, and the claim merges the parts again (so a
    part that is contradicted at the end and undecided one epoch short leaves the claim in part on the others, not
    inconclusive as a whole). Otherwise (one part, or a gate that decides one length) the whole verdict is compared:
    reproduced (or contradicted) at one length and in part at the other is in part, any other difference
    inconclusive."""
    if verdict.category in ("inconclusive", short.category):
        return verdict
    gates = "".join(f"; {g}" for g in re.findall(r"gate: [^()]*\([^()]*failed\)", short.measured))
    by_parts = (len(verdict.parts) > 1 and [p.name for p in verdict.parts] == [p.name for p in short.parts]
                and merged(verdict.parts) == verdict.category and merged(short.parts) == short.category)
    parts = verdict.parts
    if by_parts:
        parts = tuple(p if p.category == q.category else dataclasses.replace(p, category="inconclusive")
                      for p, q in zip(verdict.parts, short.parts))
        category = merged(parts)
        differ = [p.name for p, q in zip(verdict.parts, short.parts) if p.category != q.category]
        decides = (f"the part{'s' if len(differ) > 1 else ''} " + ", ".join(f"'{name}'" for name in differ)
                   + f" (inconclusive), {category}")
    else:
        # reproduced (or contradicted) at one length, in part at the other: what differs is one part (inconclusive),
        # the rest holds at both
        pair = {verdict.category, short.category}
        in_part = next((f"{side} in part" for side in ("reproduced", "contradicted")
                        if pair == {side, f"{side} in part"}), None)
        category = in_part or "inconclusive"
        decides = f"part of it, {in_part}" if in_part else "it, inconclusive"
    return dataclasses.replace(
        verdict, category=category, reproduced=category in SUPPORTING, parts=parts,
        measured=f"{verdict.measured}; {verdict.category} at the end but {short.category} one epoch short ({where}"
                 f"{': ' + short.interval if short.interval else ''}{gates}): the training length decides {decides}")


def with_sensitivity(verdict: Verdict, other: Verdict, setting: str) -> Verdict:
    """``verdict`` with its sensitivity check named in its measured text: ``other`` is the same claim's verdict by the
    same check (and the same training-length rule) on a second setting that the paper leaves open and the book chose
    (chapter 34: the range of the random scales; chapter 36: the step size without linear scaling).

    Our rule, registered with the checks before their runs (2026-12-07): the category stays the main setting's, and
    the text says whether the check's category is the same or differs ("the verdict flips under it"), so that a
    referee reads a flip beside the category rather than a category chosen between two settings.

    Returns:
        A copy of ``verdict`` whose measured text ends with the check's category, interval and seeds.

    Applied again with the same ``setting``, it replaces its earlier sentence.

    Raises:
        ValueError: ``verdict`` is not a :class:`Verdict`, ``other`` is a verdict of another claim, or ``setting`` is
            empty.
    """
    if not isinstance(verdict, Verdict):
        raise ValueError(f"verdict must be a Verdict (one claim's), got {type(verdict).__name__}")
    if not isinstance(other, Verdict) or other.claim_id != verdict.claim_id:
        raise ValueError(f"a sensitivity check reads the same claim ({verdict.claim_id!r}), got "
                         f"{getattr(other, 'claim_id', other)!r}")
    if not isinstance(setting, str) or not setting.strip():
        raise ValueError("setting must name the sensitivity check's setting (a non-empty string)")
    found = other.category + (f", {other.interval}" if other.interval else "") + \
        (f" over {other.seeds} seed{'s' if other.seeds > 1 else ''}" if other.seeds else "")
    same = ("the same category" if other.category == verdict.category else
            f"the verdict flips under it ({verdict.category} in the main setting)")
    # applied again (a notebook cell run twice) it replaces its own earlier sentence
    before = verdict.measured.split(f". Sensitivity check, {setting}: ")[0]
    measured = f"{before.rstrip().rstrip('.')}. Sensitivity check, {setting}: {found}; {same}."
    return dataclasses.replace(verdict, measured=measured)
