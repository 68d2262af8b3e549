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


def test_label_sorted_claim_reproduced_when_bn_test_loss_is_far_above():
    frame = _frame({"bn": (0.05, 1.5, 0.7), "fn": (0.08, 0.2, 0.95)}, {"bn": (0.1, 0.1, 0.97), "fn": (0.1, 0.1, 0.97)})
    verdict = claims.check_label_sorted(frame, "unit")
    assert verdict.reproduced and "reproduced" in verdict.line().lower()
    assert "1.500" in verdict.measured and "0.200" in verdict.measured


@pytest.mark.parametrize("bn,fn", [((0.05, 0.3, 0.9), (0.08, 0.2, 0.95)),  # test loss not 2x
                                   ((0.01, 1.5, 0.7), (0.5, 0.2, 0.95))])  # training losses not comparable
def test_label_sorted_claim_not_reproduced_otherwise(bn, fn):
    frame = _frame({"bn": bn, "fn": fn}, {"bn": (0.1, 0.1, 0.97), "fn": (0.1, 0.1, 0.97)})
    verdict = claims.check_label_sorted(frame, "unit")
    assert not verdict.reproduced and verdict.verdict == "not reproduced at this scale"


@pytest.mark.parametrize("fn,expected", [((0.1, 0.12, 0.965), True), ((0.1, 0.2, 0.965), False), ((0.1, 0.12, 0.94), False)])
def test_shuffled_claim_needs_matching_loss_and_accuracy(fn, expected):
    frame = _frame({"bn": (0.1, 0.1, 0.97), "fn": (0.1, 0.1, 0.97)}, {"bn": (0.1, 0.1, 0.97), "fn": fn})
    assert claims.check_shuffled(frame, "unit").reproduced is expected


def test_thresholds():
    assert claims.comparable(0.04, 0.08) and claims.comparable(0.001, 0.03) and not claims.comparable(0.1, 0.3)
    assert claims.far_above(0.5, 0.2) and not claims.far_above(0.15, 0.07) and not claims.far_above(0.3, 0.2)


def test_verdicts_average_over_seeds():
    frame = _frame({"bn": (0.05, 0.5, 0.7), "fn": (0.05, 0.2, 0.9)}, {"bn": (0.1, 0.1, 0.97), "fn": (0.1, 0.1, 0.97)})
    assert claims.check_label_sorted(frame, "unit").reproduced  # seed 0 alone: 0.5 >= 2 * 0.2
    other = frame.copy()
    other["seed"] = 1
    other.loc[(other.norm == "bn") & (other.batch_order == "label_sorted"), "test_loss"] = 0.2
    # Seeds 0 and 1 together: BN's mean test loss (0.5 + 0.2) / 2 = 0.35 < 2 * 0.2.
    assert not claims.check_label_sorted(pd.concat([frame, other]), "unit").reproduced


@pytest.mark.parametrize("sorted_eval,shuffled_eval,expected", [(0.3, 0.06, True), (0.08, 0.06, False), (0.3, 0.5, False)])
def test_bn_mode_gap_needs_a_gap_only_under_label_sorted_batches(sorted_eval, shuffled_eval, expected):
    frame = _frame({"bn": (0.05, 0.3, 0.9), "fn": (0.1, 0.2, 0.9)}, {"bn": (0.05, 0.06, 0.98), "fn": (0.05, 0.06, 0.98)})
    frame["train_eval_loss"] = frame.train_loss
    frame.loc[(frame.norm == "bn") & (frame.batch_order == "label_sorted") & (frame.epoch == 2), "train_eval_loss"] = sorted_eval
    frame.loc[(frame.norm == "bn") & (frame.batch_order == "shuffled") & (frame.epoch == 2), "train_eval_loss"] = shuffled_eval
    assert claims.check_bn_mode_gap(frame, "unit").reproduced is expected


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
