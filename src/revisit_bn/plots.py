"""Seaborn figures; one function per figure kind. Plots read results frames and never train."""

from __future__ import annotations

import matplotlib.pyplot as plt
import seaborn as sns
from matplotlib import ticker
from matplotlib.colors import to_rgb

from .names import METRIC_LABELS, NORM_LABELS, ORDER_LABELS, display_frame, label  # noqa: F401 (one label per concept)
from .verdicts import OUTPUT_WIDTH, require_columns  # the book's output box; verdict lines share it

UNITS = {"test_acc": "accuracy (fraction)", "test_error": "error (fraction)", "train_eval_acc": "accuracy (fraction)"}


def diverged_suffix(data, column: str, value) -> str:
    """``" (diverged)"`` when a run of ``data`` with ``data[column] == value`` is stored as diverged, else ``""``.

    Legends carry it, so a curve that stops (its losses are not finite) is never read as a result.
    """
    if "status" not in data:
        return ""
    return " (diverged)" if (data.loc[data[column] == value, "status"] != "ok").any() else ""


def wrapped(text: str, width: int = OUTPUT_WIDTH) -> str:
    """``text`` wrapped to the book's output box (continuation lines indented), for ``print`` in a notebook."""
    import textwrap

    return "\n".join(textwrap.fill(line, width, subsequent_indent="    ") for line in text.splitlines())


def print_wrapped(*parts, sep: str = " ") -> None:
    """``print`` with the text wrapped to the book's output box (see :func:`wrapped`)."""
    print(wrapped(sep.join(str(p) for p in parts)))


def results_table(frame, digits: int = 3, significant: bool = False):
    """``frame`` with its floats rounded for display (``digits`` decimals, or significant digits).

    Notebooks ``display()`` the result, so the book shows an HTML table that wraps to the page
    instead of a fixed-width text dump cut off at the output box's edge. Methods, batch orders,
    metrics and parameters carry the book's display labels (:func:`revisit_bn.names.display_frame`).
    """
    import pandas as pd

    if not isinstance(frame, (pd.DataFrame, pd.Series)):
        raise ValueError(f"results_table takes a pandas DataFrame, got {type(frame).__name__}")
    if significant:
        return display_frame(frame.map(lambda v: float(f"{v:.{digits}g}") if isinstance(v, float) else v))
    return display_frame(frame.round(digits))


# Figures are drawn for the book's ~700-px text column: at most 3 panels a row, 7.2 inches; at 150 dpi
# (1,080 px), sharp when a reader enlarges one (a click opens it alone: _static/enlarge-figures.js).
COLUMN_WIDTH_IN, DPI = 7.2, 150


def figure_png(figure) -> bytes:
    """``figure`` as the PNG a notebook stores: drawn as Jupyter's inline backend draws it (``bbox_inches
    ="tight"``, the figure's dpi), then reduced to 256 colours (Pillow's median cut, no dithering).

    The book's figures hold a dozen palette colours and their anti-aliased blends, so 256 colours
    change no visible pixel (on the book's 34 figures: mean channel difference at most 0.23 of 255)
    while the PNG is about a third the size (the stored figures: 5.6 MB -> 1.9 MB), which keeps the
    repository's working tree small enough to travel with a dataset to a GPU machine.
    """
    import io

    from IPython.core.pylabtools import print_figure
    from PIL import Image

    drawn = Image.open(io.BytesIO(print_figure(figure, "png", bbox_inches="tight", base64=False)))
    reduced = drawn.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    out = io.BytesIO()
    reduced.save(out, "PNG", optimize=True)
    return out.getvalue()


def set_theme() -> None:
    """The book's seaborn theme: colorblind palette, fonts sized for 3 panels across a 700-px column.

    In a Jupyter kernel with the inline backend it also makes :func:`figure_png` the figures' PNG
    form (what ``display`` and myst-nb's ``glue`` store); elsewhere figures are left alone.
    """
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind", font_scale=0.75,
                  rc={"figure.dpi": DPI, "savefig.dpi": DPI, "axes.titlesize": "medium"})
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None or "inline" not in plt.get_backend():
        return
    # importing the inline backend registers its own PNG formatter (once per kernel): do it first,
    # so that ours replaces it and is not replaced when pyplot loads the backend later
    import matplotlib_inline.backend_inline  # noqa: F401
    from matplotlib.figure import Figure

    shell.display_formatter.formatters["image/png"].for_type(Figure, figure_png)


