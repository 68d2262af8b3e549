"""Verdicts turn measurements into 'reproduced' or not, both ways."""

import pandas as pd
import pytest

from revisit_bn import claims, results
from revisit_bn.experiments import CHAPTERS


def _frame(label_sorted, shuffled):
    """label_sorted/shuffled: {norm: (train_loss, test_loss, test_acc)} at the last epoch."""
    rows = []
    for order, values in (("label_sorted", label_sorted), ("shuffled", shuffled)):
        for norm, (train, test, acc) in values.items():
            for epoch, factor in ((1, 2.0), (2, 1.0)):  # only the last epoch counts
                rows.append(dict(epoch=epoch, norm=norm, batch_order=order, seed=0,
                                 train_loss=train * factor, test_loss=test * factor, test_acc=acc))
    return pd.DataFrame(rows)


@pytest.mark.parametrize("fn,expected", [((0.1, 0.12, 0.965), True), ((0.1, 0.2, 0.965), False), ((0.1, 0.12, 0.94), False)])
def test_shuffled_claim_needs_matching_loss_and_accuracy(fn, expected):
    frame = _frame({"bn": (0.1, 0.1, 0.97), "fn": (0.1, 0.1, 0.97)}, {"bn": (0.1, 0.1, 0.97), "fn": fn})
    assert claims.check_shuffled(frame, "unit").reproduced is expected


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
    assert claims.check_fig4_estimator(frame, "unit", "lian-fig4").category == "contradicted"


def test_fig4_inconclusive_when_one_seed_would_flip_it():
    # the seeds of the issue that reported it: FN vs BN 0.221 vs 0.219, 0.104 vs 0.235, 0.118 vs 0.265
    frame = _seeded({("bn", "label_sorted"): [(0.05, 0.219), (0.05, 0.235), (0.05, 0.265)],
                     ("fn", "label_sorted"): [(0.08, 0.221), (0.08, 0.104), (0.08, 0.118)]})
    verdict = claims.check_fig4_estimator(frame, "unit", "lian-fig4")
    assert verdict.category == "inconclusive" and not verdict.reproduced


def test_fig4_in_part_when_training_losses_differ_and_inconclusive_below_the_gate():
    values = {("bn", "label_sorted"): [(0.01, 1.5), (0.01, 1.4), (0.01, 1.6)],
              ("fn", "label_sorted"): [(0.5, 0.2), (0.5, 0.25), (0.5, 0.22)]}
    assert claims.check_fig4_estimator(_seeded(values), "unit", "x").category == "reproduced in part"
    verdict = claims.check_fig4_estimator(_seeded(values, shuffled_acc=0.9), "unit", "x")
    assert verdict.category == "inconclusive" and "gate" in verdict.measured


@pytest.mark.parametrize("fn_losses,category", [([0.05, 0.06, 0.04], "reproduced"), ([0.3, 0.32, 0.31], "contradicted"),
                                                ([0.05, 0.2, -0.05], "inconclusive")])
def test_fig7_match_needs_the_interval_inside_the_band(fn_losses, category):
    frame = _seeded({("fn", "shuffled"): [(0.05, v) for v in fn_losses]})
    assert claims.check_fig7_match(frame, "unit").category == category


@pytest.mark.parametrize("sorted_eval,shuffled_eval,expected", [(0.3, 0.06, "reproduced"), (0.08, 0.06, "contradicted"),
                                                                  (0.3, 0.5, "reproduced in part")])
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


def test_verdict_category_must_be_known_and_agree_with_reproduced():
    with pytest.raises(ValueError, match="category"):
        claims.Verdict("x", "s", "c", "m", "unit", True, "mostly reproduced")
    with pytest.raises(ValueError, match="disagrees"):
        claims.Verdict("x", "s", "c", "m", "unit", True, "contradicted")
    verdict = claims.Verdict.of("x", "s", "c", "m", "unit", "holds as printed")
    assert verdict.reproduced and verdict.verdict == "holds as printed" and "HOLDS AS PRINTED" in verdict.line()


def test_fn_trains_at_batch_size_one_is_judged_over_seeds():
    rows = [dict(epoch=e, norm="fn", seed=s, test_loss=loss) for s in range(3)
            for e, loss in ((1, 1.1), (2, 0.2 + 0.01 * s))]
    assert claims.check_fn_trains_at_batch_size_one(pd.DataFrame(rows), "unit", "fn", "x").category == "reproduced"
    rows = [dict(epoch=e, norm="fn", seed=s, test_loss=loss) for s in range(3)
            for e, loss in ((1, 1.1), (2, 1.1 + 0.01 * s))]
    assert claims.check_fn_trains_at_batch_size_one(pd.DataFrame(rows), "unit", "fn", "x").category == "contradicted"


