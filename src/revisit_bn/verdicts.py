"""How a claim's verdict is decided: categories, per-seed effects and intervals, learnability gates, and the rules
that keep a verdict undecided where one more seed, half of a probe schedule or one epoch less would flip it.

Every check of a claim (:mod:`revisit_bn.claims`, :mod:`revisit_bn.checks_santurkar`) reads a chapter's long
results frame (one row per run and epoch, :meth:`revisit_bn.store.RunResult.to_frame`) and returns a
:class:`Verdict` whose category these rules give. The thresholds that turn words such as "comparable" or "far
above" into numbers are ours; they are module constants, stated in the book next to every verdict that uses
them (:func:`verdict_rules`).
"""

from __future__ import annotations

import dataclasses
import math
import textwrap

from dataclasses import dataclass
from typing import NamedTuple

# Characters a notebook output box shows in the book without cutting a line (verdicts, printed lines).
OUTPUT_WIDTH = 88
# "Comparable" losses: within a factor of 2, or within 0.05 nats of each other.
COMPARABLE_RATIO, COMPARABLE_NATS = 2.0, 0.05
# "Far above": at least twice as large and at least 0.1 nats larger.
FAR_RATIO, FAR_NATS = 2.0, 0.1
# "Match": final test losses within 0.05 nats and test accuracies within 1 percentage point.
MATCH_NATS, MATCH_ACC = 0.05, 0.01
# Verdict categories: for experiments, then for mathematics. A claim of several parts takes the symmetric merge
# of its parts' categories (:func:`combine`): reproduced (all parts), reproduced in part (reproduced and
# inconclusive parts), mixed (a reproduced and a contradicted part), contradicted in part (contradicted and
# inconclusive parts), contradicted (all), inconclusive (none decided).
EXPERIMENTAL = ("reproduced", "reproduced in part", "mixed", "contradicted in part", "contradicted", "inconclusive")
CATEGORIES = EXPERIMENTAL + ("holds as printed", "holds as corrected", "false as printed")
SUPPORTING = ("reproduced", "holds as printed", "holds as corrected")
_BADGE = {"reproduced": "#1b7837", "holds as printed": "#1b7837", "reproduced in part": "#5aae61",
          "holds as corrected": "#5aae61", "mixed": "#8c6d1f", "contradicted in part": "#d6604d",
          "contradicted": "#b2182b", "false as printed": "#b2182b", "inconclusive": "#777777"}
# "Far behind" in accuracy: at least 5 percentage points lower; "improves": at least 1 point higher.
FAR_ACC, BETTER_ACC = 0.05, 0.01
# Seed intervals: two-sided t-intervals at this confidence over per-seed effects.
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Part:
    """One part of a claim: its own effect, interval and category (:func:`combine` merges a claim's parts).

    Attributes:
        name: what the part is (e.g. ``"batch size 2"``, ``"shift, p = 1"``).
        category: one of :data:`EXPERIMENTAL`.
        interval: its effect with its interval (``"+0.179 [+0.126, +0.231]"``; ``""`` when none).
        seeds: how many seeds it was measured over.
        vacuous: its outcome is fixed by construction (equal in both arms whatever the data): it is
            shown, and not counted.

    Raises:
        ValueError: an unknown category.
    """

    name: str
    category: str
    interval: str = ""
    seeds: int = 0
    vacuous: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a part's name must be a non-empty string, got {self.name!r}")
        if self.category not in EXPERIMENTAL:
            raise ValueError(f"a part's category must be one of {EXPERIMENTAL}, got {self.category!r}")
        if not isinstance(self.interval, str):
            raise ValueError(f"a part's interval must be its text (e.g. '+0.1 [0.0, 0.2]'), got {self.interval!r}")
        object.__setattr__(self, "seeds", _count(self.seeds, "a part's seeds"))
        object.__setattr__(self, "vacuous", _flag(self.vacuous, "a part's vacuous"))


def merged(parts) -> str:
    """The claim's category from its :class:`Part` s (:func:`combine`, vacuous parts not counted)."""
    parts = list(parts)
    return combine([p.category for p in parts], [p.vacuous for p in parts])


