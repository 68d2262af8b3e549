"""Santurkar et al. (2018)'s claims checked against our measurements (chapters 13 and 21-25): Theorems 4.1-4.2 on
random instances, VGG's step sizes, noisy BN, the l_p normalizations, internal covariate shift and the loss
landscape. Each check returns a :class:`revisit_bn.verdicts.Verdict` by the rules of :mod:`revisit_bn.verdicts`.
"""

from __future__ import annotations

import dataclasses

from .probes import activation_drift, ics_summary, landscape_summary, probe_half, scale_drift
from .verdicts import (
    COMPARABLE_NATS,
    FAR_ACC,
    LP_NAMES,
    NonFiniteError,
    PROBE_HALVES,
    Part,
    TRAIN_GATE_NATS,
    Verdict,
    _gate,
    _gate_text,
    _interval_text,
    _level,
    _name,
    _ratio_text,
    effect,
    final_per_seed,
    gate,
    merged,
    on_probe_halves,
    train_gate,
)


# "BN does not reduce internal covariate shift": BN's median cosine is at most 0.05 above the standard network's.
ICS_COS_TOL = 0.05
# A part whose two arms both sit within this of cos(G, G')'s ceiling of 1 in every seed is vacuous: the measure is
# saturated (at a step size too small to move the gradients, G' = G for any network), so the part could not show a
# difference whatever the data; it is shown and not counted (verdicts.combine).
VACUOUS_TOL = 1e-3
# "A larger distributional shift": the drift of the activations is at least 1.5 times as large.
SHIFT_RATIO = 1.5


def check_theorem_bounds(table, rel41: float, scale: str) -> list[Verdict]:
    """Santurkar et al. Theorems 4.1 and 4.2 on random instances (:func:`revisit_bn.theory.check_bounds`
    counts, ``table`` indexed by statement and form with ``instances``, ``violations``, ``at eps = 0``,
    ``at eps > 0``) and on a real layer (``rel41``: the largest relative excess of Theorem 4.1's left side).

    Three verdicts: ``santurkar-thm4.1`` holds as printed if the 1/sqrt(m) form printed in some
    copies is never violated, as corrected if only the 1/m form (the appendix proof's) holds, else
    false; ``santurkar-thm4.2`` (eps = 0, the setting it is stated for) and
    ``santurkar-thm4.2-eps`` (eps > 0, every BN layer as implemented) hold as printed with no
    violation, else false as printed.
    """
    row = lambda form: table.loc[("Theorem 4.1", form)]  # noqa: E731
    corrected, printed = row("1/m (appendix proof)"), row("1/sqrt(m) (printed in some copies)")
    if int(printed.violations) == 0:
        cat41 = "holds as printed"
    elif int(corrected.violations) == 0 and rel41 < 1e-4:
        cat41 = "holds as corrected"
    else:
        cat41 = "false as printed"
    general = table.loc[("Theorem 4.2", "general")]
    zero, positive = int(general["at eps = 0"]), int(general["at eps > 0"])
    return [
        Verdict.of("santurkar-thm4.1",
                   f"1/m form (appendix proof): {int(corrected.violations)} violations in {int(corrected.instances):,} "
                   f"random instances, real layer (LHS-RHS)/RHS at most {rel41:.1e}; 1/sqrt(m) form (printed in some "
                   f"copies): {int(printed.violations):,} violations", scale, cat41),
        Verdict.of("santurkar-thm4.2",
                   f"{zero} violations at eps = 0", scale, "holds as printed" if zero == 0 else "false as printed"),
        Verdict.of("santurkar-thm4.2-eps",
                   f"{positive:,} violations at eps > 0", scale,
                   "holds as printed" if positive == 0 else "false as printed"),
    ]


