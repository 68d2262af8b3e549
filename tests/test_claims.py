"""Verdicts turn measurements into categories, every way: reproduced, in part, contradicted, inconclusive."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from revisit_bn import claims, commands, results, training_length, verdicts
from revisit_bn.experiments import CHAPTERS


class _WithTestClaims(dict):
    """The registry, plus a stand-in claim for every id the unit tests make up (``x``, ``x-1``, ...)."""

    def __contains__(self, claim_id):
        return super().__contains__(claim_id) or str(claim_id).startswith("x")

    def __getitem__(self, claim_id):
        if super().__contains__(claim_id):
            return super().__getitem__(claim_id)
        from revisit_bn.registry import Claim

        return Claim(claim_id, "a paper", "paper", "claim", "paper", "99-chapter", "a measure")


@pytest.fixture(autouse=True)
def _test_claims(monkeypatch):
    from revisit_bn import registry

    monkeypatch.setattr(registry, "CLAIMS", _WithTestClaims(registry.CLAIMS))


def test_thresholds():
    assert claims.comparable(0.04, 0.08) and claims.comparable(0.001, 0.03) and not claims.comparable(0.1, 0.3)
    assert claims.far_above(0.5, 0.2) and not claims.far_above(0.15, 0.07) and not claims.far_above(0.3, 0.2)


def _seeded(values, shuffled_acc=0.985, epochs=2):
    """values: {(norm, order): [(train_loss, test_loss) per seed]} -> frame with lr_power 0 and a BN shuffled run per seed."""
    rows = []
    seeds = len(next(iter(values.values())))
    values = {("bn", "shuffled"): [(0.05, 0.05)] * seeds, **values}
    for (norm, order), per_seed in values.items():
        for seed, (train, test) in enumerate(per_seed):
            for epoch in range(1, epochs + 1):
                factor = 2.0 if epoch < epochs else 1.0  # only the last epoch counts
                rows.append(dict(epoch=epoch, norm=norm, batch_order=order, seed=seed, lr_power=0.0,
                                 train_loss=train * factor, train_eval_loss=train * factor, test_loss=test * factor,
                                 test_acc=shuffled_acc if order == "shuffled" else 0.9))
    return pd.DataFrame(rows)


def test_fig4_reproduced_when_every_seed_shows_the_gap():
    frame = _seeded({("bn", "label_sorted"): [(0.05, 1.5), (0.05, 1.4), (0.05, 1.6)],
                     ("fn", "label_sorted"): [(0.08, 0.2), (0.08, 0.25), (0.08, 0.22)]})
    verdict = claims.check_fig4_estimator(frame, "unit", "lian-fig4")
    assert verdict.category == "reproduced" and verdict.reproduced
    assert "3 of 3 seeds" in verdict.measured and "t-interval" in verdict.measured


def test_fig4_contradicted_when_the_interval_lies_below_the_threshold():
    frame = _seeded({("bn", "label_sorted"): [(0.05, 0.21), (0.05, 0.22), (0.05, 0.20), (0.05, 0.21)],
                     ("fn", "label_sorted"): [(0.08, 0.20), (0.08, 0.21), (0.08, 0.22), (0.08, 0.19)]})
    verdict = claims.check_fig4_estimator(frame, "unit", "lian-fig4")
    # the gap part is contradicted; the training objectives (0.05 vs 0.08) are comparable: the claim is mixed
    assert [p.category for p in verdict.parts] == ["contradicted", "reproduced"] and verdict.category == "mixed"


def test_fig4_inconclusive_when_one_seed_would_flip_it():
    # the seeds of the issue that reported it: FN vs BN 0.221 vs 0.219, 0.104 vs 0.235, 0.118 vs 0.265
    frame = _seeded({("bn", "label_sorted"): [(0.05, 0.219), (0.05, 0.235), (0.05, 0.265)],
                     ("fn", "label_sorted"): [(0.08, 0.221), (0.08, 0.104), (0.08, 0.118)]})
    verdict = claims.check_fig4_estimator(frame, "unit", "lian-fig4")
    # the gap is undecided; the training objectives (0.05 vs 0.08) are comparable: reproduced in part, not reproduced
    assert [p.category for p in verdict.parts] == ["inconclusive", "reproduced"]
    assert verdict.category == "reproduced in part" and not verdict.reproduced


def test_fig4_mixed_when_training_losses_differ_and_inconclusive_below_the_gate():
    # the gap is reproduced and the training objectives are not comparable in any seed: a contradicted part (issue 34)
    values = {("bn", "label_sorted"): [(0.01, 1.5), (0.01, 1.4), (0.01, 1.6)],
              ("fn", "label_sorted"): [(0.5, 0.2), (0.49, 0.25), (0.51, 0.22)]}
    verdict = claims.check_fig4_estimator(_seeded(values), "unit", "x")
    assert verdict.category == "mixed"
    assert [(p.name, p.category) for p in verdict.parts] == [("BN's test loss far above FN's", "reproduced"),
                                                              ("training objectives comparable", "contradicted")]
    assert "97.5% (95% over the claim's 2 parts) t-intervals" in verdict.measured
    # no gap and training objectives apart in every seed: both parts contradicted
    values = {("bn", "label_sorted"): [(0.01, 0.21), (0.01, 0.22), (0.01, 0.20), (0.01, 0.21)],
              ("fn", "label_sorted"): [(0.5, 0.20), (0.49, 0.21), (0.51, 0.22), (0.5, 0.19)]}
    assert claims.check_fig4_estimator(_seeded(values), "unit", "x").category == "contradicted"
    # training losses apart on the mean but within the band in a seed's interval: undecided, the gap alone decides
    values = {("bn", "label_sorted"): [(0.01, 1.5), (0.01, 1.4), (0.01, 1.6)],
              ("fn", "label_sorted"): [(0.02, 0.2), (0.3, 0.25), (0.05, 0.22)]}
    assert claims.check_fig4_estimator(_seeded(values), "unit", "x").category == "reproduced in part"
    verdict = claims.check_fig4_estimator(_seeded(values, shuffled_acc=0.9), "unit", "x")
    assert verdict.category == "inconclusive" and "gate" in verdict.measured


@pytest.mark.parametrize("fn_losses,category", [([0.05, 0.06, 0.04], "reproduced"), ([0.3, 0.32, 0.31], "contradicted"),
                                                ([0.05, 0.2, -0.05], "inconclusive")])
def test_fig7_match_needs_the_interval_inside_the_band(fn_losses, category):
    frame = _seeded({("fn", "shuffled"): [(0.05, v) for v in fn_losses]})
    assert claims.check_fig7_match(frame, "unit").category == category


@pytest.mark.parametrize("sorted_eval,shuffled_eval,expected", [(0.3, 0.06, "reproduced"), (0.08, 0.06, "mixed"),
                                                                  (0.3, 0.5, "mixed"), (0.08, 0.5, "contradicted")])
def test_bn_mode_gap_needs_a_gap_only_under_label_sorted_batches(sorted_eval, shuffled_eval, expected):
    frame = _seeded({("bn", "label_sorted"): [(0.05, 0.3)] * 3})
    last = frame.epoch == 2
    frame.loc[(frame.batch_order == "label_sorted") & last, "train_eval_loss"] = [sorted_eval, sorted_eval + 0.01,
                                                                                  sorted_eval - 0.01]
    frame.loc[(frame.batch_order == "shuffled") & last, "train_eval_loss"] = shuffled_eval
    assert claims.check_bn_mode_gap(frame, "unit").category == expected


def test_seed_interval_and_threshold_categories():
    mean, low, high = claims.seed_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and low < 1.0 and high > 3.0
    assert claims.seed_interval([1.0])[1] != claims.seed_interval([1.0])[1]  # NaN: no interval from one seed
    assert claims.threshold_category(0.2, 0.3, 0.1) == "reproduced"
    assert claims.threshold_category(0.0, 0.05, 0.1) == "contradicted"
    assert claims.threshold_category(0.05, 0.3, 0.1) == "inconclusive"


@pytest.mark.parametrize("values,expected", [
    ([0.2, 0.25, 0.3, 0.22, 0.28], "reproduced"),
    # chapter 14's Lemma 1 exponents at batch 128, layer 1: interval [0.107, 0.438] above 0.1, but one more seed
    # like the lowest (0.0645) would bring its lower end below the threshold
    ([0.0645, 0.2966, 0.4278, 0.3223, 0.2495], "inconclusive"),
    ([0.0, 0.02, 0.03, 0.04, 0.10], "contradicted"),
    ([0.0, 0.02, 0.03, 0.04, 0.11], "inconclusive"),  # interval below 0.1 only until a seed like the highest
])
def test_a_decided_category_must_survive_one_more_seed_like_its_least_favourable(values, expected):
    assert claims.effect(values, 0.1)[4] == expected
    assert claims.effect([-v for v in values], -0.1, below=True)[4] == expected  # mirrored claim
    decided = claims.threshold_category(*claims.seed_interval(values)[1:], 0.1)
    assert (decided != expected) == bool(claims.flip_note(values, 0.1))
    assert claims.one_more_seed(values, 0.1) == (decided, "inconclusive" if decided != expected else decided)


@pytest.mark.parametrize("values,expected", [([0.0, 0.01, 0.02, 0.015, 0.05], "reproduced"),
                                             ([0.0, 0.01, 0.02, 0.015, 0.06], "inconclusive"),
                                             ([0.2, 0.3, 0.25, 0.22, 0.28], "contradicted")])
def test_a_match_must_survive_one_more_seed_like_its_farthest(values, expected):
    assert claims.match_effect(values)[3] == expected


def test_verdict_category_must_be_known_and_agree_with_reproduced():
    with pytest.raises(ValueError, match="category"):
        claims.Verdict("x", "s", "c", "m", "unit", True, "mostly reproduced")
    with pytest.raises(ValueError, match="disagrees"):
        claims.Verdict("x", "s", "c", "m", "unit", True, "contradicted")
    verdict = claims.Verdict.of("x", "m", "unit", "holds as printed")
    assert verdict.reproduced and verdict.verdict == "holds as printed" and "HOLDS AS PRINTED" in verdict.line()


def test_fn_trains_at_batch_size_one_is_judged_over_seeds():
    rows = [dict(epoch=e, norm="fn", seed=s, test_loss=loss) for s in range(3)
            for e, loss in ((1, 1.1), (2, 0.2 + 0.01 * s))]
    assert claims.check_fn_trains_at_batch_size_one(pd.DataFrame(rows), "unit", "fn", "x").category == "reproduced"
    rows = [dict(epoch=e, norm="fn", seed=s, test_loss=loss) for s in range(3)
            for e, loss in ((1, 1.1), (2, 1.1 + 0.01 * s))]
    assert claims.check_fn_trains_at_batch_size_one(pd.DataFrame(rows), "unit", "fn", "x").category == "contradicted"


def _per_seed(rows_by_key, columns, seeds=5, jitter=0.01, epochs=2, **fixed):
    """{key tuple: final values tuple} -> a frame with one row per seed and epoch; the values get a
    small seed-dependent jitter (so intervals exist) and are doubled before the last epoch."""
    rows = []
    for key, values in rows_by_key.items():
        for seed in range(seeds):
            for epoch in range(1, epochs + 1):
                factor = 1.0 if epoch == epochs else 2.0
                row = dict(zip(columns[:len(key)], key), seed=seed, epoch=epoch, **fixed)
                row.update({c: (v + jitter * (seed - seeds // 2)) * factor
                            for c, v in zip(columns[len(key):], values)})
                rows.append(row)
    return pd.DataFrame(rows)


def test_a_gate_passes_only_if_one_more_seed_like_its_worst_would_not_fail_it():
    # GN's non-i.i.d. training loss in chapter 37: mean 1.105 under 1.151, worst seed 1.127
    g = claims.gate([1.07, 1.118, 1.127], claims.TRAIN_GATE_NATS, below=True)
    assert g.ok and g.on_mean and g.value == pytest.approx(1.105) and g.after == pytest.approx((3 * 1.105 + 1.127) / 4)
    # the mean passes, the worst seed is far above: one more seed like it would fail the gate
    narrow = claims.gate([0.9, 0.95, 1.55], claims.TRAIN_GATE_NATS, below=True)
    assert narrow.on_mean and not narrow.ok and narrow.after == pytest.approx(4.95 / 4)
    text = verdicts._gate_text(narrow, claims.TRAIN_GATE_NATS, "BN's training loss", below=True)
    assert text == "gate: BN's training loss 1.133 (< 1.151; but 1.238 with one more seed like its worst, failed)"
    # the same rule upward (accuracy gates), and a gate failed on the mean stays failed whatever its best seed
    assert not claims.gate([0.71, 0.72, 0.64], claims.CIFAR_GATE).ok and claims.gate([0.71, 0.72, 0.70], claims.CIFAR_GATE).ok
    failed = claims.gate([0.6, 0.6, 0.85], claims.CIFAR_GATE)
    assert not failed.ok and not failed.on_mean
    assert verdicts._gate_text(failed, claims.CIFAR_GATE, "x") == "gate: x 0.683 (< 0.700, failed)"
    with pytest.raises(ValueError, match="compute its runs first"):
        claims.gate([], claims.CIFAR_GATE)


def _cifar_orders(rows):
    """{(norm, batch_order): (train_loss, test_loss, test_acc)} -> a 5-seed frame (see :func:`_per_seed`)."""
    return _per_seed(rows, ["norm", "batch_order", "train_loss", "test_loss", "test_acc"], jitter=0.002)


def _set_seed_0(frame, norm, order, metric, value):
    """Seed 0's final ``metric`` of ``norm`` under ``order`` set to ``value`` (one seed far from the others)."""
    last = frame.epoch == frame.epoch.max()
    frame.loc[last & (frame.norm == norm) & (frame.batch_order == order) & (frame.seed == 0), metric] = value
    return frame


