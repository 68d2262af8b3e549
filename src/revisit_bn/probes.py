"""Statistics of the probes taken during training (Santurkar et al.'s internal covariate shift, loss landscape and
activation distributions; :class:`revisit_bn.landscape.TrainingProbe` records them): medians and drifts over
probed steps and layers, on all probes or on every other one (the probe-schedule rule's halves).
"""

from __future__ import annotations


from .verdicts import PROBE_HALVES, _check_half


def ics_summary(probes, by="norm"):
    """Medians over probed steps and layers of ``ics_cos`` and ``ics_l2``, one row per value of ``by``.

    ``by`` is a column name or a list of them (e.g. ``["lr", "norm"]``); returns a
    :class:`pandas.DataFrame` with columns ``ics_cos`` and ``ics_l2``.
    """
    rows = probes[probes.quantity.isin(["ics_cos", "ics_l2"])]
    return rows.pivot_table(index=by, columns="quantity", values="value", aggfunc="median")[["ics_cos", "ics_l2"]]


def landscape_summary(probes, by="norm"):
    """Per network, medians over training of the loss range, the largest gradient change and beta_eff.

    ``by`` is a column name or a list of them (e.g. ``["seed", "norm"]``). Returns a
    :class:`pandas.DataFrame` indexed by ``by`` with columns ``loss_range`` (nats),
    ``grad_change_max`` and ``effective_beta_smoothness``.
    """
    by = [by] if isinstance(by, str) else list(by)
    wide = probes.pivot_table(index=[*by, "step"], columns="quantity", values="value")
    wide["loss_range"] = wide.loss_max - wide.loss_min
    return wide.groupby(by)[["loss_range", "grad_change_max", "effective_beta_smoothness"]].median()


def probe_half(probes, half: str):
    """The rows of every other probed step: ``half="odd"`` keeps the 1st, 3rd, ... of the sorted
    probed steps, ``"even"`` the 2nd, 4th, ... (the halves of the probe-schedule rule,
    :func:`on_probe_halves`).

    Raises:
        ValueError: ``half`` is not ``"odd"`` or ``"even"``.
    """
    if half not in PROBE_HALVES:
        raise ValueError(f"half must be 'odd' or 'even', got {half!r}")
    steps = sorted(probes.step.unique())
    return probes[probes.step.isin(steps[0::2] if half == "odd" else steps[1::2])]


def _probe_drift(probes, by, change, half=None):
    """Mean of ``change(mean, std)`` (per-interval changes of one recorded layer's channel, from its
    ``act_mean`` and ``act_std`` arrays over probes) over layers and consecutive probes, per ``by`` value;
    ``half`` keeps every other interval between consecutive probes (``"odd"``: the 1st, 3rd, ...)."""
    _check_half(half)
    keys = [by] if isinstance(by, str) else list(by)
    rows = probes[probes.quantity.isin(["act_mean", "act_std"])]
    wide = rows.pivot_table(index=[*keys, "layer", "step"], columns="quantity", values="value").sort_index()
    out = {}
    for name, part in wide.groupby(level=list(range(len(keys))) if len(keys) > 1 else 0):
        drifts = []
        for _, layer in part.groupby(level=len(keys)):
            if len(layer) > 1:
                changes = list(change(layer.act_mean.to_numpy(), layer.act_std.to_numpy()))
                drifts.extend(changes if half is None else changes[PROBE_HALVES.index(half)::2])
        out[name] = float(sum(drifts) / len(drifts)) if drifts else float("nan")
    return out


def activation_drift(probes, by="norm", half=None):
    r"""How far a channel's distribution moves between probes: the mean over recorded layers and
    consecutive probes of :math:`|\Delta\,\text{mean}| / \text{std}` (the change of the channel's mean in
    units of its spread). ``by``: a column or a list of them (e.g. ``["seed", "norm"]``). ``half``:
    ``None`` (every interval between consecutive probes), ``"odd"`` or ``"even"`` (every other
    interval, the 1st, 3rd, ... or the 2nd, 4th, ...: the probe-schedule rule's halves, which keep
    the interval's length). Returns ``{by value: drift}`` (a tuple key for a list).

    Raises:
        ValueError: ``half`` is not ``None``, ``"odd"`` or ``"even"``.
    """
    return _probe_drift(probes, by, lambda mean, std: abs(mean[1:] - mean[:-1]) / ((std[1:] + std[:-1]) / 2 + 1e-12),
                        half)


def scale_drift(probes, by="norm", half=None):
    r"""How far a channel's spread moves between probes: the mean over recorded layers and consecutive
    probes of :math:`|\Delta \ln \text{std}|` (a relative change of scale, which
    :func:`activation_drift` does not see). ``by``, ``half`` and the returned ``{by value: drift}`` as there."""
    import numpy as np

    return _probe_drift(probes, by, lambda mean, std: abs(np.diff(np.log(np.maximum(std, 1e-12)))), half)