def check_learning_rates(frame, scale: str, lrs=(0.1, 0.5)) -> Verdict:
    """Santurkar et al. Figure 1: VGG with BN trains faster than without, at lr 0.1 and at the
    larger lr 0.5. Per lr, the per-seed final training-loss difference standard - BN against
    :data:`COMPARABLE_NATS`; parts combined by :func:`combine`, each at the family-wise level;
    inconclusive if BN at the smaller lr missed the training gate (:func:`train_gate`)."""
    parts, found, intervals = [], [], []
    for lr in lrs:
        bn = final_per_seed(frame, "train_loss", norm="bn", lr=lr)
        none = final_per_seed(frame, "train_loss", norm="none", lr=lr)
        mean, low, high, agree, cat = effect(none - bn, COMPARABLE_NATS, parts=len(lrs))
        found.append(Part(f"lr {lr}", cat, _interval_text(mean, low, high), len(bn)))
        acc = {n: final_per_seed(frame, "test_acc", norm=n, lr=lr).mean() for n in ("bn", "none")}
        intervals.append(f"lr {lr}: {_interval_text(mean, low, high)}")
        parts.append(f"lr {lr}: training loss BN {bn.mean():.3f} vs standard {none.mean():.3f} nats, standard - BN "
                     f"{_interval_text(mean, low, high)} ({agree}/{len(bn)} seeds > {COMPARABLE_NATS}); test accuracy "
                     f"BN {acc['bn']:.3f} vs standard {acc['none']:.3f}")
    passed = train_gate(frame, lr=min(lrs))
    return Verdict.of(
        "santurkar-fig1",
        "; ".join(parts) + f"; {_level(len(lrs))} t-intervals; "
        + _gate_text(passed, TRAIN_GATE_NATS, f"BN's training loss at lr {min(lrs)}", below=True),
        scale, _gate(passed.ok, merged(found)), len(bn), "; ".join(intervals), found)


def noisy_shift(probes, half=None) -> tuple[float, float, float, int, str]:
    """:func:`check_noisy_bn`'s shift: per seed, noisy BN's :func:`activation_drift` over the larger
    of BN's and the standard network's, against :data:`SHIFT_RATIO` (far larger: interval above it).

    Args:
        probes: probe rows of the ``"none"``, ``"bn"`` and ``"noisy_bn"`` runs (one noise level) with
            ``norm, seed, layer, step, quantity, value`` (``act_mean``, ``act_std``).
        half: ``None``, ``"odd"`` or ``"even"``: every other probe interval (:func:`activation_drift`).

    Returns:
        :func:`effect`'s ``(mean, low, high, seeds above, category)``, before the probe-schedule rule, at
        the family-wise level of the claim's two parts.

    Raises:
        ValueError: a bad ``half``.
    """
    drift = activation_drift(probes, by=["seed", "norm"], half=half)
    seeds = sorted({seed for seed, _ in drift})
    return effect([drift[(s, "noisy_bn")] / max(drift[(s, "bn")], drift[(s, "none")]) for s in seeds], SHIFT_RATIO,
                  parts=2)


def noisy_shift_halves(probes):
    """:func:`noisy_shift` on all probe intervals and on each half of them (the probe-schedule rule's table).

    Returns:
        A :class:`pandas.DataFrame` with rows ``"all intervals"``, ``"odd intervals"``, ``"even intervals"``
        and columns ``mean``, ``low``, ``high``, ``seeds > <SHIFT_RATIO>``, ``category``; a half with too few
        probe intervals to measure on has NaN numbers and the category ``"too few probes"``.
    """
    import pandas as pd

    columns = ["mean", "low", "high", f"seeds > {SHIFT_RATIO}", "category"]
    rows = {}
    for name, half in (("all intervals", None), ("odd intervals", "odd"), ("even intervals", "even")):
        try:
            rows[name] = dict(zip(columns, noisy_shift(probes, half)))
        except NonFiniteError:
            rows[name] = dict(zip(columns, [float("nan")] * 4 + ["too few probes"]))
    return pd.DataFrame.from_dict(rows, orient="index")


