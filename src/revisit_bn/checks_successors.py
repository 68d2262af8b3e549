"""Chapter 38's claims, checked on its runs: FN beside BN's successors on the same batches. Each check returns a
:class:`revisit_bn.verdicts.Verdict` by the rules of :mod:`revisit_bn.verdicts`.

The chapter trains each method (:data:`revisit_bn.chapters.SUCCESSOR_METHODS`) in each batch setting
(:data:`revisit_bn.chapters.SETTINGS_38`) at its own step size, chosen per setting on the validation split. Every
measure here is read at each run's last epoch, per seed, from :func:`cells`: one row per method, setting and seed at
that method's chosen step size (BN with precise statistics from BN's runs, at its own step size, with the
``*_precise`` metrics; a method whose normalization ignores how samples are grouped from its shuffled runs in the
microbatch settings).
"""

from __future__ import annotations

import math

from .chapters import GROUPING_FREE, SETTINGS_38, SUCCESSOR_METHODS
from .names import NORM_LABELS as _LABELS
from .names import SETTING_LABELS
from .verdicts import BETTER_ACC, Verdict, accuracy_verdict, gated, seed_interval
from .verdicts import learnability_gate as _learnability_gate

# Chapter 38's learnability gate on MNIST (our choice, registered before its runs): BN with shuffled batches reaches
# this test accuracy. Chapter 39's, for the same reason: 2 epochs of 12,000 images, not chapter 31's 10 of 55,000.
SUCCESSORS_MNIST_GATE = 0.95
_METRICS = ("test_acc", "test_loss", "val_loss")


def _shared(method: str, setting: str) -> str:
    """The setting whose runs stand for ``(method, setting)``: the shuffled one for a grouping-free method under
    microbatches."""
    return "shuffled" if method in GROUPING_FREE and SETTINGS_38[setting][1] is not None else setting


def cells(frame, step_sizes, methods=SUCCESSOR_METHODS, settings=None):
    """Each method's last-epoch numbers in each setting at its chosen step size: a DataFrame with columns
    ``method, setting, seed, lr, status, test_acc, test_loss, val_loss`` (accuracies as fractions, losses in nats).

    Args:
        frame: the chapter's ``chapter.frame()`` (per-epoch metrics with ``norm, batch_order, norm_group_size, lr,
            seed, status``).
        step_sizes: ``{(method, setting): lr}`` (the chapter's ``step_sizes``); a microbatch setting of a
            grouping-free method reads the shuffled one's.
        methods, settings: which to read (default: every method; the settings the frame holds).

    Raises:
        ValueError: a column missing, or no run of a method in a setting at its step size (the message names them).
    """
    import pandas as pd

    missing = {"norm", "batch_order", "lr", "seed", "epoch", "status", "test_acc"} - set(frame.columns)
    if missing:
        raise ValueError(f"the frame of chapter 38's runs lacks columns {sorted(missing)}; use chapter.frame()")
    groups = frame["norm_group_size"] if "norm_group_size" in frame.columns else pd.Series(None, index=frame.index)
    groups = groups.map(lambda g: None if g is None or (isinstance(g, float) and math.isnan(g)) else int(g))
    if settings is None:
        present = {(order, None if g is None or g != g else int(g)) for order, g in zip(frame.batch_order, groups)}
        settings = [s for s, key in SETTINGS_38.items() if key in present]
    unknown = [s for s in settings if s not in SETTINGS_38] + [m for m in methods if m not in SUCCESSOR_METHODS]
    if unknown:
        raise ValueError(f"{unknown} are not chapter 38's; its settings are {list(SETTINGS_38)}, its methods "
                         f"{list(SUCCESSOR_METHODS)}")
    rows = []
    for setting in settings:
        for method in methods:
            shared = _shared(method, setting)
            order, group = SETTINGS_38[shared]
            if (method, shared) not in step_sizes:
                raise ValueError(f"step_sizes has no step size for {(method, shared)}; pass the chapter's "
                                 "chapter.step_sizes (one per method and setting)")
            lr = step_sizes[(method, shared)]
            norm = "bn" if method == "bn_precise" else method
            grouped = groups.isna() if group is None else groups == group
            chosen = frame[(frame.norm == norm) & (frame.batch_order == order) & grouped & (frame.lr == lr)]
            if chosen.empty:
                raise ValueError(f"no run of {method!r} in setting {setting!r} at its step size {lr}; compute the "
                                 "chapter's runs")
            last = chosen[chosen.epoch == chosen.groupby("seed").epoch.transform("max")]
            suffix = "_precise" if method == "bn_precise" else ""
            for _, row in last.iterrows():
                rows.append({"method": method, "setting": setting, "seed": int(row.seed), "lr": lr,
                             "status": row.status,
                             **{m: row.get(m + suffix, float("nan")) for m in _METRICS}})
    return pd.DataFrame(rows)


