"""The claims of Lian & Liu (2019) and Ioffe (2017), and the statements the theory chapters decide exactly, checked
against our measurements; the one module a chapter calls to publish its verdicts.

Each check reads a chapter's long results frame (one row per run and epoch, see
:meth:`revisit_bn.store.RunResult.to_frame`) and returns a :class:`revisit_bn.verdicts.Verdict`: the claim in one
line, what we measured, and its category by the rules of :mod:`revisit_bn.verdicts` (per-seed effects,
t-intervals against stated thresholds, learnability gates). Santurkar et al.'s checks are in
:mod:`revisit_bn.checks_santurkar`, the statistics of probes taken during training in :mod:`revisit_bn.probes`,
the ledger's records and glue in :mod:`revisit_bn.ledger`; chapters read all of them through this module.
"""

from __future__ import annotations

from typing import Any

from .checks_santurkar import (  # noqa: F401 (re-exported: chapters read them as claims.<name>)
    check_ics_not_reduced,
    check_landscape,
    check_learning_rates,
    check_lp_norms,
    check_lp_norms_dln,
    check_noise_stops_standard,
    check_noisy_bn,
    check_theorem_bounds,
    ics_probe_halves,
    noisy_shift_halves,
    SHIFT_RATIO,
)
from .names import NORM_LABELS
from .ledger import (  # noqa: F401 (re-exported: chapters read them as claims.<name>)
    by_paper,
    collect,
    compare_scales,
    glue_rules,
    glue_verdicts,
    reason,
    record,
    table_html,
)
from .probes import (  # noqa: F401 (re-exported: chapters read them as claims.<name>)
    activation_drift,
    ics_summary,
    landscape_summary,
    probe_half,
    scale_drift,
)
from .training_length import (  # noqa: F401 (re-exported)
    on_training_length, one_epoch_short, one_epoch_short_verdicts, with_sensitivity,
)
from .verdicts import (  # noqa: F401 (re-exported: chapters read them as claims.<name>)
    _level,
    family_confidence,
    merged,
    Part,
    _comparable_text,
    _gate,
    _gate_text,
    _interval_text,
    _narrow,
    at_most,
    BETTER_ACC,
    CATEGORIES,
    CIFAR_GATE,
    cifar_gate,
    combine,
    comparable_part,
    comparable,
    COMPARABLE_NATS,
    CONFIDENCE,
    effect,
    far_above,
    FAR_ACC,
    FAR_NATS,
    FAR_RATIO,
    final_per_seed,
    flip_note,
    gate,
    holds_on_means,
    match_effect,
    MATCH_NATS,
    mnist_gate,
    MNIST_GATE,
    on_probe_halves,
    one_more_seed,
    OUTPUT_WIDTH,
    RENORM_ROOM_ACC,
    SCALED_MNIST_GATE,
    seed_interval,
    threshold_category,
    TRAIN_GATE_NATS,
    Verdict,
    verdict_rules,
)


def check_bn_mode_gap(frame, scale: str) -> Verdict:
    """Lian & Liu Section 6.2 (mechanism of Figure 4): with single-label batches, BN's running
    statistics differ from every batch's, so on the *same training images* its evaluation-mode
    loss is far above its training-mode loss; with shuffled batches the two agree.

    Two parts (:class:`Part`, intervals at the family-wise level): under single-label batches, the
    per-seed evaluation-mode minus training-mode final loss of BN against :data:`FAR_NATS` (see
    :func:`threshold_category`); under shuffled batches, the two losses comparable
    (:func:`comparable_part`). The claim's category merges them (:func:`combine`).
    """
    get = lambda metric, order: final_per_seed(frame, metric, norm="bn", batch_order=order)  # noqa: E731
    gap = get("train_eval_loss", "label_sorted") - get("train_loss", "label_sorted")
    mean, low, high, _, category = effect(gap, FAR_NATS, parts=2)
    shuffled_eval, shuffled_train = get("train_eval_loss", "shuffled"), get("train_loss", "shuffled")
    shuffled_ok = holds_on_means(comparable, shuffled_eval, shuffled_train)
    agree, agree_interval = comparable_part(shuffled_eval, shuffled_train, parts=2)
    found = [Part("single-label: evaluation-mode loss far above training-mode", category,
                  _interval_text(mean, low, high), len(gap)),
             Part("shuffled: the two comparable", agree, agree_interval, len(shuffled_eval))]
    return Verdict.of(
        "lian-fig4-mechanism",
        f"BN training-set loss, eval vs train mode: single-label {get('train_eval_loss', 'label_sorted').mean():.3f} vs "
        f"{get('train_loss', 'label_sorted').mean():.3f} nats, difference {_interval_text(mean, low, high)} "
        f"({len(gap)} seeds); shuffled {shuffled_eval.mean():.3f} vs {shuffled_train.mean():.3f} nats "
        f"({_comparable_text(shuffled_ok, shuffled_eval, shuffled_train)}; difference {agree_interval}); "
        f"{_level(2)} t-intervals",
        scale, merged(found), len(gap), _interval_text(mean, low, high), found)


FN_LABELS = {n: NORM_LABELS[n] for n in ("fn", "fn_decoupled", "fn_exact", "fn_const")}  # the book's one label each