def check_noisy_bn(frame, probes, scale: str) -> Verdict:
    """Santurkar et al. Figure 2: noisy BN's activations shift far more than the standard network's
    and BN's, yet it trains about as well as BN.

    Two per-seed effects: the drift ratio noisy / max(BN, standard) against :data:`SHIFT_RATIO`
    (the shift), and BN's minus noisy BN's final test accuracy below :data:`FAR_ACC` (trains as
    well), each at the family-wise level of two parts; combined by :func:`combine` (the shift
    without the training: mixed). The shift must keep its category on every other probe interval
    (:func:`on_probe_halves`), or it is inconclusive.
    """
    seeds = sorted(probes.seed.unique())
    r_mean, r_low, r_high, r_agree, shift = noisy_shift(probes)
    schedule = ""
    if probes.step.nunique() >= 3:  # two intervals at least, one a half
        shift, schedule = on_probe_halves(shift, lambda half: noisy_shift(probes, half), "probe intervals", _ratio_text)
    gap = final_per_seed(frame, "test_acc", norm="bn") - final_per_seed(frame, "test_acc", norm="noisy_bn")
    g_mean, g_low, g_high, g_agree, trains = effect(gap, FAR_ACC, below=True, parts=2)
    loss = {n: final_per_seed(frame, "train_loss", norm=n).mean() for n in ("noisy_bn", "bn", "none")}
    found = (Part("the activations shift far more", shift, f"x{_ratio_text(r_mean, r_low, r_high)}", len(seeds)),
             Part("it trains as well as BN", trains, _interval_text(g_mean, g_low, g_high), len(gap)))
    passed = train_gate(frame)
    return Verdict.of(
        "santurkar-fig2",
        f"drift ratio noisy BN / max(BN, standard) {r_mean:.2f} [{r_low:.2f}, {r_high:.2f}] (threshold {SHIFT_RATIO}, "
        f"{r_agree}/{len(seeds)} seeds" + (f"; {schedule}" if schedule else "") + f"); test accuracy BN - noisy BN {_interval_text(g_mean, g_low, g_high)} "
        f"(as well: < {FAR_ACC}, {g_agree}/{len(gap)} seeds); final training loss noisy BN {loss['noisy_bn']:.3f}, "
        f"BN {loss['bn']:.3f}, standard {loss['none']:.3f} nats; {_level(2)} t-intervals; "
        + _gate_text(passed, TRAIN_GATE_NATS, "BN's training loss", below=True),
        scale, _gate(passed.ok, merged(found)), len(seeds),
        f"shift x{_ratio_text(r_mean, r_low, r_high)}; accuracy gap {_interval_text(g_mean, g_low, g_high)}", found)


LARGER_RATIO = 1.0  # "larger distributional shift": a drift ratio above 1


