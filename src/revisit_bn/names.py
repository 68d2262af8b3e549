"""The book's display names: one label per method, batch order and metric, used by every table,
figure legend and verdict (chapters and the ledger alike).

Code keeps the short identifiers (``"fn_decoupled"``, ``"label_sorted"``, ``"train_eval_loss"``);
a reader sees these labels. :func:`display_frame` applies them to a table.
"""

from __future__ import annotations

NORM_LABELS = {
    "none": "no normalization", "bn": "BN", "bn_ref": "BN (reference, Alg. 1-2)",
    "fn": "FN (MCSGD)", "fn_decoupled": "FN (decoupled)", "fn_exact": "FN (exact)", "fn_const": "FN (constant)",
    "brn": "Batch Renorm", "gn": "GroupNorm", "noisy_bn": "noisy BN", "noisy_none": "noisy standard (no BN)",
    "lp1": "l1 normalization", "lp2": "l2 normalization", "lpinf": "l-inf normalization",
    "sync_bn": "cross-worker BN", "bn_pooled": "BN (pooled statistics)",
    "bn_precise": "BN (precise statistics)", "online": "Online Norm", "mabn": "MABN", "frn": "FRN+TLU",
    "evonorm": "EvoNorm-S0",
}
"""Methods (a run's ``norm``, or a data-parallel run's ``method``, :mod:`revisit_bn.distributed`; ``bn_pooled`` is
local BN evaluated with running statistics pooled over the workers; ``bn_precise`` is BN evaluated with population
statistics recomputed after training, PreciseBN). FN's labels name its gradient estimator (chapter 15)."""

SETTING_LABELS = {"single_label": "one label per batch", "label_limited": "at most 3 labels per batch",
                  "shuffled": "shuffled", "micro2": "microbatches of 2", "micro4": "microbatches of 4"}
"""Chapter 38's batch settings (:data:`revisit_bn.chapters.SETTINGS_38`)."""

ORDER_LABELS = {
    "label_sorted": "one label per batch", "shuffled": "shuffled", "unshuffled": "labels in sequence",
    "label_limited": "at most 3 labels per batch", "label_pairs": "16 labels x 2 images per batch",
}
"""Batch constructions (a run's ``order``; :mod:`revisit_bn.data`)."""

METRIC_LABELS = {
    "train_loss": "training loss, training mode", "train_eval_loss": "training-set loss, evaluation mode",
    "test_loss": "test loss", "test_acc": "test accuracy", "test_error": "test error",
    "train_eval_acc": "training-set accuracy", "val_loss": "validation loss", "val_acc": "validation accuracy",
}
"""Per-epoch metrics (:class:`revisit_bn.train.RunResult`); losses in nats, accuracies as fractions."""

COLUMN_LABELS = {"norm": "method", "method": "method", "workers": "workers K", "labels_per_worker": "labels per worker c",
                 "order": "batches", "lr": "step size", "batch_size": "batch size",
                 "seed": "seed", "epoch": "epoch", "model": "network"}
"""A run's parameters as table headers."""

VALUE_LABELS = {"norm": NORM_LABELS, "method": NORM_LABELS, "order": ORDER_LABELS}


def label(name) -> str:
    """The display label of a method, batch order, metric or parameter ``name`` (``name`` itself when it has none)."""
    for table in (NORM_LABELS, ORDER_LABELS, SETTING_LABELS, METRIC_LABELS, COLUMN_LABELS):
        if isinstance(name, str) and name in table:
            return table[name]
    return str(name)


def display_frame(frame):
    """``frame`` (a pandas DataFrame) with the book's labels: values of ``norm`` and ``order`` columns and
    index levels, and column and index names (:data:`METRIC_LABELS`, :data:`COLUMN_LABELS`). Returns a copy."""
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"frame must be a pandas DataFrame (a table to label), got {type(frame).__name__}")
    out = frame.copy()
    for column in out.columns:
        if column in VALUE_LABELS:
            out[column] = out[column].map(lambda v, t=VALUE_LABELS[column]: t.get(v, v))
    if isinstance(out.index, pd.MultiIndex):
        out.index = out.index.set_levels([lvl.map(lambda v, t=VALUE_LABELS.get(n, {}): t.get(v, v))
                                          for lvl, n in zip(out.index.levels, out.index.names)])
    elif out.index.name in VALUE_LABELS:
        out.index = out.index.map(lambda v, t=VALUE_LABELS[out.index.name]: t.get(v, v))
    if isinstance(out.columns, pd.MultiIndex):
        out.columns = out.columns.set_levels([lvl.map(lambda v, t=VALUE_LABELS.get(n, {}): t.get(v, v))
                                              for lvl, n in zip(out.columns.levels, out.columns.names)])
    out = out.rename(columns=lambda c: label(c) if isinstance(c, str) else c)
    out.index.names = [label(n) if n else n for n in out.index.names]
    out.columns.names = [label(n) if n else n for n in out.columns.names]
    return out
