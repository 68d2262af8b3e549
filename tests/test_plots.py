"""Figures are labelled, one panel per batch order and metric."""

import math

import pytest
import pandas as pd

from revisit_bn import plots


def test_loss_curves_draw_a_labelled_panel_per_order_and_metric():
    rows = [dict(epoch=e, norm=n, batch_order=o, seed=s, train_loss=1.0 / e, test_loss=2.0 / e)
            for e in (1, 2) for n in ("bn", "fn") for o in ("shuffled", "label_sorted") for s in (0, 1)]
    fig = plots.loss_curves(pd.DataFrame(rows))
    axes = fig.axes
    assert len(axes) == 4
    assert all(ax.get_xlabel() == "epoch" and ax.get_ylabel() == "loss (nats)" for ax in axes)
    assert all(ax.get_yscale() == "log" for ax in axes)
    assert [t.get_text() for t in fig.legends[0].texts] == ["BN", "FN (MCSGD)"]  # one shared legend
    assert fig.legends[0].get_title().get_text() == "method"  # the tables' word for it
    assert "one label per batch" in axes[0].get_title() and "test loss" in axes[1].get_title()  # Figure 4 first
    assert "shuffled" in axes[2].get_title()
    assert fig._suptitle is None  # the caption is the book's, outside the image


def _probe_rows():
    rows = []
    for norm in ("none", "bn"):
        for step in (0, 10, 20):
            for q, v in (("loss_min", 1.0), ("loss_max", 1.5), ("grad_change_min", 0.1), ("grad_change_max", 0.4),
                         ("effective_beta_smoothness", 3.0)):
                rows.append(dict(norm=norm, lr=0.1, step=step, quantity=q, layer="", value=v))
            for layer in ("a.weight", "b.weight"):
                rows += [dict(norm=norm, lr=0.1, step=step, quantity="ics_l2", layer=layer, value=0.2),
                         dict(norm=norm, lr=0.1, step=step, quantity="ics_cos", layer=layer, value=0.8)]
            for q, v in (("act_q05", -2.0), ("act_q25", -1.0), ("act_q50", 0.0), ("act_q75", 1.0), ("act_q95", 2.0)):
                rows.append(dict(norm=norm, lr=0.1, step=step, quantity=q, layer="f.1", value=v))
    return pd.DataFrame(rows)


def test_santurkar_figures_have_labelled_panels():
    probes = _probe_rows()
    fig = plots.landscape_bands(probes)
    assert len(fig.axes) == 3 and all(ax.get_xlabel() == "SGD step" for ax in fig.axes)
    assert "β-smoothness" in fig.axes[2].get_title() and "nats" in fig.axes[0].get_ylabel()
    assert [t.get_text() for t in fig.legends[0].texts] == ["no normalization", "BN"]
    fig = plots.ics_curves(probes, ["a.weight", "b.weight"], layer_labels=["conv 1", "conv 2"])
    assert len(fig.axes) == 4 and fig.axes[0].get_title() == "conv 1" and "cos" in fig.axes[2].get_ylabel()
    fig = plots.activation_bands(probes, ["f.1"], position_labels=["after conv 2"])
    assert len(fig.axes) == 2 and fig.axes[1].get_title() == "BN\nafter conv 2"
    steps = pd.DataFrame([dict(norm=n, lr=lr, step=s, train_loss=2.0 - s / 100) for n in ("none", "bn")
                          for lr in (0.1, 0.5) for s in range(50)])
    fig = plots.step_loss_curves(steps)
    assert len(fig.axes) == 2 and fig.axes[1].get_title() == "lr = 0.5" and "nats" in fig.axes[0].get_ylabel()


def test_a_diverged_run_is_marked_in_the_legend():
    import pandas as pd

    from revisit_bn import plots

    frame = pd.DataFrame({"epoch": [1, 2, 1, 2], "norm": ["bn", "bn", "fn", "fn"], "seed": 0,
                          "test_loss": [1.0, 0.5, 1.0, float("nan")],
                          "status": ["ok", "ok", "diverged at step 9", "diverged at step 9"]})
    fig = plots.curves(frame, ["test_loss"])
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert texts == ["BN", "FN (MCSGD) (diverged)"]