def test_a_verdict_past_a_gate_on_the_mean_only_is_inconclusive():
    frame = _cifar_orders({("bn", "label_limited"): (0.5, 0.3, 0.4), ("fn", "label_limited"): (0.5, 0.3, 0.6),
                           ("bn", "shuffled"): (0.8, 0.8, 0.75), ("fn", "shuffled"): (0.8, 0.81, 0.75)})
    assert claims.check_shuffled_cifar(frame, "unit").category == "reproduced"
    # one BN seed far under the CIFAR gate: the mean (0.711) still clears 0.70, one more such seed would not (0.684)
    verdict = claims.check_shuffled_cifar(_set_seed_0(frame, "bn", "shuffled", "test_acc", 0.55), "unit")
    assert verdict.category == "inconclusive"
    assert "BN's shuffled test accuracy 0.711 (>= 0.700; but 0.684 with one more seed like its worst, failed)" in verdict.measured


def test_effect_and_combine_categories():
    assert claims.effect([0.3, 0.31, 0.29], 0.1)[-1] == "reproduced"
    assert claims.effect([0.3, 0.31, 0.29], 0.1, below=True)[-1] == "contradicted"
    assert claims.effect([0.0, 0.01, -0.01], 0.1, below=True)[-1] == "reproduced"
    assert claims.effect([0.0, 0.3], 0.1)[-1] == "inconclusive"
    assert claims.effect([0.3], 0.1)[-1] == "inconclusive"  # one seed: no interval
    assert claims.combine(["reproduced", "reproduced"]) == "reproduced"
    assert claims.combine(["reproduced", "inconclusive"]) == "reproduced in part"
    assert claims.combine(["reproduced", "contradicted"]) == "mixed"
    assert claims.combine(["contradicted", "inconclusive"]) == "contradicted in part"
    assert claims.combine(["contradicted", "contradicted"]) == "contradicted"
    assert claims.combine(["inconclusive", "inconclusive"]) == "inconclusive"


_SWAP = {"reproduced": "contradicted", "contradicted": "reproduced", "reproduced in part": "contradicted in part",
         "contradicted in part": "reproduced in part", "mixed": "mixed", "inconclusive": "inconclusive"}
_PARTS = ("reproduced", "contradicted", "inconclusive")


def _every_claim(most=4):
    import itertools

    for k in range(1, most + 1):
        yield from itertools.product(_PARTS, repeat=k)


def test_swapping_reproduced_and_contradicted_in_every_part_swaps_the_outcome():
    # every claim of up to 4 parts: the rules favour neither side
    for parts in _every_claim():
        assert claims.combine([_SWAP[c] for c in parts]) == _SWAP[claims.combine(parts)], parts


def test_a_vacuous_part_changes_nothing():
    for parts in _every_claim(3):
        for extra in _PARTS:
            assert claims.combine([*parts, extra], [False] * len(parts) + [True]) == claims.combine(parts), (parts, extra)
    assert claims.combine(["reproduced"], [True]) == "inconclusive"  # no part is evidence: nothing is decided
    assert claims.merged([claims.Part("a", "reproduced", vacuous=True), claims.Part("b", "contradicted")]) == "contradicted"


def test_no_claim_with_a_reproduced_and_a_contradicted_part_reads_reproduced_in_part():
    for parts in _every_claim():
        outcome = claims.combine(parts)
        if "reproduced" in parts and "contradicted" in parts:
            assert outcome == "mixed", parts
        assert outcome in claims.CATEGORIES
        assert (outcome == "reproduced") == all(c == "reproduced" for c in parts)


def test_a_claims_parts_hold_together_at_the_family_wise_level():
    assert claims.family_confidence(1) == 0.95 and claims.family_confidence(2) == pytest.approx(0.975)
    values = [0.15, 0.19, 0.13, 0.17, 0.12]  # clears 0.1 at 95 %, not at 98.75 % (4 parts)
    assert claims.effect(values, 0.1)[-1] == "reproduced" and claims.effect(values, 0.1, parts=4)[-1] == "inconclusive"
    wider = claims.effect(values, 0.1, parts=4)
    narrow = claims.effect(values, 0.1)
    assert wider[1] < narrow[1] and wider[2] > narrow[2]
    with pytest.raises(ValueError, match="parts must be a positive integer"):
        claims.family_confidence(0)


def _bs1(bn_first, bn_last):
    """BN (bn_ref) and FN at batch size 1: (train_loss, test_loss) at the first and last epoch, per seed lists."""
    rows = []
    for seed, (first, last) in enumerate(zip(bn_first, bn_last)):
        for epoch, (train, test) in ((1, first), (2, last)):
            rows.append(dict(norm="bn_ref", seed=seed, epoch=epoch, train_loss=train, test_loss=test))
            rows.append(dict(norm="fn", seed=seed, epoch=epoch, train_loss=1.0 / epoch, test_loss=1.0 / epoch))
    return pd.DataFrame(rows)


@pytest.mark.parametrize("last_tests,last_train,expected", [
    ([50, 60, 55, 52, 58], 0.5, "reproduced"),  # falls and rises in every seed
    ([50, 60, 0.0, 5000, 58], 0.5, "reproduced in part"),  # the rise depends on the seed: that half is inconclusive
    ([50, 60, 55, 52, 58], 1.5, "mixed"),  # the training loss rises: that half is contradicted, the other reproduced
    ([1.0, 1.01, 0.99, 1.0, 1.0], 1.5, "contradicted"),  # neither half
])
def test_batch_size_one_claim_judges_both_halves_over_seeds(last_tests, last_train, expected):
    first = [(1.1 + 0.001 * s, 1.0) for s in range(5)]
    last = [(last_train + 0.001 * s, t) for s, t in enumerate(last_tests)]
    verdict = claims.check_batch_size_one(_bs1(first, last), "unit")
    assert verdict.category == expected and verdict.seeds == 5


def _logreg(bn_at_best, diverged_lr=None):
    rows = {("bn", 0.1): (bn_at_best,), ("bn", 1e-4): (0.69,), ("fn", 0.1): (0.55,), ("fn", 1e-4): (0.69,),
            ("none", 1e-4): (0.50,), ("none", 0.1): (float("nan") if diverged_lr == 0.1 else 0.9,)}
    return _per_seed(rows, ["norm", "lr", "train_eval_loss"])