def check_fig4_estimator(frame, scale: str, claim_id: str, fn_norm: str = "fn", order: str = "label_sorted",
                         schedule: bool = False) -> Verdict:
    """Lian & Liu Figure 4 with one of FN's estimators: single-label batches, BN's final test loss
    far above FN's (by more than :data:`FAR_NATS`) at comparable training loss. Each method's
    training loss is its own objective: BN's (9) in training mode, FN's (10), the evaluation-mode
    loss on the training set.

    Two parts (:class:`Part`, intervals at the family-wise level): the per-seed difference BN - FN of the final
    test loss (runs paired by seed) against ``FAR_NATS``: above it reproduced, below contradicted, straddling it
    inconclusive, and a reproduced one whose BN test loss is under twice FN's (judged on the seed means by
    :func:`holds_on_means`) inconclusive; and the training objectives comparable (:func:`comparable_part`).
    The claim's category merges them (:func:`combine`): a gap with training losses that are not comparable is
    *mixed*. Inconclusive whatever the parts when BN with shuffled batches misses :data:`MNIST_GATE`
    (:func:`gate`). ``schedule`` selects FN's runs with Corollary 3's decaying rates (BN's runs keep their
    constant step size).
    """
    fn_rows = frame[(frame.lr_power > 0) if schedule else (frame.lr_power == 0)]
    bn_test = final_per_seed(frame, "test_loss", norm="bn", batch_order=order, lr_power=0.0)
    fn_test = final_per_seed(fn_rows, "test_loss", norm=fn_norm, batch_order=order)
    bn_train = final_per_seed(frame, "train_loss", norm="bn", batch_order=order, lr_power=0.0)
    fn_train = final_per_seed(fn_rows, "train_eval_loss", norm=fn_norm, batch_order=order)
    seeds = bn_test.index.intersection(fn_test.index)
    diff = bn_test[seeds] - fn_test[seeds]
    mean, low, high, _, far = effect(diff, FAR_NATS, parts=2)
    agree = sum(far_above(bn_test[s], fn_test[s]) for s in seeds)
    passed = mnist_gate(frame)
    train_ok = holds_on_means(comparable, bn_train[seeds], fn_train[seeds])
    train_part, train_interval = comparable_part(bn_train[seeds], fn_train[seeds], parts=2)
    ratio_ok = holds_on_means(lambda bn, fn: bn >= FAR_RATIO * fn, bn_test[seeds], fn_test[seeds])
    demoted = ""
    if far == "reproduced" and not ratio_ok:
        far = "inconclusive"
        demoted = f"; BN's test loss under x{FAR_RATIO:g} FN's (on the mean, or with one more seed)"
    found = [Part("BN's test loss far above FN's", far, _interval_text(mean, low, high), len(seeds)),
             Part("training objectives comparable", train_part, train_interval, len(seeds))]
    label = FN_LABELS.get(fn_norm, fn_norm)
    return Verdict.of(
        claim_id,
        f"final test loss BN {bn_test[seeds].mean():.3f} vs {label} {fn_test[seeds].mean():.3f} nats, "
        f"BN - FN {_interval_text(mean, low, high)} ({len(seeds)} seeds), "
        f"far above (> {FAR_NATS} nats and x{FAR_RATIO:g}) in {agree} of {len(seeds)} seeds; training objective BN (9) "
        f"{bn_train[seeds].mean():.3f} vs FN (10) {fn_train[seeds].mean():.3f} "
        f"({_comparable_text(train_ok, bn_train[seeds], fn_train[seeds])}; difference {train_interval}){demoted}; "
        f"{_level(2)} t-intervals; gate: BN shuffled test accuracy {passed.value:.4f} "
        f"({'>=' if passed.on_mean else '<'} {MNIST_GATE}{_narrow(passed, 4)})",
        scale, _gate(passed.ok, merged(found)), len(seeds), _interval_text(mean, low, high), found)


def check_fn_against_plain(frame, scale: str, fn_norms=("fn", "fn_decoupled")) -> Verdict:
    """Does FN beat the unnormalized network under single-label batches? (Chapter 31; the book's question.)

    Figure 4 compares FN with BN; the network without normalization, which optimizes the common
    objective (8) that FN's (10) equals up to a reparameterization, trains under single-label batches
    too. Per FN variant (a part each, at the family-wise level), per seed: the unnormalized network's
    minus FN's final test loss against :data:`COMPARABLE_NATS`: above it, FN is better (reproduced);
    below, it is not (contradicted); between, inconclusive. Gated as Figure 4 (:func:`mnist_gate`).
    """
    plain = final_per_seed(frame, "test_loss", norm="none", batch_order="label_sorted", lr_power=0.0)
    present = [n for n in fn_norms if ((frame.norm == n) & (frame.batch_order == "label_sorted")).any()]
    if plain.empty or not present:
        return Verdict.of("lian-fig4-vs-none", "this profile trains no unnormalized network (or no FN) under "
                          "single-label batches: nothing to compare", scale, "inconclusive")
    texts, found = [], []
    for norm in present:
        fn = final_per_seed(frame, "test_loss", norm=norm, batch_order="label_sorted", lr_power=0.0)
        seeds = plain.index.intersection(fn.index)
        mean, low, high, agree, category = effect(plain[seeds] - fn[seeds], COMPARABLE_NATS, parts=len(present))
        found.append(Part(FN_LABELS[norm], category, _interval_text(mean, low, high), len(seeds)))
        texts.append(f"{FN_LABELS[norm]} {fn[seeds].mean():.3f} nats, unnormalized - FN {_interval_text(mean, low, high)} "
                     f"({category}, {agree}/{len(seeds)} seeds > {COMPARABLE_NATS})")
    passed = mnist_gate(frame)
    return Verdict.of(
        "lian-fig4-vs-none",
        f"single-label batches, final test loss: unnormalized {plain.mean():.3f} nats; " + "; ".join(texts)
        + f"; {_level(len(present))} t-intervals; gate: BN shuffled test accuracy {passed[1]:.4f} (>= {MNIST_GATE})",
        scale, _gate(passed.ok, merged(found)), len(plain), "; ".join(p.interval for p in found), found)