def _lp_parts(frame, probes, family: int = 9) -> tuple[list[str], list[Part], list[str], int]:
    """The nine per-seed parts of :func:`check_lp_norms` for one setup: their texts, :class:`Part` s,
    short interval texts and the number of seeds; each effect at the family-wise level of the claim's
    ``family`` parts (9 for one setup)."""
    measures = {"mean": activation_drift, "scale": scale_drift}
    drifts = {}  # (measure, half) -> {(seed, norm): drift}, each computed once for the three p

    def drift_of(measure, half=None):
        if (measure, half) not in drifts:
            drifts[(measure, half)] = measures[measure](probes, by=["seed", "norm"], half=half)
        return drifts[(measure, half)]

    seeds = sorted({seed for seed, _ in drift_of("mean")})
    bn = final_per_seed(frame, "train_loss", norm="bn")
    parts, found, intervals = [], [], []
    for norm, name in LP_NAMES.items():
        shifts = []
        for measure in measures:
            def ratio_of(half=None, measure=measure, norm=norm):
                d = drift_of(measure, half)
                return effect([d[(s, norm)] / d[(s, "none")] for s in seeds], LARGER_RATIO, parts=family)

            mean, low, high, agree, cat = ratio_of()
            schedule = ""
            if probes.step.nunique() >= 3:  # two intervals at least, one a half
                cat, schedule = on_probe_halves(cat, ratio_of, "probe intervals", _ratio_text)
            found.append(Part(f"{name}: {measure} drift larger", cat, f"x{_ratio_text(mean, low, high)}", len(seeds)))
            shifts.append(f"{measure} drift ratio to standard {mean:.2f} [{low:.2f}, {high:.2f}] ({schedule or cat}, "
                          f"{agree}/{len(seeds)} seeds > {LARGER_RATIO})")
        gap = final_per_seed(frame, "train_loss", norm=norm) - bn
        g_mean, g_low, g_high, g_agree, trains = effect(gap, COMPARABLE_NATS, below=True, parts=family)
        found.append(Part(f"{name}: trains as well as BN", trains, _interval_text(g_mean, g_low, g_high), len(gap)))
        acc = final_per_seed(frame, "test_acc", norm=norm).mean()
        intervals.append(f"{name}: scale drift x{mean:.2f}, loss - BN " + _interval_text(g_mean, g_low, g_high))
        parts.append(f"{name}: " + ", ".join(shifts) + f"; training loss - BN {_interval_text(g_mean, g_low, g_high)} "
                     f"({trains}, {g_agree}/{len(gap)} seeds < {COMPARABLE_NATS}); test accuracy {acc:.3f}")
    return parts, found, intervals, len(seeds)




def check_lp_norms(frame, probes, scale: str) -> Verdict:
    """Santurkar et al. Section 3.3: l_p normalization (p = 1, 2, inf) shifts the activations'
    distribution more than the standard network does, yet optimizes about as well as BN.

    Three per-seed effects for each p: the shift of the activations' distribution against the
    standard network's, as two ratios l_p / standard, each against :data:`LARGER_RATIO` (larger:
    interval above it): of the mean drift (:func:`activation_drift`, chapter 22's measure, fixed
    before any run) and of the scale drift (:func:`scale_drift`, added after the first showed that
    it cannot see a change of spread, the shift l_p normalization leaves free); and the final
    training loss l_p - BN against :data:`COMPARABLE_NATS` (optimizes as well: interval below it;
    our choice of measure, the claim being about optimization). A drift ratio must keep its category
    on every other probe interval (:func:`on_probe_halves`), or it is inconclusive. The nine parts
    combine by :func:`combine`, each at the family-wise level of nine; inconclusive if BN missed the
    training gate (:func:`train_gate`).

    Args:
        frame: per-epoch rows with ``norm, seed, epoch, train_loss, test_acc, status``.
        probes: probe rows with ``norm, seed, layer, step, quantity, value`` (``act_mean``, ``act_std``).
    """
    parts, found, intervals, seeds = _lp_parts(frame, probes)
    bn = final_per_seed(frame, "train_loss", norm="bn")
    passed = train_gate(frame)
    standard = final_per_seed(frame, "train_loss", norm="none").mean()
    return Verdict.of(
        "santurkar-lp",
        "; ".join(parts) + f"; final training loss BN {bn.mean():.3f}, standard {standard:.3f} nats, test accuracy BN "
        f"{final_per_seed(frame, 'test_acc', norm='bn').mean():.3f}; {_level(len(found))} t-intervals; "
        + _gate_text(passed, TRAIN_GATE_NATS, "BN's training loss", below=True),
        scale, _gate(passed.ok, merged(found)), seeds, "; ".join(intervals), found)