def test_step_sizes_are_picked_by_one_rule_and_a_diverged_step_never_wins():
    assert claims.pick_step_sizes(_logreg(0.6)) == {"bn": 0.1, "fn": 0.1, "none": 1e-4}
    frame = _logreg(0.6, diverged_lr=0.1)
    frame.loc[(frame.norm == "none") & (frame.lr == 0.1) & (frame.seed == 0), "train_eval_loss"] = 0.0  # best, but...
    frame.loc[(frame.norm == "none") & (frame.lr == 0.1) & (frame.seed == 1), "train_eval_loss"] = float("nan")
    assert claims.pick_step_sizes(frame)["none"] == 1e-4  # ...another seed diverged there


@pytest.mark.parametrize("bn,expected", [(0.7, "reproduced"), (0.58, "mixed"), (0.5, "contradicted")])
def test_large_variance_claim_compares_bn_with_plain_regression_and_fn(bn, expected):
    frame = _logreg(bn)
    assert claims.check_large_variance(frame, "unit", claims.pick_step_sizes(frame)).category == expected


def test_a_reproduced_fig4_needs_comparable_training_losses_that_one_more_seed_would_keep():
    # FN's training objective is comparable to BN's on the mean (0.096 vs 0.05: within 0.05 nats), but one more
    # seed like its last (0.24) would leave it 0.12, 2.4 times BN's: the training-loss part is not established
    fn = [(0.06, 0.2), (0.06, 0.25), (0.06, 0.22), (0.06, 0.21), (0.24, 0.23)]
    frame = _seeded({("bn", "label_sorted"): [(0.05, 1.5), (0.05, 1.4), (0.05, 1.6), (0.05, 1.5), (0.05, 1.45)],
                     ("fn", "label_sorted"): fn})
    verdict = claims.check_fig4_estimator(frame, "unit", "lian-fig4")
    assert verdict.category == "reproduced in part" and "(comparable on the mean, not with one more seed; difference" in verdict.measured
    fn[4] = (0.07, 0.23)
    frame = _seeded({("bn", "label_sorted"): [(0.05, 1.5), (0.05, 1.4), (0.05, 1.6), (0.05, 1.5), (0.05, 1.45)],
                     ("fn", "label_sorted"): fn})
    verdict = claims.check_fig4_estimator(frame, "unit", "lian-fig4")
    assert verdict.category == "reproduced" and "(comparable; difference" in verdict.measured


def test_holds_on_means_adds_each_observed_seed_in_turn():
    a, b = pd.Series([1.0, 1.0, 1.0, 4.0]), pd.Series([1.0, 1.0, 1.0, 1.0])
    assert claims.holds_on_means(lambda x, y: x - y < 1.3, a, b)  # 1.75 - 1 = 0.75; with one more seed like the last, 1.2
    assert not claims.holds_on_means(lambda x, y: x - y < 1.0, a, b)  # holds on the mean, not with that seed
    assert not claims.holds_on_means(lambda x, y: x - y < 0.7, a, b)  # fails on the mean
    with pytest.raises(ValueError, match="share no seed"):
        claims.holds_on_means(lambda x, y: True, a, pd.Series([1.0], index=[9]))


def test_theorem_verdicts_are_mathematical_categories():
    index = pd.MultiIndex.from_tuples([("Theorem 4.1", "1/m (appendix proof)"), ("Theorem 4.1", "1/sqrt(m) (printed in some copies)"),
                                       ("Theorem 4.2", "general")], names=["statement", "form"])
    table = pd.DataFrame({"instances": [100, 100, 200], "violations": [0, 97, 30], "at eps = 0": [0, 50, 0],
                          "at eps > 0": [0, 47, 30]}, index=index)
    v41, v42, v42eps = claims.check_theorem_bounds(table, 1e-7, "unit")
    assert (v41.category, v42.category, v42eps.category) == ("holds as corrected", "holds as printed", "false as printed")
    table.loc[("Theorem 4.1", "1/m (appendix proof)"), "violations"] = 3
    assert claims.check_theorem_bounds(table, 1e-7, "unit")[0].category == "false as printed"
    table.loc[("Theorem 4.1", "1/sqrt(m) (printed in some copies)"), "violations"] = 0
    assert claims.check_theorem_bounds(table, 1e-7, "unit")[0].category == "holds as printed"


def _fits(est, sgd_by_batch, mcsgd=0.6):
    rows = []
    for b, sgd in sgd_by_batch.items():
        for seed in range(5):
            j = 0.01 * (seed - 2)
            rows += [dict(batch_size=b, seed=seed, method="mcsgd", quantity=f"estimation error, layer {k}", exponent=est + j)
                     for k in (1, 2)]
            rows += [dict(batch_size=b, seed=seed, method="mcsgd", quantity="squared gradient norm", exponent=mcsgd + j),
                     dict(batch_size=b, seed=seed, method="sgd", quantity="squared gradient norm", exponent=sgd + 2 * j)]
    return pd.DataFrame(rows)


def test_mcsgd_rates_are_judged_per_batch_size():
    lemma, thm2, cor3 = claims.check_mcsgd_rates(_fits(0.27, {8: 0.9, 128: 0.9}), "unit", 0.25)
    assert lemma.category == "reproduced" and cor3.category == "reproduced" and "batch 128" in cor3.measured
    assert thm2.claim_id == "lian-thm2" and thm2.category == "reproduced" and thm2.seeds == 5
    lemma, thm2, cor3 = claims.check_mcsgd_rates(_fits(0.02, {8: 0.9, 128: 0.6}), "unit", 0.25)
    assert lemma.category == "contradicted" and cor3.category == "mixed"  # the gap closes at batch 128


def test_theorem_2_fails_at_a_batch_size_where_mcsgds_gradient_norm_stops_falling():
    fits = _fits(0.27, {2: 0.9, 128: 0.9})
    small = (fits.batch_size == 2) & (fits.method == "mcsgd") & (fits.quantity == "squared gradient norm")
    fits.loc[small, "exponent"] -= 0.9  # about -0.3: the norm grows over the fitted iterations
    _, thm2, _ = claims.check_mcsgd_rates(fits, "unit", 0.25)
    assert thm2.category == "mixed" and "batch 2: -0.30" in thm2.measured and "(contradicted" in thm2.measured
    assert [p.category for p in thm2.parts] == ["contradicted", "reproduced"] and thm2.parts[0].name == "batch 2"
    fits.loc[(fits.method == "mcsgd") & (fits.quantity == "squared gradient norm"), "exponent"] = -0.3
    assert claims.check_mcsgd_rates(fits, "unit", 0.25)[1].category == "contradicted"


@pytest.mark.parametrize("bn_large,fn_large,acc,expected", [(0.3, 0.62, 0.95, "reproduced"), (0.3, 0.62, 0.85, "inconclusive"),
                                                            (0.6, 0.3, 0.95, "contradicted")])
def test_batch_size_robustness_needs_bn_apart_fn_together_and_the_gate(bn_large, fn_large, acc, expected):
    rows = {("bn", 1): (0.6, 0.9), ("bn", 16): (bn_large, acc), ("fn", 1): (0.6, 0.9), ("fn", 16): (fn_large, 0.9)}
    frame = _per_seed(rows, ["norm", "batch_size", "test_loss", "test_acc"], jitter=0.002)
    assert claims.check_batch_size_robustness(frame, "unit", 1, 16).category == expected


@pytest.mark.parametrize("bn_shuffled_acc,expected", [(0.75, "reproduced"), (0.5, "inconclusive")])
def test_cifar_claims_count_only_past_the_gate(bn_shuffled_acc, expected):
    rows = {("bn", "label_limited"): (0.5, 0.3, 0.4), ("fn", "label_limited"): (0.5, 0.3, 0.6),
            ("bn", "shuffled"): (0.8, 0.8, bn_shuffled_acc), ("fn", "shuffled"): (0.8, 0.81, bn_shuffled_acc)}
    frame = _per_seed(rows, ["norm", "batch_order", "train_loss", "test_loss", "test_acc"], jitter=0.002)
    assert claims.check_label_limited(frame, "unit").category == expected
    assert claims.check_shuffled_cifar(frame, "unit").category == expected
    sizes = {("bn", 8): (2.5, bn_shuffled_acc), ("bn", 128): (1.5, bn_shuffled_acc), ("fn", 8): (1.5, 0.5), ("fn", 128): (1.5, 0.5)}
    frame = _per_seed(sizes, ["norm", "batch_size", "test_loss", "test_acc"], jitter=0.002)
    verdict = claims.check_batch_size_dependence(frame, "unit")
    assert verdict.category == expected
    assert "BN smallest - largest +1.000" in verdict.measured and "FN smallest - largest +0.000" in verdict.measured


@pytest.mark.parametrize("brn,gn_loss,expected", [(0.56, 0.8, "reproduced"), (0.50, 0.8, "contradicted"),
                                                   (0.56, 1.5, "inconclusive"), (0.50, 1.5, "inconclusive")])
def test_renorm_claim_compares_brn_with_bn_per_seed_once_sgd_fits_the_non_iid_batches(brn, gn_loss, expected):
    rows = {("non_iid", "bn"): (0.9, 0.5), ("non_iid", "brn"): (0.9, brn), ("non_iid", "gn"): (gn_loss, 0.5),
            ("reference", "bn"): (0.7, 0.75)}
    frame = _per_seed(rows, ["setting", "norm", "train_loss", "test_acc"], jitter=0.002)
    verdict = claims.check_renorm_improves(frame, "unit", "non_iid", "x")
    assert verdict.category == expected and "GN 0.5" in verdict.measured and "GN's non-i.i.d. training loss" in verdict.measured
    # microbatches are shuffled: only the reference gate applies there
    micro = frame.replace({"setting": {"non_iid": "microbatch"}})
    assert claims.check_renorm_improves(micro, "unit", "microbatch", "x").category == expected.replace(
        "inconclusive", "reproduced" if brn > 0.55 else "contradicted")


@pytest.mark.parametrize("bn,brn,expected", [(0.70, 0.74, "reproduced"), (0.70, 0.70, "contradicted"),
                                             (0.745, 0.745, "inconclusive"), (0.745, 0.76, "inconclusive")])