def _figure(nrows: int, ncols: int, row_height: float = 2.3, **kwargs):
    """A grid of panels as wide as the text column (narrower for one panel); raises if wider than 3 panels."""
    if ncols > 3:
        raise ValueError(f"a figure row holds at most 3 panels for the book's column, got {ncols}")
    width = COLUMN_WIDTH_IN if ncols > 1 else 4.4
    return plt.subplots(nrows, ncols, figsize=(width, row_height * nrows + 0.5), squeeze=False,
                        constrained_layout=True, **kwargs)


def _shared_legend(fig, axes, rename=lambda name: name, title: str | None = None):
    """One legend for the whole figure, under the panels, from the first panel's entries; panel legends removed."""
    handles, names = [], []
    for ax in axes.flat:
        h, n = ax.get_legend_handles_labels()
        for handle, name in zip(h, n):
            if name not in names and not name.startswith("_"):
                handles.append(handle)
                names.append(name)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    if handles:
        fig.legend(handles, [rename(n) for n in names], loc="outside lower center", ncols=min(4, len(handles)),
                   frameon=False, title=title)


def curves(frame, metrics, hue: str = "norm", row: str | None = None, log_y: bool = True,
           labels: dict | None = None, x: str = "epoch", x_label: str = "epoch"):
    """Metric per epoch: one row of panels per value of ``row``, one column per metric, a line per ``hue``.

    Where ``frame`` holds several seeds, lines are their mean and bands their range.

    Args:
        frame: long frame with columns ``x``, ``hue``, ``row`` (if given), ``seed`` and ``metrics``.
        metrics: columns to plot, one panel column each (titles from :data:`METRIC_LABELS`).
        hue, row: column names; their values are shown through ``labels`` when it maps them.
        log_y: logarithmic axis for loss metrics.
        labels: display names of values (default: norms and batch orders; a learning rate ``row``
            shows as ``"lr <value>"``).

    Returns:
        The :class:`matplotlib.figure.Figure`.
    """
    if isinstance(metrics, str) or not metrics:
        raise ValueError(f"metrics must be a non-empty list of column names (e.g. ['test_loss']), got {metrics!r}")
    require_columns(frame, [x, hue, *([row] if row else []), *metrics], "curves")
    rows = [None] if row is None else list(dict.fromkeys(frame[row]))
    labels = {**NORM_LABELS, **ORDER_LABELS, **({v: f"lr {v:g}" for v in rows} if row == "lr" else {}), **(labels or {})}
    hues = list(dict.fromkeys(frame[hue]))
    palette, markers = _palette(hues), _markers(hues)
    fig, axes = _figure(len(rows), len(metrics))
    for r, row_value in enumerate(rows):
        data = frame if row is None else frame[frame[row] == row_value]
        present = [h for h in hues if h in set(data[hue])]
        ticks = sorted(set(data[x]))
        for c, metric in enumerate(metrics):
            ax = axes[r, c]
            sns.lineplot(data=data, x=x, y=metric, hue=hue, hue_order=present, palette=palette, style=hue,
                         style_order=present, markers=markers, dashes=False, errorbar=("pi", 100), ax=ax)
            # a marker at about every twelfth point of each line: markers tell the lines apart without
            # colour, and on every one of hundreds of points they merge into a band
            for line in ax.lines:
                line.set_markevery(max(1, round(len(line.get_xdata()) / 12)))
            title = METRIC_LABELS.get(metric, metric)
            ax.set_title(title if row is None else f"{labels.get(row_value, row_value)}\n{title}")
            ax.set_xlabel(x_label)
            if len(ticks) <= 12:
                ax.set_xticks(ticks)
            ax.set_ylabel("loss (nats)" if "loss" in metric else UNITS.get(metric, metric.replace("_", " ")))
            if log_y and "loss" in metric:
                ax.set_yscale("log")
    _shared_legend(fig, axes, lambda h: str(labels.get(_value(hues, h), h)) + diverged_suffix(frame, hue, _value(hues, h)),
                   title=label(hue).replace("_", " "))
    return _finish(fig)