def check_fig7_match(frame, scale: str, fn_norm: str = "fn") -> Verdict:
    """Lian & Liu Figure 7: shuffled batches, BN and FN match: the per-seed final test-loss
    difference has its t-interval inside +-:data:`MATCH_NATS` (reproduced), wholly outside it
    (contradicted), or neither (inconclusive)."""
    bn = final_per_seed(frame, "test_loss", norm="bn", batch_order="shuffled", lr_power=0.0)
    fn = final_per_seed(frame, "test_loss", norm=fn_norm, batch_order="shuffled", lr_power=0.0)
    acc_bn = final_per_seed(frame, "test_acc", norm="bn", batch_order="shuffled", lr_power=0.0)
    acc_fn = final_per_seed(frame, "test_acc", norm=fn_norm, batch_order="shuffled", lr_power=0.0)
    seeds = bn.index.intersection(fn.index)
    mean, low, high, category = match_effect(bn[seeds] - fn[seeds])
    passed = mnist_gate(frame)
    if not passed.ok:
        category = "inconclusive"
    return Verdict.of(
        "lian-fig7",
        f"final test loss BN {bn[seeds].mean():.3f} vs FN {fn[seeds].mean():.3f} nats, BN - FN "
        f"{_interval_text(mean, low, high)} ({len(seeds)} seeds); test accuracy BN {acc_bn[seeds].mean():.4f} vs FN "
        f"{acc_fn[seeds].mean():.4f}; gate: BN shuffled test accuracy {passed.value:.4f} "
        f"({'>=' if passed.on_mean else '<'} {MNIST_GATE}{_narrow(passed, 4)})",
        scale, category, len(seeds), _interval_text(mean, low, high))


def check_fn_trains_at_batch_size_one(frame, scale: str, fn_norm: str, claim_id: str) -> Verdict:
    """Lian & Liu Figure 1, FN beside BN: at batch size 1 FN's loss on the 3 samples (evaluation
    mode, which is objective (10)) falls. Effect per seed: first-epoch minus final test loss; its
    t-interval above :data:`COMPARABLE_NATS` reproduced, below contradicted, else inconclusive."""
    rows = frame[frame.norm == fn_norm]
    first = rows[rows.epoch == rows.epoch.min()].set_index("seed").test_loss.sort_index()
    last = rows[rows.epoch == rows.epoch.max()].set_index("seed").test_loss.sort_index()
    drop = first - last
    mean, low, high, _, category = effect(drop, COMPARABLE_NATS)
    label = FN_LABELS.get(fn_norm, fn_norm)
    return Verdict.of(
        claim_id,
        f"{label} loss {first.mean():.3f} -> {last.mean():.3f} nats (mean of {len(drop)} seeds), fall "
        f"{_interval_text(mean, low, high)} ({int(CONFIDENCE * 100)}% t-interval; threshold {COMPARABLE_NATS}), "
        f"falls by more than {COMPARABLE_NATS} in {int((drop > COMPARABLE_NATS).sum())} of {len(drop)} seeds",
        scale, category, len(drop), _interval_text(mean, low, high))


PROBLEM_COLUMNS = ("labels", "features", "hidden")


def problems_of(table) -> list[tuple[str, Any]]:
    """``(name, rows)`` per problem of a chapter-15 table, in order of appearance (``"3 labels in 4 dimensions,
    width 3"``);
    one unnamed problem when the table has no problem columns (rows of :func:`revisit_bn.gradient_bias.measure`)."""
    if not set(PROBLEM_COLUMNS) <= set(table.columns):
        return [("", table)]
    keys = list(dict.fromkeys(zip(*(table[c] for c in PROBLEM_COLUMNS))))
    return [(f"{labels} labels in {features} dimensions, width {hidden}",
             table[(table.labels == labels) & (table.features == features) & (table.hidden == hidden)])
            for labels, features, hidden in keys]