def test_renorm_claim_needs_the_setting_to_cost_bn_something_to_recover(bn, brn, expected):
    # reference BN 0.75: microbatches that cost BN 0.005 leave Batch Renorm too little to recover (gate 0.02)
    rows = {("microbatch", "bn"): (0.9, bn), ("microbatch", "brn"): (0.9, brn), ("reference", "bn"): (0.7, 0.75)}
    frame = _per_seed(rows, ["setting", "norm", "train_loss", "test_acc"], jitter=0.002)
    verdict = claims.check_renorm_improves(frame, "unit", "microbatch", "x")
    assert verdict.category == expected
    passed = "passed" if bn < 0.73 else "failed"
    assert f"what the setting costs BN in test accuracy (room for Batch Renorm) {0.75 - bn:.3f}" in verdict.measured
    assert f"{0.75 - bn:.3f} ({'>=' if passed == 'passed' else '<'} 0.020, {passed})" in verdict.measured


def test_renorm_non_iid_gate_needs_group_norm_runs():
    rows = {("non_iid", "bn"): (0.9, 0.5), ("non_iid", "brn"): (0.9, 0.56), ("reference", "bn"): (0.7, 0.75)}
    frame = _per_seed(rows, ["setting", "norm", "train_loss", "test_acc"], jitter=0.002)
    with pytest.raises(ValueError, match="add 'gn' to norms"):
        claims.check_renorm_improves(frame, "unit", "non_iid", "x")


@pytest.mark.parametrize("noisy_acc,standard_acc,expected", [(0.11, 0.45, "reproduced"), (0.40, 0.45, "contradicted"),
                                                               (0.11, 0.15, "inconclusive")])
def test_noise_stops_the_standard_network_only_if_it_stays_at_chance_where_the_standard_one_learned(noisy_acc, standard_acc,
                                                                                                    expected):
    rows = {("noisy_none",): (2.3, noisy_acc), ("none",): (1.5, standard_acc)}
    frame = _per_seed(rows, ["norm", "train_loss", "test_acc"], jitter=0.002, status="ok")
    verdict = claims.check_noise_stops_standard(frame, "unit")
    assert verdict.category == expected and verdict.seeds == 5 and "chance" in verdict.measured
    assert "diverged" not in verdict.measured


def test_a_noisy_standard_network_that_diverged_stopped_training_at_its_last_evaluation():
    rows = {("noisy_none",): (2.3, 0.10), ("none",): (1.5, 0.45)}
    frame = _per_seed(rows, ["norm", "train_loss", "test_acc"], jitter=0.002, status="ok")
    # seeds 0 and 3 diverged in their first epoch: one row each, no finite loss, chance accuracy
    stopped = (frame.norm == "noisy_none") & frame.seed.isin([0, 3])
    frame.loc[stopped, "status"] = [
        f"diverged at step {4 if s == 0 else 9}" for s in frame.loc[stopped, "seed"]]
    frame.loc[stopped, ["train_loss", "test_acc"]] = [float("nan"), 0.1]
    frame = frame[~(stopped & (frame.epoch == 2))]
    verdict = claims.check_noise_stops_standard(frame, "unit")
    assert verdict.seeds == 5 and verdict.category == "reproduced"  # every seed counts, the diverged ones too
    assert "diverged in 2/5 seeds (at steps 4, 9)" in verdict.measured and "noisy standard not finite" in verdict.measured


def test_recorded_verdicts_are_collected_for_the_ledger_with_what_made_them(results_root):
    verdict = claims.Verdict.of("x-1", "measured", "scale", "reproduced", seeds=3, interval="+0.1 [0, 0.2]")
    claims.record(verdict, "99-chapter", params={"epochs": 3}, runs=["b", "a"])
    ledger = claims.collect()
    assert ledger.claim_id.tolist() == ["x-1"] and ledger.verdict.tolist() == ["reproduced"]
    assert ledger.seeds.tolist() == [3] and ledger.interval.tolist() == ["+0.1 [0, 0.2]"]
    assert ledger.chapter.tolist() == ["99-chapter"] and ledger.profile.tolist() == ["book"]
    row = ledger.iloc[0]
    assert row.params == {"epochs": 3} and row.runs == ["a", "b"] and row.code == results.code_fingerprint()
    assert claims.collect("paper").empty  # profiles keep their own ledgers


def test_a_verdict_over_diverged_runs_is_recorded_as_inconclusive(results_root):
    verdict = claims.Verdict.of("x-2", "BN 0.1, FN 0.2", "scale", "reproduced")
    claims.record(verdict, "99-chapter", diverged=["unit: bn/shuffled: diverged at step 7"])
    row = claims.collect().iloc[0]
    assert row.verdict == "inconclusive: runs diverged" and not row.reproduced and row.category == "inconclusive"
    assert "diverged at step 7" in row.measured


def test_ledger_knows_which_chapters_lack_verdicts(results_root):
    with_claims = [c.name for c in CHAPTERS.values() if c.claims]
    assert commands.ensure_recorded(run=False) == with_claims
    for claim_id in CHAPTERS["32-batch-size-one"].claims:
        claims.record(claims.Verdict.of(claim_id, "m", "s", "contradicted"), "32-batch-size-one")
    assert "32-batch-size-one" not in commands.ensure_recorded(run=False)


def test_every_chapter_spec_has_its_notebook():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "notebooks"
    assert {p.stem for p in root.glob("[0-9]*.ipynb")} == set(CHAPTERS)


# ----------------------------------------------------------------------------------------------
# Santurkar et al. (2018)
# ----------------------------------------------------------------------------------------------


def _probes(values, seeds=3):
    """values: {norm: {quantity: [value per probe step]}} (layer-free quantities and one layer for ics/act),
    repeated over ``seeds`` with a small seed-dependent jitter."""
    rows = []
    for seed in range(seeds):
        for norm, quantities in values.items():
            for quantity, series in quantities.items():
                layer = "" if quantity in ("loss_min", "loss_max", "grad_change_max", "effective_beta_smoothness") else "l1"
                for step, value in enumerate(series):
                    rows.append(dict(norm=norm, lr=0.1, seed=seed, step=10 * step, quantity=quantity, layer=layer,
                                     value=value * (1 + 0.01 * seed)))
    return pd.DataFrame(rows)


def _landscape(loss_range, grad, beta):
    return {"loss_min": [1.0, 1.0], "loss_max": [1.0 + loss_range] * 2, "grad_change_max": [grad] * 2,
            "effective_beta_smoothness": [beta] * 2}


@pytest.mark.parametrize("bn,expected", [((0.2, 1.0, 5.0), "reproduced"), ((0.2, 1.0, 50.0), "mixed"),
                                         ((2.0, 5.0, 50.0), "contradicted")])
def test_landscape_claim_needs_all_three_quantities_lower_with_bn(bn, expected):
    probes = _probes({"none": _landscape(1.0, 3.0, 20.0), "bn": _landscape(*bn), "fn": _landscape(0.5, 2.0, 10.0)})
    summary = claims.landscape_summary(probes)
    assert summary.loc["none", "loss_range"] == pytest.approx(1.01)
    verdict = claims.check_landscape(probes, "unit")
    assert verdict.category == expected and verdict.seeds == 3


@pytest.mark.parametrize("bn_cos,expected", [(0.5, "reproduced"), (0.75, "inconclusive"), (0.9, "contradicted")])
def test_ics_claim_holds_unless_bn_raises_the_cosine(bn_cos, expected):
    probes = _probes({"none": {"ics_cos": [0.7, 0.7], "ics_l2": [0.1, 0.1]}, "bn": {"ics_cos": [bn_cos] * 2, "ics_l2": [0.3, 0.3]}})
    assert claims.check_ics_not_reduced(probes, "unit", "x").category == expected
    assert claims.check_ics_not_reduced(probes, "unit", "x", by="lr").category == expected


def test_activation_drift_is_the_mean_change_in_units_of_the_spread():
    probes = _probes({"bn": {"act_mean": [0.0, 0.0, 0.0], "act_std": [1.0, 1.0, 1.0]},
                      "noisy_bn": {"act_mean": [0.0, 1.0, -1.0], "act_std": [2.0, 2.0, 2.0]}}, seeds=1)
    drift = claims.activation_drift(probes)
    assert drift["bn"] == 0.0 and drift["noisy_bn"] == pytest.approx((0.5 + 1.0) / 2)
    by_seed = claims.activation_drift(_probes({"noisy_bn": {"act_mean": [0.0, 1.0], "act_std": [2.0, 2.0]}}, seeds=2),
                                      by=["seed", "norm"])
    assert set(by_seed) == {(0, "noisy_bn"), (1, "noisy_bn")} and by_seed[(0, "noisy_bn")] == pytest.approx(0.5)


@pytest.mark.parametrize("noisy_acc,noisy_mean,expected", [(0.5, [0.0, 1.0, -1.0], "reproduced"),  # trains, shifts
                                                           (0.3, [0.0, 1.0, -1.0], "mixed"),  # shifts, trains worse
                                                           (0.5, [0.0, 0.01, 0.0], "mixed")])  # no larger shift, trains
def test_noisy_bn_claim_needs_both_a_shift_and_comparable_training(noisy_acc, noisy_mean, expected):
    probes = _probes({"none": {"act_mean": [0.0, 0.1, 0.0], "act_std": [1.0] * 3},
                      "bn": {"act_mean": [0.0, 0.05, 0.0], "act_std": [1.0] * 3},
                      "noisy_bn": {"act_mean": noisy_mean, "act_std": [1.0] * 3}})
    frame = _per_seed({("none",): (1.5, 0.45), ("bn",): (0.5, 0.5), ("noisy_bn",): (0.6, noisy_acc)},
                      ["norm", "train_loss", "test_acc"], seeds=3, jitter=0.002)
    assert claims.check_noisy_bn(frame, probes, "unit").category == expected


@pytest.mark.parametrize("lp_loss,lp_mean,lp_std,bn_loss,expected", [
    (0.52, [0.0, 1.0, -1.0], [1.0, 2.0, 1.0], 0.5, "reproduced"),  # shifts more than the standard network, trains like BN
    (0.90, [0.0, 1.0, -1.0], [1.0, 2.0, 1.0], 0.5, "mixed"),  # shifts, but trains worse than BN
    (0.52, [0.0, 1.0, -1.0], [1.0, 1.0, 1.0], 0.5, "mixed"),  # the mean moves, the scale does not
    (0.90, [0.0, 0.01, 0.0], [1.0, 1.01, 1.0], 0.5, "contradicted"),  # neither
    (0.52, [0.0, 1.0, -1.0], [1.0, 2.0, 1.0], 1.3, "inconclusive")])  # BN did not learn: the gate