def per_seed(table, method: str, setting: str, metric: str = "test_acc"):
    """``metric`` of ``method`` in ``setting`` per seed (a :class:`pandas.Series` indexed by seed).

    Raises:
        ValueError: no such rows (the message names the method and setting).
    """
    rows = table[(table.method == method) & (table.setting == setting)]
    if rows.empty:
        raise ValueError(f"no row of method {method!r} in setting {setting!r}; the table has methods "
                         f"{sorted(set(table.method))} and settings {sorted(set(table.setting))}")
    return rows.set_index("seed")[metric].sort_index()


def difference(table, a: tuple[str, str], b: tuple[str, str], metric: str = "test_acc"):
    """Per seed: ``metric`` of ``a`` minus of ``b``, each a ``(method, setting)``, on the seeds both trained.

    Raises:
        ValueError: the two sides trained different seeds (a run missing: the message names them).
    """
    left, right = per_seed(table, *a, metric), per_seed(table, *b, metric)
    if set(left.index) != set(right.index):
        raise ValueError(f"{a} and {b} trained different seeds: {sorted(set(left.index) ^ set(right.index))} on one "
                         "side only; compute the missing runs")
    return left - right


def learnability_gate(dataset: str) -> float:
    """The chapter's gate on BN's shuffled test accuracy: :data:`SUCCESSORS_MNIST_GATE` on MNIST, the book's
    :data:`revisit_bn.verdicts.CIFAR_GATE` on CIFAR-10.

    Raises:
        ValueError: another dataset.
    """
    return _learnability_gate(dataset, SUCCESSORS_MNIST_GATE, "chapter 38")


def _learned(table, method: str, dataset: str) -> tuple[bool, str]:
    return gated(per_seed(table, method, "shuffled"), learnability_gate(dataset),
                  f"{_LABELS[method]}'s test accuracy, shuffled batches")


def _room(table, setting: str) -> tuple[bool, str]:
    return gated(difference(table, ("bn", "shuffled"), ("bn", setting)), BETTER_ACC,
                  f"what {SETTING_LABELS[setting]} cost BN in test accuracy")


def _acc(table, method: str, setting: str) -> str:
    return f"{_LABELS[method]} {per_seed(table, method, setting).mean():.3f}"


def check_precise_bn(table, scale: str, dataset: str = "mnist", setting: str = "single_label") -> Verdict:
    """Wu & Johnson (2021): population statistics recomputed after training (PreciseBN) fix BN's train/test
    inconsistency. Per seed, under ``setting`` (one label per batch): BN's test accuracy with precise statistics minus
    with its running averages, each at its own step size, against :data:`BETTER_ACC`. Gates: BN learned; the setting
    costs BN at least :data:`BETTER_ACC` (room)."""
    return accuracy_verdict("wu-precisebn", difference(table, ("bn_precise", setting), ("bn", setting)),
                            f"test accuracy, {SETTING_LABELS[setting]}: {_acc(table, 'bn_precise', setting)}, "
                            f"{_acc(table, 'bn', setting)}; precise - running", scale,
                            [_learned(table, "bn", dataset), _room(table, setting)])


def check_gn_small_batch(table, scale: str, dataset: str = "mnist", setting: str = "micro2") -> Verdict:
    """Wu & He (2018): GroupNorm is more accurate than BN at batch size 2. Per seed, with microbatches of 2: GroupNorm
    minus BN test accuracy against :data:`BETTER_ACC`. Gates: both learned with shuffled batches."""
    return accuracy_verdict("wu-he-gn-batch2", difference(table, ("gn", setting), ("bn", setting)),
                            f"test accuracy, {SETTING_LABELS[setting]}: {_acc(table, 'gn', setting)}, "
                            f"{_acc(table, 'bn', setting)}; GroupNorm - BN", scale,
                            [_learned(table, "bn", dataset), _learned(table, "gn", dataset)])


