"""Figures are labelled, one panel per batch order and metric."""

import pandas as pd

from revisit_bn import plots


def test_loss_curves_draw_a_labelled_panel_per_order_and_metric():
    rows = [dict(epoch=e, norm=n, batch_order=o, seed=s, train_loss=1.0 / e, test_loss=2.0 / e)
            for e in (1, 2) for n in ("bn", "fn") for o in ("shuffled", "label_sorted") for s in (0, 1)]
    fig = plots.loss_curves(pd.DataFrame(rows), caption="unit test")
    axes = fig.axes
    assert len(axes) == 4
    assert all(ax.get_xlabel() == "epoch" and ax.get_ylabel() == "loss (nats)" for ax in axes)
    assert all(ax.get_yscale() == "log" for ax in axes)
    assert [t.get_text() for t in axes[0].get_legend().texts] == ["BN", "FN (MCSGD)"]
    assert "label-sorted" in axes[0].get_title() and "test loss" in axes[1].get_title()  # Figure 4 first
    assert "shuffled" in axes[2].get_title()
    assert fig._suptitle.get_text() == "unit test"