def test_lp_norm_claim_needs_each_p_to_shift_more_than_standard_and_train_like_bn(lp_loss, lp_mean, lp_std, bn_loss,
                                                                                  expected):
    lp = {n: {"act_mean": lp_mean, "act_std": lp_std} for n in ("lp1", "lp2", "lpinf")}
    probes = _probes({"none": {"act_mean": [0.0, 0.1, 0.0], "act_std": [1.0, 1.2, 1.0]},
                      "bn": {"act_mean": [0.0, 0.05, 0.0], "act_std": [1.0] * 3}, **lp})
    rows = {("none",): (1.5, 0.45), ("bn",): (bn_loss, 0.5), **{(n,): (lp_loss, 0.5) for n in lp}}
    frame = _per_seed(rows, ["norm", "train_loss", "test_acc"], seeds=3, jitter=0.002)
    verdict = claims.check_lp_norms(frame, probes, "unit")
    assert verdict.category == expected and verdict.seeds == 3
    assert all(f"{name}: mean drift ratio" in verdict.measured for name in ("l1", "l2", "l-inf"))


@pytest.mark.parametrize("bn_at_high,expected", [(0.5, "reproduced"),  # both learning rates: shifts more, trains like BN
                                                 (1.3, "reproduced in part")])  # BN did not learn at one rate: its parts
def test_lp_norm_claim_in_the_deep_linear_network_is_judged_at_each_learning_rate(bn_at_high, expected):
    lp = {n: {"act_mean": [0.0, 1.0, -1.0], "act_std": [1.0, 2.0, 1.0]} for n in ("lp1", "lp2", "lpinf")}
    one = _probes({"none": {"act_mean": [0.0, 0.1, 0.0], "act_std": [1.0, 1.2, 1.0]},
                   "bn": {"act_mean": [0.0, 0.05, 0.0], "act_std": [1.0] * 3}, **lp})
    probes = pd.concat([one, one.assign(lr=0.2)], ignore_index=True)
    frames = [_per_seed({("none",): (1.5, 0.45), ("bn",): (bn, 0.5), **{(n,): (bn + 0.02, 0.5) for n in lp}},
                        ["norm", "train_loss", "test_acc"], seeds=3, jitter=0.002, lr=lr)
              for lr, bn in ((0.1, 0.5), (0.2, bn_at_high))]
    verdict = claims.check_lp_norms_dln(pd.concat(frames, ignore_index=True), probes, "unit")
    assert verdict.category == expected and verdict.seeds == 3 and verdict.claim_id == "santurkar-lp-dln"
    assert "lr 0.1: l1: mean drift ratio" in verdict.measured and "lr 0.2: l1:" in verdict.measured
    assert ("gate: BN's training loss 1.300 (>= 1.151, failed)" in verdict.measured) == (bn_at_high > 1)


def test_scale_drift_is_the_mean_change_of_log_spread_and_ignores_the_mean():
    probes = _probes({"bn": {"act_mean": [0.0, 5.0, -5.0], "act_std": [1.0, 1.0, 1.0]},
                      "lp1": {"act_mean": [0.0, 0.0, 0.0], "act_std": [1.0, 2.0, 1.0]}}, seeds=1)
    drift = claims.scale_drift(probes)
    assert drift["bn"] == 0.0 and drift["lp1"] == pytest.approx(np.log(2.0))
    assert claims.activation_drift(probes)["lp1"] == 0.0  # the mean drift does not see it


@pytest.mark.parametrize("bn_at_05,bn_at_01,expected", [(1.0, 0.9, "reproduced"), (2.5, 0.9, "mixed"),
                                                        (1.0, 1.3, "inconclusive")])  # BN did not learn: the gate
def test_learning_rate_claim_needs_bn_ahead_at_both_rates_and_the_gate(bn_at_05, bn_at_01, expected):
    rows = {("none", 0.1): (1.5, 0.4), ("bn", 0.1): (bn_at_01, 0.45), ("fn", 0.1): (1.0, 0.45),
            ("none", 0.5): (2.3, 0.1), ("bn", 0.5): (bn_at_05, 0.3), ("fn", 0.5): (1.2, 0.3)}
    verdict = claims.check_learning_rates(_per_seed(rows, ["norm", "lr", "train_loss", "test_acc"], seeds=3), "unit")
    assert verdict.category == expected and "lr 0.5" in verdict.measured


def test_a_verdict_shows_as_a_badge_and_a_sentence_and_prints_as_wrapped_text():
    verdict = claims.Verdict.of("x-3", "BN 0.1 < FN 0.2 & more", "scale", "inconclusive")
    html = verdict._repr_html_()
    assert "inconclusive</span>" in html and 'id="verdict-x-3"' in html and "&amp; more" in html
    assert repr(verdict) == verdict.line()
    assert all(len(line) <= 88 for line in verdict.line().splitlines())
    with pytest.raises(ValueError, match="category"):
        claims.Verdict("x-4", "paper", "claim", "measured", "scale", True)  # a verdict without a category


@pytest.mark.parametrize("fn_train_loss,expected", [(0.5, "reproduced"), (2.2, "inconclusive")])
def test_label_limited_claim_needs_both_networks_to_learn_their_batches(fn_train_loss, expected):
    rows = {("bn", "label_limited"): (0.5, 0.3, 0.4), ("fn", "label_limited"): (fn_train_loss, 0.3, 0.6),
            ("bn", "shuffled"): (0.8, 0.8, 0.75), ("fn", "shuffled"): (0.8, 0.81, 0.75)}
    frame = _per_seed(rows, ["norm", "batch_order", "train_loss", "test_loss", "test_acc"], jitter=0.002)
    verdict = claims.check_label_limited(frame, "unit")
    assert verdict.category == expected and verdict.claim_id == "lian-fig5"
    assert ("failed" in verdict.measured.split("; ")[-1]) == (expected == "inconclusive")
    # chapter 37 tests the same claim at batches of 32, under its own id
    other = claims.check_label_limited(frame, "unit", claim_id="lian-fig5-b32")
    assert (other.claim_id, other.category) == ("lian-fig5-b32", expected)
    assert other.source == "Lian & Liu 2019, Figure 5 at batches of 32 (CIFAR-10, at most 3 labels per batch)"  # registered
    # and with another FN variant, named in the registered claim and in the measurement
    decoupled = frame.replace({"norm": {"fn": "fn_decoupled"}})
    verdict = claims.check_label_limited(decoupled, "unit", claim_id="lian-fig5-b32-decoupled", fn_norm="fn_decoupled")
    assert verdict.category == expected and "far behind FN (decoupled)'s" in verdict.claim
    assert "FN (decoupled)" in verdict.measured
    assert "vs FN (decoupled) " in verdict.measured


def test_a_chapter_records_a_verdict_over_the_runs_it_read_and_the_divergence_it_measures(results_root):
    from revisit_bn.experiments import ChapterRun, resolve
    from revisit_bn.store import RunResult

    chapter = CHAPTERS["22-noisy-batchnorm"]
    params = resolve(chapter, "ci")
    configs = chapter.configs("ci")
    loaded = {c: RunResult({}, {}, {}, "diverged" if c.norm == "noisy_none" else "ok", 4 if c.norm == "noisy_none" else None)
              for c in configs}
    run = ChapterRun(chapter, "ci", params, configs, results_root / "ci", _loaded=loaded)
    verdict = claims.Verdict.of("x-3", "measured", "scale", "reproduced")

    def recorded(**kwargs):
        run.record(verdict, **kwargs)
        return claims.collect("ci").set_index("claim_id").loc["x-3"]

    assert recorded().verdict == "inconclusive: runs diverged"  # the chapter's diverged runs, by default
    only = recorded(where=dict(norm=["none", "bn", "noisy_bn"]))
    levels, seeds = len(params["noise_levels"]), len(params["seeds"])
    assert only.verdict == "reproduced" and len(only.runs) == (2 + levels) * seeds  # standard, BN, noisy BN
    measured = recorded(where=dict(norm=["none", "noisy_none"]), measures_divergence=dict(norm="noisy_none"))
    assert measured.verdict == "reproduced" and "diverged" not in measured.measured
    with pytest.raises(ValueError, match="where="):
        run.record(verdict, where=dict(norm="gn"))


def test_compare_scales_puts_each_claim_on_one_row_with_each_scales_category_and_effect():
    def verdict(claim_id, category, interval=""):
        return claims.Verdict.of(claim_id, "numbers", "scale", category, seeds=5, interval=interval)

    book = [verdict("xa", "inconclusive", "+0.01 [-0.02, +0.04]"), verdict("xb", "reproduced")]
    paper = [verdict("xb", "contradicted", "-0.3 [-0.4, -0.2]"), verdict("xc", "reproduced in part")]
    table = claims.compare_scales({"book": book, "paper": paper})
    assert list(table.claim) == ["xa", "xb", "xc"]
    assert list(table["book: category"]) == ["inconclusive", "reproduced", "-"]
    assert list(table["paper: category"]) == ["-", "contradicted", "reproduced in part"]
    assert list(table["book: effect"]) == ["+0.01 [-0.02, +0.04]", "-", "-"]
    assert table.loc[1, "paper: effect"] == "-0.3 [-0.4, -0.2]"
    with pytest.raises(ValueError, match="at least one scale"):
        claims.compare_scales({})
    # checks with no interval at any scale (the mathematical ones) show their categories only
    maths = claims.compare_scales({"book": [verdict("xt", "holds as printed")], "paper": [verdict("xt", "false as printed")]})
    assert list(maths.columns) == ["claim", "book: category", "paper: category"]