def loss_curves(frame, metrics=("train_loss", "test_loss"), log_y: bool = True):
    """Lian & Liu (2019) Figures 4 and 7: a row per batch order (label-sorted first), a line per norm.

    See :func:`curves`; returns the :class:`matplotlib.figure.Figure`.
    """
    rank = {name: i for i, name in enumerate([*ORDER_LABELS, *NORM_LABELS])}  # Figure 4 first; norms in order
    frame = frame.sort_values(["batch_order", "norm"], key=lambda col: col.map(rank), kind="stable")
    return curves(frame, metrics, hue="norm", row="batch_order", log_y=log_y)


_CB = sns.color_palette("colorblind", 10)
_DARK = sns.color_palette("dark", 10)
# One colour and one marker per normalization for the whole book, no colour used twice: seaborn's
# colorblind palette, where FN's estimators take dark shades (the palette's brown beside FN's orange and
# its yellow and light pink on white were hard to tell apart), and the l_p normalizations three more. Where a
# chapter's legend tells normalizations apart by colour, they stay apart for colour-blind readers too
# (tests/test_plots.py simulates it: COLOUR_BLIND_DELTA); four colours were moved to Paul Tol's for that.
NORM_COLORS = {"bn": _CB[0], "fn": _CB[1], "brn": _CB[2], "noisy_bn": _CB[3], "gn": _CB[4], "fn_decoupled": _DARK[4],
               "fn_const": _DARK[5], "none": _CB[7], "fn_exact": "#aa3377", "bn_ref": _CB[9],
               "lp1": _DARK[3], "lp2": _DARK[9], "lpinf": "#ee7733", "sync_bn": "#9f4800", "bn_pooled": "#117733",
               # BN's successors (chapter 38): Paul Tol's indigo, teal and olive, black, and the dark palette's rust
               "bn_precise": "#332288", "frn": "#44aa99", "evonorm": "#999933", "online": "#000000", "mabn": _DARK[1]}
NORM_COLORS = {norm: to_rgb(colour) for norm, colour in NORM_COLORS.items()}  # RGB triples: _palette lightens them
NORM_MARKERS = {"bn": "o", "fn": "s", "brn": "^", "noisy_bn": "*", "gn": "v", "fn_decoupled": "<", "fn_const": "D",
                "none": "X", "fn_exact": ">", "bn_ref": "P", "lp1": "d", "lp2": "h", "lpinf": "8", "sync_bn": "p",
                "bn_pooled": "H", "bn_precise": "$p$", "frn": "$f$", "evonorm": "$e$", "online": "$o$", "mabn": "$m$"}
# FN's gradient estimators (``backward=``) by the norm name that selects them, for the estimator figures.
ESTIMATOR_NORMS = {"mcsgd": "fn", "decoupled": "fn_decoupled", "exact": "fn_exact", "constant": "fn_const"}
# Chapter 22's variant names, mapped to the normalization whose colour they take.
VARIANT_NORMS = {"standard": "none", "BN": "bn"}


def _norm_of(value):
    """The normalization a hue value stands for (a norm name, or a variant such as "noisy BN (...)"), or None."""
    if value in NORM_COLORS:
        return value
    if value in VARIANT_NORMS:
        return VARIANT_NORMS[value]
    if isinstance(value, str) and value.startswith("noisy BN"):
        return "noisy_bn"
    if value == "noisy_none" or isinstance(value, str) and value.startswith(("noisy standard", "noisy, no norm")):
        return "none"  # the standard network's colour, in a lighter shade (see _palette)
    return None


def _palette(values):
    """Colours for hue ``values``: the book's fixed colour per normalization; other values (batch sizes,
    learning rates) a sequential palette, so they are never mistaken for a normalization."""
    values = list(dict.fromkeys(values))
    colors, seen = {}, {}
    others = [v for v in values if _norm_of(v) is None]
    sequential = dict(zip(others, sns.color_palette("crest", len(others)))) if others else {}
    for v in values:
        norm = _norm_of(v)
        if norm is None:
            colors[v] = sequential[v]
        else:
            # a second variant of the same normalization (e.g. another noise level): a lighter shade
            k = seen[norm] = seen.get(norm, -1) + 1
            colors[v] = tuple(c + (1 - c) * min(0.45 * k, 0.7) for c in NORM_COLORS[norm])
    return colors


def _markers(values):
    """Markers for hue ``values``: the book's fixed marker per normalization, circles for anything else."""
    return {v: NORM_MARKERS.get(_norm_of(v), "o") for v in dict.fromkeys(values)}


def _value(values, name: str):
    """The hue value whose string is ``name`` (legend entries are strings; hues may be numbers)."""
    return next((v for v in values if str(v) == name), name)