def test_each_normalization_keeps_one_colour_and_marker_in_every_figure():
    import pandas as pd

    from revisit_bn import plots

    a = plots._palette(["bn", "fn", "gn"])
    b = plots._palette(["gn", "none", "fn_const", "fn", "brn", "bn"])
    assert all(a[n] == b[n] == plots.NORM_COLORS[n] for n in ("bn", "fn", "gn"))
    assert len(set(plots.NORM_COLORS.values())) == len(plots.NORM_COLORS)  # no two normalizations share a colour
    variants = plots._palette(["standard", "BN", "noisy BN (1.0, 2.0, 0.5)", "noisy BN (0.5, 1.5, 0.25)"])
    assert variants["BN"] == plots.NORM_COLORS["bn"] and variants["standard"] == plots.NORM_COLORS["none"]
    assert variants["noisy BN (1.0, 2.0, 0.5)"] == plots.NORM_COLORS["noisy_bn"] != variants["noisy BN (0.5, 1.5, 0.25)"]
    sizes = plots._palette([8, 32, 128])
    assert not set(sizes.values()) & set(plots.NORM_COLORS.values())  # batch sizes never look like a normalization
    frame = pd.DataFrame({"epoch": [1, 2] * 2, "norm": ["fn", "fn", "bn", "bn"], "seed": 0, "test_loss": [1.0, 0.5, 1.1, 0.6]})
    fig = plots.curves(frame, ["test_loss"])
    colors = [tuple(line.get_color()[:3]) if not isinstance(line.get_color(), str) else line.get_color() for line in fig.axes[0].get_lines()[:2]]
    assert colors and all(c in (plots.NORM_COLORS["fn"], plots.NORM_COLORS["bn"]) for c in colors)


def test_figures_fit_the_books_column_with_at_most_three_panels_a_row():
    import pandas as pd

    from revisit_bn import plots

    plots.set_theme()
    frame = pd.DataFrame({"epoch": [1, 2] * 2, "norm": ["fn", "fn", "bn", "bn"], "seed": 0, "test_loss": [1.0, 0.5, 1.1, 0.6],
                          "train_loss": 1.0, "test_acc": 0.5})
    fig = plots.curves(frame, ["train_loss", "test_loss", "test_acc"])
    # as wide as the column (shown at 7.2 in: ~740 px), drawn at 150 dpi so that an enlarged figure stays sharp
    assert fig.get_figwidth() <= plots.COLUMN_WIDTH_IN and fig.dpi >= 150
    assert not any(ax.get_title() == "" for ax in fig.axes)
    assert all(ax.get_legend() is None for ax in fig.axes) and len(fig.legends) == 1
    with pytest.raises(ValueError, match="at most 3 panels"):
        plots.curves(frame, ["train_loss", "test_loss", "test_acc", "train_loss"])


def test_tables_figures_and_verdicts_share_one_label_per_method_order_and_metric():
    from revisit_bn import claims, names

    frame = pd.DataFrame({"norm": ["fn_const", "bn"], "order": ["label_sorted", "shuffled"],
                          "train_eval_loss": [0.123456, 0.5], "lr": [0.02, 0.02]}).set_index(["norm", "order"])
    shown = plots.results_table(frame)
    assert list(shown.index.get_level_values(0)) == ["FN (constant)", "BN"]
    assert list(shown.index.get_level_values(1)) == ["one label per batch", "shuffled"]
    assert list(shown.index.names) == ["method", "batches"]
    assert list(shown.columns) == ["training-set loss, evaluation mode", "step size"]
    assert shown.iloc[0, 0] == 0.123  # rounded, and the caller's frame is untouched
    assert frame.index[0] == ("fn_const", "label_sorted")
    assert all(claims.FN_LABELS[n] == names.NORM_LABELS[n] for n in claims.FN_LABELS)  # verdicts say the same
    assert plots.NORM_LABELS is names.NORM_LABELS and plots.METRIC_LABELS is names.METRIC_LABELS


def test_every_normalization_has_its_own_colour_and_log_axes_label_plain_numbers():
    import matplotlib.colors as mcolors
    import matplotlib.pyplot as plt

    colours = [mcolors.to_hex(c) for c in plots.NORM_COLORS.values()]
    assert len(set(colours)) == len(colours)
    assert set(plots.NORM_COLORS) == set(plots.NORM_LABELS) - {"noisy_none"}  # drawn in the standard network's shade
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1.5, 4.0])
    ax.set_yscale("log")
    plots._finish(fig)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels() + ax.yaxis.get_minorticklabels() if t.get_text()]
    assert "2" in labels and not [t for t in labels if "times" in t or "^" in t]  # not "2x10^0"
    assert plots._log_label(2e-5, plain=False) == "$2\\times10^{-5}$"