def _curves(norm_values):
    """{norm: [(train_loss, test_loss, train_eval_loss) per epoch]} -> frame."""
    rows = [dict(epoch=e + 1, norm=n, seed=0, batch_order="shuffled", train_loss=tr, test_loss=te, train_eval_loss=ev)
            for n, values in norm_values.items() for e, (tr, te, ev) in enumerate(values)]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("bn_curve,expected", [([(1.1, 1.0, 1.0), (0.5, 5.0, 5.0)], True),   # falls and rises
                                               ([(1.1, 1.0, 1.0), (1.1, 5.0, 5.0)], False),  # flat training loss
                                               ([(1.1, 1.0, 1.0), (0.5, 1.0, 1.0)], False)])  # test loss does not rise
def test_batch_size_one_claim_needs_both_halves(bn_curve, expected):
    frame = _curves({"bn_ref": bn_curve, "fn": [(1.1, 1.0, 1.0), (0.1, 0.1, 0.1)]})
    assert claims.check_batch_size_one(frame, "unit").reproduced is expected


@pytest.mark.parametrize("bn_final,expected", [(0.6, True), (0.52, False)])
def test_large_variance_claim_compares_bn_with_plain_regression(bn_final, expected):
    frame = _curves({"bn": [(0, 0, 0.7), (0, 0, bn_final)], "fn": [(0, 0, 0.7), (0, 0, 0.55)], "none": [(0, 0, 0.7), (0, 0, 0.5)]})
    assert claims.check_large_variance(frame, "unit").reproduced is expected


def test_recorded_verdicts_are_collected_for_the_ledger_with_what_made_them(results_root):
    verdict = claims.Verdict("x-1", "paper", "claim", "measured", "scale", True)
    claims.record(verdict, "99-chapter", params={"epochs": 3}, runs=["b", "a"])
    ledger = claims.collect()
    assert ledger.claim_id.tolist() == ["x-1"] and ledger.verdict.tolist() == ["reproduced"]
    assert ledger.chapter.tolist() == ["99-chapter"] and ledger.profile.tolist() == ["book"]
    row = ledger.iloc[0]
    assert row.params == {"epochs": 3} and row.runs == ["a", "b"] and row.code == results.code_fingerprint()
    assert claims.collect("paper").empty  # profiles keep their own ledgers


def test_a_verdict_over_diverged_runs_is_recorded_as_inconclusive(results_root):
    verdict = claims.Verdict("x-2", "paper", "claim", "BN 0.1, FN 0.2", "scale", True)
    claims.record(verdict, "99-chapter", diverged=["unit: bn/shuffled: diverged at step 7"])
    row = claims.collect().iloc[0]
    assert row.verdict == "inconclusive: runs diverged" and not row.reproduced
    assert "diverged at step 7" in row.measured


def test_ledger_knows_which_chapters_lack_verdicts(results_root):
    with_claims = [c.name for c in CHAPTERS.values() if c.claims]
    assert claims.ensure_recorded(run=False) == with_claims
    for claim_id in CHAPTERS["32-batch-size-one"].claims:
        claims.record(claims.Verdict(claim_id, "p", "c", "m", "s", False), "32-batch-size-one")
    assert "32-batch-size-one" not in claims.ensure_recorded(run=False)


def test_every_chapter_spec_has_its_notebook():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "notebooks"
    assert {p.stem for p in root.glob("[0-9]*.ipynb")} == set(CHAPTERS)


# ----------------------------------------------------------------------------------------------
# Santurkar et al. (2018)
# ----------------------------------------------------------------------------------------------


def _probes(values):
    """values: {norm: {quantity: [value per probe step]}} (layer-free quantities and one layer for ics/act)."""
    rows = []
    for norm, quantities in values.items():
        for quantity, series in quantities.items():
            layer = "" if quantity in ("loss_min", "loss_max", "grad_change_max", "effective_beta_smoothness") else "l1"
            for step, value in enumerate(series):
                rows.append(dict(norm=norm, lr=0.1, step=10 * step, quantity=quantity, layer=layer, value=value))
    return pd.DataFrame(rows)