def _log_label(value: float, plain: bool = True) -> str:
    """A log axis's tick label: a plain number ("2", "0.05", "300") when ``plain``, else a power of
    ten ("$10^{-5}$", "$2\\times10^{-5}$"); matplotlib's default wrote "$2\\times10^{0}$" for 2."""
    if plain or value == 0:
        return f"{value:g}"
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"$10^{{{int(exponent)}}}$" if mantissa == "1" else f"${mantissa}\\times10^{{{int(exponent)}}}$"


class _PlainLogFormatter(ticker.LogFormatter):
    """matplotlib's choice of which log ticks to label (decades; some minor ticks on a short axis),
    each labelled by :func:`_log_label`: plain numbers on an axis within [0.001, 10,000], powers of
    ten on one that reaches beyond."""

    def _num_to_string(self, x, vmin, vmax):
        low, high = sorted((abs(vmin), abs(vmax)))
        return _log_label(x, plain=low >= 1e-3 * (1 - 1e-9) and high < 1e4)


def _finish(fig):
    for ax in fig.axes:  # every log axis of the book labels its ticks the same plain way
        for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
            if scale == "log":
                axis.set_major_formatter(_PlainLogFormatter(labelOnlyBase=False))
                axis.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4)))
    plt.close(fig)  # shown by the notebook (glue or display), not twice
    return fig


def step_loss_curves(steps, row: str = "lr", hue: str = "norm", window: int = 20, log_y: bool = True):
    """Training loss per SGD step (moving average over ``window`` steps), a panel per ``row`` value.

    With several seeds, each run is smoothed, then lines are the mean and bands the range over seeds.

    Santurkar et al. (2018), Figure 1 plots training curves of VGG with and without BN at two
    learning rates; this is its loss version.

    Args:
        steps: the ``"steps"`` table of :func:`revisit_bn.train.run_grid` (``step``, ``train_loss``, ...).
        row, hue: columns giving panels and lines.
        window: moving-average width in steps (the raw per-batch losses are noisy).
        log_y: logarithmic loss axis.

    Returns:
        The :class:`matplotlib.figure.Figure`.
    """
    rows = list(dict.fromkeys(steps[row]))
    palette = _palette(steps[hue])
    fig, axes = _figure(1, len(rows), row_height=2.6)
    for ax, value in zip(axes[0], rows):
        data = steps[steps[row] == value].sort_values("step").copy()
        keys = [hue, "seed"] if "seed" in data else [hue]  # each run smoothed on its own, then mean and range over seeds
        data["smoothed"] = data.groupby(keys, sort=False).train_loss.transform(lambda v: v.rolling(window, min_periods=1).mean())
        sns.lineplot(data=data, x="step", y="smoothed", hue=hue, palette=palette, errorbar=("pi", 100), ax=ax)
        ax.set_title(f"{row.replace('_', ' ')} = {value}")
        ax.set_xlabel("SGD step")
        ax.set_ylabel(f"training loss (nats, {window}-step mean)")
        if log_y:
            ax.set_yscale("log")
    _shared_legend(fig, axes, lambda n: NORM_LABELS.get(n, n) + diverged_suffix(steps, hue, n))
    return _finish(fig)


LANDSCAPE_PANELS = (
    ("loss_min", "loss_max", "loss along the gradient (nats)", "loss range over step sizes"),
    ("grad_change_min", "grad_change_max", "gradient change, ℓ2 norm", "gradient predictiveness"),
    ("effective_beta_smoothness", None, "max gradient change / distance (1/step)", "effective β-smoothness"),
)


