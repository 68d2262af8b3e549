"""Seaborn figures; one function per figure kind. Plots read results frames and never train."""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import seaborn as sns

NORM_LABELS = {"none": "no normalization", "bn": "BN", "fn": "FN (MCSGD)", "fn_const": "FN, constant estimates",
               "brn": "Batch Renorm", "gn": "GroupNorm", "bn_ref": "BN (reference, Alg. 1-2)"}
ORDER_LABELS = {"label_sorted": "label-sorted batches (one label per batch)", "shuffled": "shuffled batches",
                "label_limited": "at most 3 labels per batch", "label_pairs": "16 labels x 2 images per batch"}
METRIC_LABELS = {
    "test_error": "test error",
    "train_loss": "training loss, training mode (nats)",
    "train_eval_loss": "training-set loss, evaluation mode (nats)",
    "test_loss": "test loss, evaluation mode (nats)",
    "test_acc": "test accuracy",
}


def set_theme() -> None:
    """The book's seaborn theme."""
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")


def curves(frame, metrics, hue: str = "norm", row: str | None = None, caption: str = "", log_y: bool = True,
           labels: dict | None = None, x: str = "epoch", x_label: str = "epoch"):
    """Metric per epoch: one row of panels per value of ``row``, one column per metric, a line per ``hue``.

    Where ``frame`` holds several seeds, lines are their mean and bands their range.

    Args:
        frame: long frame with columns ``x``, ``hue``, ``row`` (if given), ``seed`` and ``metrics``.
        metrics: columns to plot, one panel column each (titles from :data:`METRIC_LABELS`).
        hue, row: column names; their values are shown through ``labels`` when it maps them.
        caption: figure title (say which notebook and profile made it); wrapped to the width.
        log_y: logarithmic axis for loss metrics.
        labels: display names of values (default: norms and batch orders).

    Returns:
        The :class:`matplotlib.figure.Figure`.
    """
    labels = {**NORM_LABELS, **ORDER_LABELS, **(labels or {})}
    rows = [None] if row is None else list(dict.fromkeys(frame[row]))
    hues = list(dict.fromkeys(frame[hue]))
    palette = dict(zip(hues, sns.color_palette("colorblind", len(hues))))
    fig, axes = plt.subplots(len(rows), len(metrics), figsize=(5.2 * len(metrics), 3.6 * len(rows)),
                             squeeze=False, constrained_layout=True)
    for r, row_value in enumerate(rows):
        data = frame if row is None else frame[frame[row] == row_value]
        present = [h for h in hues if h in set(data[hue])]
        for c, metric in enumerate(metrics):
            ax = axes[r, c]
            sns.lineplot(data=data, x=x, y=metric, hue=hue, hue_order=present, palette=palette, style=hue,
                         markers=True, dashes=False, errorbar=("pi", 100), ax=ax)
            title = METRIC_LABELS.get(metric, metric)
            ax.set_title(title if row is None else f"{labels.get(row_value, row_value)}\n{title}", fontsize="medium")
            ax.set_xlabel(x_label)
            ticks = sorted(set(data[x]))
            if len(ticks) <= 12:
                ax.set_xticks(ticks)
            ax.set_ylabel("loss (nats)" if "loss" in metric else metric.replace("_", " "))
            if log_y and "loss" in metric:
                ax.set_yscale("log")
            handles, _ = ax.get_legend_handles_labels()
            ax.legend(handles, [str(labels.get(h, h)) for h in present], title=hue.replace("_", " "), fontsize="small")
    if caption:
        fig.suptitle(textwrap.fill(caption, 110), fontsize="medium")
    plt.close(fig)  # shown by the notebook's display, not twice
    return fig


def loss_curves(frame, metrics=("train_loss", "test_loss"), caption: str = "", log_y: bool = True):
    """Lian & Liu (2019) Figures 4 and 7: a row per batch order (label-sorted first), a line per norm.

    See :func:`curves`; returns the :class:`matplotlib.figure.Figure`.
    """
    rank = {name: i for i, name in enumerate([*ORDER_LABELS, *NORM_LABELS])}  # Figure 4 first; norms in order
    frame = frame.sort_values(["batch_order", "norm"], key=lambda col: col.map(rank), kind="stable")
    return curves(frame, metrics, hue="norm", row="batch_order", caption=caption, log_y=log_y)