def _landscape(loss_range, grad, beta):
    return {"loss_min": [1.0, 1.0], "loss_max": [1.0 + loss_range] * 2, "grad_change_max": [grad] * 2,
            "effective_beta_smoothness": [beta] * 2}


@pytest.mark.parametrize("bn,expected", [((0.2, 1.0, 5.0), True), ((0.2, 1.0, 50.0), False), ((2.0, 1.0, 5.0), False)])
def test_landscape_claim_needs_all_three_quantities_lower_with_bn(bn, expected):
    probes = _probes({"none": _landscape(1.0, 3.0, 20.0), "bn": _landscape(*bn), "fn": _landscape(0.5, 2.0, 10.0)})
    summary = claims.landscape_summary(probes)
    assert summary.loc["none", "loss_range"] == pytest.approx(1.0)
    verdict = claims.check_landscape(probes, "unit")
    assert verdict.reproduced is expected and "FN" in verdict.measured


@pytest.mark.parametrize("bn_cos,expected", [(0.5, True), (0.74, True), (0.9, False)])
def test_ics_claim_holds_unless_bn_raises_the_cosine(bn_cos, expected):
    probes = _probes({"none": {"ics_cos": [0.7, 0.7], "ics_l2": [0.1, 0.1]}, "bn": {"ics_cos": [bn_cos] * 2, "ics_l2": [0.3, 0.3]}})
    assert claims.check_ics_not_reduced(probes, "unit", "x", "src", "claim").reproduced is expected
    assert claims.check_ics_not_reduced(probes, "unit", "x", "src", "claim", by="lr").reproduced is expected


def test_activation_drift_is_the_mean_change_in_units_of_the_spread():
    probes = _probes({"bn": {"act_mean": [0.0, 0.0, 0.0], "act_std": [1.0, 1.0, 1.0]},
                      "noisy_bn": {"act_mean": [0.0, 1.0, -1.0], "act_std": [2.0, 2.0, 2.0]}})
    drift = claims.activation_drift(probes)
    assert drift["bn"] == 0.0 and drift["noisy_bn"] == pytest.approx((0.5 + 1.0) / 2)


@pytest.mark.parametrize("noisy_loss,noisy_mean,expected", [(0.5, [0.0, 1.0, -1.0], True),  # trains, shifts
                                                            (2.0, [0.0, 1.0, -1.0], False),  # does not train as well
                                                            (0.5, [0.0, 0.01, 0.0], False)])  # no larger shift
def test_noisy_bn_claim_needs_both_a_shift_and_comparable_training(noisy_loss, noisy_mean, expected):
    probes = _probes({"none": {"act_mean": [0.0, 0.1, 0.0], "act_std": [1.0] * 3},
                      "bn": {"act_mean": [0.0, 0.05, 0.0], "act_std": [1.0] * 3},
                      "noisy_bn": {"act_mean": noisy_mean, "act_std": [1.0] * 3}})
    frame = pd.DataFrame([dict(epoch=1, norm=n, train_loss=loss, test_acc=0.5)
                          for n, loss in (("none", 1.5), ("bn", 0.5), ("noisy_bn", noisy_loss))])
    assert claims.check_noisy_bn(frame, probes, "unit").reproduced is expected


@pytest.mark.parametrize("bn_at_05,expected", [(1.0, True), (2.5, False)])
def test_learning_rate_claim_needs_bn_ahead_at_both_rates(bn_at_05, expected):
    frame = pd.DataFrame([dict(epoch=2, norm=n, lr=lr, train_loss=loss, test_acc=0.5)
                          for (n, lr), loss in {("none", 0.1): 1.5, ("bn", 0.1): 0.9, ("fn", 0.1): 1.0,
                                                ("none", 0.5): 2.3, ("bn", 0.5): bn_at_05, ("fn", 0.5): 1.2}.items()])
    verdict = claims.check_learning_rates(frame, "unit")
    assert verdict.reproduced is expected and "lr 0.5" in verdict.measured


def test_a_verdict_shows_as_a_badge_and_a_sentence_and_prints_as_wrapped_text():
    verdict = claims.Verdict("x-3", "paper", "a claim " * 20, "BN 0.1 < FN 0.2 & more", "scale", False)
    html = verdict._repr_html_()
    assert "not reproduced at this scale</span>" in html and 'id="verdict-x-3"' in html and "&amp; more" in html
    assert repr(verdict) == verdict.line()
    assert all(len(line) <= 88 for line in verdict.line().splitlines())