def landscape_bands(probes, hue: str = "norm", log_y: bool = True):
    r"""Santurkar et al. (2018) Figure 4: three panels over training steps, a band or a line per ``hue``.

    (a) the range of :math:`\mathcal L(w-\eta g)` over the step sizes, (b) the range of
    :math:`\|g-\nabla\mathcal L(w-\eta g)\|`, (c) the effective :math:`\beta`-smoothness.

    Args:
        probes: the ``"probes"`` table of :func:`revisit_bn.train.run_grid` for one learning rate;
            with several seeds, every quantity is their mean at each probe.
        hue: the column that separates networks.
        log_y: logarithmic y axes.

    Returns:
        The :class:`matplotlib.figure.Figure`.
    """
    wide = probes.pivot_table(index=[hue, "step"], columns="quantity", values="value").reset_index()
    palette = _palette(probes[hue])
    fig, axes = _figure(1, 3, row_height=2.6)
    for ax, (low, high, ylabel, title) in zip(axes[0], LANDSCAPE_PANELS):
        for name in palette:  # in the frame's order
            data = wide[wide[hue] == name]
            color = palette[name]
            if high is None:
                ax.plot(data.step, data[low], color=color, marker="o", markersize=3, label=NORM_LABELS.get(name, name))
            else:
                ax.fill_between(data.step, data[low], data[high], color=color, alpha=0.35, label=NORM_LABELS.get(name, name))
                ax.plot(data.step, data[high], color=color, linewidth=0.8)
                ax.plot(data.step, data[low], color=color, linewidth=0.8)
        ax.set(title=title, xlabel="SGD step", ylabel=ylabel)
        if log_y:
            ax.set_yscale("log")
    _shared_legend(fig, axes)
    return _finish(fig)


def ics_curves(probes, layers, hue: str = "norm", row: str | None = None, layer_labels=None):
    """Santurkar et al. (2018) Figure 3: internal covariate shift (l2 and cosine) per layer over training.

    Args:
        probes: a ``"probes"`` table (``ics_l2`` and ``ics_cos`` rows).
        layers: the layer parameter names to show, one panel column each.
        hue: the column that separates networks (a line each).
        row: an extra column whose values give extra rows of panels (e.g. ``"lr"``), or ``None``.
        layer_labels: display names of ``layers`` (default the names).

    Lines: the mean over seeds (where ``probes`` holds several); bands: their range.

    Returns:
        The :class:`matplotlib.figure.Figure`: rows (per ``row`` value) of l2 then cosine panels.
    """
    labels = dict(zip(layers, layer_labels or layers))
    row_values = [None] if row is None else list(dict.fromkeys(probes[row]))
    palette = _palette(probes[hue])
    fig, axes = _figure(2 * len(row_values), len(layers), row_height=1.9)
    for r, value in enumerate(row_values):
        data = probes if row is None else probes[probes[row] == value]
        for q, (quantity, ylabel) in enumerate((("ics_l2", "‖G − G′‖ (ℓ2, gradient units)"), ("ics_cos", "cos(G, G′)"))):
            for c, layer in enumerate(layers):
                ax = axes[2 * r + q, c]
                part = data[(data.quantity == quantity) & (data.layer == layer)]
                sns.lineplot(data=part, x="step", y="value", hue=hue, palette=palette, marker="o", markersize=4,
                             errorbar=("pi", 100), ax=ax)
                where = "" if row is None else f"{row} = {value}, "
                ax.set(title=f"{where}{labels[layer]}", xlabel="SGD step", ylabel=ylabel)
                if quantity == "ics_l2":
                    ax.set_yscale("symlog", linthresh=1e-4)  # log above 1e-4, linear through 0 (a zero shift stays visible)
                    ax.set_ylim(bottom=0)
                else:
                    ax.set_ylim(-1.05, 1.05)
    _shared_legend(fig, axes, lambda n: NORM_LABELS.get(n, n))
    return _finish(fig)


def activation_bands(probes, positions, hue: str = "norm", position_labels=None):
    """Santurkar et al. (2018) Figure 2: one channel's activation distribution at a few layers over training.

    Each panel shows the 5-95% band (light), the 25-75% band (dark) and the median of the
    channel's values over the batch (and positions), per network (rows) and layer (columns).

    Args:
        probes: a ``"probes"`` table with the ``act_q*`` rows.
        positions: module names (see :func:`revisit_bn.landscape.norm_positions`), one column each.
        hue: the column whose values give the rows of panels.
        position_labels: display names of ``positions``.

    Returns:
        The :class:`matplotlib.figure.Figure`.
    """
    labels = dict(zip(positions, position_labels or positions))
    names = list(dict.fromkeys(probes[hue]))
    palette = _palette(names)
    fig, axes = _figure(len(names), len(positions), row_height=1.8, sharey="col")
    for r, name in enumerate(names):
        for c, position in enumerate(positions):
            part = probes[(probes[hue] == name) & (probes.layer == position)]
            wide = part.pivot_table(index="step", columns="quantity", values="value")
            ax, color = axes[r, c], palette[name]
            ax.fill_between(wide.index, wide.act_q05, wide.act_q95, color=color, alpha=0.25, label="5-95%")
            ax.fill_between(wide.index, wide.act_q25, wide.act_q75, color=color, alpha=0.55, label="25-75%")
            ax.plot(wide.index, wide.act_q50, color=color, linewidth=1.2, label="median")
            ax.set(title=f"{NORM_LABELS.get(name, name)}\n{labels[position]}", xlabel="SGD step", ylabel="activation value")
    _shared_legend(fig, axes, lambda n: f"{n} of the batch's values")
    return _finish(fig)


