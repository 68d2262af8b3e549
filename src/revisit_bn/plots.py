"""Seaborn figures; one function per figure kind. Plots read results frames and never train."""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import seaborn as sns

NORM_LABELS = {"none": "no normalization", "bn": "BN", "fn": "FN (MCSGD)", "fn_const": "FN, constant estimates"}
ORDER_LABELS = {"label_sorted": "label-sorted batches (one label per batch)", "shuffled": "shuffled batches"}
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
        caption: figure title (say which notebook and profile made it); wrapped to the width.
        log_y: logarithmic loss axis.

    Returns:
        The :class:`matplotlib.figure.Figure`.
    """
    orders = [o for o in ORDER_LABELS if o in set(frame.batch_order)]
    norms = [n for n in NORM_LABELS if n in set(frame.norm)]
    palette = dict(zip(norms, sns.color_palette("colorblind", len(norms))))
    fig, axes = plt.subplots(len(orders), len(metrics), figsize=(5.2 * len(metrics), 3.6 * len(orders)),
                             squeeze=False, constrained_layout=True)
    for row, order in enumerate(orders):
        for col, metric in enumerate(metrics):
            ax = axes[row, col]
            data = frame[frame.batch_order == order]
            sns.lineplot(data=data, x="epoch", y=metric, hue="norm", hue_order=[n for n in norms if n in set(data.norm)],
                         palette=palette, style="norm", markers=True, dashes=False, errorbar=("pi", 100), ax=ax)
            ax.set_title(f"{ORDER_LABELS[order]}\n{METRIC_LABELS[metric]}", fontsize="medium")
            ax.set_xlabel("epoch")
            ax.set_ylabel("loss (nats)" if "loss" in metric else metric)
            ax.set_xticks(sorted(set(data.epoch)))
            if log_y and "loss" in metric:
                ax.set_yscale("log")
            handles, _ = ax.get_legend_handles_labels()
            ax.legend(handles, [NORM_LABELS[n] for n in norms if n in set(data.norm)], title="normalization", fontsize="small")
    if caption:
        fig.suptitle(textwrap.fill(caption, 110), fontsize="medium")
    plt.close(fig)  # shown by the notebook's display, not twice
    return fig