def check_remark1(table, scale: str, tolerance: float = 0.01, noise_factor: float = 3.0) -> list[Verdict]:
    """Lian & Liu Remark 1 on the exact small problems (:func:`revisit_bn.gradient_bias.measure` rows, with ``seed``
    and ``momentum``, and where there are several problems ``labels``, ``features`` and ``hidden``).

    Two verdicts. ``lian-remark1``: reusing the current batch for both factors of the statistics'
    term (MCSGD) biases the expected gradient: its relative bias exceeds ``max(tolerance,
    noise_factor x noise floor)`` at every problem, size, kind and seed. ``fn-decoupled-unbiased``:
    the decoupled estimator's relative bias is within that bound at the smallest estimate rate, for
    every problem, size, kind and seed (at larger rates the forward's own use of the batch adds bias).
    The measured texts give each problem's numbers.
    """
    bound = lambda rows: (rows.noise_floor * noise_factor).clip(lower=tolerance)  # noqa: E731
    mcsgd = table[table.estimator == "mcsgd"]
    biased = (mcsgd.relative_bias > bound(mcsgd))
    rate = table.momentum.min()
    small = table[(table.estimator == "decoupled") & (table.momentum == rate)]
    unbiased = (small.relative_bias <= bound(small))
    seeds = table.seed.nunique()
    sizes = sorted(table["size"].unique())
    problems = problems_of(table)
    counted = f"{seeds} seeds" + (f", {len(problems)} problems" if len(problems) > 1 else "")
    named = lambda name, text: f"{name}: {text}" if name else text  # noqa: E731
    patterns = []
    for name, rows in problems:
        low = rows[(rows.estimator == "mcsgd") & (rows.momentum == rate)]
        single, rand = low[low.kind == "single_label"], low[low.kind == "random"]
        patterns.append(named(name, (
            f"random batches{',' if name else ':'} {rand[rand['size'] == sizes[0]].relative_bias.mean():.3f} at size "
            f"{sizes[0]} -> {rand[rand['size'] == sizes[-1]].relative_bias.mean():.3f} at size {sizes[-1]}"
            f"{',' if name else ';'} single-label{'' if name else ':'} {single.relative_bias.min():.3f}-"
            f"{single.relative_bias.max():.3f}, cosine with the exact gradient {single.cosine.min():+.2f} to "
            f"{single.cosine.max():+.2f}")))
    remark = Verdict.of(
        "lian-remark1",
        f"MCSGD's relative bias exceeds max({tolerance}, {noise_factor:g} x noise floor) in {int(biased.sum())} of "
        f"{len(mcsgd)} cases ({counted}, sizes {sizes[0]}-{sizes[-1]}, both kinds, both rates); at rate "
        f"{rate:g}, " + "; ".join(patterns),
        scale, "holds as printed" if biased.all() else "false as printed", seeds)
    most = " and ".join(f"{rows.relative_bias.max():.4f}" + (f" ({name})" if name else "") for name, rows in problems_of(small))
    fast = table[(table.estimator == "decoupled") & (table.momentum == table.momentum.max())]
    others = table[table.estimator.isin(["exact", "constant"])]
    decoupled = Verdict.of(
        "fn-decoupled-unbiased",
        f"decoupled relative bias at estimate rate {rate:g}: at most {most} (within the bound in {int(unbiased.sum())} "
        f"of {len(small)} cases, {counted}); at rate {table.momentum.max():g}: up to {fast.relative_bias.max():.3f} "
        f"(the forward's update with the batch); exact and constant estimators: {others.relative_bias.min():.2f}-"
        f"{others.relative_bias.max():.2f}",
        scale, "holds as printed" if unbiased.all() else "false as printed", seeds)
    return [remark, decoupled]


# Figure 1: BN's training loss "falls" when it falls by more than this (the threshold set before chapter 32's runs).
FALL_NATS = 0.05
# Lemma 1: an estimation error "vanishes at a polynomial rate" when its fitted exponent is at least this.
DECAY_EXPONENT = 0.1
# Corollary 3: "slower" means SGD's fitted exponent exceeds MCSGD's by at least this.
SLOWER_EXPONENT = 0.05