@dataclass(frozen=True)
class Verdict:
    """One claim of a paper and our measurement of it.

    Attributes:
        claim_id: short stable id (e.g. ``"lian-fig4"``).
        source: paper and figure.
        claim: the claim in one line.
        measured: our numbers in one line.
        scale: the scale they were measured at.
        reproduced: whether the measurement supports the claim (True exactly for :data:`SUPPORTING`).
        category: one of :data:`CATEGORIES`.
        seeds: how many seeds the effect was measured over (0: not a seeded measurement).
        interval: the effect with its interval, e.g. ``"+0.179 [+0.126, +0.231]"`` ("" when none).
        parts: the claim's :class:`Part` s where it has several (``()``: one part, the verdict itself).

    Raises:
        ValueError: a missing or unknown category, or one that disagrees with ``reproduced``.
    """

    claim_id: str
    source: str
    claim: str
    measured: str
    scale: str
    reproduced: bool
    category: str = ""
    seeds: int = 0
    interval: str = ""
    parts: tuple = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "reproduced", _flag(self.reproduced, "reproduced"))  # numpy bools are not JSON
        for name in ("claim_id", "source", "claim", "measured", "scale", "interval"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"a verdict's {name} must be a string, got {getattr(self, name)!r}")
        object.__setattr__(self, "seeds", _count(self.seeds, "a verdict's seeds"))
        if isinstance(self.parts, (str, bytes)) or not all(isinstance(p, Part) for p in self.parts):
            raise ValueError(f"a verdict's parts must be Part objects, got {self.parts!r}")
        object.__setattr__(self, "parts", tuple(self.parts))
        if self.category not in CATEGORIES:
            raise ValueError(f"category must be one of {CATEGORIES}, got {self.category!r}")
        if self.reproduced != (self.category in SUPPORTING):
            raise ValueError(f"reproduced={self.reproduced} disagrees with category {self.category!r}")
        if self.parts:
            # what its parts give, or less: a failed gate or the training-length rule makes it inconclusive, and
            # the training-length rule can leave a decided side in part
            of_parts = merged(self.parts)
            allowed = {of_parts, "inconclusive"} | ({f"{of_parts} in part"} if of_parts in ("reproduced", "contradicted")
                                                   else set())
            if self.category not in allowed:
                raise ValueError(f"{self.claim_id}: category {self.category!r} disagrees with its parts, which give "
                                 f"{of_parts!r}")

    @classmethod
    def of(cls, claim_id: str, measured: str, scale: str, category: str, seeds: int = 0, interval: str = "",
           parts=()) -> "Verdict":
        """The verdict on the registered claim ``claim_id`` (its source and words from
        :mod:`revisit_bn.registry`), with a category (``reproduced`` follows from it).

        Raises:
            KeyError: ``claim_id`` is not registered.
        """
        from .registry import claim

        registered = claim(claim_id)
        return cls(claim_id, registered.source, registered.words, measured, scale, category in SUPPORTING, category,
                   seeds, interval, parts)

    def part_list(self) -> list[dict]:
        """Its parts as the ledger records them, ``[{name, category, interval, seeds, vacuous}]``: the
        :class:`Part` s of a claim with several, else one part, the verdict itself (``name`` ``"claim"``)."""
        if self.parts:
            return [dataclasses.asdict(p) for p in self.parts]
        return [{"name": "claim", "category": self.category, "interval": self.interval, "seeds": self.seeds,
                 "vacuous": False}]

    @property
    def verdict(self) -> str:
        return self.category

    def __repr__(self) -> str:
        return self.line()

    def _repr_html_(self) -> str:
        """A category badge, the claim as a sentence, and what we measured (how the book shows a verdict)."""
        from html import escape

        return (f'<div class="verdict" id="verdict-{escape(self.claim_id)}" style="margin:0.4em 0">{badge(self.verdict)} '
                f'<code>{escape(self.claim_id)}</code> {escape(self.claim)}.'
                f'<br><span style="color:#555">Measured: {escape(self.measured)}</span></div>')

    def line(self, width: int = OUTPUT_WIDTH) -> str:
        """``[id] VERDICT: claim`` and ``measured: ...``, wrapped to ``width`` columns for a notebook's output box."""
        head = textwrap.fill(f"[{self.claim_id}] {self.verdict.upper()}: {self.claim}", width, subsequent_indent="    ")
        body = textwrap.fill(f"measured: {self.measured}", width, initial_indent="    ", subsequent_indent="        ")
        return f"{head}\n{body}"


def badge(verdict: str) -> str:
    """A verdict as the book shows it everywhere, chapters and ledger alike: a coloured badge (HTML) for
    its category (a verdict such as ``"inconclusive: runs diverged"`` takes its category's colour)."""
    from html import escape

    colour = _BADGE.get(verdict.split(":")[0], _BADGE["inconclusive"])
    return (f'<span style="background:{colour};color:white;border-radius:3px;padding:1px 6px;'
            f'font-size:85%;font-weight:600">{escape(verdict)}</span>')


# Differences at or below this are float rounding (float64 sums of a few hundred terms): printed as a bound, not a
# value, since other CPUs give other last bits.
ROUNDING_BOUND = 1e-12