# The palette check (issue "the reader's second pass"): colour-vision deficiency simulated with colorspacious
# (Machado et al. 2009 at full severity), distances in CAM02-UCS. Our choices: two colours that a chapter's legend
# must tell apart stay COLOUR_BLIND_DELTA apart under normal vision and each of the three simulated deficiencies;
# any two of the book's colours NORMAL_DELTA apart under normal vision (none reused in another chapter); each
# WHITE_DELTA from the white page.
COLOUR_BLIND_DELTA, NORMAL_DELTA, WHITE_DELTA = 9.0, 5.0, 35.0
# Chapters whose figures name each normalization on an axis (chapter 38's row per method), not by colour alone
NAMED_ON_AXIS = {"38-successors"}
# Drawn beside a chapter's trained norms: chapter 22's noisy BN, chapter 39's BN with pooled statistics
DRAWN_ALSO = {"22-noisy-batchnorm": ["none", "bn", "noisy_bn"], "39-data-parallel-label-skew": ["bn_pooled"],
              "15-fn-gradient-bias": list(plots.ESTIMATOR_NORMS.values())}


def _legend_groups():
    """Per chapter, the normalizations its figures tell apart by colour: the norms and methods its book profile
    trains (plus those drawn beside them)."""
    from revisit_bn import experiments

    keys = ("norms", "baselines", "methods", "non_iid_norms", "unshuffled_norms", "schedule_norms")
    groups = {}
    for name, chapter in experiments.CHAPTERS.items():
        if name in NAMED_ON_AXIS:
            continue
        params = chapter.profiles["book"]
        drawn = [v for k in keys for v in params.get(k) or [] if v in plots.NORM_COLORS] + DRAWN_ALSO.get(name, [])
        if len(set(drawn)) > 1:
            groups[name] = sorted(set(drawn))
    return groups


def _cam02(colour, cvd_type=None):
    import numpy as np
    from colorspacious import cspace_convert
    from matplotlib.colors import to_rgb

    rgb = np.array(to_rgb(colour))
    if cvd_type is not None:
        rgb = cspace_convert(rgb, {"name": "sRGB1+CVD", "cvd_type": cvd_type, "severity": 100}, "sRGB1").clip(0, 1)
    return cspace_convert(rgb, "sRGB1", "CAM02-UCS")


def _distance(a, b, cvd_type=None) -> float:
    import numpy as np

    return float(np.linalg.norm(_cam02(a, cvd_type) - _cam02(b, cvd_type)))


def test_colours_a_legend_tells_apart_stay_apart_for_colour_blind_readers_and_on_white():
    import itertools

    groups = _legend_groups()
    assert {"31-mnist-batch-construction", "39-data-parallel-label-skew", "25-lp-normalization"} <= set(groups)
    close = []
    for name, norms in groups.items():
        for a, b in itertools.combinations(norms, 2):
            for cvd in (None, "deuteranomaly", "protanomaly", "tritanomaly"):
                delta = _distance(plots.NORM_COLORS[a], plots.NORM_COLORS[b], cvd)
                if delta < COLOUR_BLIND_DELTA:
                    close.append(f"{name}: {a}/{b} {delta:.1f} ({cvd or 'normal vision'})")
    assert not close, close
    same = [f"{a}/{b}" for a, b in itertools.combinations(plots.NORM_COLORS, 2)
            if _distance(plots.NORM_COLORS[a], plots.NORM_COLORS[b]) < NORMAL_DELTA]
    assert not same, same
    assert all(plots._palette([n])[n] == plots.NORM_COLORS[n] for n in plots.NORM_COLORS)  # every colour draws
    faint = [n for n, c in plots.NORM_COLORS.items() if _distance(c, "#ffffff") < WHITE_DELTA]
    assert not faint, faint
    # the check can fail: chapter 39's cross-worker BN in the dark blue it had beside FN (decoupled)'s dark purple
    assert min(_distance("#001c7f", plots.NORM_COLORS["fn_decoupled"], cvd)
               for cvd in ("deuteranomaly", "protanomaly", "tritanomaly")) < COLOUR_BLIND_DELTA


