"""The book's chapters as data (:data:`CHAPTERS`): for each, its profiles, the grid of runs they give, its scale
line and, where it tunes, its step-size stage (:class:`revisit_bn.specs.Chapter`); and the runs a profile needs
(:func:`profile_configs`). A notebook's setup reads them through :mod:`revisit_bn.experiments`.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Iterable

from .bounds import BoundsConfig
from .data import DATASET_SIZES, LARGE_VARIANCE_RANGES, MNIST_SCALE_RANGES
from .distributed import DistributedConfig
from .gradient_bias import GradientBiasConfig
from .specs import NEXT, Chapter, Tuning, _count, _profiles, _split, _unique
from .store import Config
from .train import McsgdConfig, TrainConfig


# --- 13: the theorem trace on a real layer ---

def _grid_13(p):
    """The random-instance checks (stored: the paper profile's take minutes) and the trace on a real layer."""
    return [BoundsConfig(batch_sizes=tuple(p["batch_sizes"]), per_size=p["per_size"], seed=p["seed"]),
            TrainConfig(experiment="theorem_trace", norm="bn", batch_order="shuffled", epochs=p["trace_epochs"], lr=0.02,
                        momentum=0.0, train_subset=p["trace_train_subset"], test_subset=2_000, seed=p["seed"],
                        trace_every=p["trace_log_every"], device=p["device"])]


# --- 14: MCSGD rates ---

def _grid_14(p):
    return [McsgdConfig(method=m, steps=p["steps"], lr=p["lr"], lr_power=p["lr_power"], rate_power=p["rate_power"],
                        batch_size=b, seed=s, num_logs=p["num_logs"])
            for b in p["batch_sizes"] for s in p["seeds"] for m in p["methods"]]


# --- 15: the bias of FN's gradient estimators ---

def _grid_15(p):
    """One stored measurement per problem, seed and estimate rate (the paper profile's take minutes)."""
    if any(not isinstance(q, list) or len(q) != 3 for q in p["problems"]):
        raise ValueError(f"problems must be a list of [labels, features, hidden] triples, got {p['problems']!r}")
    return [GradientBiasConfig(seed=s, momentum=a, sizes=tuple(p["sizes"]), draws=p["draws"], max_exact=p["max_exact"],
                               per_label=p["per_label"], labels=labels, features=features, hidden=hidden)
            for labels, features, hidden in p["problems"] for s in p["seeds"] for a in p["momenta"]]


# --- 21-24: Santurkar et al.'s VGG ---

def _vgg_base(p):
    if p["lr_schedule"] not in ("constant", "cosine"):
        raise ValueError(f"parameter lr_schedule must be 'constant' or 'cosine', got {p['lr_schedule']!r}")
    # our choice of schedule at the book's scale: the paper's step size, annealed along a cosine to 0 by the end
    schedule = dict(lr_schedule="cosine") if p["lr_schedule"] == "cosine" else {}
    return TrainConfig(experiment="santurkar_vgg", dataset="cifar10", model=p["model"], width=p["width"], epochs=p["epochs"],
                       batch_size=p["batch_size"], momentum=0.0, train_subset=p["train_subset"], test_subset=p["test_subset"],
                       probe_every=p["probe_every"], augment=p["augment"], device=p["device"], **schedule)


def _vgg_scale(p):
    schedule = "constant step size" if p["lr_schedule"] == "constant" else "step size annealed along a cosine to 0"
    return (f"{p['model'].upper()} at width {p['width']}, {_split('CIFAR-10', p, 50000, 10000)}"
            + (" (random crops and flips)" if p["augment"] else "") + f", batch {p['batch_size']}, {p['epochs']} epochs, "
            f"plain SGD, {schedule}, {_seeds(p)}, probes every {p['probe_every']} steps")


_VGG = dict(seeds=[0, 1, 2, 3, 4], model="vgg11", width=0.25, epochs=4, batch_size=128, train_subset=20000, test_subset=5000,
            augment=False, lr_schedule="constant", probe_every=50, device="auto")
_VGG_CI = dict(seeds=[0], width=0.125, epochs=1, train_subset=256, test_subset=128, probe_every=1)
_VGG_PAPER = dict(width=1.0, epochs=30, train_subset=None, test_subset=None, probe_every=200)
# The book's next scale (computed across sessions, `make results PROFILE=next`): all of CIFAR-10 with the standard
# augmentation, 30 epochs with the step size annealed along a cosine, so that BN's VGG11 passes 80 % test accuracy;
# probes once an epoch (391 steps), over the whole run.
_VGG_NEXT = dict(train_subset=None, test_subset=None, epochs=30, augment=True, lr_schedule="cosine", probe_every=391)
# the deep linear network's profiles (chapters 23 and 25)
_DLN = dict(dln_lrs=[0.01, 0.05, 0.2], dln_steps=200, dln_probe_every=10)
_DLN_CI = dict(dln_steps=3, dln_probe_every=1)
_DLN_PAPER = dict(dln_steps=1000, dln_probe_every=50)  # 20 probes, as the book's 200 steps have (and 2.5 times smaller files)


def _grid_21(p):
    return [_vgg_base(p).replace(norm=n, lr=lr, seed=s) for lr in p["lrs"] for n in p["norms"] for s in p["seeds"]]


def _grid_22(p):
    bad = [level for level in p["noise_levels"] if not isinstance(level, list) or len(level) != 3]
    if bad:
        raise ValueError(f"parameter noise_levels must be a list of [noise_mean_max, noise_scale_max, noise_std] "
                         f"triples, got {bad[0]!r} in {p['noise_levels']!r}")
    base = _vgg_base(p).replace(lr=p["lr"])
    # noisy BN, and the same noise on the standard network ("noisy_none"), at each noise level
    return [cfg.replace(seed=seed) for cfg in [base.replace(norm="none"), base.replace(norm="bn")] + [
        base.replace(norm=n, noise_mean_max=m, noise_scale_max=s, noise_std=sd)
        for n in ("noisy_bn", "noisy_none") for m, s, sd in p["noise_levels"]]
        for seed in p["seeds"]]


def _dln_grid(p):
    """Santurkar et al.'s 25-layer deep linear network, full-batch GD (chapters 23 and 25 share these runs)."""
    dln = TrainConfig(experiment="santurkar_dln", dataset="linear_teacher", model="deep_linear", batch_size=1000,
                      epochs=p["dln_steps"], momentum=0.0, probe_every=p["dln_probe_every"], device=p["device"])
    return [dln.replace(norm=n, lr=r, seed=s) for r in p["dln_lrs"] for n in p["norms"] for s in p["seeds"]]


def dln_scale(p: dict[str, Any], profile: str) -> str:
    """The deep linear network's scale line from a profile's resolved parameters ``p`` (``dln_steps``,
    ``dln_lrs``, ``dln_probe_every``, ``seeds``), ending with the profile, as :attr:`ChapterRun.scale`."""
    return (f"25-layer linear network, width 32, 1,000 samples, full-batch GD, {p['dln_steps']} steps, "
            f"lr {p['dln_lrs']}, probes every {p['dln_probe_every']} steps, {len(p['seeds'])} seeds, profile '{profile}'")


def _grid_23(p):
    return _grid_24(p) + _dln_grid(p)


def _grid_24(p):
    return [_vgg_base(p).replace(lr=p["lr"], norm=n, seed=s) for n in p["norms"] for s in p["seeds"]]


# --- 31-37: Lian & Liu and Ioffe ---

# A chapter that chooses each method's step size on the validation split widens its grid by this factor beyond an
# edge pick, at most _WIDEN_MAX times (chapters 35 and 37; registered with their next profiles, before any run)
_WIDEN, _WIDEN_MAX = 2.0, 2


def _check_tune_seeds(p):
    if not set(p["tune_seeds"]) <= set(p["seeds"]):
        raise ValueError(f"parameter tune_seeds must be among seeds {p['seeds']}, got {p['tune_seeds']}")


def _tuned(base, method, widen: float | None = _WIDEN):
    """A chapter's ``tune`` and ``grid`` around ``base`` (``params -> runs`` at the profile's ``lr``): with a
    validation split, each ``method(config)`` chooses its step size on it from ``lr_grid`` (on ``tune_seeds``),
    the grid widened by ``widen`` beyond an edge pick (``None``: not widened); the grid then trains each
    method at its own."""
    def tune(p):
        if p["validation_size"] is None:
            return None
        _check_tune_seeds(p)
        runs = [c.replace(lr=lr) for c in base(p) if c.seed in p["tune_seeds"] for lr in p["lr_grid"]]
        return Tuning(runs, method, widen=widen, max_widen=_WIDEN_MAX)

    def grid(p, step_sizes=None):
        runs = base(p)
        return runs if step_sizes is None else [c.replace(lr=step_sizes[method(c)]) for c in runs]

    return tune, grid


def _grid_31_base(p):
    """Chapter 31's runs at the profile's step size ``lr`` (before any tuning)."""
    base = TrainConfig(experiment="mnist_batch_construction", dataset="mnist", model="simple", batch_size=p["batch_size"],
                       epochs=p["epochs"], lr=p["lr"], momentum=p["sgd_momentum"], norm_momentum=p["norm_momentum"],
                       fn_momentum_power=p["fn_momentum_power"], train_subset=p["train_subset"],
                       test_subset=p["test_subset"], validation_size=p["validation_size"], device=p["device"])
    seeds = p["seeds"]
    runs = [base.replace(norm=n, batch_order=o, seed=s) for n in p["norms"] for o in ("label_sorted", "shuffled") for s in seeds]
    runs += [base.replace(norm=n, batch_order="label_sorted", seed=s) for n in p["baselines"] for s in seeds]
    # the literal reading of "unshuffled": one label per batch, the labels in sequence
    runs += [base.replace(norm=n, batch_order="unshuffled", seed=s) for n in p["unshuffled_norms"] for s in seeds]
    # Corollary 3's schedule: a decaying estimate rate and a faster-decaying step size
    schedule = dict(fn_momentum_power=p["schedule_rate_power"], norm_momentum=p["schedule_rate_floor"],
                    lr_power=p["schedule_lr_power"], lr_decay_steps=p["schedule_lr_decay_steps"])
    runs += [base.replace(norm=n, batch_order="label_sorted", seed=s, **schedule)
             for n in p["schedule_norms"] for s in seeds]
    return runs


def _method_31(config) -> tuple:
    """What a chapter-31 run's step size is chosen for: its norm, batch order and schedule."""
    return (config.norm, config.batch_order, "Corollary 3" if config.lr_power > 0 else "constant")


# registered without widening (its next scale's tuning runs began before Tuning.widen existed)
_tune_31, _grid_31 = _tuned(_grid_31_base, _method_31, widen=None)


def _grid_32(p):
    # each run made with its norm (no template at the default norm 'bn', which cannot train at batch size 1 in mlp3)
    base = dict(experiment="batch_size_one", dataset="three_points", model="mlp3", batch_size=1, epochs=p["epochs"],
                lr=p["lr"], momentum=0.0, eval_batch_size=3, device=p["device"])
    return [TrainConfig(**base, norm=n, seed=s) for n in p["norms"] for s in p["seeds"]]


def _grid_33(p):
    bad = [d for d in p["variance_datasets"] if d not in LARGE_VARIANCE_RANGES]
    if bad:
        raise ValueError(f"variance_datasets must name datasets of {sorted(LARGE_VARIANCE_RANGES)}, got {bad}")
    base = TrainConfig(experiment="large_variance", dataset="large_variance", model="logreg", batch_size=p["batch_size"],
                       epochs=p["epochs"], momentum=0.0, device=p["device"])
    # our choice: one step-size grid for every method; each method's step size is chosen by one rule (the notebook's);
    # the same grid on the data at other spreads of the per-sample scale tests our choice of generator
    grids = [("large_variance", p["lrs"])] + [(d, p["variance_lrs"]) for d in p["variance_datasets"]]
    return [base.replace(dataset=d, norm=n, lr=lr, seed=s) for d, lrs in grids
            for n in ("bn", "fn", "none") for lr in lrs for s in p["seeds"]]


def _grid_34(p):
    bad = [d for d in p["sensitivity_datasets"] if d not in MNIST_SCALE_RANGES or d == "mnist_scaled"]
    if bad:
        raise ValueError(f"sensitivity_datasets must name other ranges of the scales, of "
                         f"{sorted(set(MNIST_SCALE_RANGES) - {'mnist_scaled'})}, got {bad}")
    base = TrainConfig(experiment="scaled_mnist_batch_sizes", dataset="mnist_scaled", model="simple", epochs=p["epochs"],
                       lr=p["lr"], momentum=0.0, norm_momentum=p["norm_momentum"], train_subset=p["train_subset"],
                       test_subset=p["test_subset"], device=p["device"])
    # the sensitivity check (registered before its runs): the same runs on another range of the random scales
    return [base.replace(dataset=d, norm=n, batch_size=b, seed=s, epochs=_equal_steps_epochs(p, b))
            for d in ["mnist_scaled", *p["sensitivity_datasets"]]
            for n, b, s in itertools.product(p["norms"], p["batch_sizes"], p["seeds"])]


def _equal_steps_epochs(p, batch_size: int) -> int:
    """Epochs at ``batch_size``: with ``p["equal_steps"]`` as many SGD steps as ``p["epochs"]`` at the smallest batch size
    (our choice: batch sizes compared at equal numbers of steps), else ``p["epochs"]``."""
    if not p["equal_steps"] or min(p["batch_sizes"]) < 1:  # a bad batch size is TrainConfig's to name
        return p["epochs"]
    return p["epochs"] * batch_size // min(p["batch_sizes"])


def _epochs_text(p) -> str:
    if not p["equal_steps"]:
        return f"{p['epochs']} epochs"
    return (f"{p['epochs']} epochs at batch size {min(p['batch_sizes'])}, the same number of steps at the others ("
            + ", ".join(str(_equal_steps_epochs(p, b)) for b in sorted(p["batch_sizes"])[1:]) + " epochs)")


def _tuning_text(p) -> str:
    """The scale line's words on how the step sizes were chosen ("" for a profile that chooses none)."""
    if p["validation_size"] is None:
        return ""
    return (f"each method's step size chosen on {p['validation_size']:,} held-out training images from {p['lr_grid']} "
            f"(seeds {p['tune_seeds']}; widened x{_WIDEN:g} at an edge pick, at most {_WIDEN_MAX} times), ")


def _cifar_text(p) -> str:
    """The scale line's words on augmentation and the step size's schedule, where a profile sets them."""
    return ((" with random crops and flips" if p["augment"] else "")
            + (", step size annealed along a cosine" if p["lr_schedule"] == "cosine" else ""))


def _grid_35_base(p):
    """Chapter 35's runs at the profile's step size ``lr`` (before any tuning)."""
    base = TrainConfig(experiment="cifar_batch_construction", dataset="cifar10", model=p["model"], width=p["width"],
                       epochs=p["epochs"], batch_size=p["batch_size"], lr=p["lr"], momentum=p["sgd_momentum"], train_subset=p["train_subset"],
                       test_subset=p["test_subset"], brn_warmup_steps=p["brn_warmup_steps"],
                       brn_ramp_steps=p["brn_ramp_steps"], augment=p["augment"], lr_schedule=p["lr_schedule"],
                       validation_size=p["validation_size"], device=p["device"])
    return [base.replace(norm=n, batch_order=o, seed=s)
            for n, o, s in itertools.product(p["norms"], p["batch_orders"], p["seeds"])]


def _method_35(config) -> tuple:
    """What a chapter-35 run's step size is chosen for: its norm and batch order."""
    return (config.norm, config.batch_order)


_tune_35, _grid_35 = _tuned(_grid_35_base, _method_35)


def _lr_36(p, batch_size: int, lr: float) -> float:
    """Chapter 36's step size at ``batch_size``: ``lr`` at the largest batch size, and with
    ``p["lr_scaling"] == "linear"`` proportional to the batch size below it (our choice, the linear
    scaling rule of Goyal et al. 2017: every batch size then takes the same sum of step sizes per
    epoch, so equal epochs are equal SGD time); ``"none"`` keeps ``lr`` at every size."""
    if p["lr_scaling"] == "none":
        return lr
    return lr * batch_size / max(p["batch_sizes"])


def _lr_decay_steps_36(p, batch_size: int) -> int:
    """Chapter 36's ``lr_decay_steps`` at ``batch_size``: ``p["lr_decay_epochs"]`` epochs of SGD steps
    at this batch size (at the smallest one with ``p["equal_steps"]``, where every size takes the same
    steps), so that the step size falls alike per epoch at every batch size (our choice)."""
    n = p["train_subset"] or DATASET_SIZES["cifar10"][0]
    per_epoch = math.ceil(n / (min(p["batch_sizes"]) if p["equal_steps"] else batch_size))
    return max(1, round(p["lr_decay_epochs"] * per_epoch))


def _grid_36(p):
    if p["lr_scaling"] not in ("linear", "none"):
        raise ValueError(f"parameter lr_scaling must be 'linear' or 'none', got {p['lr_scaling']!r}")
    if not (isinstance(p["lr_decay_epochs"], (int, float)) and 0 < p["lr_decay_epochs"] < float("inf")):
        raise ValueError(f"parameter lr_decay_epochs must be a finite number > 0, got {p['lr_decay_epochs']!r}")
    if any(not isinstance(b, int) or isinstance(b, bool) or b < 1 for b in p["batch_sizes"]):
        raise ValueError(f"batch_size must be a positive integer, got {p['batch_sizes']!r} (parameter batch_sizes)")
    outside = [s for s in p["sensitivity_seeds"] if s not in p["seeds"]]
    if outside and p["lr_scaling"] != "none":  # the check compares with the main runs at the largest batch size
        raise ValueError(f"sensitivity_seeds must be among seeds {p['seeds']} (the check reads the main runs at the "
                         f"largest batch size on the same seeds), got {outside} outside them")
    base = TrainConfig(experiment="resnet18_batch_sizes", dataset="cifar10", model=p["model"], width=p["width"],
                       epochs=p["epochs"], lr=p["lr"], momentum=p["sgd_momentum"], train_subset=p["train_subset"],
                       test_subset=p["test_subset"], eval_batch_size=500, device=p["device"])

    def run(n, b, s, lr_power, lr):
        return base.replace(norm=n, batch_size=b, seed=s, epochs=_equal_steps_epochs(p, b), lr=_lr_36(p, b, lr),
                            lr_power=lr_power,
                            lr_decay_steps=_lr_decay_steps_36(p, b) if lr_power > 0 else base.lr_decay_steps)

    # the reference of the learnability gate (BN at the largest batch) first, so that a scale at
    # which it fails shows itself after the first runs of `make results`
    order = sorted(p["batch_sizes"], reverse=True)
    main = [run(n, b, s, p["lr_power"], p["lr"]) for b, n, s in itertools.product(order, p["norms"], p["seeds"])]
    # the schedule check: a constant step size at the smallest and largest batch sizes
    check = [] if p["lr_power"] == 0 else [
        run(n, b, s, 0.0, p["constant_step_lr"])
        for b, n, s in itertools.product(order[:: max(1, len(order) - 1)], p["norms"], p["constant_step_seeds"])]
    # the sensitivity check (registered before its runs): the largest batch size's step size at every batch size
    # (no linear scaling); the largest batch size's runs are the main ones
    unscaled = [] if p["lr_scaling"] == "none" else [
        base.replace(norm=n, batch_size=b, seed=s, epochs=_equal_steps_epochs(p, b), lr=p["lr"], lr_power=p["lr_power"],
                     lr_decay_steps=_lr_decay_steps_36(p, b) if p["lr_power"] > 0 else base.lr_decay_steps)
        for b, n, s in itertools.product(order[1:], p["norms"], p["sensitivity_seeds"])]
    return main + check + unscaled


def _resnet_name(p) -> str:
    if p["model"] == "resnet18_cifar":
        return "ResNet18 (CIFAR stem" + (f", width x{p['width']})" if p["width"] != 1.0 else ")")
    return "ResNet18"


def _method_37(config) -> tuple:
    """What a chapter-37 run's step size is chosen for: its norm, batch order and micro-batch size."""
    return (config.norm, config.batch_order, config.norm_group_size)


def _grid_37_base(p):
    """Chapter 37's runs at the profile's step size ``lr`` (before any tuning)."""
    base = TrainConfig(experiment="renorm_non_iid", dataset="cifar10", model=p["model"], width=p["width"], epochs=p["epochs"],
                       batch_size=32, lr=p["lr"], momentum=p["sgd_momentum"], train_subset=p["train_subset"],
                       test_subset=p["test_subset"], brn_warmup_steps=p["brn_warmup_steps"],
                       brn_ramp_steps=p["brn_ramp_steps"], augment=p["augment"], lr_schedule=p["lr_schedule"],
                       validation_size=p["validation_size"], device=p["device"])
    non_iid, microbatch = base.replace(batch_order=p["non_iid_order"]), base.replace(batch_order="shuffled", norm_group_size=4)
    # the non-i.i.d. setting also trains `non_iid_norms` (FN with MCSGD and with the decoupled estimator in the
    # book: Lian & Liu's Figure 5 claim at a batch size where label-restricted batches are learnable; FN's runs in
    # every setting would not fit the budget)
    non_iid_norms = list(dict.fromkeys(p["norms"] + p["non_iid_norms"]))
    # first the reference of the learnability gate (BN over whole shuffled batches), so that a
    # scale at which the gate fails shows itself after the first runs of `make results`
    return ([base.replace(batch_order="shuffled", norm="bn", seed=s) for s in p["seeds"]]
            + [non_iid.replace(norm=n, seed=s) for n in non_iid_norms for s in p["seeds"]]
            + [microbatch.replace(norm=n, seed=s) for n in p["norms"] for s in p["seeds"]])


_tune_37, _grid_37 = _tuned(_grid_37_base, _method_37)


# --- 38: FN beside BN's successors ---

# Chapter 38's methods: a norm name of revisit_bn.models.NORMS, or "bn_precise" (BN's runs evaluated with population
# statistics recomputed after each epoch: TrainConfig.precise_bn).
SUCCESSOR_METHODS = ("none", "bn", "bn_precise", "brn", "fn", "fn_decoupled", "gn", "frn", "evonorm", "online", "mabn")
# Methods whose normalization of a sample does not depend on which samples share its batch: per sample (GroupNorm,
# FRN, EvoNorm-S0), none, or over the samples before it (Online Normalization, which treats a batch as its samples in
# sequence). Splitting a batch into microbatches changes nothing for them, so their runs of a microbatch setting are
# those of the shuffled one (one run stands for both).
GROUPING_FREE = ("none", "gn", "frn", "evonorm", "online")
# Chapter 38's batch settings: batch order and normalization group size.
SETTINGS_38 = {"single_label": ("label_sorted", None), "label_limited": ("label_limited", None),
               "shuffled": ("shuffled", None), "micro2": ("shuffled", 2), "micro4": ("shuffled", 4)}


def setting_38(config) -> str:
    """The chapter-38 setting a run trains in (:data:`SETTINGS_38`), from its batch order and group size."""
    for name, (order, group) in SETTINGS_38.items():
        if (config.batch_order, config.norm_group_size) == (order, group):
            return name
    raise ValueError(f"run {config.label()} is in none of chapter 38's settings {list(SETTINGS_38)}")


def _check_38(p) -> None:
    unknown = [m for m in p["methods"] if m not in SUCCESSOR_METHODS]
    if unknown:
        raise ValueError(f"parameter methods holds {unknown}; choose from {list(SUCCESSOR_METHODS)}")
    unknown = [s for s in p["settings"] if s not in SETTINGS_38]
    if unknown:
        raise ValueError(f"parameter settings holds {unknown}; choose from {list(SETTINGS_38)}")
    if "shuffled" not in p["settings"]:
        raise ValueError(f"parameter settings must hold 'shuffled' (the reference, and the runs of the methods "
                         f"{list(GROUPING_FREE)} under microbatches), got {p['settings']}")
    if "bn_precise" in p["methods"] and "bn" not in p["methods"]:
        raise ValueError("parameter methods holds 'bn_precise' but not 'bn': BN's precise statistics are an evaluation "
                         "of BN's runs")
    _check_tune_seeds(p)


def _run_38(p, method: str, setting: str, seed: int, lr: float) -> TrainConfig:
    """The run of ``method`` in ``setting`` (a grouping-free method's microbatch run is its shuffled one)."""
    if method in GROUPING_FREE and SETTINGS_38[setting][1] is not None:
        setting = "shuffled"
    order, group = SETTINGS_38[setting]
    norm = "bn" if method == "bn_precise" else method
    return TrainConfig(experiment="successors", dataset=p["dataset"], model=p["model"], norm=norm, batch_order=order,
                       norm_group_size=group, batch_size=p["batch_size"], epochs=p["epochs"], lr=lr,
                       momentum=p["sgd_momentum"], seed=seed, train_subset=p["train_subset"],
                       test_subset=p["test_subset"], validation_size=p["validation_size"],
                       brn_warmup_steps=p["brn_warmup_steps"], brn_ramp_steps=p["brn_ramp_steps"],
                       precise_bn=norm == "bn", device=p["device"])


def _cells_38(p) -> list[tuple[str, str]]:
    """The ``(method, setting)`` pairs the chapter reports, in its order."""
    return [(m, s) for s in p["settings"] for m in p["methods"]]


def _views_38(config) -> list:
    s = setting_38(config)
    if config.norm == "bn":
        return [(("bn", s), "val_loss"), (("bn_precise", s), "val_loss_precise")]
    return [((config.norm, s), "val_loss")]


def _tune_38(p):
    """Each method's step size in each setting, chosen on the validation split from ``lr_grid`` (on
    ``tune_seeds``); BN and BN with precise statistics each on their own validation loss, from the same runs."""
    _check_38(p)
    runs = [_run_38(p, m, s, seed, lr) for m, s in _cells_38(p) if m != "bn_precise"
            for seed in p["tune_seeds"] for lr in p["lr_grid"]]
    return Tuning(_unique(runs), lambda c: (c.norm, setting_38(c)), views=_views_38)


def _grid_38(p, step_sizes=None):
    _check_38(p)

    def lr(m, s):
        if step_sizes is None:
            return p["lr_grid"][0]
        shared = "shuffled" if m in GROUPING_FREE and SETTINGS_38[s][1] is not None else s
        return step_sizes[(m, shared)]

    return _unique([_run_38(p, m, s, seed, lr(m, s)) for m, s in _cells_38(p) for seed in p["seeds"]])


def _scale_38(p) -> str:
    data = "MNIST, SimpleNet" if p["dataset"] == "mnist" else f"CIFAR-10, SimpleNet at widths 32, 64 ({p['model']})"
    return (f"{data}; {_split('', p, DATASET_SIZES[p['dataset']][0] - p['validation_size'], DATASET_SIZES[p['dataset']][1]).strip()}; "
            f"batch size {p['batch_size']}, {_count(p['epochs'], 'epoch')}, SGD momentum {p['sgd_momentum']}; each method's "
            f"step size per setting chosen on {p['validation_size']:,} held-out images from {p['lr_grid']}; {_seeds(p)}")


# --- 39: data-parallel training on label-skewed shards ---

def _dp_base(p, workers: int, skew: int, method: str, seed: int, lr: float) -> DistributedConfig:
    """One run of chapter 39: ``workers`` workers of ``global_batch / workers`` samples a step, each with ``skew`` labels."""
    if p["global_batch"] % workers:
        raise ValueError(f"parameter global_batch={p['global_batch']} must split evenly over workers={workers}")
    return DistributedConfig(experiment="distributed_label_skew", dataset=p["dataset"], model=p["model"], method=method,
                             workers=workers, labels_per_worker=skew, train_size=p["train_size"],
                             batch_size=p["global_batch"] // workers, epochs=p["epochs"], lr=lr,
                             momentum=p["sgd_momentum"], width=p["width"], validation_size=p["validation_size"],
                             test_subset=p["test_subset"], seed=seed)


def _tune_39(p):
    """Each method's step size, chosen on the validation split with i.i.d. shards (``tune_workers`` workers,
    ``tune_seeds``) from ``lr_grid``; the same step size at every skew and worker count (a practitioner tunes once)."""
    _check_tune_seeds(p)
    if p["tune_workers"] not in p["workers"] or 10 not in p["skews"]:
        raise ValueError(f"parameter tune_workers ({p['tune_workers']}) must be one of workers {p['workers']}, and the "
                         f"i.i.d. skew 10 one of skews {p['skews']}: the tuning runs are the chapter's own")
    runs = [_dp_base(p, p["tune_workers"], 10, m, s, lr) for m in p["methods"] for s in p["tune_seeds"]
            for lr in p["lr_grid"]]
    return Tuning(runs, lambda c: c.method)


def _settings_39(p) -> list[tuple[int, int]]:
    """The ``(K, c)`` pairs of ``workers`` x ``skews`` that keep the union of the shards balanced (K c a multiple
    of 10: :func:`revisit_bn.distributed.worker_labels`); every K needs the i.i.d. one and a skewed one."""
    pairs = [(k, c) for k in p["workers"] for c in p["skews"] if (k * c) % 10 == 0]
    for k in p["workers"]:
        if (k, 10) not in pairs or len([c for kk, c in pairs if kk == k]) < 2:
            raise ValueError(f"parameter skews={p['skews']} gives workers={k} no skewed setting beside the i.i.d. one "
                             f"(c = 10); K c must be a multiple of 10")
    return pairs


def _grid_39(p, step_sizes=None):
    lr = (lambda m: step_sizes[m]) if step_sizes is not None else (lambda m: p["lr_grid"][0])
    return [_dp_base(p, k, c, m, s, lr(m)) for k, c in _settings_39(p) for m in p["methods"] for s in p["seeds"]]


def _scale_39(p) -> str:
    data = "MNIST, SimpleNet" if p["dataset"] == "mnist" else f"CIFAR-10, {p['model']} at width {p['width']:g}"
    return (f"{data}; {p['train_size']:,} training images split over K = {p['workers']} workers, each holding c of the "
            f"10 labels, c in {p['skews']} (K c a multiple of 10); {p['global_batch']} images a step over all workers; "
            f"{_count(p['epochs'], 'epoch')}; step sizes chosen on {p['validation_size']:,} held-out images from "
            f"{p['lr_grid']}; {_seeds(p)}")


def _seeds(p) -> str:
    return f"{len(p['seeds'])} seed{'s' if len(p['seeds']) > 1 else ''}"


_CHAPTER_LIST = [
    Chapter("11-bn-objective", "Lian & Liu 2019, Section 4: BN's objective (9) and FN's (10)",
            ("lian-sec4-sampling", "lian-sec4-batch-size", "lian-sec4-fn-objective", "bn-objective-batch-size-one",
             "lian-sec4-condition", "santurkar-obs4.3"),
            _profiles(dict(inputs=[0, 1, 3, 4], targets=[0, 2, 1, 3], shard_split=2, condition_features=[1, 2, 5, 20],
                           condition_problems=2_000, condition_seed=0),
                      ci=dict(condition_problems=200), paper=dict(condition_problems=20_000))),
    Chapter("12-bn-gradient-hessian", "Santurkar et al. 2018, Fact C.1, Theorems 4.1-4.2, Lemma 4.5",
            ("santurkar-factc1", "santurkar-thm4.2-conditional", "santurkar-lemma4.5"),
            _profiles(dict(batch_sizes=[2, 3, 4], autograd_seed=0, conditional_sizes=[3, 4, 16, 64],
                           conditional_per_size=20_000),
                      ci=dict(conditional_per_size=2_000),
                      paper=dict(conditional_sizes=[3, 4, 16, 64, 256], conditional_per_size=50_000))),
    Chapter("13-bound-checks", "Santurkar et al. 2018, Theorems 4.1 and 4.2 on random instances and a real layer",
            ("santurkar-thm4.1", "santurkar-thm4.2", "santurkar-thm4.2-eps"),
            _profiles(dict(batch_sizes=[2, 4, 16, 64, 256], per_size=20_000, seed=0, trace_train_subset=12_000,
                           trace_epochs=1, trace_log_every=10, device="cpu"),
                      ci=dict(batch_sizes=[2, 16], per_size=200, trace_train_subset=640, trace_log_every=5),
                      paper=dict(batch_sizes=[2, 4, 16, 64, 256, 1024], per_size=200_000, trace_train_subset=60_000,
                                 trace_epochs=3, trace_log_every=50)),
            _grid_13,
            lambda p: (f"{p['per_size']:,} random instances per batch size and convexity, m in {p['batch_sizes']}; "
                       f"MNIST network, {p['trace_train_subset']:,} images, {_count(p['trace_epochs'], 'epoch')}, both sides every "
                       f"{p['trace_log_every']} steps")),
    Chapter("14-mcsgd-convergence", "Lian & Liu 2019, Lemma 1, Theorem 2, Corollary 3",
            ("lian-lemma1", "lian-thm2", "lian-cor3", "lian-thm2-decoupled", "lian-cor3-decoupled"),
            _profiles(dict(steps=20_000, seeds=[0, 1, 2, 3, 4], lr=0.05, lr_power=0.5, rate_power=0.25, batch_sizes=[2, 8, 32, 128],
                           num_logs=60, fit_tail=0.5, methods=["mcsgd", "sgd", "mcsgd_decoupled"]),
                      ci=dict(steps=400, seeds=[0, 1], batch_sizes=[2, 32], num_logs=20),
                      paper=dict(steps=200_000, seeds=[0, 1, 2, 3, 4], num_logs=80)),
            _grid_14,
            lambda p: f"2 FN layers, 512 samples, batch sizes {p['batch_sizes']}, {p['steps']:,} steps, {_seeds(p)}"),
    Chapter("15-fn-gradient-bias", "Lian & Liu 2019, Remark 1 and Algorithm 4: the bias of FN's gradient estimators",
            ("lian-remark1", "fn-decoupled-unbiased"),
            # problems: [labels, features, hidden] (our choice, the first; the second, wider, tests that choice)
            _profiles(dict(seeds=[0, 1, 2, 3, 4], sizes=[1, 2, 3, 4, 6, 8, 12, 16, 20], momenta=[0.1, 0.001], draws=20_000,
                           max_exact=50_000, per_label=20, problems=[[3, 4, 3], [10, 8, 12]]),
                      ci=dict(seeds=[0, 1], sizes=[1, 2, 4, 20], draws=2_000, max_exact=2_000),
                      paper=dict(draws=200_000, max_exact=600_000)),
            _grid_15,
            lambda p: (" and ".join(f"{q[0]} labels x {p['per_label']} points in {q[1]} dimensions, hidden width {q[2]}"
                                    for q in p["problems"])
                       + f", float64; every batch where at most {p['max_exact']:,} exist, else {p['draws']:,} drawn; "
                       f"{_seeds(p)}")),
    Chapter("21-vgg-learning-rates", "Santurkar et al. 2018, Figure 1", ("santurkar-fig1",),
            _profiles(dict(_VGG, lrs=[0.1, 0.5], norms=["none", "bn", "fn"]), _VGG_CI, _VGG_PAPER, _VGG_NEXT),
            _grid_21, _vgg_scale),
    Chapter("22-noisy-batchnorm", "Santurkar et al. 2018, Figure 2 and Section 2.1", ("santurkar-fig2", "santurkar-noise-standard"),
            _profiles(dict(_VGG, lr=0.1, noise_levels=[[1.0, 2.0, 0.5], [0.5, 1.5, 0.25]]), _VGG_CI, _VGG_PAPER, _VGG_NEXT),
            _grid_22, lambda p: _vgg_scale(p) + f"; lr {p['lr']}"),
    Chapter("23-internal-covariate-shift", "Santurkar et al. 2018, Figure 3", ("santurkar-fig3-vgg", "santurkar-fig3-dln"),
            _profiles(dict(_VGG, lr=0.1, norms=["none", "bn", "fn"], **_DLN), dict(_VGG_CI, **_DLN_CI),
                      dict(_VGG_PAPER, **_DLN_PAPER), _VGG_NEXT),
            _grid_23, lambda p: _vgg_scale(p) + f"; lr {p['lr']}"),
    Chapter("24-loss-landscape", "Santurkar et al. 2018, Figure 4", ("santurkar-fig4",),
            _profiles(dict(_VGG, lr=0.1, norms=["none", "bn", "fn"]), _VGG_CI, _VGG_PAPER, _VGG_NEXT),
            _grid_24, lambda p: _vgg_scale(p) + f"; lr {p['lr']}"),
    Chapter("25-lp-normalization", "Santurkar et al. 2018, Section 3.3", ("santurkar-lp", "santurkar-lp-dln"),
            # the standard and BN runs are chapter 21's (VGG at lr 0.1) and chapter 23's (the deep linear
            # network), with the same keys; only the l_p runs are new
            _profiles(dict(_VGG, lr=0.1, norms=["none", "bn", "lp1", "lp2", "lpinf"], **_DLN),
                      dict(_VGG_CI, **_DLN_CI, dln_lrs=[0.2]), dict(_VGG_PAPER, **_DLN_PAPER), _VGG_NEXT),
            _grid_23, lambda p: _vgg_scale(p) + f"; lr {p['lr']}"),
    Chapter("31-mnist-batch-construction", "Lian & Liu 2019, Figures 4 and 7",
            ("lian-fig4", "lian-fig4-decoupled", "lian-fig4-exact", "lian-fig4-const", "lian-fig4-unshuffled",
             "lian-fig4-cor3", "lian-fig4-mechanism", "lian-fig7", "lian-fig4-vs-none"),
            _profiles(dict(seeds=[0, 1, 2, 3, 4], norms=["bn", "fn", "fn_decoupled"], baselines=["none", "fn_const", "fn_exact"],
                           unshuffled_norms=["bn", "fn"], schedule_norms=["fn"],
                           epochs=10, batch_size=64, lr=0.02, validation_size=None, lr_grid=[0.02], tune_seeds=[0],
                           sgd_momentum=0.0, norm_momentum=0.1, fn_momentum_power=0.0,
                           schedule_rate_power=0.5, schedule_rate_floor=0.01, schedule_lr_power=0.75,
                           schedule_lr_decay_steps=1000, train_subset=None, test_subset=None, device="auto"),
                      ci=dict(seeds=[0, 1], epochs=1, train_subset=3000, test_subset=1000, baselines=["fn_const", "fn_exact"],
                              schedule_lr_decay_steps=20, validation_size=500, lr_grid=[0.01, 0.05]),
                      paper=dict(epochs=20),
                      # the next book scale: each method's step size chosen on 5,000 held-out training images from a
                      # grid around the book's 0.02 (our choice), on seed 0; the chapter's runs at the chosen ones
                      next=dict(validation_size=5000, lr_grid=[0.005, 0.01, 0.02, 0.05])),
            _grid_31,
            lambda p: (f"{_split('MNIST', p, 60000, 10000)}, "
                       + ("" if p["validation_size"] is None else
                          f"{p['validation_size']:,} of them held out to choose each method's step size from "
                          f"{p['lr_grid']} (seeds {p['tune_seeds']}), ")
                       + f"batch size {p['batch_size']}, {p['epochs']} epochs, {_seeds(p)}"),
            tune=_tune_31),
    Chapter("32-batch-size-one", "Lian & Liu 2019, Figure 1",
            ("lian-fig1", "lian-fig1-fn", "lian-fig1-fn-decoupled", "lian-fig1-fn-exact", "lian-fig1-fn-const"),
            _profiles(dict(seeds=list(range(20)), epochs=200, lr=0.1,
                           norms=["bn_ref", "fn", "fn_decoupled", "fn_exact", "fn_const", "none"], device="cpu"),
                      ci=dict(seeds=[0, 1], epochs=5), paper=dict(epochs=1000)),
            _grid_32, lambda p: f"3 samples, batch size 1, {p['epochs']} epochs, {_seeds(p)}"),
    Chapter("33-large-variance", "Lian & Liu 2019, Figure 3", ("lian-fig3",),
            # variance_datasets: the data at other spreads of the per-sample scale (our choice of generator, tested),
            # on a step-size grid two decades deeper (variance_lrs): a pick at the grid's edge would leave it open
            _profiles(dict(seeds=[0, 1, 2, 3, 4], epochs=20, batch_size=10, lrs=[1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0],
                           variance_datasets=["large_variance_narrow", "large_variance_wide"],
                           variance_lrs=[1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0], device="cpu"),
                      ci=dict(seeds=[0, 1], epochs=2, lrs=[1e-4, 1e-1], variance_lrs=[1e-4, 1e-1]), paper=dict(epochs=100)),
            _grid_33,
            lambda p: (f"2,000 samples, dimension 10, per-sample scales spread over 10^4, batch size {p['batch_size']}, "
                       f"{p['epochs']} epochs, {_seeds(p)}")),
    Chapter("34-scaled-mnist-batch-sizes", "Lian & Liu 2019, Figure 9", ("lian-fig9",),
            _profiles(dict(seeds=[0, 1, 2, 3, 4], batch_sizes=[1, 16], norms=["bn", "fn"], epochs=2, equal_steps=True, lr=0.01,
                           norm_momentum=0.01, train_subset=3000, test_subset=2000,
                           sensitivity_datasets=["mnist_scaled_wide"], device="auto"),
                      ci=dict(seeds=[0], epochs=1, train_subset=200, test_subset=200, sensitivity_datasets=[]),
                      paper=dict(epochs=10, equal_steps=False, train_subset=None, test_subset=None,
                                 sensitivity_datasets=[])),
            _grid_34,
            lambda p: (f"{_split('MNIST x log-uniform[0.1, 10],', p, 60000, 10000)}, batch sizes {p['batch_sizes']}, "
                       f"{_epochs_text(p)}, {_seeds(p)}")),
    Chapter("35-cifar-batch-construction", "Lian & Liu 2019, Figures 5 and 8", ("lian-fig5", "lian-fig8"),
            _profiles(dict(seeds=[0, 1, 2], norms=["bn", "fn", "brn", "gn"], batch_orders=["label_limited", "shuffled"],
                           model="vgg11", width=0.25, epochs=4, batch_size=128, lr=0.05, sgd_momentum=0.9,
                           augment=False, lr_schedule="polynomial", validation_size=None, lr_grid=[0.05], tune_seeds=[0],
                           train_subset=None, test_subset=None, brn_warmup_steps=300, brn_ramp_steps=600, device="auto"),
                      ci=dict(seeds=[0], model="simple_wide", width=1.0, epochs=1, batch_size=64, lr=0.002,
                              train_subset=640, test_subset=200, brn_warmup_steps=50, brn_ramp_steps=100),
                      paper=dict(seeds=[0, 1, 2, 3, 4], width=1.0, epochs=30, brn_warmup_steps=2000, brn_ramp_steps=8000),
                      # the next book scale, registered before any of its runs (issues 34 and 35): chapters 21-25's
                      # 30 epochs with augmentation and a cosine step size, at which their BN VGG11 reached 0.822 test
                      # accuracy on all 50,000 images (seed 0); each method's step size chosen on 5,000 held-out images
                      # from a factor-2 grid around the book's 0.05 (seed 0), widened beyond an edge pick; Batch
                      # Renorm at its limits from step 4,000 of about 10,500 (Ioffe reaches them about a third in)
                      next=dict(epochs=30, augment=True, lr_schedule="cosine", validation_size=5000,
                                lr_grid=[0.025, 0.05, 0.1], brn_warmup_steps=1000, brn_ramp_steps=3000)),
            _grid_35,
            lambda p: (f"{_split('CIFAR-10', p, 50000, 10000)}{_cifar_text(p)}, " + _tuning_text(p)
                       + f"batch size {p['batch_size']}, {p['epochs']} epochs, {_seeds(p)}"),
            tune=_tune_35),
    Chapter("36-resnet18-batch-sizes", "Lian & Liu 2019, Figure 2", ("lian-fig2",),
            _profiles(dict(seeds=[0, 1, 2, 3, 4], batch_sizes=[8, 128], norms=["bn", "fn"], model="resnet18_cifar", width=0.125,
                           epochs=5, equal_steps=False, lr=0.1, lr_scaling="linear", sgd_momentum=0.9,
                           lr_power=1.0, lr_decay_epochs=2.0, constant_step_lr=0.05, constant_step_seeds=[0, 1, 2],
                           # the sensitivity check's 6 runs, registered before they ran (computed in the next
                           # profile across two sessions, then moved here)
                           sensitivity_seeds=[0, 1, 2], train_subset=None, test_subset=None, device="auto"),
                      ci=dict(seeds=[0], batch_sizes=[8, 32], epochs=1, train_subset=64, test_subset=64,
                              constant_step_seeds=[0], sensitivity_seeds=[0]),
                      paper=dict(seeds=[0, 1, 2], batch_sizes=[2, 8, 32, 128], width=1.0, epochs=30,
                                 sensitivity_seeds=[])),
            _grid_36,
            lambda p: (f"{_split(_resnet_name(p) + ', CIFAR-10', p, 50000, 10000)}, batch sizes {p['batch_sizes']}, "
                       f"{_epochs_text(p)}, step {p['lr']} at batch size {max(p['batch_sizes'])}"
                       + (", scaled linearly with the batch size" if p["lr_scaling"] == "linear" else " at every batch size")
                       + (f", divided by (1 + epochs elapsed / {p['lr_decay_epochs']:g})"
                          + ("" if p["lr_power"] == 1 else f"^{p['lr_power']:g}")
                          if p["lr_power"] > 0 else ", constant")
                       + f", momentum {p['sgd_momentum']}, {_seeds(p)}")),
    Chapter("37-renorm-non-iid", "Ioffe 2017, Sections 4.2 and 4.3", ("ioffe-noniid", "ioffe-microbatch", "lian-fig5-b32",
                                                                          "lian-fig5-b32-decoupled"),
            _profiles(dict(seeds=[0, 1, 2], norms=["bn", "brn", "gn"], non_iid_norms=["fn", "fn_decoupled"], non_iid_order="label_limited",
                           model="vgg11", width=0.25,
                           epochs=5, lr=0.0125, sgd_momentum=0.9, augment=False, lr_schedule="polynomial",
                           validation_size=None, lr_grid=[0.0125], tune_seeds=[0], train_subset=None, test_subset=None,
                           brn_warmup_steps=500, brn_ramp_steps=1500, device="auto"),
                      ci=dict(seeds=[0], norms=["bn", "brn", "fn", "gn"], model="simple_wide", width=1.0, epochs=1, lr=0.002,
                              train_subset=640, test_subset=200, brn_warmup_steps=5, brn_ramp_steps=10),
                      paper=dict(seeds=[0, 1, 2, 3, 4], norms=["bn", "brn", "fn", "gn"], width=1.0, epochs=30,
                                 brn_warmup_steps=5000, brn_ramp_steps=15000),
                      # the next book scale, registered before any of its runs (issues 34 and 35): chapter 35's next
                      # length, augmentation and cosine step size at batches of 32; each method's step size chosen on
                      # 5,000 held-out images from a factor-2 grid around the book's 0.0125 (seed 0), widened beyond
                      # an edge pick; Batch Renorm at its limits from step 15,000 of about 42,000 (a third in)
                      next=dict(epochs=30, augment=True, lr_schedule="cosine", validation_size=5000,
                                lr_grid=[0.00625, 0.0125, 0.025], brn_warmup_steps=5000, brn_ramp_steps=10000)),
            _grid_37,
            lambda p: (f"{_split('CIFAR-10', p, 50000, 10000)}{_cifar_text(p)}, " + _tuning_text(p)
                       + f"batches of 32, {p['epochs']} epochs, Batch Renorm at its limits from step "
                       f"{p['brn_warmup_steps'] + p['brn_ramp_steps']}, {_seeds(p)}"),
            tune=_tune_37),
    Chapter("38-successors", "FN beside BN's successors: PreciseBN (Wu & Johnson 2021), GroupNorm (Wu & He 2018), FRN "
            "(Singh & Krishnan 2020), EvoNorm (Liu et al. 2020), Online Normalization (Chiley et al. 2019), MABN (Yan et "
            "al. 2020), Batch Renorm", ("wu-precisebn", "wu-he-gn-batch2", "chiley-online-norm", "yan-mabn-small-batch",
                                        "fn-vs-successors"),
            _profiles(dict(seeds=[0, 1, 2, 3, 4], methods=list(SUCCESSOR_METHODS),
                           settings=["single_label", "shuffled", "micro2", "micro4"], dataset="mnist", model="simple",
                           batch_size=64, epochs=2, sgd_momentum=0.9, train_subset=12_000, test_subset=None,
                           validation_size=5000, lr_grid=[0.003, 0.01, 0.03, 0.1], tune_seeds=[0], brn_warmup_steps=50,
                           brn_ramp_steps=150, device="auto"),
                      ci=dict(seeds=[0], epochs=1, batch_size=32, train_subset=1000, test_subset=500,
                              validation_size=500, lr_grid=[0.03], brn_warmup_steps=2, brn_ramp_steps=4),
                      # chapter 35's label-limited CIFAR-10 batches, in the SimpleNet every method runs in, for a GPU
                      paper=dict(seeds=[0, 1, 2], settings=["label_limited", "shuffled", "micro2", "micro4"],
                                 dataset="cifar10", model="simple_wide", epochs=30, train_subset=None,
                                 brn_warmup_steps=2000, brn_ramp_steps=8000)),
            # lr_grid widened from [0.01, 0.03, 0.1] by 0.003 after seed 0's tuning runs chose 0.01, the grid's edge, for
            # every method under one label per batch (validation losses only; registry: _CH38_GRID)
            _grid_38, _scale_38, tune=_tune_38),
    Chapter("39-data-parallel-label-skew", "Lian & Liu 2019, Section 1; Hsieh et al. 2020: data-parallel workers with "
            "label-skewed shards", ("lian-sec1-distributed", "hsieh-bn-skew", "hsieh-gn-recovers", "ddp-rank0-buffers",
                                    "sync-bn-skew", "fn-distributed-skew"),
            # K = 5 with 2 labels a worker (Hsieh et al.'s partitions) and K = 10 with 1 were added after the first
            # seed's runs showed 5-label shards cost BN nothing (registry: _CH39_SKEWS)
            _profiles(dict(seeds=[0, 1, 2], methods=["bn", "sync_bn", "fn_decoupled", "gn", "none"],
                           workers=[2, 4, 5, 8, 10], skews=[1, 2, 5, 10], dataset="mnist", model="simple", width=1.0, train_size=12_000, global_batch=120,
                           epochs=2, sgd_momentum=0.9, lr_grid=[0.01, 0.03, 0.1], tune_workers=2, tune_seeds=[0],
                           validation_size=5000, test_subset=None),
                      ci=dict(seeds=[0], workers=[2], train_size=400, global_batch=20, epochs=1, lr_grid=[0.03],
                              validation_size=500, test_subset=500),
                      # the chapter-35 network at a scale where it learns, on a GPU machine (gloo; NCCL with K GPUs)
                      paper=dict(dataset="cifar10", model="vgg11", width=0.25, train_size=40_000, global_batch=160,
                                 epochs=10, lr_grid=[0.01, 0.03, 0.1])),
            _grid_39, _scale_39, tune=_tune_39),
    Chapter("90-claims-ledger", "every claim the book tests", (), _profiles(dict(run_missing=True), ci=dict(run_missing=False))),
    Chapter("91-how-computed", "how the book's runs are stored, checked and computed", (), _profiles({})),
]
CHAPTERS: dict[str, Chapter] = {c.name: c for c in _CHAPTER_LIST}


def chapter(name: str) -> Chapter:
    """The chapter spec ``name``.

    Raises:
        KeyError: unknown chapter; the message lists the known ones.
    """
    if name not in CHAPTERS:
        raise KeyError(f"unknown chapter {name!r}; choose one of {list(CHAPTERS)}")
    return CHAPTERS[name]


def profile_configs(profile: str, chapters: Iterable[str] | None = None,
                    stale_ok: bool = False) -> list[tuple[str, Config]]:
    """``(chapter, config)`` of every run a profile needs (each run once, under the first chapter that reads it).

    For :data:`NEXT`, the runs of the chapters that have that profile. ``stale_ok``: see :meth:`Chapter.configs`."""
    out, seen = [], set()
    for name in chapters or CHAPTERS:
        if profile == NEXT and NEXT not in chapter(name).profiles:  # only chapters whose next scale is being computed
            continue
        for config in chapter(name).configs(profile, stale_ok=stale_ok):
            if config not in seen:
                seen.add(config)
                out.append((name, config))
    return out