def at_most(value: float, bound: float = ROUNDING_BOUND) -> str:
    """``"below 1e-12"`` for a value at rounding-error level (its printed digits would differ between CPUs),
    else the value with one significant digit (``"3e-04"``).

    Raises:
        ValueError: ``value`` is negative or not finite.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or value == float("inf"):
        raise ValueError(f"at_most takes a non-negative finite size of a difference, got {value!r}")
    return f"below {bound:.0e}" if value < bound else f"{value:.0e}"


class NonFiniteError(ValueError):
    """Per-seed values hold a NaN or inf: a diverged run's metric, or a measure undefined on too little data
    (a probe half with no interval); never averaged into an effect."""


def _flag(value, name: str) -> bool:
    """A true/false option as a bool (NumPy's bool too); a string such as ``"False"`` is refused, not read as true.

    Raises:
        ValueError: ``value`` is not a bool.
    """
    import numpy as np

    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise ValueError(f"{name} must be True or False, got {value!r}")


def _finite_number(value, name: str) -> float:
    """``value`` as a float: a real, finite number (NumPy's too), not a bool or a string.

    Raises:
        ValueError: naming ``name``.
    """
    import numpy as np

    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _count(value, name: str, least: int = 0) -> int:
    """``value`` as an int of at least ``least`` (NumPy's integers too; not a bool, a float or a string).

    Raises:
        ValueError: naming ``name``.
    """
    import numpy as np

    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < least:
        raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    return int(value)


def per_seed(values, what: str = "values", allow_nonfinite: bool = False):
    """``values`` as a float array of one value per seed, checked: at least one, every one finite (``allow_nonfinite``:
    NaN and infinities kept, for a caller that reports a diverged run itself).

    Raises:
        ValueError: no values, or a NaN or infinite one (a diverged run's metric is not an effect:
            the verdict must say the run diverged instead); the message names ``what``.
    """
    from collections.abc import Mapping

    import numpy as np

    if isinstance(values, (str, bytes, Mapping)):  # a dict's keys, a string's characters: not seeds' values
        raise ValueError(f"{what} must be a sequence of numbers, one per seed, got {type(values).__name__} {values!r}")
    try:
        listed = list(values)
        if any(isinstance(v, (str, bytes)) for v in listed):  # numpy would parse "0.1": a number typed as text
            raise TypeError("text")
        array = np.asarray(listed, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be numbers, one per seed, got {values!r}") from exc
    if any(isinstance(v, (bool, np.bool_)) for v in listed) or np.asarray(listed).dtype == bool:
        raise ValueError(f"{what} must be numbers, one per seed, not True/False (a count or a fraction of "
                         f"seeds is a number), got {values!r}")
    if array.ndim != 1:
        raise ValueError(f"{what} must be one number per seed (1-D), got an array of shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{what}: no per-seed values (a verdict over zero seeds decides nothing); compute its runs first")
    if not allow_nonfinite and not np.isfinite(array).all():
        raise NonFiniteError(f"{what} must be finite, one per seed, got {array.tolist()}: a diverged run is reported "
                             "as such, and a measure undefined on too little data decides nothing; neither is averaged")
    return array


def seed_interval(values, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """Mean and two-sided t-interval ``(mean, low, high)`` of per-seed values (NaN bounds for one seed).

    Raises:
        ValueError: no values, or a non-finite one (:func:`per_seed`).

    Source: Student's t (:func:`scipy.stats.t.interval`); the values are one effect per seed.
    """
    from scipy import stats

    confidence = _finite_number(confidence, "confidence")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1 (e.g. 0.95), got {confidence!r}")
    values = per_seed(values, "seed_interval's values")
    mean = float(values.mean())
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    sem = stats.sem(values)
    if not sem > 0:  # all seeds equal: no spread
        return mean, mean, mean
    low, high = stats.t.interval(confidence, len(values) - 1, loc=mean, scale=sem)
    return mean, float(low), float(high)


def threshold_category(low: float, high: float, threshold: float) -> str:
    """``reproduced`` if the interval lies above ``threshold``, ``contradicted`` if below, else ``inconclusive``.

    Raises:
        ValueError: a non-finite ``threshold``, bounds that are not numbers, ``low > high``, or one bound
            NaN without the other (both NaN: one seed, no interval: inconclusive).
    """
    threshold = _finite_number(threshold, "threshold")
    low, high = _bound(low, "low"), _bound(high, "high")
    if (low != low) != (high != high):
        raise ValueError(f"an interval's bounds are both numbers or both NaN (one seed), got [{low}, {high}]")
    if low != low:  # NaN: one seed, no interval
        return "inconclusive"
    if low > high:
        raise ValueError(f"an interval's low bound must not exceed its high bound, got [{low}, {high}]")
    if low > threshold:
        return "reproduced"
    if high < threshold:
        return "contradicted"
    return "inconclusive"


def _bound(value, name: str) -> float:
    """An interval bound as a float: a number (NumPy's too), NaN allowed (no interval), not a bool or string."""
    import numpy as np

    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    return float(value)


def comparable(a: float, b: float) -> bool:
    """Whether two losses are comparable (ratio <= 2 or difference <= 0.05 nats).

    Raises:
        ValueError: a loss that is not a finite number (a diverged run is reported, not compared).
    """
    a, b = _finite_number(a, "comparable's first loss"), _finite_number(b, "comparable's second loss")
    lo, hi = sorted((a, b))
    return hi - lo <= COMPARABLE_NATS or (lo > 0 and hi / lo <= COMPARABLE_RATIO)


def far_above(a: float, b: float) -> bool:
    """Whether loss ``a`` is far above ``b`` (>= 2x and >= 0.1 nats larger).

    Raises:
        ValueError: a loss that is not a finite number.
    """
    a, b = _finite_number(a, "far_above's first loss"), _finite_number(b, "far_above's second loss")
    return a - b >= FAR_NATS and a >= FAR_RATIO * b


def holds_on_means(condition, *per_seed) -> bool:
    """Whether ``condition(*means)`` holds for the seed means of the ``per_seed`` series (each a
    :class:`pandas.Series` indexed by seed, over the seeds they share), and still holds with one
    more seed equal to any observed one (each seed's values appended in turn).

    For the conditions that a reproduced effect must also meet (comparable training losses,
    a ratio of means): a "reproduced" that one more seed would demote is not decided, so the
    condition counts as unmet (our choice, the one-more-seed rule of :func:`one_more_seed`).

    Raises:
        ValueError: the series share no seed.
    """
    import numpy as np
    import pandas as pd

    if not per_seed or not all(isinstance(series, pd.Series) for series in per_seed):
        raise ValueError("holds_on_means takes pandas Series indexed by seed (e.g. final_per_seed's), got "
                         f"{[type(series).__name__ for series in per_seed]}")
    seeds = per_seed[0].index
    for series in per_seed[1:]:
        seeds = seeds.intersection(series.index)
    if len(seeds) == 0:
        raise ValueError("holds_on_means: the per-seed series share no seed; pass runs of the same seeds")
    values = [np.asarray(series[seeds], dtype=float) for series in per_seed]
    n = len(seeds)
    if not condition(*(v.mean() for v in values)):
        return False
    return all(condition(*((v.sum() + v[i]) / (n + 1) for v in values)) for i in range(n))


def _comparable_text(held: bool, a, b) -> str:
    """``"comparable"`` where ``held`` (:func:`holds_on_means` of :func:`comparable` on the per-seed loss
    series ``a`` and ``b``), else ``"not comparable"`` or, where only the seed means are, ``"comparable
    on the mean, not with one more seed"``."""
    if held:
        return "comparable"
    return "comparable on the mean, not with one more seed" if comparable(a.mean(), b.mean()) else "not comparable"


def final_by_norm(frame, batch_order: str, metric: str) -> dict[str, float]:
    """Last-epoch ``metric`` per norm for one batch order, averaged over seeds."""
    rows = frame[frame.batch_order == batch_order]
    last = rows[rows.epoch == rows.epoch.max()]
    return last.groupby("norm")[metric].mean().to_dict()


def final_metric(frame, metric: str, **where) -> dict[str, float]:
    """Last-epoch ``metric`` per norm among rows matching ``where`` (column == value), mean over seeds."""
    rows = frame
    for column, value in where.items():
        rows = rows[rows[column] == value]
    last = rows[rows.epoch == rows.epoch.max()]
    return last.groupby("norm")[metric].mean().to_dict()


PROBE_HALVES = ("odd", "even")  # the two halves of a probe schedule (:func:`probe_half`)


def _check_half(half) -> None:
    if half not in (None, *PROBE_HALVES):
        raise ValueError(f"half must be None, 'odd' or 'even', got {half!r}")


def _ratio_text(mean: float, low: float, high: float) -> str:
    return f"{mean:.2f} [{low:.2f}, {high:.2f}]"


def on_probe_halves(category: str, effect_of, unit: str = "probes", text=None) -> tuple[str, str]:
    """The probe-schedule rule: a category decided on every probe must keep it on each half of the schedule.

    ``effect_of(half)`` gives the part's effect as :func:`effect` does, ``(mean, low, high, agree,
    category)``, on one half (``"odd"`` or ``"even"``): for a median over probed steps, on every
    other probe (:func:`probe_half`); for a drift between consecutive probes, on every other
    interval (``half=`` of :func:`activation_drift`). Where cos(G, G') or an activation drifts and
    swings over training, a statistic over probes can depend on which steps are probed; a part
    that either half puts in another category is inconclusive (our rule, the probes' counterpart of
    :func:`one_more_seed`). An inconclusive part stays so, and no half is computed. ``text(mean,
    low, high)`` writes a half's interval (default signed, three decimals; ratios pass their own).

    Returns:
        ``(category, note)``: the category after the rule, and ``""`` or, where a half differs,
        ``"<category> on all <unit>; but <interval> (<its category>) on the odd-numbered <unit>...:
        the probe schedule decides it, inconclusive"`` for the verdict's measured text.
    """
    if category == "inconclusive":
        return category, ""
    halves = {}
    for half in PROBE_HALVES:
        try:
            halves[half] = effect_of(half)
        except NonFiniteError:  # too few probes to measure on every other one: the rule cannot vouch for it
            return "inconclusive", (f"{category} on all {unit}; but the {half}-numbered {unit} are too few to measure "
                                    "it on: the probe schedule cannot vouch for it, inconclusive")
    differ = [(half, e) for half, e in halves.items() if e[4] != category]
    if not differ:
        return category, ""
    return "inconclusive", (f"{category} on all {unit}; but "
                            + ", ".join(f"{(text or _interval_text)(*e[:3])} ({e[4]}) on the {half}-numbered {unit}"
                                        for half, e in differ)
                            + ": the probe schedule decides it, inconclusive")


def _name(norm: str) -> str:
    return {"none": "standard", "bn": "BN", "fn": "FN", "noisy_bn": "noisy BN", **LP_NAMES}.get(norm, norm)


# The learnability gate of the MNIST chapters: BN with shuffled batches must reach this test accuracy.
MNIST_GATE = 0.98


def require_columns(frame, columns, what: str, fix: str = "use the chapter's frame (chapter.frame())",
                    rows: bool = True) -> None:
    """Check that ``frame`` is a :class:`pandas.DataFrame` holding ``columns`` (and, with ``rows``, a row).

    Raises:
        ValueError: not a DataFrame, missing columns (named, with those it has) or no rows; the message names
            ``what`` and says ``fix``.
    """
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"{what} takes a pandas DataFrame, got {type(frame).__name__}; {fix}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what}: the frame lacks columns {missing} (it has {list(frame.columns)}); {fix}")
    if rows and frame.empty:
        raise ValueError(f"{what}: the frame has no rows (no runs match); {fix}")


def final_per_seed(frame, metric: str, **where):
    """``metric`` at each run's last epoch, per seed, among rows matching ``where`` (a
    :class:`pandas.Series` indexed by seed; a diverged run counts at the epoch where it stopped)."""
    require_columns(frame, ["seed", "epoch", metric, *where], "final_per_seed", rows=False)
    rows = frame
    for column, value in where.items():
        rows = rows[rows[column] == value]
    # each run's own last epoch: a run that diverged early is evaluated where it stopped, not dropped
    last = rows[rows.epoch == rows.groupby("seed").epoch.transform("max")]
    return last.set_index("seed")[metric].sort_index()


def _interval_text(mean: float, low: float, high: float) -> str:
    return f"{mean:+.3f} [{low:+.3f}, {high:+.3f}]" if low == low else f"{mean:+.3f} (one seed, no interval)"


def mnist_gate(frame) -> Gate:
    """Whether BN with shuffled batches (constant step size) reached :data:`MNIST_GATE` (:func:`gate`, on its
    per-seed final test accuracy); ``[1]`` is the mean."""
    return gate(final_per_seed(frame, "test_acc", norm="bn", batch_order="shuffled", lr_power=0.0), MNIST_GATE)


# Learnability gates (our choices, printed with every verdict that uses them), each judged by :func:`gate` on the
# per-seed values: the seed mean must clear the bound, and still clear it with one more seed like the worst.
# - CIFAR-10 claims about test quality count only when BN with shuffled batches reaches this test accuracy;
CIFAR_GATE = 0.70
# - claims about training (Santurkar et al.) count only when the BN network learned: its final training loss is below
#   half of the loss of a uniform guess over 10 classes (ln 10 / 2 = 1.15 nats);
TRAIN_GATE_NATS = 0.5 * 2.302585092994046
# - chapter 34 trains on 3,000 scaled MNIST images: BN at the larger batch size must reach this test accuracy.
SCALED_MNIST_GATE = 0.90
# - Ioffe's claims (chapter 37) count only where the setting costs BN at least this much test accuracy against whole
#   shuffled batches: twice the "improves" threshold, so that recovering half of the loss (Ioffe's Batch Renorm
#   recovered 2.3 of the 4.1 points microbatches cost BN) clears it; with less, Batch Renorm has too little to recover
#   for a difference from BN to mean anything.
RENORM_ROOM_ACC = 2 * BETTER_ACC


def effect(values, threshold: float, below: bool = False, parts: int = 1) -> tuple[float, float, float, int, str]:
    """Mean, t-interval, agreeing seeds and category of a per-seed effect against ``threshold``.

    ``below=False``: the claim holds when the effect exceeds ``threshold`` (interval above it:
    reproduced, below it: contradicted, straddling it or one seed: inconclusive). ``below=True``:
    the claim holds when the effect is under ``threshold``. A decided category must also survive
    one more seed (:func:`one_more_seed`); otherwise it is inconclusive (our choice). ``parts``: the
    number of parts of the claim this effect is one of; the interval is then at
    :func:`family_confidence` (Bonferroni), so that the claim's parts hold together at :data:`CONFIDENCE`.

    Raises:
        ValueError: no values, a non-finite value (:func:`per_seed`), a non-finite threshold or bad ``parts``.
    """
    values = per_seed(values, "effect's per-seed values")
    threshold = _finite_number(threshold, "effect's threshold")
    below = _flag(below, "below")
    confidence = family_confidence(parts)
    mean, low, high = seed_interval(values, confidence)
    if not math.isfinite(mean):  # finite values whose mean overflows (1e308 x 3)
        raise NonFiniteError(f"effect's per-seed values overflow: their mean is {mean}")
    if below:
        category = threshold_category(-high, -low, -threshold)
        agree = int((values < threshold).sum())
    else:
        category = threshold_category(low, high, threshold)
        agree = int((values > threshold).sum())
    if one_more_seed(values, threshold, below, parts)[1] != category:
        category = "inconclusive"
    return mean, low, high, agree, category


def one_more_seed(values, threshold: float, below: bool = False, parts: int = 1) -> tuple[str, str]:
    """A per-seed effect's category by :func:`threshold_category`, and the category it would get
    from one more seed equal to its observed seed least favourable to that category (the lowest
    for an interval above ``threshold``, the highest for one below it; mirrored for
    ``below=True``). An inconclusive effect stays inconclusive.

    A verdict that this one seed would flip is not decided: :func:`effect` calls it inconclusive
    (our choice, a worst case drawn from the seeds at hand; the guide's "a verdict that one more
    seed would flip is a defect"). ``parts`` as for :func:`effect`.
    """
    import numpy as np

    confidence = family_confidence(parts)
    threshold = _finite_number(threshold, "one_more_seed's threshold")
    signed = per_seed(values, "one_more_seed's per-seed values") * (-1.0 if _flag(below, "below") else 1.0)
    limit = -threshold if below else threshold
    now = threshold_category(*seed_interval(signed, confidence)[1:], limit)
    if now == "inconclusive":
        return now, now
    extra = signed.min() if now == "reproduced" else signed.max()
    return now, threshold_category(*seed_interval(np.append(signed, extra), confidence)[1:], limit)


def flip_note(values, threshold: float, below: bool = False, parts: int = 1) -> str:
    """``" (one more seed like its least favourable would flip it)"`` where :func:`one_more_seed`
    changes the category of these per-seed values, else ``""``: for measured texts that print an
    interval which clears its threshold yet counts as inconclusive."""
    now, after = one_more_seed(values, threshold, below, parts)
    return " (one more seed like its least favourable would flip it)" if now != after else ""


# Gates compare a seed mean with its bound allowing this much for float rounding (an absolute tolerance: gates bound
# accuracies and losses of order 1).
GATE_TOLERANCE = 1e-9


class Gate(NamedTuple):
    """A learnability gate judged on per-seed values (:func:`gate`).

    ``ok``: the seed mean clears the bound and would still clear it with one more seed equal to the
    seed least favourable to it; ``value``: the seed mean; ``after``: the mean with that seed added;
    ``on_mean``: the seed mean alone clears the bound.
    """

    ok: bool
    value: float
    after: float
    on_mean: bool


def gate(values, bound: float, below: bool = False) -> Gate:
    """A learnability gate on per-seed ``values`` (at least one): passed when their mean is at least
    ``bound`` (``below=True``: under ``bound``) and stays so with one more seed equal to the least
    favourable seed (the lowest; ``below=True``: the highest). Our choice: a gate that one more seed
    like the worst would fail does not let a verdict count, as :func:`one_more_seed` does for effects
    (the guide's "a verdict that one more seed would flip is a defect"). A failed gate stays failed.

    The comparison allows :data:`GATE_TOLERANCE` for the float rounding of a mean.

    Raises:
        ValueError: ``values`` is empty (no reference run: compute its runs first) or holds a
            non-finite value (:func:`per_seed`).
    """
    values = per_seed(values, "gate's values (the reference runs' per-seed values)")
    bound = _finite_number(bound, "gate's bound")
    below = _flag(below, "below")
    worst = values.max() if below else values.min()
    mean, after = float(values.mean()), float((values.sum() + worst) / (values.size + 1))
    # a mean within float rounding of its bound meets it (three seeds at 0.99 average to 0.98999...)
    passes = (lambda v: v < bound + GATE_TOLERANCE) if below else (lambda v: v >= bound - GATE_TOLERANCE)
    return Gate(bool(passes(mean) and passes(after)), mean, after, bool(passes(mean)))


def _narrow(g: Gate, digits: int = 3) -> str:
    """``"; but <after> with one more seed like its worst, failed"`` for a gate passed on the mean only, else ``""``."""
    return f"; but {g.after:.{digits}f} with one more seed like its worst, failed" if g.on_mean and not g.ok else ""


# What each category says about a claim's parts: which outcomes occur among them.
_OUTCOMES = {"reproduced": {"reproduced"}, "reproduced in part": {"reproduced", "inconclusive"},
             "mixed": {"reproduced", "contradicted"}, "contradicted in part": {"contradicted", "inconclusive"},
             "contradicted": {"contradicted"}, "inconclusive": {"inconclusive"}}


def combine(categories, vacuous=None) -> str:
    """One category for a claim with several parts, by symmetric rules.

    Over the parts that are evidence (``vacuous[i]`` true marks part ``i`` as fixed by construction,
    equal in both arms whatever the data: it does not count): all reproduced -> *reproduced*;
    reproduced and inconclusive -> *reproduced in part*; at least one reproduced and one contradicted
    -> *mixed*; contradicted and inconclusive -> *contradicted in part*; all contradicted ->
    *contradicted*; none decided, or no part that is evidence -> *inconclusive*. A part may itself be
    a merged category (its outcomes count). Swapping reproduced and contradicted in every part swaps
    the outcome; a vacuous part changes nothing (tests check both).

    Raises:
        ValueError: no categories, an unknown one, or ``vacuous`` of another length.
    """
    if categories is None or isinstance(categories, (str, bytes)):
        raise ValueError(f"combine: categories must be a list of the parts' categories, got {categories!r}")
    categories = list(categories)
    if not categories:
        raise ValueError("combine: a claim needs at least one part's category")
    unknown = [c for c in categories if not isinstance(c, str) or c not in _OUTCOMES]
    if unknown:
        raise ValueError(f"combine: unknown part categories {unknown}; parts are {EXPERIMENTAL}")
    if isinstance(vacuous, (str, bytes)):
        raise ValueError(f"combine: vacuous must be a list of True/False, one per part, got {vacuous!r}")
    vacuous = [False] * len(categories) if vacuous is None else [_flag(v, "combine's vacuous") for v in vacuous]
    if len(vacuous) != len(categories):
        raise ValueError(f"combine: {len(vacuous)} vacuous flags for {len(categories)} parts")
    outcomes = set().union(*(_OUTCOMES[c] for c, v in zip(categories, vacuous) if not v))
    reproduced, contradicted = "reproduced" in outcomes, "contradicted" in outcomes
    if reproduced and contradicted:
        return "mixed"
    if reproduced or contradicted:
        side = "reproduced" if reproduced else "contradicted"
        return f"{side} in part" if "inconclusive" in outcomes else side
    return "inconclusive"


def _level(parts: int) -> str:
    """A part's interval level in words: ``"95%"`` for a claim of one part, ``"98.75% (95% over the claim's 4
    parts)"`` for a claim of four (:func:`family_confidence`)."""
    if parts == 1:
        return f"{CONFIDENCE * 100:g}%"
    return f"{family_confidence(parts) * 100:.4g}% ({CONFIDENCE * 100:g}% over the claim's {parts} parts)"


def family_confidence(parts: int, confidence: float = CONFIDENCE) -> float:
    """The confidence of each part's interval so that a claim's ``parts`` intervals hold together at
    ``confidence`` (Bonferroni: ``1 - (1 - confidence) / parts``; 0.975 for 2 parts, 0.9875 for 4).

    Raises:
        ValueError: ``parts`` is not a positive integer.
    """
    import numpy as np

    if isinstance(parts, (bool, np.bool_)) or not isinstance(parts, (int, np.integer)) or parts < 1:
        raise ValueError(f"parts must be a positive integer (the claim's parts), got {parts!r}")
    confidence = _finite_number(confidence, "confidence")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1 (e.g. 0.95), got {confidence!r}")
    return 1.0 - (1.0 - confidence) / int(parts)


def _gate(ok: bool, category: str) -> str:
    """``category``, or ``inconclusive`` when the gate failed."""
    return category if ok else "inconclusive"


def _gate_text(g: Gate, bound: float, what: str, below: bool = False) -> str:
    """``"gate: <what> <mean> (>= <bound>, passed)"``, ``"(<, failed)"``, or for a gate passed on the
    mean only ``"(>= <bound>; but <after> with one more seed like its worst, failed)"``; ``below``:
    the gate asks mean < bound."""
    sign = ("<" if g.on_mean else ">=") if below else (">=" if g.on_mean else "<")
    narrow = _narrow(g)
    return f"gate: {what} {g.value:.3f} ({sign} {bound:.3f}{narrow or (', passed' if g.ok else ', failed')})"


def learnability_gate(dataset: str, mnist_bound: float, chapter: str) -> float:
    """A chapter's learnability bound on test accuracy: its own ``mnist_bound`` on MNIST (a short chapter's
    registered choice), the book's :data:`CIFAR_GATE` on CIFAR-10.

    Raises:
        ValueError: a ``dataset`` other than ``"mnist"`` or ``"cifar10"`` (the message names ``chapter``).
    """
    if dataset not in ("mnist", "cifar10"):
        raise ValueError(f"dataset must be 'mnist' or 'cifar10' ({chapter}'s), got {dataset!r}")
    return mnist_bound if dataset == "mnist" else CIFAR_GATE


def gated(values, bound: float, what: str) -> tuple[bool, str]:
    """A gate on per-seed ``values`` (:func:`gate`: their mean at least ``bound``) as ``(passed, text)`` for
    :func:`accuracy_verdict`; a non-finite value (a diverged run) fails it, with a text that says so."""
    if not all(math.isfinite(v) for v in values):
        return False, f"gate: {what}: a run diverged (failed)"
    g = gate(values, bound)
    return g.ok, _gate_text(g, bound, what)


def accuracy_verdict(claim_id: str, values, what: str, scale: str, gates: list[tuple[bool, str]],
                     below: bool = False) -> Verdict:
    """The verdict of a per-seed test-accuracy effect (fractions) against :data:`BETTER_ACC` (``below``: the claim is
    that it stays under it), made inconclusive by any failed gate of ``gates`` (``(passed, text)`` pairs, their texts
    printed after the effect). A non-finite value (a diverged run) gives no number to compare: inconclusive."""
    if not all(isinstance(g, tuple) and len(g) == 2 for g in gates):
        raise ValueError(f"gates must be (passed, text) pairs, as gated() gives, got {gates!r}")
    values = per_seed(values, f"{claim_id}'s per-seed values", allow_nonfinite=True)
    gate_texts = "; ".join(text for _, text in gates)
    if not all(math.isfinite(v) for v in values):  # the ledger names the diverged run
        return Verdict.of(claim_id, f"{what}: a run diverged (no finite test accuracy); {gate_texts}", scale,
                          "inconclusive", len(values))
    mean, low, high, agree, category = effect(values, BETTER_ACC, below=below)
    sign = "<" if below else ">"
    return Verdict.of(claim_id, f"{what} {_interval_text(mean, low, high)} ({agree}/{len(values)} seeds {sign} "
                      f"{BETTER_ACC}); {gate_texts}", scale, _gate(all(ok for ok, _ in gates), category), len(values),
                      _interval_text(mean, low, high))


def _seeds_text(agree: int, n: int, what: str) -> str:
    return f"{what} in {agree} of {n} seeds"


def train_gate(frame, **where) -> Gate:
    """Whether the reference BN runs selected by ``where`` learned: final training loss below
    :data:`TRAIN_GATE_NATS` (:func:`gate`, on the per-seed values)."""
    return gate(final_per_seed(frame, "train_loss", norm="bn", **where), TRAIN_GATE_NATS, below=True)


LP_NAMES = {"lp1": "l1", "lp2": "l2", "lpinf": "l-inf"}  # Santurkar et al.'s l_p normalizations (Section 3.3)


def cifar_gate(frame, **where) -> Gate:
    """Whether BN with shuffled batches (rows matching ``where``) reached :data:`CIFAR_GATE` (:func:`gate`, on its
    per-seed final test accuracy)."""
    return gate(final_per_seed(frame, "test_acc", norm="bn", **where), CIFAR_GATE)


def match_effect(values, parts: int = 1, bound: float = MATCH_NATS) -> tuple[float, float, float, str]:
    """Mean, t-interval and :func:`_match_category` of per-seed differences, where a decided
    category must survive one more seed equal to the observed one least favourable to it (the
    farthest from zero for a match, the nearest for a mismatch), as in :func:`one_more_seed`;
    ``parts`` as for :func:`effect`; ``bound``: the band's half-width (default :data:`MATCH_NATS`)."""
    import numpy as np

    values = per_seed(values, "match_effect's per-seed differences")
    bound = _finite_number(bound, "match_effect's bound")
    confidence = family_confidence(parts)
    mean, low, high = seed_interval(values, confidence)
    category = _match_category(low, high, bound)
    if category != "inconclusive":
        extra = values[np.argmax(np.abs(values))] if category == "reproduced" else values[np.argmin(np.abs(values))]
        if _match_category(*seed_interval(np.append(values, extra), confidence)[1:], bound) != category:
            category = "inconclusive"
    return mean, low, high, category


def _match_category(low: float, high: float, bound: float = MATCH_NATS) -> str:
    """Reproduced if the interval lies inside +-``bound``, contradicted if wholly outside, else inconclusive."""
    if low != low:
        return "inconclusive"
    if -bound <= low and high <= bound:
        return "reproduced"
    if high < -bound or low > bound:
        return "contradicted"
    return "inconclusive"


def comparable_part(a, b, parts: int = 1) -> tuple[str, str]:
    """The part "losses ``a`` and ``b`` are comparable" (:func:`comparable`) of a claim that states it beside its
    effect (Lian & Liu's Figure 4: comparable training losses), from per-seed series indexed by seed: its
    category and its interval text (the per-seed difference ``a - b``, at the level of ``parts`` as in
    :func:`effect`).

    *Reproduced* where the losses are comparable on the seed means and with one more seed like any observed one
    (:func:`holds_on_means`); *contradicted* where they are comparable by neither reading, robustly: the
    interval of ``a - b`` lies wholly outside +-:data:`COMPARABLE_NATS` (and stays so with one more seed, as in
    :func:`match_effect`), and the losses are not comparable on the means nor with one more seed; otherwise
    *inconclusive*. A part like any other (:func:`combine`): contradicted beside a reproduced effect, the claim
    is *mixed*.

    Raises:
        ValueError: the series share no seed, or hold a non-finite loss.
    """
    seeds = a.index.intersection(b.index)
    if len(seeds) == 0:
        raise ValueError("comparable_part: the per-seed series share no seed; pass runs of the same seeds")
    a, b = a[seeds], b[seeds]
    mean, low, high, band = match_effect(a - b, parts, COMPARABLE_NATS)
    text = _interval_text(mean, low, high)
    if holds_on_means(comparable, a, b):
        return "reproduced", text
    if band == "contradicted" and holds_on_means(lambda x, y: not comparable(x, y), a, b):
        return "contradicted", text
    return "inconclusive", text


def verdict_rules() -> str:
    """The rules every experimental verdict of the book follows, in Markdown, for a chapter to print
    under its verdicts (:func:`glue_rules`): the interval (:data:`CONFIDENCE`, :func:`seed_interval`),
    the categories (:func:`threshold_category`, :func:`match_effect`, :func:`combine`), the
    one-more-seed rule (:func:`one_more_seed`, :func:`holds_on_means`), the gates (:func:`gate`) and the
    training-length rule (:func:`revisit_bn.training_length.on_training_length`)."""
    return (
        f"Each effect is computed per seed (runs that share a seed are paired) and given as its mean with a "
        f"{CONFIDENCE * 100:g} % t-interval over the seeds (Student's t) and the number of seeds that agree. The "
        "category follows from where the interval lies against the threshold printed beside it: wholly on the "
        "claim's side, *reproduced*; wholly on the other side, *contradicted*; straddling it, or from one seed, "
        "*inconclusive*. For a claim that two methods match, the claim's side is inside plus or minus the threshold. "
        "A decided category must survive one more seed equal to the observed seed least favourable to it, or it is "
        "inconclusive. A condition a claim states beside its effect (such as comparable training losses) is a part of "
        "its own: holding on the seeds' means and with one more seed like any observed one, *reproduced*; failing there "
        "and with its interval wholly outside the band, *contradicted*; otherwise *inconclusive*. "
        "A gate printed in a verdict line must pass for the verdict to count: the seeds' mean must clear its bound, "
        "and still clear it with one more seed like the worst. A verdict read at the end of training (final losses "
        "and accuracies) must keep its category when every run is cut one epoch short, the whole check recomputed "
        "there (runs of different lengths are cut at the same fraction of their schedules), or it is *inconclusive*: "
        "where training stopped decides it; a claim of several parts is ruled so part by part (a part whose category "
        "changes there is inconclusive, and the parts merge again), and a verdict of one part reproduced at one length "
        "and in part at the other is in part. A claim of "
        "several parts takes each part's category with the intervals widened so that all of them hold together at "
        f"{CONFIDENCE * 100:g} % (Bonferroni: each of k parts at 1 - {1 - CONFIDENCE:g}/k), and then, by symmetric "
        "rules: all parts reproduced, *reproduced*; reproduced and inconclusive ones, *reproduced in part*; at least "
        "one reproduced and one contradicted, *mixed*; contradicted and inconclusive ones, *contradicted in part*; all "
        "contradicted, *contradicted*; none decided, *inconclusive*. A part whose two arms agree in every seed (a "
        "measure saturated by construction) is shown and not counted."
    )