def estimator_bias(table, metric: str = "relative_bias", y_label: str = "relative bias of E[gradient]"):
    """Chapter 15: an estimator's expected-gradient ``metric`` against batch size, a panel per (estimate rate, batch kind).

    Lines are means over seeds, bands their range (log axes); a dotted grey line marks the Monte
    Carlo noise floor where batches were drawn rather than enumerated.

    Args:
        table: rows of :func:`revisit_bn.gradient_bias.measure_all` (``momentum``, ``kind``, ``size``,
            ``estimator``, ``seed``, ``metric``, ``noise_floor``).

    Returns:
        The :class:`matplotlib.figure.Figure`.
    """
    rates = sorted(table.momentum.unique(), reverse=True)
    kinds = [k for k in ("random", "single_label") if k in set(table.kind)]
    fig, axes = _figure(len(rates), len(kinds))
    data = table.assign(norm=table.estimator.map(ESTIMATOR_NORMS))
    order = [n for n in ESTIMATOR_NORMS.values() if n in set(data.norm)]
    for r, rate in enumerate(rates):
        for c, kind in enumerate(kinds):
            ax = axes[r, c]
            part = data[(data.momentum == rate) & (data.kind == kind)]
            sns.lineplot(data=part, x="size", y=metric, hue="norm", style="norm", hue_order=order, style_order=order,
                         palette=NORM_COLORS, markers=NORM_MARKERS, dashes=False, errorbar=("pi", 100), ax=ax)
            drawn = part[part.noise_floor > 0].groupby("size").noise_floor.mean()
            if len(drawn):
                ax.plot(drawn.index, drawn.values, color="grey", ls=":", lw=1.2, label="Monte Carlo noise floor")
            ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel=y_label if c == 0 else "")
            sizes = sorted(part["size"].unique())
            ax.set_xticks(sizes, [str(s) if s in (1, 2, 4, 8, 16) or s == sizes[-1] else "" for s in sizes])
            ax.xaxis.set_minor_locator(plt.NullLocator())
            ax.set_title(f"estimate rate {rate:g}, {kind.replace('_', '-')} batches")
    _shared_legend(fig, axes, lambda name: NORM_LABELS.get(name, name), title="estimator")
    return _finish(fig)


def step_size_sweep(last, metric: str, chosen: dict | None = None, labels: dict | None = None):
    """Final ``metric`` against the step size, a line per normalization (mean over seeds, bars: range).

    Args:
        last: one row per run's last epoch, with columns ``norm``, ``lr``, ``seed`` and ``metric``;
            a diverged run (NaN) is left out of its point.
        chosen: ``{norm: lr}`` to ring (e.g. :func:`revisit_bn.claims.pick_step_sizes`).
        labels: display names of norms.

    Returns:
        The :class:`matplotlib.figure.Figure` (log-log axes).
    """
    require_columns(last, ["norm", "lr", "seed", metric], "step_size_sweep")
    labels = {**NORM_LABELS, **(labels or {})}
    norms = list(dict.fromkeys(last.norm))
    palette, markers = _palette(norms), _markers(norms)
    fig, axes = _figure(1, 1, row_height=2.6)
    ax = axes[0, 0]
    sns.lineplot(data=last, x="lr", y=metric, hue="norm", hue_order=norms, palette=palette, style="norm",
                 style_order=norms, markers=markers, dashes=False, errorbar=("pi", 100), err_style="bars", ax=ax)
    for norm, lr in (chosen or {}).items():
        y = last[(last.norm == norm) & (last.lr == lr)][metric].mean()
        ax.scatter([lr], [y], s=160, facecolors="none", edgecolors=palette[norm], linewidths=1.5, zorder=5)
    ax.set(xscale="log", yscale="log", xlabel="step size", ylabel="loss (nats)",
           title=METRIC_LABELS.get(metric, metric) + ", last epoch")
    _shared_legend(fig, axes, lambda h: str(labels.get(h, h)), title=label("norm"))
    return _finish(fig)