def check_online_norm(table, scale: str, dataset: str = "mnist") -> Verdict:
    """Chiley et al. (2019): Online Normalization, which needs no batch, matches BN: per seed, BN's test accuracy
    with whole shuffled batches minus Online Normalization's, below :data:`BETTER_ACC`. Gate: BN learned."""
    return accuracy_verdict("chiley-online-norm", difference(table, ("bn", "shuffled"), ("online", "shuffled")),
                            f"test accuracy, shuffled batches: {_acc(table, 'bn', 'shuffled')}, "
                            f"{_acc(table, 'online', 'shuffled')}; BN - Online Norm", scale,
                            [_learned(table, "bn", dataset)], below=True)


def check_mabn(table, scale: str, dataset: str = "mnist", setting: str = "micro2") -> Verdict:
    """Yan et al. (2020): MABN recovers BN at small batches. Per seed, with microbatches of 2: MABN minus BN test
    accuracy against :data:`BETTER_ACC`. Gates: both learned with shuffled batches; the setting costs BN at least
    :data:`BETTER_ACC` (room: there is something to recover)."""
    return accuracy_verdict("yan-mabn-small-batch", difference(table, ("mabn", setting), ("bn", setting)),
                            f"test accuracy, {SETTING_LABELS[setting]}: {_acc(table, 'mabn', setting)}, "
                            f"{_acc(table, 'bn', setting)}; MABN - BN", scale,
                            [_learned(table, "bn", dataset), _learned(table, "mabn", dataset), _room(table, setting)])


def best_other(table, setting: str, exclude: tuple[str, ...] = ("fn", "fn_decoupled")) -> str:
    """The method other than ``exclude`` with the highest mean test accuracy in ``setting`` (the earlier in
    :data:`revisit_bn.chapters.SUCCESSOR_METHODS` on a tie)."""
    rows = table[(table.setting == setting) & ~table.method.isin(exclude)]
    if rows.empty:
        raise ValueError(f"the table has no method but {list(exclude)} in setting {setting!r} (its settings: "
                         f"{sorted(set(table.setting))}); pass cells() of the chapter's runs")
    means = rows.groupby("method", sort=False).test_acc.mean()
    order = {m: i for i, m in enumerate(SUCCESSOR_METHODS)}
    return max(means.index, key=lambda m: (means[m], -order.get(m, 0)))


def check_fn_against_successors(table, scale: str, dataset: str = "mnist", setting: str = "single_label") -> Verdict:
    """The book's question: is FN (decoupled) as accurate as the best of the other methods under ``setting``? Per
    seed: the best other method's test accuracy (best by its mean) minus FN's, below :data:`BETTER_ACC`. Taking
    the best by its mean favours the others, against FN. Gates: FN learned with shuffled batches; the setting
    costs BN at least :data:`BETTER_ACC` (room)."""
    best = best_other(table, setting)
    return accuracy_verdict("fn-vs-successors", difference(table, (best, setting), ("fn_decoupled", setting)),
                            f"test accuracy, {SETTING_LABELS[setting]}: best other"
                            f" method {_acc(table, best, setting)}, "
                            f"{_acc(table, 'fn_decoupled', setting)}; best other - FN", scale,
                            [_learned(table, "fn_decoupled", dataset), _room(table, setting)], below=True)


def verdicts(table, scale: str, dataset: str = "mnist", label_setting: str = "single_label") -> list[Verdict]:
    """Chapter 38's five verdicts, in its order of claims; ``label_setting``: the label-skewed setting
    (``"single_label"`` on MNIST, ``"label_limited"`` on CIFAR-10)."""
    return [check_precise_bn(table, scale, dataset, label_setting), check_gn_small_batch(table, scale, dataset),
            check_online_norm(table, scale, dataset), check_mabn(table, scale, dataset),
            check_fn_against_successors(table, scale, dataset, label_setting)]


def summary(table, metric: str = "test_acc", digits: int = 3):
    """Method x setting: ``"mean [low, high]"`` of ``metric`` over seeds (a t-interval,
    :func:`revisit_bn.verdicts.seed_interval`; one seed: the value alone), a DataFrame indexed by method label with
    one column per setting label, in the chapter's order."""
    import pandas as pd

    out = {}
    for setting in dict.fromkeys(table.setting):
        column = {}
        for method in dict.fromkeys(table.method):
            values = per_seed(table, method, setting, metric)
            if len(values) > 1:
                mean, low, high = seed_interval(values)
                column[_LABELS[method]] = f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
            else:
                column[_LABELS[method]] = f"{values.iloc[0]:.{digits}f}"
        out[SETTING_LABELS[setting]] = column
    return pd.DataFrame(out)