def check_lp_norms_dln(frame, probes, scale: str) -> Verdict:
    """Santurkar et al. Section 3.3's claim (:func:`check_lp_norms`) in their 25-layer deep linear
    network trained by full-batch gradient descent, at each learning rate of ``frame``.

    At each learning rate the same nine per-seed parts as :func:`check_lp_norms` (two drift ratios
    l_p / standard above :data:`LARGER_RATIO`, training loss l_p - BN below :data:`COMPARABLE_NATS`)
    and the same gate (BN's final training loss below :data:`TRAIN_GATE_NATS`); a learning rate whose
    gate fails gives inconclusive parts. All parts combine by :func:`combine`, each at the family-wise
    level of all of them (nine a learning rate). Our choice: the paper
    names the network for Section 3.3 only in figures we could not read; the deep linear network is
    chapter 23's.

    Args:
        frame: per-step rows (one "epoch" per full-batch step) with ``lr, norm, seed, epoch,
            train_loss, test_acc, status``.
        probes: probe rows with ``lr, norm, seed, layer, step, quantity, value``.
    """
    texts, found, intervals, seeds = [], [], [], 0
    lrs = sorted(frame.lr.unique())
    for lr in lrs:
        parts, lr_found, lr_intervals, seeds = _lp_parts(frame[frame.lr == lr], probes[probes.lr == lr], 9 * len(lrs))
        passed = train_gate(frame, lr=lr)
        found += [dataclasses.replace(p, name=f"lr {lr:g}, {p.name}", category=_gate(passed.ok, p.category))
                  for p in lr_found]
        standard = final_per_seed(frame, "train_loss", norm="none", lr=lr).mean()
        texts.append(f"lr {lr:g}: " + "; ".join(parts) + f"; final training loss BN {passed.value:.3f}, standard "
                     f"{standard:.3f} nats; " + _gate_text(passed, TRAIN_GATE_NATS, "BN's training loss", below=True))
        intervals.append(f"lr {lr:g}: " + "; ".join(lr_intervals))
    return Verdict.of(
        "santurkar-lp-dln",
        " | ".join(texts) + f" | {_level(len(found))} t-intervals", scale, merged(found), seeds,
        " | ".join(intervals), found)


CHANCE_ACC = 0.1  # CIFAR-10's ten balanced classes


def check_noise_stops_standard(frame, scale: str) -> Verdict:
    """Santurkar et al. Section 2.1: the noise of noisy BN, put on the standard network (no BN),
    stops it training.

    Per seed: the noisy standard network's (``norm == "noisy_none"``) final test accuracy minus
    chance (:data:`CHANCE_ACC`), against :data:`FAR_ACC`: reproduced when its interval lies below
    (the network stayed within 5 points of chance), contradicted when above. A run that diverged
    stopped training: it counts with the test accuracy of its last evaluation (the measured text
    says how many seeds diverged and where). Gate: the noise-free standard network (``"none"``)
    learned, its final test accuracy at least 2 x :data:`FAR_ACC` above chance (:func:`gate`), so the setup
    can tell a network that stopped from one that trained (our choice of measure and gate; the
    paper shows training curves).

    Args:
        frame: per-epoch rows of both networks with ``norm, seed, epoch, test_acc, train_loss,
            status`` (as :meth:`revisit_bn.experiments.ChapterRun.frame` gives them).
    """
    noisy = final_per_seed(frame, "test_acc", norm="noisy_none")
    mean, low, high, agree, category = effect(noisy - CHANCE_ACC, FAR_ACC, below=True)
    standard_acc = final_per_seed(frame, "test_acc", norm="none")
    standard = float(standard_acc.mean())
    passed = gate(standard_acc - CHANCE_ACC, 2 * FAR_ACC)
    status = final_per_seed(frame, "status", norm="noisy_none")
    diverged = status[status != "ok"]
    steps = sorted(int(text.rsplit(" ", 1)[1]) for text in diverged)
    fate = (f"noisy standard diverged in {len(diverged)}/{len(status)} seeds (at steps {', '.join(map(str, steps))}); "
            if steps else "")
    losses = final_per_seed(frame, "train_loss", norm="noisy_none")
    noisy_loss = f"{losses.mean():.3f}" if losses.notna().all() else "not finite"
    standard_loss = final_per_seed(frame, "train_loss", norm="none").mean()
    return Verdict.of(
        "santurkar-noise-standard",
        f"final test accuracy noisy standard {noisy.mean():.3f} vs standard {standard:.3f} (chance {CHANCE_ACC}); "
        f"noisy standard - chance {_interval_text(mean, low, high)} (stopped: < {FAR_ACC}, {agree}/{len(noisy)} seeds); "
        + fate + f"final training loss noisy standard {noisy_loss}, standard {standard_loss:.3f} nats; "
        + _gate_text(passed, 2 * FAR_ACC, "the standard network's test accuracy above chance"),
        scale, _gate(passed.ok, category), len(noisy), f"above chance {_interval_text(mean, low, high)}")