def step_size_choice(step_sizes, params: dict):
    """What a chapter that may choose each method's step size on a validation split prints about it.

    Args:
        step_sizes: the chapter's :class:`revisit_bn.specs.StepSizes`, or ``None`` for a profile that chooses none.
        params: the chapter's parameters, with ``lr``, ``validation_size``, ``lr_grid`` and ``tune_seeds``.

    Returns:
        ``(text, table)``: one line (wrap it with :func:`wrapped`) and, where step sizes were chosen, a table of
        the last epoch's validation loss (nats, mean over the tuning seeds) per method (rows: a method's fields
        joined by " / ", with the book's labels) and step size tried (columns), with a last column "chosen";
        ``None`` where none were. A step size at which a run diverged shows NaN and never wins.
    """
    if step_sizes is None:
        return (f"Every method trains at the profile's step size, lr = {params['lr']:g}: this profile chooses no "
                "step size on a validation split (validation_size is None).", None)
    table = step_sizes.table.copy()
    def part_label(part) -> str:  # an int in a method's key is its micro-batch size (chapter 37)
        return f"microbatches of {part}" if isinstance(part, int) and not isinstance(part, bool) else label(part)

    table["method"] = [" / ".join(part_label(p) for p in (m if isinstance(m, tuple) else (m,)) if p is not None)
                       for m in table.method]
    frame = table.pivot(index="method", columns="lr", values="val_loss").round(3)
    frame.columns = [f"{lr:g}" for lr in frame.columns]
    frame["chosen"] = table[table.chosen].set_index("method").lr.map(lambda v: f"{v:g}")
    widened = sorted(set(table.lr) - set(params["lr_grid"]))
    text = (f"Each method's step size chosen on {params['validation_size']:,} held-out training images: the last "
            f"epoch's validation loss (nats), mean over seeds {params['tune_seeds']}, per method and step size of "
            f"{params['lr_grid']}" + (f", widened at an edge pick to {[float(f'{v:g}') for v in widened]}"
                                      if widened else "") + "; a step size where a run diverged never wins.")
    return text, frame.rename_axis(index="method", columns="step size")


class ZeroCheck:
    """An exact (SymPy) check that an expression simplifies to zero, shown as rendered math
    (``text/latex``: ``where  expression = 0  (holds)``) with the same line in plain text for a
    terminal and for nbval (``"<where><text> simplifies to 0: True"``).

    Args:
        latex: the expression in LaTeX, without the ``= 0``.
        text: the same expression in plain text.
        holds: the check's outcome (``True``, ``False``, or SymPy's undecided ``None``).
        where: what the check is taken at, e.g. ``"m = 3"`` (printed before the expression).
    """

    def __init__(self, latex: str, text: str, holds, where: str = ""):
        self.latex, self.text, self.holds, self.where = latex, text, holds, where

    def _repr_latex_(self) -> str:
        outcome = {True: "holds", False: "fails"}.get(self.holds, "undecided")
        where = f"\\text{{{self.where}:}}\\quad " if self.where else ""
        return f"$$ {where}{self.latex} = 0 \\qquad \\text{{({outcome})}} $$"

    def __repr__(self) -> str:
        where = f"{self.where}: " if self.where else ""
        return wrapped(f"{where}{self.text} simplifies to 0: {self.holds}")


def show_zero(latex: str, text: str, holds, where: str = "") -> None:
    """Display a :class:`ZeroCheck` (rendered math in the book, the plain line elsewhere)."""
    from IPython.display import display

    display(ZeroCheck(latex, text, holds, where))


def skew_last_epoch(frame, metric: str = "test_acc"):
    """One row per data-parallel run at its last epoch (chapter 39), with local BN twice: ``method`` ``"bn"``
    (rank 0's running statistics) and ``"bn_pooled"`` (``<metric>_pooled``: statistics pooled over the workers).

    Args:
        frame: an epochs frame of :class:`revisit_bn.distributed.DistributedConfig` runs (``method``, ``workers``,
            ``labels_per_worker``, ``seed``, ``epoch``, ``metric``).

    Returns:
        A :class:`pandas.DataFrame` with ``method, workers, labels_per_worker, seed`` and ``metric``.
    """
    import pandas as pd

    keys = ["method", "workers", "labels_per_worker", "seed"]
    require_columns(frame, [*keys, "epoch", metric], "skew_last_epoch")
    last = frame[frame.epoch == frame.groupby(keys).epoch.transform("max")]
    pooled = f"{metric}_pooled"
    rows = [last[keys + [metric]]]
    if pooled in last.columns:
        bn = last[last.method == "bn"]
        rows.append(bn[keys].assign(method="bn_pooled", **{metric: bn[pooled].to_numpy()}))
    return pd.concat(rows, ignore_index=True)