def check_mcsgd_rates(fits, scale: str, rate_power: float, method: str = "mcsgd") -> list[Verdict]:
    """Lemma 1, Theorem 2 and Corollary 3 from per-seed fitted exponents.

    Args:
        fits: a DataFrame with columns ``batch_size, seed, method`` (``"mcsgd"``, ``"mcsgd_decoupled"``
            or ``"sgd"``), ``quantity`` (``"estimation error, layer i"`` or ``"squared gradient norm"``)
            and ``exponent``.
        rate_power: the estimate rate's exponent (alpha_k = k^-rate_power), printed beside the fits.
        method: the MCSGD whose runs are judged: ``"mcsgd"`` (FN's layers as Algorithm 4 builds
            them) gives all three verdicts; another (``"mcsgd_decoupled"``) gives Theorem 2's and
            Corollary 3's, with ids ending in ``-decoupled``.

    ``lian-lemma1``: at every batch size and layer, the per-seed exponents' interval lies above
    :data:`DECAY_EXPONENT`. ``lian-thm2``: per batch size, MCSGD's own squared-gradient-norm
    exponent against :data:`DECAY_EXPONENT` (the full gradient of objective (10) vanishes, so the
    iterates approach a stationary point). ``lian-cor3``: per batch size, the paired per-seed
    difference SGD - MCSGD of the gradient-norm exponent against :data:`SLOWER_EXPONENT`. The
    parts of each combine by :func:`combine`.

    Raises:
        ValueError: ``fits`` has no run of ``method`` or of ``"sgd"``.
    """
    missing = {method, "sgd"} - set(fits.method)
    if missing:
        raise ValueError(f"check_mcsgd_rates: fits has no runs of {sorted(missing)}; its methods are {sorted(set(fits.method))}")
    variant = method.removeprefix("mcsgd_") if method != "mcsgd" else ""
    suffix, name = (f"-{variant}", f"MCSGD ({variant})") if variant else ("", "MCSGD")
    seeds = fits.seed.nunique()
    verdicts = []
    if not variant:
        est = fits[fits.quantity.str.startswith("estimation") & (fits.method == method)]
        groups = list(est.groupby(["batch_size", "quantity"]))
        texts, found, weakest = [], [], None
        for (b, q), rows in groups:
            mean, low, high, agree, cat = effect(rows.exponent, DECAY_EXPONENT, parts=len(groups))
            found.append(Part(f"batch {b}, layer {q[-1]}", cat, _interval_text(mean, low, high), len(rows)))
            if weakest is None or low < weakest[0]:
                weakest = (low, f"lowest: batch {b}, layer {q[-1]} {mean:.2f} [{low:.2f}, {high:.2f}]")
            note = flip_note(rows.exponent, DECAY_EXPONENT, parts=len(groups))
            if q.endswith("1"):
                texts.append(f"batch {b}: {mean:.2f} [{low:.2f}, {high:.2f}]{note}")
            else:
                texts[-1] += f" / {mean:.2f} [{low:.2f}, {high:.2f}]{note}"
        verdicts.append(Verdict.of(
            "lian-lemma1",
            f"fitted exponents (layer 1 / layer 2, mean and {_level(len(groups))} t-interval over {seeds} seeds) "
            + "; ".join(texts) + f"; threshold {DECAY_EXPONENT}; the estimate rate decays with exponent {rate_power}",
            scale, merged(found), seeds, weakest[1], found))
    grad = fits[fits.quantity == "squared gradient norm"].pivot_table(index=["batch_size", "seed"], columns="method",
                                                                     values="exponent")
    sizes = grad.index.get_level_values(0).unique()
    texts, found, intervals = [], [], []
    for b, rows in grad.groupby(level=0):
        mean, low, high, agree, cat = effect(rows[method], DECAY_EXPONENT, parts=len(sizes))
        found.append(Part(f"batch {b}", cat, f"{mean:.2f} [{low:.2f}, {high:.2f}]", len(rows)))
        intervals.append(f"batch {b}: {mean:.2f} [{low:.2f}, {high:.2f}]")
        texts.append(f"batch {b}: {mean:.2f} [{low:.2f}, {high:.2f}] ({cat}, {agree}/{len(rows)} seeds > "
                     f"{DECAY_EXPONENT}){flip_note(rows[method], DECAY_EXPONENT, parts=len(sizes))}")
    verdicts.append(Verdict.of(
        f"lian-thm2{suffix}",
        f"fitted exponents of {name}'s squared full-gradient norm (mean and {_level(len(sizes))} t-interval over "
        f"{seeds} seeds) " + "; ".join(texts) + f"; threshold {DECAY_EXPONENT}", scale,
        merged(found), seeds, "; ".join(intervals), found))
    texts, found, gaps = [], [], []
    for b, rows in grad.groupby(level=0):
        mean, low, high, agree, cat = effect(rows.sgd - rows[method], SLOWER_EXPONENT, parts=len(sizes))
        found.append(Part(f"batch {b}", cat, _interval_text(mean, low, high), len(rows)))
        gaps.append(f"batch {b}: {_interval_text(mean, low, high)}")
        texts.append(f"batch {b}: {name} {rows[method].mean():.2f}, SGD {rows.sgd.mean():.2f}, SGD - {name} "
                     f"{_interval_text(mean, low, high)} ({cat}, {agree}/{len(rows)} seeds)")
    verdicts.append(Verdict.of(
        f"lian-cor3{suffix}",
        f"squared-gradient-norm exponents ({_level(len(sizes))} t-intervals): " + "; ".join(texts)
        + f"; threshold {SLOWER_EXPONENT}", scale, merged(found), seeds, "; ".join(gaps), found))
    return verdicts


def check_batch_size_one(frame, scale: str) -> Verdict:
    """Lian & Liu Figure 1: at batch size 1, BN's training loss falls while its test loss (on the
    same 3 samples, evaluation mode) rises.

    BN's training-mode output is constant at batch size 1 (it outputs its shift), so its training
    loss can fall only toward the loss of the best constant prediction, ln 3 (plain SGD keeps it
    cycling above). Per seed: the training loss's fall (first - last epoch) against :data:`FALL_NATS`
    (the threshold set before the runs; see the claim's registered changes), and the test loss's
    rise against :data:`FAR_NATS`; parts combined by :func:`combine`, each at the family-wise level.
    """
    import math

    rows = frame[frame.norm == "bn_ref"]
    first, last = (rows[rows.epoch == e].set_index("seed").sort_index() for e in (rows.epoch.min(), rows.epoch.max()))
    f_mean, f_low, f_high, f_agree, falls = effect(first.train_loss - last.train_loss, FALL_NATS, parts=2)
    r_mean, r_low, r_high, r_agree, rises = effect(last.test_loss - first.test_loss, FAR_NATS, parts=2)
    found = (Part("the training loss falls", falls, _interval_text(f_mean, f_low, f_high), len(first)),
             Part("the test loss rises", rises, _interval_text(r_mean, r_low, r_high), len(first)))
    return Verdict.of(
        "lian-fig1",
        f"BN training loss {first.train_loss.mean():.3f} -> {last.train_loss.mean():.3f} nats (its floor is "
        f"ln 3 = {math.log(3):.3f}: the training-mode output is constant), fall {_interval_text(f_mean, f_low, f_high)} "
        f"({falls}: falls by > {FALL_NATS} in {f_agree}/{len(first)} seeds); test loss {first.test_loss.mean():.3f} -> "
        f"{last.test_loss.mean():.1f} nats, rise {_interval_text(r_mean, r_low, r_high)} ({rises}: rises by > {FAR_NATS} "
        f"in {r_agree}/{len(first)} seeds; per seed {', '.join(f'{v:.0f}' for v in last.test_loss)}); "
        f"{_level(2)} t-intervals",
        scale, merged(found), len(first), _interval_text(r_mean, r_low, r_high), found)