def _ics_effect(probes, parts: int = 1):
    """Per seed, BN's median cos(G, G') minus the standard network's: ``(medians by norm, mean, low, high, category)``,
    at the family-wise level of ``parts``."""
    medians = ics_summary(probes, ["seed", "norm"]).ics_cos.unstack("norm")
    mean, low, high, _, cat = effect(medians["bn"] - medians["none"], ICS_COS_TOL, below=True, parts=parts)
    return medians, mean, low, high, cat


def _ics_half(part, half, parts: int = 1):
    """:func:`_ics_effect` on one half of ``part``'s probe schedule (:func:`probe_half`), in :func:`effect`'s form."""
    _, mean, low, high, cat = _ics_effect(probe_half(part, half), parts)
    return mean, low, high, None, cat


def check_ics_not_reduced(probes, scale: str, claim_id: str, by: str | None = None) -> Verdict:
    """Santurkar et al. Figure 3: BN does not reduce internal covariate shift.

    Per seed (and per value of ``by``, e.g. ``"lr"``), the effect is BN's median cos(G, G') minus
    the standard network's; the claim holds where its interval lies below :data:`ICS_COS_TOL`
    (BN's gradients are not made more alike by more than that), and is contradicted where it lies
    above. A decided part must keep its category on each half of the probe schedule (every other
    probe, :func:`on_probe_halves`; the table :func:`ics_probe_halves`), or it is inconclusive. The
    parts combine by :func:`combine`, each at the family-wise level. A part where BN's and the standard
    network's medians are both within :data:`VACUOUS_TOL` of 1 in every seed (cos(G, G') saturated, as at
    a step size too small to move the gradients) is vacuous: shown, not counted.
    """
    groups = [(None, probes)] if by is None else list(probes.groupby(by))
    parts, found, intervals, seeds = [], [], [], probes.seed.nunique()
    for value, part in groups:
        medians, mean, low, high, cat = _ics_effect(part, len(groups))
        schedule = ""
        if part.step.nunique() >= 2:
            cat, schedule = on_probe_halves(cat, lambda half, part=part: _ics_half(part, half, len(groups)))
        vacuous = bool((1.0 - medians[["bn", "none"]]).abs().max().max() <= VACUOUS_TOL)
        where = "" if by is None else f"{by} {value}: "
        found.append(Part(where.rstrip(": ") or "claim", cat, _interval_text(mean, low, high), len(medians), vacuous))
        intervals.append(where + _interval_text(mean, low, high))
        parts.append(where + "median cos(G, G') " + ", ".join(f"{_name(n)} {medians[n].mean():.3f}" for n in medians)
                     + f"; BN - standard {_interval_text(mean, low, high)} ({schedule or cat}"
                     + ("; vacuous: both saturated at 1, not counted" if vacuous else "") + ")")
    return Verdict.of(claim_id, " | ".join(parts) + f"; threshold {ICS_COS_TOL}, {seeds} seeds, "
                      f"{_level(len(groups))} t-intervals", scale, merged(found), seeds, "; ".join(intervals), found)


