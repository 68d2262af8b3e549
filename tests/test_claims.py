"""Verdicts turn measurements into 'reproduced' or not, both ways."""

import pandas as pd
import pytest

from revisit_bn import claims


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