def test_by_paper_counts_one_row_per_paper_claim_and_the_books_extensions_apart():
    ledger = pd.DataFrame({
        "claim_id": ["lian-fig4", "lian-lemma1", "santurkar-thm4.1", "lian-fig2", "fn-decoupled-unbiased",
                     "ioffe-microbatch", "lian-fig4-decoupled", "lian-fig1-fn-exact"],
        "verdict": ["reproduced", "inconclusive: runs diverged", "holds as corrected", "reproduced", "holds as printed",
                    "inconclusive", "reproduced", "reproduced"]})
    table = claims.by_paper(ledger)
    assert list(table.index) == ["Lian & Liu 2019", "Ioffe 2017", "Santurkar et al. 2018", "the book's extensions"]
    assert list(table.columns) == ["reproduced", "inconclusive", "holds as printed", "holds as corrected", "claims",
                                   "rule set after the runs"]
    assert table.loc["Lian & Liu 2019"].tolist() == [2, 1, 0, 0, 3, 2]  # Figure 4 (10 epochs), Figure 2 (5 seeds)
    assert table.loc["the book's extensions"].tolist() == [2, 0, 1, 0, 3, 2]  # FN's other estimators count apart
    assert table.claims.sum() == len(ledger)
    with pytest.raises(ValueError, match="not categories"):
        claims.by_paper(ledger.assign(verdict=["not reproduced at this scale"] * len(ledger)))
    with pytest.raises(ValueError, match="not registered"):
        claims.by_paper(ledger.assign(claim_id=["lian-fig99"] * len(ledger)))


def test_every_claim_a_chapter_records_is_registered_once_with_its_chapter():
    from revisit_bn import registry

    recorded = {claim_id: name for name, spec in CHAPTERS.items() for claim_id in spec.claims}
    assert sorted(recorded) == sorted(c.claim_id for c in registry._CLAIMS)
    assert len(registry._CLAIMS) == len({c.claim_id for c in registry._CLAIMS})  # each id once
    for claim_id, chapter in recorded.items():
        assert registry.claim(claim_id).chapter == chapter, claim_id
    with pytest.raises(KeyError, match="not registered"):
        registry.claim("lian-fig99")


def test_a_registered_threshold_states_the_numbers_its_constants_hold():
    # the registry's words and the code's constants cannot drift apart: every numeric constant a claim names
    # appears in its threshold text
    import importlib

    from revisit_bn import registry

    for c in registry.CLAIMS.values():
        for name in c.constants:
            module, attribute = name.split(".")
            value = getattr(importlib.import_module(f"revisit_bn.{module}"), attribute)
            if isinstance(value, (int, float)):
                assert f"{value:g}" in c.threshold, (c.claim_id, name, value, c.threshold)


def test_the_rule_changes_the_issue_lists_are_marked():
    from revisit_bn import ledger, registry

    changed = {i for i, c in registry.CLAIMS.items() if c.changes}
    assert {"ioffe-noniid", "ioffe-microbatch", "santurkar-lp", "santurkar-lp-dln", "lian-fig2", "lian-fig1",
            "lian-fig4"} <= changed
    assert "0.05" in " ".join(ch.what for ch in registry.claim("lian-fig1").changes)
    assert ledger.rule_changes(registry.claim("lian-fig2")).startswith("rule set after the runs: seeds 3 -> 5")
    assert ledger.rule_changes(registry.claim("lian-remark1")) == ""


def test_label_limited_names_the_fit_gate_that_one_more_seed_would_fail():
    # BN fits the label-restricted batches on the mean (1.041) but one seed sits at 2.0: one more like it fails the gate
    # (1.201), while FN's higher mean (1.1) passes with every seed; the verdict names BN's gate, not "the higher" loss
    frame = _cifar_orders({("bn", "label_limited"): (0.8, 0.3, 0.4), ("fn", "label_limited"): (1.1, 0.3, 0.6),
                           ("bn", "shuffled"): (0.8, 0.8, 0.75)})
    assert claims.check_label_limited(frame, "unit").category == "reproduced"
    verdict = claims.check_label_limited(_set_seed_0(frame, "bn", "label_limited", "train_loss", 2.0), "unit")
    assert verdict.category == "inconclusive"
    assert ("gate: BN's label-restricted training loss 1.041 (< 1.151; but 1.201 with one more seed like its worst, "
            "failed)") in verdict.measured


def _ics_probes(bn_cos_of_step, none_cos=0.5, seeds=(0, 1, 2), steps=range(0, 200, 10)):
    import pandas as pd

    rows = [dict(seed=s, norm=n, step=t, layer=layer, quantity="ics_cos",
                 value=(bn_cos_of_step(t) + 0.01 * s) if n == "bn" else none_cos + 0.01 * s)
            for s in seeds for n in ("bn", "none") for t in steps for layer in ("a", "b")]
    rows += [dict(r, quantity="ics_l2", value=0.1) for r in rows]
    return pd.DataFrame(rows)


def test_probe_halves_agree_on_a_steady_shift_and_disagree_on_a_swinging_one():
    steady = claims.ics_probe_halves(_ics_probes(lambda t: 0.45))
    assert steady.agree.all() and all("(reproduced)" in steady.loc["all", c] for c in steady.columns[:3])
    # BN's cosine swings between 1 and -0.5 from one probe to the next: each half sees one value only
    swinging = claims.ics_probe_halves(_ics_probes(lambda t: 1.0 if t % 20 == 0 else -0.5))
    assert not swinging.agree.all()
    assert "(contradicted)" in swinging.loc["all", "odd probes"] and "(reproduced)" in swinging.loc["all", "even probes"]
    with pytest.raises(ValueError, match="at least 2 probed steps"):
        claims.ics_probe_halves(_ics_probes(lambda t: 0.5, steps=[0]))


def test_an_ics_part_that_the_probe_schedule_decides_is_inconclusive():
    # BN's cosine swings from probe to probe: reproduced on all probes and on one half, contradicted on the other
    swinging = _ics_probes(lambda t: 0.6 if t % 20 == 0 else 0.2, none_cos=0.5)
    halves = claims.ics_probe_halves(swinging)
    assert "(reproduced)" in halves.loc["all", "all probes"] and not halves.agree.all()
    verdict = claims.check_ics_not_reduced(swinging, "unit", "x")
    assert verdict.category == "inconclusive" and "the probe schedule decides it" in verdict.measured
    steady = claims.check_ics_not_reduced(_ics_probes(lambda t: 0.45), "unit", "x")
    assert steady.category == "reproduced" and "probe schedule" not in steady.measured


def test_probe_half_keeps_every_other_probed_step_and_a_drift_half_every_other_interval():
    probes = _probes({"bn": {"act_mean": [0.0, 1.0, 1.0, 3.0, 3.0], "act_std": [1.0] * 5}}, seeds=1)
    assert sorted(claims.probe_half(probes, "odd").step.unique()) == [0, 20, 40]
    assert sorted(claims.probe_half(probes, "even").step.unique()) == [10, 30]
    # the intervals keep their length: the odd ones (1st, 3rd) moved by 1 and 2, the even ones not at all
    assert claims.activation_drift(probes, half="odd")["bn"] == pytest.approx(1.5)
    assert claims.activation_drift(probes, half="even")["bn"] == 0.0
    assert claims.activation_drift(probes)["bn"] == pytest.approx(0.75)
    for bad in ("first", 1):
        with pytest.raises(ValueError, match="half must be"):
            claims.probe_half(probes, bad)
    with pytest.raises(ValueError, match="half must be None, 'odd' or 'even'"):
        claims.scale_drift(probes, half="both")


def test_the_probe_schedule_rule_leaves_an_agreeing_or_undecided_part_and_names_the_half_that_differs():
    def never(half):
        raise AssertionError("an inconclusive part computes no half")

    assert claims.on_probe_halves("inconclusive", never) == ("inconclusive", "")
    same = claims.on_probe_halves("reproduced", lambda half: (0.1, 0.05, 0.15, 3, "reproduced"))
    assert same == ("reproduced", "")
    category, note = claims.on_probe_halves(
        "reproduced", lambda half: (0.1, 0.05, 0.15, 3, "reproduced" if half == "odd" else "contradicted"), "probe intervals")
    assert category == "inconclusive"
    assert note == ("reproduced on all probe intervals; but +0.100 [+0.050, +0.150] (contradicted) on the "
                    "even-numbered probe intervals: the probe schedule decides it, inconclusive")


def test_a_landscape_part_that_the_probe_schedule_decides_is_inconclusive():
    def landscape(loss_range, n=5):
        return {"loss_min": [1.0] * n, "loss_max": [1.0 + r for r in loss_range], "grad_change_max": [3.0] * n,
                "effective_beta_smoothness": [20.0] * n}

    def bn(loss_range):
        return {**landscape(loss_range), "grad_change_max": [1.0] * 5, "effective_beta_smoothness": [5.0] * 5}

    steady = claims.check_landscape(_probes({"none": landscape([1.0] * 5), "bn": bn([0.2] * 5)}), "unit")
    assert steady.category == "reproduced" and "probe schedule" not in steady.measured
    # BN's loss range is low on the 1st, 3rd, 5th probe and high on the others: the median over all is the low one
    swinging = claims.check_landscape(_probes({"none": landscape([1.0] * 5), "bn": bn([0.2, 3.0, 0.2, 3.0, 0.2])}), "unit")
    assert swinging.category == "reproduced in part"
    assert "(reproduced on all probes; but" in swinging.measured and "(contradicted) on the even-numbered probes" in swinging.measured


@pytest.mark.parametrize("noisy_mean,expected", [([0.0, 1.0, -1.0, 1.0, -1.0], "reproduced"),
                                                 ([0.0, 1.0, 1.0, 2.0, 2.0], "reproduced in part")])  # moves every other interval
def test_a_shift_that_the_probe_schedule_decides_is_inconclusive(noisy_mean, expected):
    probes = _probes({"none": {"act_mean": [0.0, 0.1, 0.0, 0.1, 0.0], "act_std": [1.0] * 5},
                      "bn": {"act_mean": [0.0, 0.05, 0.0, 0.05, 0.0], "act_std": [1.0] * 5},
                      "noisy_bn": {"act_mean": noisy_mean, "act_std": [1.0] * 5}})
    frame = _per_seed({("none",): (1.5, 0.45), ("bn",): (0.5, 0.5), ("noisy_bn",): (0.6, 0.5)},
                      ["norm", "train_loss", "test_acc"], seeds=3, jitter=0.002)
    verdict = claims.check_noisy_bn(frame, probes, "unit")
    assert verdict.category == expected
    assert ("on the even-numbered probe intervals: the probe schedule decides it" in verdict.measured) == (expected != "reproduced")
    # l_p normalization's drift ratios follow the same rule
    lp = {n: {"act_mean": noisy_mean, "act_std": [1.0, 2.0, 1.0, 2.0, 1.0]} for n in ("lp1", "lp2", "lpinf")}
    lp_probes = _probes({"none": {"act_mean": [0.0, 0.1, 0.0, 0.1, 0.0], "act_std": [1.0, 1.2, 1.0, 1.2, 1.0]},
                         "bn": {"act_mean": [0.0] * 5, "act_std": [1.0] * 5}, **lp})
    rows = {("none",): (1.5, 0.45), ("bn",): (0.5, 0.5), **{(n,): (0.52, 0.5) for n in lp}}
    lp_verdict = claims.check_lp_norms(_per_seed(rows, ["norm", "train_loss", "test_acc"], seeds=3, jitter=0.002),
                                       lp_probes, "unit")
    assert lp_verdict.category == expected
    assert ("l1: mean drift ratio to standard" in lp_verdict.measured
            and ("the probe schedule decides it" in lp_verdict.measured) == (expected != "reproduced"))