# What each method normalizes with at evaluation, and whether training normalizes the same way (our reading of
# each layer: revisit_bn.models.norm_layer and the layers' docstrings).
EVALUATION = {
    "none": ("nothing", "yes"),
    "bn": ("running averages of batch moments", "no (batch moments)"),
    "bn_precise": ("moments recomputed after training", "no (batch moments)"),
    "brn": ("running averages of batch moments", "no (corrected batch moments)"),
    "fn": ("its running estimates", "yes"),
    "fn_decoupled": ("its running estimates", "yes"),
    "gn": ("the sample's own group moments", "yes"),
    "frn": ("the sample's own mean square", "yes"),
    "evonorm": ("the sample's own group variance", "yes"),
    "online": ("its running estimates", "yes"),
    "mabn": ("an average of its second moments", "no (window of batches)"),
}


def evaluation_needs(methods=SUCCESSOR_METHODS):
    """A table, one row per method (its label): what it normalizes with at evaluation, and whether training
    normalizes the same way (a method that does not cannot show a train/test gap of its statistics).

    Raises:
        ValueError: a method not in :data:`EVALUATION`.
    """
    import pandas as pd

    unknown = [m for m in methods if m not in EVALUATION]
    if unknown:
        raise ValueError(f"methods {unknown} are not chapter 38's; choose from {list(EVALUATION)}")
    return pd.DataFrame([EVALUATION[m] for m in methods], index=[_LABELS[m] for m in methods],
                        columns=["evaluation normalizes with", "as in training"])


# Issue 36's speed target: each layer's SGD step at most this many times BN's, on VGG11 and ResNet18
STEP_TARGET = 1.10
# The networks of the kept benchmark outputs (benchmarks/norm_step_ratios.py and norm_memory_ratios.py), short names
COST_NETWORKS = {"SimpleNet, batch 64": "SimpleNet", "VGG11 x0.25, batch 128": "VGG11", "ResNet18, batch 64": "ResNet18"}


def _benchmark_rows(text: str, what: str) -> dict[str, dict[str, float]]:
    """``{network: {norm: ratio}}`` from the first table of a kept benchmark output (a header line naming the norms
    after ``network``, then one row per network of :data:`COST_NETWORKS`)."""
    lines = text.splitlines()
    header = next((i for i, line in enumerate(lines) if line.startswith("network ")), None)
    if header is None:
        raise ValueError(f"{what}: no table header (a line starting 'network'); pass the kept output of the benchmark")
    norms = [n for n in lines[header].split()[1:] if n not in ("BN", "ms/step", "MiB")]
    rows = {}
    for line in lines[header + 1:]:
        label = next((name for name in COST_NETWORKS if line.startswith(name)), None)
        if label is None:
            break
        cells = line[len(label):].split()[:len(norms)]
        try:
            rows[label] = {n: float(c) if c != "failed" else float("nan") for n, c in zip(norms, cells)}
        except ValueError as exc:
            raise ValueError(f"{what}: the row of {label!r} holds a cell that is neither a ratio nor 'failed' "
                             f"({exc}); pass the kept output of the benchmark, unedited") from None
    if set(rows) != set(COST_NETWORKS):
        raise ValueError(f"{what}: rows for {sorted(set(COST_NETWORKS) - set(rows))} missing; pass the kept output of "
                         "the benchmark, whole")
    return rows


# The book's target for FN at batch size 1: its SGD step at most this many times the unnormalized network's
BATCH_ONE_TARGET = 1.5