def pick_step_sizes(frame, metric: str = "train_eval_loss") -> dict[str, float]:
    """Chapter 33's rule (our choice): per norm, the step size of the grid with the lowest final
    ``metric`` averaged over seeds; a step size with a diverged run never wins."""
    last = frame[frame.epoch == frame.epoch.max()]
    score = last.groupby(["norm", "lr"])[metric].apply(lambda v: v.mean() if v.notna().all() else float("inf"))
    return {norm: float(part.droplevel(0).idxmin()) for norm, part in score.groupby(level=0)}


def check_large_variance(frame, scale: str, step_sizes: dict[str, float]) -> Verdict:
    """Lian & Liu Figure 3: on data of large variance, logistic regression with BN does not reach
    the optimum of the common objective (final loss on the whole training set, evaluation mode)
    that plain logistic regression reaches, and FN does.

    Each method at its own step size (``step_sizes``, from :func:`pick_step_sizes`); per seed:
    BN - plain against :data:`COMPARABLE_NATS` (BN worse) and BN - FN against it (the difference
    separates BN from FN): two parts, each at the family-wise level, combined by :func:`combine`.
    """
    get = lambda n: final_per_seed(frame[frame.lr == step_sizes[n]], "train_eval_loss", norm=n)  # noqa: E731
    bn, fn, plain = get("bn"), get("fn"), get("none")
    b_mean, b_low, b_high, b_agree, worse = effect(bn - plain, COMPARABLE_NATS, parts=2)
    s_mean, s_low, s_high, s_agree, separates = effect(bn - fn, COMPARABLE_NATS, parts=2)
    found = (Part("BN stays above plain", worse, _interval_text(b_mean, b_low, b_high), len(bn)),
             Part("BN stays above FN", separates, _interval_text(s_mean, s_low, s_high), len(bn)))
    return Verdict.of(
        "lian-fig3",
        f"final loss on the whole training set (evaluation mode), each at its chosen step size "
        f"(BN {step_sizes['bn']:g}, FN {step_sizes['fn']:g}, plain {step_sizes['none']:g}): BN {bn.mean():.3f}, FN "
        f"{fn.mean():.3f}, plain {plain.mean():.3f} nats; BN - plain {_interval_text(b_mean, b_low, b_high)} "
        f"({b_agree}/{len(bn)} seeds > {COMPARABLE_NATS}); BN - FN {_interval_text(s_mean, s_low, s_high)} "
        f"({s_agree}/{len(bn)} seeds); {_level(2)} t-intervals",
        scale, merged(found), len(bn), _interval_text(b_mean, b_low, b_high), found)


def check_batch_size_robustness(frame, scale: str, small: int, large: int) -> Verdict:
    """Lian & Liu Figure 9: on MNIST with random per-sample scales, BN's runs at batch sizes
    ``small`` and ``large`` end apart while FN's end together.

    Per seed: |BN(small) - BN(large)| - |FN(small) - FN(large)| of the final test loss against
    :data:`FAR_NATS`; inconclusive when BN at ``large`` misses :data:`SCALED_MNIST_GATE`.
    """
    get = lambda n, b, m="test_loss": final_per_seed(frame, m, norm=n, batch_size=b)  # noqa: E731
    gap = {n: (get(n, small) - get(n, large)).abs() for n in ("bn", "fn")}
    mean, low, high, agree, category = effect(gap["bn"] - gap["fn"], FAR_NATS)
    passed = gate(get("bn", large, "test_acc"), SCALED_MNIST_GATE)
    return Verdict.of(
        "lian-fig9",
        f"final test loss, batch size {small} vs {large}: BN {get('bn', small).mean():.3f} vs {get('bn', large).mean():.3f}"
        f" (gap {gap['bn'].mean():.3f}); FN {get('fn', small).mean():.3f} vs {get('fn', large).mean():.3f} (gap "
        f"{gap['fn'].mean():.3f}) nats; BN gap - FN gap {_interval_text(mean, low, high)} ({agree}/{len(gap['bn'])} "
        f"seeds > {FAR_NATS}); " + _gate_text(passed, SCALED_MNIST_GATE, f"BN's test accuracy at batch size {large}"),
        scale, _gate(passed.ok, category), len(gap["bn"]), _interval_text(mean, low, high))