def test_the_skew_figure_wraps_worker_counts_three_a_row_each_with_its_own_skews():
    import matplotlib.pyplot as plt

    pairs = [(2, 5), (2, 10), (4, 5), (4, 10), (5, 2), (5, 10), (8, 5), (8, 10), (10, 1), (10, 2), (10, 5), (10, 10)]
    rows = [dict(method=m, workers=k, labels_per_worker=c, seed=s, test_acc=0.9 + 0.001 * c)
            for k, c in pairs for m in ("bn", "gn") for s in (0, 1)]
    fig = plots.by_skew(pd.DataFrame(rows))
    visible = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert [ax.get_title() for ax in visible] == [f"K = {k} workers" for k in (2, 4, 5, 8, 10)]
    assert len({round(ax.get_position().y0, 3) for ax in visible}) == 2  # two rows of panels
    ticks = {ax.get_title(): [t.get_text() for t in ax.get_xticklabels()] for ax in visible}
    assert ticks["K = 5 workers"] == ["2", "10"] and ticks["K = 10 workers"] == ["1", "2", "5", "10"]
    plt.close(fig)


def test_the_step_size_report_shows_each_methods_losses_and_choice():
    import pandas as pd

    from revisit_bn.specs import StepSizes

    table = pd.DataFrame({"method": [("bn", "label_limited", None)] * 3 + [("gn", "shuffled", 4)] * 3,
                          "lr": [0.025, 0.05, 0.1, 0.025, 0.05, 0.1],
                          "val_loss": [0.9, 0.7, float("nan"), 1.2, 1.1, 1.0],
                          "seeds": [1] * 6, "diverged": [0, 0, 1, 0, 0, 0],
                          "chosen": [False, True, False, False, False, False]})
    table = pd.concat([table, pd.DataFrame({"method": [("gn", "shuffled", 4)], "lr": [0.2], "val_loss": [0.8],
                                            "seeds": [1], "diverged": [0], "chosen": [True]})], ignore_index=True)
    params = {"lr": 0.05, "validation_size": 5000, "lr_grid": [0.025, 0.05, 0.1], "tune_seeds": [0]}
    text, frame = plots.step_size_choice(StepSizes({}, table), params)
    assert "5,000 held-out" in text and "widened at an edge pick to [0.2]" in text
    assert list(frame.columns) == ["0.025", "0.05", "0.1", "0.2", "chosen"]
    assert frame.loc["BN / at most 3 labels per batch", "chosen"] == "0.05"
    assert frame.loc["GroupNorm / shuffled / microbatches of 4", "chosen"] == "0.2"
    assert math.isnan(frame.loc["BN / at most 3 labels per batch", "0.1"])  # diverged: shown, never chosen
    text, frame = plots.step_size_choice(None, params)
    assert frame is None and "lr = 0.05" in text and "validation_size is None" in text


def test_a_figure_is_stored_as_a_256_colour_png_of_the_size_and_look_the_inline_backend_draws():
    import io

    import matplotlib.pyplot as plt
    import numpy as np
    from IPython.core.pylabtools import print_figure
    from PIL import Image

    plots.set_theme()  # outside a kernel: the theme only, no formatter to replace
    fig, ax = plt.subplots(figsize=(3, 2))
    for i, norm in enumerate(("none", "bn", "fn")):
        ax.plot([0, 1, 2], [i, i + 1, i * i], color=plots.NORM_COLORS[norm], marker="o")
    full = Image.open(io.BytesIO(print_figure(fig, "png", bbox_inches="tight", base64=False))).convert("RGB")
    stored = Image.open(io.BytesIO(plots.figure_png(fig)))
    plt.close(fig)
    assert stored.format == "PNG" and stored.mode == "P" and len(stored.getcolors()) <= 256
    assert stored.size == full.size
    diff = np.abs(np.asarray(full, dtype=int) - np.asarray(stored.convert("RGB"), dtype=int))
    assert diff.mean() < 0.5  # anti-aliased edge pixels may move a little
    pixels = np.asarray(stored.convert("RGB"), dtype=int).reshape(-1, 3)
    for norm in ("none", "bn", "fn"):  # each line keeps its colour, within 2 of 255 in every channel
        colour = np.round(np.array(plots.NORM_COLORS[norm]) * 255)
        assert (np.abs(pixels - colour).max(axis=1) <= 2).any(), norm