def batch_one_text(step_text: str, methods=("fn", "fn_decoupled", "online", "mabn", "frn", "evonorm")) -> str:
    """In words, each of ``methods`` at batch size 1: its SimpleNet step over the unnormalized one's, from the kept
    output of ``benchmarks/norm_step_ratios.py`` (its line ``SimpleNet, batch 1, over the unnormalized step``).

    Raises:
        ValueError: no such line, or a method it does not list.
    """
    import re

    line = next((line for line in step_text.splitlines() if line.startswith("SimpleNet, batch 1")), None)
    if line is None:
        raise ValueError("step_text: no 'SimpleNet, batch 1' line; pass the kept output of norm_step_ratios.py")
    ratios = dict(re.findall(r"(\w+) (\d+\.\d+)(?=[,;])", line.split(":", 1)[1]))
    missing = [m for m in methods if m not in ratios]
    if missing:
        raise ValueError(f"step_text's batch-1 line lists no {missing}; it lists {sorted(ratios)}")
    within = [_LABELS[m] for m in methods if float(ratios[m]) <= BATCH_ONE_TARGET]
    verdict = (f"every one over the {BATCH_ONE_TARGET} target" if not within
               else f"within the {BATCH_ONE_TARGET} target: {', '.join(within)}")
    return ", ".join(f"{_LABELS[m]} {ratios[m]}" for m in methods) + f" ({verdict})"


def costs(step_text: str, memory_text: str, methods=SUCCESSOR_METHODS):
    """A table, one row per method (its label): its SGD step time and its memory saved for backward, each over BN's,
    on the three networks, read from the kept outputs of ``benchmarks/norm_step_ratios.py`` (``step_text``) and
    ``benchmarks/norm_memory_ratios.py`` (``memory_text``). BN with precise statistics trains as BN (its cost is one
    pass over the training set per evaluation); the unnormalized network is not benchmarked (empty cells).

    Raises:
        ValueError: a text that is not such an output, or a method not in :data:`EVALUATION`.
    """
    import pandas as pd

    unknown = [m for m in methods if m not in EVALUATION]
    if unknown:
        raise ValueError(f"methods {unknown} are not chapter 38's; choose from {list(EVALUATION)}")
    tables = {"step": _benchmark_rows(step_text, "step_text"), "memory": _benchmark_rows(memory_text, "memory_text")}
    columns = [(what, network) for what in tables for network in COST_NETWORKS]
    rows = []
    for method in methods:
        norm = "bn" if method == "bn_precise" else method
        rows.append([tables[what][network].get(norm, float("nan")) for what, network in columns])
    names = {"step": "step time over BN's", "memory": "memory over BN's"}
    return pd.DataFrame(rows, index=[_LABELS[m] for m in methods], columns=pd.MultiIndex.from_tuples(
        [(names[what], COST_NETWORKS[network]) for what, network in columns]))


def cost_misses(cost_table, bound: float = STEP_TARGET, networks=("VGG11", "ResNet18")) -> str:
    """In words: the methods whose step time over BN's exceeds ``bound`` on any of ``networks`` (issue 36's target
    is :data:`STEP_TARGET` on VGG11 and ResNet18), each with its ratios there, from a :func:`costs` table."""
    step = cost_table["step time over BN's"][list(networks)]
    over = step[(step > bound).any(axis=1)]
    if over.empty:
        return f"every method's step is within {bound:.2f} times BN's on {' and '.join(networks)}"
    return (f"over {bound:.2f} times BN's step on {' or '.join(networks)}: "
            + "; ".join(f"{label} " + ", ".join(f"{row[n]:.2f} ({n})" for n in networks) for label, row in over.iterrows()))


def recommendation(table, metric: str = "test_acc") -> str:
    """Per setting, in words: the method with the highest mean ``metric``, those within :data:`BETTER_ACC` of it,
    and those more than that below (a Markdown list; the numbers are the table's means)."""
    unknown = sorted(set(table.setting) - set(SETTINGS_38))
    if unknown:
        raise ValueError(f"settings {unknown} are not chapter 38's ({list(SETTINGS_38)}); pass cells() of its runs")
    lines = []
    for setting in dict.fromkeys(table.setting):
        means = table[table.setting == setting].groupby("method", sort=False)[metric].mean().sort_values(ascending=False)
        best, top = means.index[0], means.iloc[0]
        near = [m for m in means.index[1:] if top - means[m] <= BETTER_ACC]
        far = [m for m in means.index if top - means[m] > BETTER_ACC]
        text = f"- **{SETTING_LABELS[setting]}**: {_LABELS[best]} {top:.3f} is the highest"
        text += (f"; within a point of it: {', '.join(f'{_LABELS[m]} {means[m]:.3f}' for m in near)}" if near
                 else "; no other method within a point of it")
        if far:
            text += f"; more than a point below: {', '.join(_LABELS[m] for m in far)}"
        lines.append(text + ".")
    return "\n".join(lines)