def check_label_limited(frame, scale: str, claim_id: str = "lian-fig5", fn_norm: str = "fn") -> Verdict:
    """Lian & Liu Figure 5: CIFAR-10 with at most 3 labels per batch: BN's test error far behind
    FN's. Per seed: FN's minus BN's final test accuracy against :data:`FAR_ACC`. Two gates: BN with
    shuffled batches reaches :data:`CIFAR_GATE`, and under label-restricted batches both BN and FN
    learned (final training loss below :data:`TRAIN_GATE_NATS`; the claim is about networks
    that fit their training batches); each gate by :func:`gate`; otherwise inconclusive.

    ``frame`` holds BN and FN runs with ``batch_order`` ``"label_limited"`` and BN runs with
    ``"shuffled"`` (the gate's reference) and nothing else of those orders; ``claim_id`` names the
    registered claim where a chapter tests it at another setup (chapter 37: batches of 32);
    ``fn_norm`` is the FN variant compared with BN (a key of :data:`FN_LABELS`)."""
    get = lambda n, m, o="label_limited": final_per_seed(frame, m, norm=n, batch_order=o)  # noqa: E731
    fn = "FN" if fn_norm == "fn" else FN_LABELS[fn_norm]
    mean, low, high, agree, category = effect(get(fn_norm, "test_acc") - get("bn", "test_acc"), FAR_ACC)
    passed = cifar_gate(frame, batch_order="shuffled")
    # both networks fit the label-restricted batches: the gate of the one with the higher mean, or of one that fails
    fits = {n: gate(get(n, "train_loss"), TRAIN_GATE_NATS, below=True) for n in ("bn", fn_norm)}
    worse = min(fits, key=lambda n: (fits[n].ok, -fits[n].value))
    learned = fits[worse]
    what = ("the higher label-restricted training loss" if learned.value == max(g.value for g in fits.values())
            else f"{'BN' if worse == 'bn' else fn}'s label-restricted training loss")
    return Verdict.of(
        claim_id,
        f"final training loss BN {get('bn', 'train_loss').mean():.3f} vs {fn} {get(fn_norm, 'train_loss').mean():.3f} nats; "
        f"test error BN {1 - get('bn', 'test_acc').mean():.3f} vs {fn} {1 - get(fn_norm, 'test_acc').mean():.3f}; {fn} - BN "
        f"accuracy {_interval_text(mean, low, high)} ({agree}/{len(get('bn', 'test_acc'))} seeds > {FAR_ACC}); "
        + _gate_text(passed, CIFAR_GATE, "BN's shuffled test accuracy") + "; "
        + _gate_text(learned, TRAIN_GATE_NATS, what, below=True),
        scale, _gate(passed.ok and learned.ok, category), frame.seed.nunique(), _interval_text(mean, low, high))


def check_shuffled_cifar(frame, scale: str) -> Verdict:
    """Lian & Liu Figure 8: CIFAR-10 with shuffled batches, BN and FN match: the per-seed final
    test-loss difference has its interval inside +-:data:`MATCH_NATS`; gated by :data:`CIFAR_GATE`."""
    bn = final_per_seed(frame, "test_loss", norm="bn", batch_order="shuffled")
    fn = final_per_seed(frame, "test_loss", norm="fn", batch_order="shuffled")
    mean, low, high, category = match_effect(bn - fn)
    passed = cifar_gate(frame, batch_order="shuffled")
    return Verdict.of(
        "lian-fig8",
        f"final test loss BN {bn.mean():.3f} vs FN {fn.mean():.3f} nats, BN - FN {_interval_text(mean, low, high)} "
        f"({len(bn)} seeds); " + _gate_text(passed, CIFAR_GATE, "BN's shuffled test accuracy"),
        scale, _gate(passed.ok, category), len(bn), _interval_text(mean, low, high))


def check_batch_size_dependence(frame, scale: str) -> Verdict:
    """Lian & Liu Figure 2: ResNet18 on CIFAR-10: the smaller the batch, the worse BN's solution.

    Per seed: BN's final test loss at the smallest minus the largest batch size against
    :data:`COMPARABLE_NATS`; inconclusive when BN at the largest batch misses :data:`CIFAR_GATE`.
    Where the frame has FN runs, the measurement also gives FN's difference with its interval
    (context: FN's output does not depend on the batch; the category rests on BN's).
    """
    sizes = sorted(frame.batch_size.unique())
    get = lambda n, b, m="test_loss": final_per_seed(frame, m, norm=n, batch_size=b)  # noqa: E731
    mean, low, high, agree, category = effect(get("bn", sizes[0]) - get("bn", sizes[-1]), COMPARABLE_NATS)
    passed = cifar_gate(frame, batch_size=sizes[-1])
    fn = ""
    if (frame.norm == "fn").any():  # the same difference for FN, whose output does not depend on the batch: context
        fn_mean, fn_low, fn_high, fn_agree, _ = effect(get("fn", sizes[0]) - get("fn", sizes[-1]), COMPARABLE_NATS)
        fn = (f"; FN smallest - largest {_interval_text(fn_mean, fn_low, fn_high)} ({fn_agree}/{frame.seed.nunique()} seeds > "
              f"{COMPARABLE_NATS})")
    return Verdict.of(
        "lian-fig2",
        "final test loss by batch size, BN: " + ", ".join(f"{b}: {get('bn', b).mean():.3f}" for b in sizes)
        + "; FN: " + ", ".join(f"{b}: {get('fn', b).mean():.3f}" for b in sizes if (frame.norm == "fn").any())
        + f" nats; BN smallest - largest {_interval_text(mean, low, high)} ({agree}/{frame.seed.nunique()} seeds > "
        f"{COMPARABLE_NATS}){fn}; " + _gate_text(passed, CIFAR_GATE, f"BN's test accuracy at batch {sizes[-1]}"),
        scale, _gate(passed.ok, category), frame.seed.nunique(), _interval_text(mean, low, high))