def by_skew(last, metric: str = "test_acc", y_label: str = "test accuracy"):
    """Chapter 39: final ``metric`` against the labels each worker holds, a panel per worker count K.

    Points are means over seeds, bars their range; each panel's x axis runs from the most skewed shards its K
    allows to the i.i.d. ones (10 labels per worker); three panels a row.

    Args:
        last: :func:`skew_last_epoch`'s rows.

    Returns:
        The :class:`matplotlib.figure.Figure`.
    """
    require_columns(last, ["method", "workers", "labels_per_worker", metric], "by_skew", "pass skew_last_epoch()'s rows")
    workers = sorted(last.workers.unique())
    methods = [m for m in NORM_COLORS if m in set(last.method)]
    rank = {m: i for i, m in enumerate(("bn", "bn_pooled", "sync_bn", "fn_decoupled", "gn", "none"))}
    methods.sort(key=lambda m: rank.get(m, len(rank)))
    ncols = min(3, len(workers))  # three panels a row at most: the book's column
    fig, axes = _figure(-(-len(workers) // ncols), ncols, row_height=2.6, sharey=True)
    for ax in axes.flat[len(workers):]:
        ax.set_visible(False)
    for i, (ax, k) in enumerate(zip(axes.flat, workers)):
        part = last[last.workers == k]
        skews = sorted(part.labels_per_worker.unique())  # the settings K c a multiple of 10 allows at this K
        sns.pointplot(data=part, x="labels_per_worker", y=metric, hue="method", hue_order=methods, order=skews,
                      palette=_palette(methods), markers=[_markers(methods)[m] for m in methods], linestyles="-",
                      errorbar=("pi", 100), dodge=0.4, ax=ax)
        ax.set(title=f"K = {k} workers", xlabel="labels per worker c", ylabel=y_label if i % ncols == 0 else "")
    _shared_legend(fig, axes, lambda name: NORM_LABELS.get(name, name), title="method")
    return _finish(fig)


def by_setting(table, metric: str = "test_acc", x_label: str = "test accuracy"):
    """Chapter 38: each method's final ``metric`` in each batch setting, a panel per setting (two a row).

    Points are means over seeds, bars their range; methods run down the panels in the table's order, each in its
    colour and marker.

    Args:
        table: :func:`revisit_bn.checks_successors.cells`' rows (``method, setting, seed`` and ``metric``).

    Returns:
        The :class:`matplotlib.figure.Figure`.
    """
    from .names import SETTING_LABELS

    require_columns(table, ["method", "setting", metric], "by_setting", "pass checks_successors.cells()' rows")
    settings = list(dict.fromkeys(table.setting))
    methods = list(dict.fromkeys(table.method))
    ncols = 2 if len(settings) > 1 else 1
    nrows = -(-len(settings) // ncols)
    fig, axes = _figure(nrows, ncols, row_height=0.2 * len(methods) + 0.9, sharey=True, sharex=True)
    for ax in axes.flat[len(settings):]:
        ax.set_visible(False)
    for ax, setting in zip(axes.flat, settings):
        part = table[table.setting == setting]
        for y, method in enumerate(methods):
            values = part[part.method == method][metric]
            mean, low, high = values.mean(), values.min(), values.max()
            colour = NORM_COLORS.get(method, "0.3")
            bars = [[max(mean - low, 0.0)], [max(high - mean, 0.0)]]  # a mean of equal values can round past them
            ax.errorbar([mean], [y], xerr=bars, fmt="none", ecolor=colour, elinewidth=1.4)
            ax.plot([mean], [y], marker=NORM_MARKERS.get(method, "o"), color=colour, markersize=7, linestyle="")
        ax.set(title=SETTING_LABELS.get(setting, setting), xlabel=x_label, yticks=range(len(methods)),
               yticklabels=[NORM_LABELS.get(m, m) for m in methods], ylim=(len(methods) - 0.5, -0.5))
        ax.grid(axis="y", visible=False)
    return _finish(fig)
