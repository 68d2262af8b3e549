"""Seaborn figures; one function per figure kind. Plots read results frames and never train."""

from __future__ import annotations

import matplotlib.pyplot as plt
import seaborn as sns

NORM_LABELS = {"none": "no normalization", "bn": "BN", "fn": "FN (MCSGD)"}
ORDER_LABELS = {"shuffled": "shuffled batches", "label_sorted": "label-sorted batches (one label per batch)"}
METRIC_LABELS = {
    "train_loss": "training loss, training mode (nats)",
    "train_eval_loss": "training-set loss, evaluation mode (nats)",
    "test_loss": "test loss, evaluation mode (nats)",
    "test_acc": "test accuracy",
}


def set_theme() -> None:
    """The book's seaborn theme."""
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")


def loss_curves(frame, metrics=("train_loss", "test_loss"), caption: str = "", log_y: bool = True):
    """Loss per epoch: one row of panels per batch order, one column per metric, a line per norm.

    The manner of Lian & Liu (2019), Figures 4 and 7 (training and test loss of BN and FN).
    Where ``frame`` holds several seeds, lines are their mean and bands their range.

    Args:
        frame: long frame with columns ``epoch``, ``norm``, ``batch_order``, ``seed`` and ``metrics``.
        metrics: columns to plot, one panel column each.
        caption: figure suptitle (say which notebook and profile made it).
        log_y: logarithmic loss axis.

    Returns:
        The :class:`seaborn.FacetGrid`.
    """
    long = frame.melt(
        id_vars=["epoch", "norm", "batch_order", "seed"], value_vars=list(metrics), var_name="metric", value_name="value"
    )
    long["norm"] = long["norm"].map(NORM_LABELS)
    long["batch_order"] = long["batch_order"].map(ORDER_LABELS)
    long["metric"] = long["metric"].map(METRIC_LABELS)
    grid = sns.relplot(
        data=long, x="epoch", y="value", hue="norm", style="norm", row="batch_order", col="metric",
        kind="line", markers=True, dashes=False, errorbar=("pi", 100), height=3.0, aspect=1.35,
        facet_kws={"sharey": False, "margin_titles": True},
    )
    grid.set_titles(row_template="{row_name}", col_template="{col_name}")
    grid.set_axis_labels("epoch", "loss (nats)")
    if log_y:
        grid.set(yscale="log")
    if len(grid._legend.texts):
        grid._legend.set_title("normalization")
    if caption:
        grid.figure.suptitle(caption, y=1.03, fontsize="medium")
    plt.close(grid.figure)  # shown by the notebook's display, not twice
    return grid