def _curves(curves_by_key, columns, seeds=5, jitter=0.002, status=None):
    """{key tuple: {metric: per-epoch values}} -> an epochs frame, one row per seed and epoch; each run's
    values get a small seed-dependent jitter (so intervals exist). ``status``: {key: status of its runs}."""
    rows = []
    for key, curves in curves_by_key.items():
        for seed in range(seeds):
            for epoch, values in enumerate(zip(*curves.values()), start=1):
                rows.append({**dict(zip(columns, key)), "seed": seed, "epoch": epoch,
                             "status": (status or {}).get(key, "ok"),
                             **{m: v + jitter * (seed - seeds // 2) for m, v in zip(curves, values)}})
    return pd.DataFrame(rows)


def test_one_epoch_short_cuts_every_schedule_at_the_same_fraction_and_keeps_diverged_runs():
    # chapter 34 at equal steps: 2 epochs at batch size 1, 4 at 16; a column derived from a measure identifies no run
    frame = _curves({("bn", 1): {"test_loss": [2.0, 1.0]}, ("bn", 16): {"test_loss": [4.0, 3.0, 2.0, 1.0]},
                     ("fn", 1): {"test_loss": [2.0, 1.0]}, ("fn", 16): {"test_loss": [4.0, 3.0, 2.0, 1.0]}},
                    ["norm", "batch_size"], seeds=2)
    frame["test_error"] = 1 - frame.test_loss / 10
    short = claims.one_epoch_short(frame)
    assert short.groupby("batch_size").epoch.max().to_dict() == {1: 1, 16: 2}
    assert len(short) == len(frame) // 2 and training_length._cut_text(frame) == "epochs 1 of 2 and 2 of 4"
    # equal schedules lose their last epoch; a configuration whose runs all diverged (one stored row) keeps its row
    frame = _curves({("bn",): {"test_loss": [3.0, 2.0, 1.0]}, ("noisy",): {"test_loss": [float("nan")]}}, ["norm"],
                    seeds=2, status={("noisy",): "diverged at step 4"})
    short = claims.one_epoch_short(frame)
    assert short.groupby("norm").epoch.max().to_dict() == {"bn": 2, "noisy": 1} and training_length._cut_text(frame) == "epoch 2 of 3"
    with pytest.raises(ValueError, match="1 epoch; one epoch short leaves nothing"):
        claims.one_epoch_short(_curves({("bn",): {"test_loss": [1.0]}}, ["norm"]))
    with pytest.raises(ValueError, match="a run has an epoch twice"):
        claims.one_epoch_short(pd.concat([frame, frame]))
    with pytest.raises(ValueError, match="'epoch' column and rows"):
        claims.one_epoch_short(frame.iloc[:0])


@pytest.mark.parametrize("bn_large,bn_acc,expected,note", [
    ([0.3, 0.3, 0.3], 0.95, "reproduced", ""),  # settled: BN apart at both lengths
    ([0.6, 0.6, 0.3], 0.95, "inconclusive",  # BN moves apart in the last epoch only
     "reproduced at the end but contradicted one epoch short (epoch 2 of 3: +0.000 [+0.000, +0.000])"),
    ([0.3, 0.3, 0.6], 0.95, "inconclusive", "contradicted at the end but reproduced one epoch short (epoch 2 of 3: +0.300"),
    ([0.3, 0.3, 0.3], 0.85, "inconclusive", ""),  # inconclusive at the end (BN misses the gate) stays so
])
def test_a_verdict_that_one_epoch_less_would_flip_is_inconclusive(bn_large, bn_acc, expected, note):
    acc = {"test_acc": [0.95] * 3}
    frame = _curves({("bn", 1): {"test_loss": [0.6] * 3, **acc},
                     ("bn", 16): {"test_loss": bn_large, "test_acc": [0.95, 0.95, bn_acc]},
                     ("fn", 1): {"test_loss": [0.6] * 3, **acc}, ("fn", 16): {"test_loss": [0.6] * 3, **acc}},
                    ["norm", "batch_size"], jitter=0.001)
    check = lambda f: claims.check_batch_size_robustness(f, "unit", 1, 16)  # noqa: E731
    verdict = claims.on_training_length(check, frame)
    assert verdict.category == expected and verdict.interval == check(frame).interval
    assert (note in verdict.measured and verdict.measured.endswith("the training length decides it, inconclusive")) if note \
        else "one epoch short" not in verdict.measured
    # a list of verdicts comes back as a list, in order; verdicts_of must give the same claims on both frames
    both = claims.on_training_length(lambda f: [check(f), check(f)], frame)
    assert [v.category for v in both] == [expected] * 2
    with pytest.raises(ValueError, match="verdicts_of: gives different claims one epoch short"):
        claims.on_training_length(lambda f: [check(f)] * (2 if f.epoch.max() == 3 else 1), frame)


def test_reproduced_at_one_length_and_in_part_at_the_other_is_in_part_and_a_failed_gate_is_named():
    def verdict(category, measured="m"):
        return claims.Verdict.of("x", measured, "unit", category, 5, "+0.300 [+0.200, +0.400]")

    frame = _curves({("bn",): {"test_loss": [2.0, 1.0, 0.5]}}, ["norm"])
    categories = iter([])

    def verdicts_of(f):
        return verdict(next(categories), "gate: BN's test accuracy 0.950 (< 0.980, failed)" if f.epoch.max() == 2 else "m")

    for now, short, expected in [("reproduced", "reproduced in part", "reproduced in part"),
                                 ("reproduced in part", "reproduced", "reproduced in part"),
                                 ("reproduced in part", "inconclusive", "inconclusive"),
                                 ("contradicted", "reproduced", "inconclusive")]:
        categories = iter([now, short])
        ruled = claims.on_training_length(verdicts_of, frame)
        assert ruled.category == expected and not ruled.reproduced  # neither is a supporting category
        assert f"{now} at the end but {short} one epoch short (epoch 2 of 3: +0.300 [+0.200, +0.400]; gate: BN's " \
               "test accuracy 0.950 (< 0.980, failed)): the training length decides" in ruled.measured
        assert ruled.measured.endswith("part of it, reproduced in part" if expected != "inconclusive" else "it, inconclusive")


def test_a_claim_of_several_parts_is_ruled_one_epoch_short_part_by_part():
    from revisit_bn.verdicts import Part

    def verdict(parts, category=None):
        found = [Part(name, c, "+0.1 [+0.0, +0.2]", 5) for name, c in parts]
        return claims.Verdict.of("x", "m", "unit", category or claims.merged(found), 5, "+0.3 [+0.2, +0.4]", found)

    frame = _curves({("bn",): {"test_loss": [2.0, 1.0, 0.5]}}, ["norm"])
    # mixed at the end (gap reproduced, training losses contradicted), the second part undecided one epoch short:
    # that part turns inconclusive and the claim is reproduced in part, not inconclusive as a whole
    end, short = [("gap", "reproduced"), ("comparable", "contradicted")], [("gap", "reproduced"), ("comparable", "inconclusive")]
    ruled = claims.on_training_length(lambda f: verdict(end if f.epoch.max() == 3 else short), frame)
    assert ruled.category == "reproduced in part" and [p.category for p in ruled.parts] == ["reproduced", "inconclusive"]
    assert ruled.measured.endswith("the training length decides the part 'comparable' (inconclusive), reproduced in part")
    # swapped sides: contradicted in part
    swap = {"reproduced": "contradicted", "contradicted": "reproduced", "inconclusive": "inconclusive"}
    ruled = claims.on_training_length(lambda f: verdict([(n, swap[c]) for n, c in (end if f.epoch.max() == 3 else short)]),
                                      frame)
    assert ruled.category == "contradicted in part"
    # a gate that fails one epoch short (the parts unchanged) still makes the whole verdict inconclusive
    ruled = claims.on_training_length(
        lambda f: verdict(end, None if f.epoch.max() == 3 else "inconclusive"), frame)
    assert ruled.category == "inconclusive" and ruled.measured.endswith("the training length decides it, inconclusive")


def test_a_decided_verdict_after_a_single_epoch_is_inconclusive_and_has_no_recomputation():
    frame = _curves({("bn", 1): {"test_loss": [0.6]}, ("bn", 16): {"test_loss": [0.3]},
                     ("fn", 1): {"test_loss": [0.6]}, ("fn", 16): {"test_loss": [0.6]}}, ["norm", "batch_size"])
    frame["test_acc"] = 0.95
    check = lambda f: claims.check_batch_size_robustness(f, "unit", 1, 16)  # noqa: E731
    assert check(frame).category == "reproduced" and claims.one_epoch_short_verdicts(check, frame) == []
    verdict = claims.on_training_length(check, frame)
    assert verdict.category == "inconclusive"
    assert verdict.measured.endswith("reproduced after a single epoch, which the training-length rule cannot check one "
                                     "epoch short: inconclusive")
    assert [v.category for v in claims.on_training_length(lambda f: [check(f)], frame)] == ["inconclusive"]


def test_exact_statements_take_the_categories_for_mathematics():
    def check(printed, corrected=None, correction=""):
        return claims.check_exact("x-thm", printed, "exact", corrected, correction)

    held = check({"identity": True, "no counterexample": True})
    assert held.category == "holds as printed" and held.reproduced and held.seeds == 0 and held.interval == ""
    assert held.measured == "identity: holds; no counterexample: holds"
    fixed = check({"identity": True, "no counterexample": False}, {"corrected identity": True}, "with 1/m")
    assert fixed.category == "holds as corrected" and fixed.reproduced
    assert fixed.measured.endswith("no counterexample: fails; corrected (with 1/m): corrected identity: holds")
    assert check({"identity": False}).category == "false as printed"
    wrong = check({"identity": False}, {"corrected identity": False}, "with 1/m")
    assert wrong.category == "false as printed" and not wrong.reproduced and "corrected (with 1/m)" in wrong.measured
    noted = claims.check_exact("x-obs", {"per batch": True}, "exact", note="across batches: not")
    assert noted.category == "holds as printed" and noted.measured == "per batch: holds; across batches: not"
    with pytest.raises(ValueError, match="printed must name"):
        check({})
    with pytest.raises(ValueError, match="correction"):
        check({"identity": False}, {"corrected identity": True})


def test_mcsgd_with_the_decoupled_estimator_gets_theorem_2_and_corollary_3_of_its_own():
    fits = _fits(0.27, {2: 0.9, 128: 0.9})
    decoupled = fits[fits.method == "mcsgd"].assign(method="mcsgd_decoupled")
    decoupled.loc[decoupled.quantity == "squared gradient norm", "exponent"] += 0.3  # faster than MCSGD's 0.6
    both = pd.concat([fits, decoupled], ignore_index=True)
    assert [v.claim_id for v in claims.check_mcsgd_rates(both, "unit", 0.25)] == ["lian-lemma1", "lian-thm2", "lian-cor3"]
    thm2, cor3 = claims.check_mcsgd_rates(both, "unit", 0.25, method="mcsgd_decoupled")
    assert (thm2.claim_id, cor3.claim_id) == ("lian-thm2-decoupled", "lian-cor3-decoupled")
    assert thm2.category == "reproduced" and "MCSGD (decoupled) 0.90" in cor3.measured
    assert cor3.category == "contradicted"  # SGD's 0.9 no faster than decoupled MCSGD's 0.9
    with pytest.raises(ValueError, match="no runs of"):
        claims.check_mcsgd_rates(fits, "unit", 0.25, method="mcsgd_decoupled")


def test_every_record_lists_its_parts(results_root):
    import json

    single = claims.Verdict.of("x-1", "measured", "scale", "reproduced", seeds=3, interval="+0.1 [0, 0.2]")
    parts = (claims.Part("lr 0.1", "reproduced", "+0.2 [0.1, 0.3]", 5),
             claims.Part("lr 0.5", "contradicted", "-0.2 [-0.3, -0.1]", 5),
             claims.Part("lr 0.01", "reproduced", "+0.000 [+0.000, +0.000]", 5, vacuous=True))
    several = claims.Verdict.of("x-2", "measured", "scale", claims.merged(parts), 5, "", parts)
    assert several.category == "mixed"
    for verdict in (single, several):
        path = claims.record(verdict, "99-chapter")
        recorded = json.loads(path.read_text())["parts"]
        assert all(set(p) == {"name", "category", "interval", "seeds", "vacuous"} for p in recorded)
    assert json.loads(claims.record(single, "99-chapter").read_text())["parts"] == [
        {"name": "claim", "category": "reproduced", "interval": "+0.1 [0, 0.2]", "seeds": 3, "vacuous": False}]
    assert [p["vacuous"] for p in json.loads(claims.record(several, "99-chapter").read_text())["parts"]] == [False, False, True]
    with pytest.raises(ValueError, match="a part's category"):
        claims.Part("x", "holds as printed")


def test_a_part_saturated_at_cos_1_in_both_networks_is_shown_and_not_counted():
    # lr 0.01: cos(G, G') 1 - 1e-5 for both networks (G' = G at a tiny step: any network); lr 0.2: BN far above
    import pandas as pd

    saturated = _ics_probes(lambda t: 0.99999, none_cos=0.99998, seeds=(0, 0, 0)).assign(lr=0.01)
    saturated["value"] = saturated["value"].clip(upper=0.999995)
    apart = _ics_probes(lambda t: 0.9, none_cos=0.3).assign(lr=0.2)
    verdict = claims.check_ics_not_reduced(pd.concat([saturated, apart]), "unit", "santurkar-fig3-dln", by="lr")
    assert [(p.name, p.vacuous) for p in verdict.parts] == [("lr 0.01", True), ("lr 0.2", False)]
    assert verdict.parts[1].category == "contradicted"
    assert verdict.category == "contradicted" and "vacuous: both saturated at 1, not counted" in verdict.measured


def test_every_registered_claim_states_the_papers_own_setting():
    from revisit_bn import registry

    assert set(registry.PAPER_SETTINGS) == set(registry.CLAIMS)
    assert "not stated" in registry.paper_setting("lian-fig4") and "20 epochs" in registry.paper_setting("lian-fig3")
    with pytest.raises(KeyError, match="not registered"):
        registry.paper_setting("lian-fig99")


def test_every_verdict_short_of_reproduced_says_why_in_its_ledger_row():
    from revisit_bn import ledger as ledger_mod

    reason = ledger_mod.reason
    assert reason("reproduced", "x 0.5 (>= 0.1)") == ""
    gate = "BN 0.7 vs FN 0.6; gate: the higher label-restricted training loss 1.590 (>= 1.151, failed)"
    assert reason("inconclusive", gate) == "gate failed: the higher label-restricted training loss"
    short = "reproduced at the end but inconclusive one epoch short (...): the training length decides it, inconclusive"
    assert "training-length rule" in reason("inconclusive", short)
    assert reason("inconclusive", "BN - FN +0.06 [-0.08, +0.20]", threshold="> 0.05 nats") == (
        "the interval straddles the threshold (> 0.05 nats)")
    assert reason("contradicted", "-0.05 [-0.10, -0.01]", threshold="> 0.05").startswith("the interval lies on the other")
    parts = [{"name": "a", "category": "reproduced"}, {"name": "b", "category": "contradicted"},
             {"name": "c", "category": "reproduced", "vacuous": True}]
    assert reason("mixed", "...", parts) == "2 parts: 1 reproduced, 1 contradicted"  # the vacuous part not counted
    assert reason("inconclusive: runs diverged", "...").startswith("runs diverged")


def test_the_ledger_table_has_a_badge_a_reason_and_an_anchor_per_claim_in_four_columns():
    from revisit_bn import ledger as ledger_mod

    frame = pd.DataFrame([dict(claim_id="lian-fig5", source="Figure 5", claim="FN beats BN", verdict="inconclusive",
                               measured="gate: the higher label-restricted training loss 2.3 (>= 1.151, failed)",
                               scale="CIFAR-10", chapter="35-cifar-batch-construction", seeds=3.0,
                               interval="-0.079 [-0.176, +0.017]", runs=["a", "b"], kind="paper", rule="",
                               parts=[{"name": "claim", "category": "inconclusive"}])])
    html = ledger_mod.table_html(frame, paper_ledger=frame.iloc[0:0].assign(claim_id=[]))
    assert html.count("<th>") == 3  # no paper-profile column without paper verdicts
    assert '<tr id="claim-lian-fig5">' in html and "background:" in html  # anchor and badge
    assert "gate failed: the higher label-restricted training loss" in html
    assert "3 seeds, 2 stored runs" in html and 'href="35-cifar-batch-construction.html#verdict-lian-fig5"' in html
    with_paper = ledger_mod.table_html(frame, paper_ledger=frame)
    assert with_paper.count("<th>") == 4 and "paper-scale-35" in with_paper


def test_a_sensitivity_check_is_named_in_the_verdict_and_never_changes_its_category():
    main = claims.Verdict("lian-fig9", "s", "c", "gap +0.30 [+0.20, +0.40]", "unit", False, "contradicted", 5,
                          "+0.30 [+0.20, +0.40]")
    same = dataclasses.replace(main, interval="+0.25 [+0.10, +0.40]", seeds=5)
    flip = claims.Verdict("lian-fig9", "s", "c", "m", "unit", True, "reproduced", 3, "+0.50 [+0.20, +0.80]")
    kept = claims.with_sensitivity(main, same, "scales log-uniform in [0.01, 100]")
    assert kept.category == "contradicted" and kept.interval == main.interval  # the main setting decides
    assert kept.measured.endswith("Sensitivity check, scales log-uniform in [0.01, 100]: contradicted, "
                                  "+0.25 [+0.10, +0.40] over 5 seeds; the same category.")
    flipped = claims.with_sensitivity(main, flip, "no linear scaling")
    assert flipped.category == "contradicted" and not flipped.reproduced
    assert "reproduced, +0.50 [+0.20, +0.80] over 3 seeds; the verdict flips under it (contradicted in the main " \
           "setting)." in flipped.measured
    assert claims.with_sensitivity(kept, same, "scales log-uniform in [0.01, 100]") == kept  # run twice: once
    with pytest.raises(ValueError, match="same claim"):
        claims.with_sensitivity(main, dataclasses.replace(flip, claim_id="lian-fig2"), "x")
    with pytest.raises(ValueError, match="verdict must be a Verdict"):
        claims.with_sensitivity([main], [same], "x")
    with pytest.raises(ValueError, match="setting must name"):
        claims.with_sensitivity(main, same, " ")


def test_comparable_part_is_a_part_of_its_own_on_either_side():
    from revisit_bn.verdicts import comparable_part

    bn = pd.Series([0.01, 0.012, 0.011, 0.010])
    # comparable on the mean and with one more seed (within 0.05 nats)
    assert comparable_part(bn, pd.Series([0.03, 0.04, 0.035, 0.03]))[0] == "reproduced"
    # apart in every seed, by more than 0.05 nats and more than twice: contradicted, with the difference's interval
    category, text = comparable_part(bn, pd.Series([0.09, 0.08, 0.085, 0.088]), parts=2)
    assert category == "contradicted" and text.startswith("-0.07") and "[" in text
    # apart on the mean, but one seed within the band: undecided
    assert comparable_part(bn, pd.Series([0.02, 0.30, 0.05, 0.25]))[0] == "inconclusive"
    with pytest.raises(ValueError, match="share no seed"):
        comparable_part(bn, pd.Series([0.1], index=[9]))