def ics_probe_halves(probes, by: str | None = None):
    """:func:`check_ics_not_reduced`'s effect on all probes and on every other probe: does the probe schedule decide it?

    The probed steps, sorted, are split into two interleaved halves (the 1st, 3rd, ... and the
    2nd, 4th, ... probe); each half gives the per-seed effect (BN's median cos(G, G') minus the
    standard network's) with its interval and category, as the verdict computes it on all probes
    (before its schedule rule). Where cos(G, G') swings over training, a median over probes
    depends on which steps are probed, and the halves disagree; the verdict then calls the part
    inconclusive.

    Args:
        probes: the ``"probes"`` table of standard (``norm="none"``) and BN runs, with ``seed``,
            ``step``, ``layer``, ``quantity``, ``value`` (and ``by``) columns.
        by: a column the verdict is split by (e.g. ``"lr"``), or ``None``.

    Returns:
        A :class:`pandas.DataFrame` indexed by ``by`` (or one row ``"all"``), with columns
        ``"all probes"``, ``"odd probes"``, ``"even probes"`` (text: effect, interval, category)
        and ``"agree"`` (whether the three categories are the same).

    Raises:
        ValueError: fewer than 2 probed steps.
    """
    import pandas as pd

    if probes.step.nunique() < 2:
        raise ValueError(f"probes must hold at least 2 probed steps to split them, got {probes.step.nunique()}")
    rows = {}
    for value, part in ([("all", probes)] if by is None else list(probes.groupby(by))):
        effects = {"all probes": _ics_effect(part)[1:], **{f"{half} probes": _ics_half(part, half) for half in PROBE_HALVES}}
        rows[value] = {name: f"{_interval_text(*e[:3])} ({e[-1]})" for name, e in effects.items()}
        rows[value]["agree"] = len({e[-1] for e in effects.values()}) == 1
    table = pd.DataFrame(rows).T
    table["agree"] = table["agree"].astype(bool)
    table.index.name = by or "probes"
    return table


def check_landscape(probes, scale: str) -> Verdict:
    """Santurkar et al. Figure 4: along the gradient, BN's loss varies less, its gradient changes
    less, and its effective beta-smoothness is lower than the standard network's.

    Per seed and quantity, the effect is log10(BN / standard) of the median over training; each
    part holds where its interval lies below 0 and is contradicted where it lies above, and must
    keep its category on every other probe (:func:`on_probe_halves`); the three parts combine by
    :func:`combine`, each at the family-wise level of three.
    """
    import numpy as np

    summaries = {None: landscape_summary(probes, ["seed", "norm"])}
    parts, found, intervals = [], [], []
    for column, label, short in (("loss_range", "loss range", "loss range"),
                                 ("grad_change_max", "largest gradient change", "gradient change"),
                                 ("effective_beta_smoothness", "effective beta-smoothness", "beta-smoothness")):
        def ratio_of(half=None, column=column):
            if half not in summaries:
                summaries[half] = landscape_summary(probe_half(probes, half), ["seed", "norm"])
            wide = summaries[half][column].unstack("norm")
            return effect(np.log10(wide["bn"] / wide["none"]), 0.0, below=True, parts=3)

        wide = summaries[None][column].unstack("norm")
        mean, low, high, agree, cat = ratio_of()
        schedule = ""
        if probes.step.nunique() >= 2:
            cat, schedule = on_probe_halves(cat, ratio_of)
        found.append(Part(f"{short} lower", cat, _interval_text(mean, low, high), len(wide)))
        intervals.append(f"{short}: {_interval_text(mean, low, high)}")
        parts.append(f"median {label} BN {wide['bn'].median():.3g} vs standard {wide['none'].median():.3g}, "
                     f"log10 ratio {_interval_text(mean, low, high)} ({schedule or cat}, lower in {agree}/{len(wide)} seeds)")
    seeds = probes.seed.nunique()
    return Verdict.of(
        "santurkar-fig4", "; ".join(parts) + f"; {_level(3)} t-intervals", scale,
        merged(found), seeds, "; ".join(intervals), found)