def check_renorm_improves(frame, scale: str, setting: str, claim_id: str) -> Verdict:
    """Ioffe 2017, Sections 4.2-4.3: in ``setting`` (a value of the frame's ``setting`` column),
    Batch Renorm's test accuracy is above BN's. Per seed: BRN - BN final test accuracy against
    :data:`BETTER_ACC`. Gates: BN with whole shuffled batches (``setting == "reference"``) reaches
    :data:`CIFAR_GATE`; the setting costs BN at least :data:`RENORM_ROOM_ACC` of final test
    accuracy against that reference, so that there is something for Batch Renorm to recover; and
    in the non-i.i.d. setting (``"non_iid"``), GroupNorm, whose output does not depend on the
    batch, fits the non-i.i.d. batches (final training loss below :data:`TRAIN_GATE_NATS`):
    the batch order lets SGD learn at this budget, so a BRN - BN difference compares networks that
    learned. Each gate by :func:`gate` (per seed, paired for the cost). Otherwise inconclusive
    (our choice of gates).

    Raises:
        ValueError: the non-i.i.d. setting without GroupNorm (``"gn"``) runs."""
    rows = frame[frame.setting == setting]
    get = lambda n, m="test_acc": final_per_seed(rows, m, norm=n)  # noqa: E731
    mean, low, high, agree, category = effect(get("brn") - get("bn"), BETTER_ACC)
    others = ", ".join(f"{FN_LABELS.get(n, n.upper())} {get(n).mean():.3f}" for n in sorted(rows.norm.unique())
                       if n not in ("bn", "brn"))
    reference = frame[frame.setting == "reference"]
    passed = cifar_gate(reference)
    gates = _gate_text(passed, CIFAR_GATE, "BN's test accuracy, whole shuffled batches")
    room = gate(final_per_seed(reference, "test_acc", norm="bn") - get("bn"), RENORM_ROOM_ACC)  # paired by seed
    ok = passed.ok and room.ok
    gates += "; " + _gate_text(room, RENORM_ROOM_ACC, "what the setting costs BN in test accuracy (room for Batch Renorm)")
    if setting == "non_iid":
        if "gn" not in set(rows.norm):
            raise ValueError("check_renorm_improves: the non-i.i.d. gate needs GroupNorm ('gn') runs in the frame; add 'gn' to norms")
        fit = gate(get("gn", "train_loss"), TRAIN_GATE_NATS, below=True)
        ok = ok and fit.ok
        gates += "; " + _gate_text(fit, TRAIN_GATE_NATS, "GN's non-i.i.d. training loss", below=True)
    return Verdict.of(
        claim_id,
        f"final test accuracy BN {get('bn').mean():.3f} vs BRN {get('brn').mean():.3f}" + (f"; {others}" if others else "")
        + f"; BRN - BN {_interval_text(mean, low, high)} ({agree}/{len(get('bn'))} seeds > {BETTER_ACC}); " + gates,
        scale, _gate(ok, category), len(get("bn")), _interval_text(mean, low, high))


def _decided(claim_id: str, name: str, checks) -> dict[str, bool]:
    """``checks`` with each outcome as a bool: Python's, NumPy's or SymPy's true/false. Anything else (a
    string, None from an undecided SymPy query, a number) is refused: it would read as "holds" by truth value.

    Raises:
        ValueError: naming the claim, the argument and the check.
    """
    import numpy as np

    if not isinstance(checks, dict):
        raise ValueError(f"{claim_id}: {name} must be a dict of check -> True/False, got {type(checks).__name__}")
    out = {}
    for check, ok in checks.items():
        if isinstance(ok, (bool, np.bool_)) or type(ok).__name__ in ("BooleanTrue", "BooleanFalse"):
            out[check] = bool(ok)
        else:
            raise ValueError(f"{claim_id}: {name}[{check!r}] must be True or False (an exact check's outcome), "
                             f"got {ok!r}; an undecided SymPy query (None) decides nothing")
    return out


def check_exact(claim_id: str, printed: dict[str, bool], scale: str, corrected: dict[str, bool] | None = None,
                correction: str = "", note: str = "") -> Verdict:
    """A mathematical statement decided by exact (SymPy) computations, in the categories for mathematics.

    Args:
        claim_id: a registered claim (:mod:`revisit_bn.registry`: its words and source).
        printed: ``{check: holds}``, the computations that decide the statement as printed (an
            identity that simplifies to 0, an exact minimizer, a counterexample that must not exist).
        corrected: the same for our corrected statement, where the printed one can fail.
        correction: the correction in words, named in ``measured`` when the verdict rests on it.
        note: what the checks show beyond the statement (e.g. outside its stated setting), added
            to ``measured``; it does not change the category.

    Returns:
        *holds as printed* when every printed check holds; else *holds as corrected* when
        ``corrected`` is given and every one of its checks holds; else *false as printed*.
        ``measured`` lists every check with ``holds`` or ``fails``.

    Raises:
        ValueError: ``printed`` is empty, or ``corrected`` is given empty or without ``correction``.
    """
    if not printed:
        raise ValueError(f"{claim_id}: printed must name at least one check, e.g. {{'identity (10) = (8)': True}}")
    if corrected is not None and (not corrected or not correction):
        raise ValueError(f"{claim_id}: a corrected statement needs its checks (corrected) and its words (correction)")
    printed = _decided(claim_id, "printed", printed)
    corrected = _decided(claim_id, "corrected", corrected) if corrected is not None else None
    text = lambda checks: "; ".join(f"{name}: {'holds' if ok else 'fails'}" for name, ok in checks.items())  # noqa: E731
    measured = text(printed)
    if all(printed.values()):
        category = "holds as printed"
    elif corrected is not None and all(corrected.values()):
        category = "holds as corrected"
        measured += f"; corrected ({correction}): {text(corrected)}"
    else:
        category = "false as printed"
        if corrected is not None:
            measured += f"; corrected ({correction}): {text(corrected)}"
    if note:
        measured += f"; {note}"
    return Verdict.of(claim_id, measured, scale, category)
