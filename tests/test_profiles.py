"""The `paper` profiles (the papers' scale, meant for a GPU) are well formed: every distinct
model, normalization and batch shape a chapter would run at that scale builds and takes one real
SGD step on the CPU. The configurations come from the chapter specs, not from the notebooks."""

import math

import pytest

from revisit_bn import experiments
from revisit_bn.experiments import CHAPTERS
from revisit_bn.distributed import DistributedConfig
from revisit_bn.distributed_batch import compute_many, group_by_launch
from revisit_bn.train import TrainConfig

TRAINING = [name for name, spec in CHAPTERS.items() if spec.grid is not None]


def test_every_training_chapter_is_checked():
    assert {"31-mnist-batch-construction", "35-cifar-batch-construction", "14-mcsgd-convergence"} <= set(TRAINING)


_PROBED: set = set()  # (experiment, model) pairs whose probes ran at this scale in this session


@pytest.mark.parametrize("name", TRAINING)
def test_paper_profile_builds_every_model_and_takes_one_step(name):
    steps, parallel = {}, {}
    for config in CHAPTERS[name].configs("paper"):
        if isinstance(config, TrainConfig):  # seeds only change the draws
            key = (config.dataset, config.model, config.norm, config.batch_size, config.batch_order, config.norm_group_size)
        else:  # an MCSGD run by its method; chapter 13's bound checks take their first batch size
            key = (type(config).__name__, getattr(config, "method", None))
        if isinstance(config, DistributedConfig):  # one step of each method, all in one torchrun launch a K
            parallel.setdefault(key, config)
            continue
        if key not in steps:
            config = config.replace(device="cpu")
            if getattr(config, "probe_every", None) is not None:
                # the probes at step 0 (landscape, internal covariate shift) cost some 20 forward and backward
                # passes: once per experiment and model at this scale (chapters 21-25 share them); every
                # normalization's probes run at the ci profile
                if (config.experiment, config.model) in _PROBED:
                    config = config.replace(probe_every=None)
                _PROBED.add((config.experiment, config.model))
            steps[key] = config.compute(max_steps=1)["steps"]["train_loss"][0]
    for group in group_by_launch(list(parallel.values())):
        for config, out in zip(group, compute_many(group, max_steps=1)):
            steps[config.method] = out["steps"]["train_loss"][0]
    assert steps and all(math.isfinite(v) for v in steps.values()), steps


def test_chapter_36_scales_the_step_size_with_the_batch_size_at_equal_epochs():
    spec = CHAPTERS["36-resnet18-batch-sizes"]
    book = spec.profiles["book"]
    configs = spec.configs("book")
    largest = max(book["batch_sizes"])
    assert {c.batch_size for c in configs} == set(book["batch_sizes"])
    # the sensitivity check (registered before its runs): the smaller batch at the largest batch's step size
    unscaled = [c for c in configs if c.batch_size < largest and c.lr == book["lr"]]
    assert book["sensitivity_seeds"] == [0, 1, 2]
    assert sorted((c.norm, c.seed) for c in unscaled) == sorted(
        (n, s) for n in book["norms"] for s in book["sensitivity_seeds"])
    for c in configs:  # the same sum of step sizes per epoch at every batch size (Goyal et al. 2017)
        if c in unscaled:
            continue
        lr = book["lr"] if c.lr_power > 0 else book["constant_step_lr"]  # the schedule check's constant step
        assert c.lr == pytest.approx(lr * c.batch_size / largest) and c.epochs == book["epochs"]
    assert configs[0].batch_size == largest and configs[0].norm == "bn"  # the gate's reference is computed first
    flat = spec.grid({**book, "lr_scaling": "none"})
    assert {c.lr for c in flat} == {book["lr"], book["constant_step_lr"]}
    with pytest.raises(ValueError, match="lr_scaling must be 'linear' or 'none'"):
        spec.grid({**book, "lr_scaling": "sqrt"})


def test_chapter_36_decays_the_step_size_alike_per_epoch_and_checks_a_constant_one():
    spec = CHAPTERS["36-resnet18-batch-sizes"]
    book = spec.profiles["book"]
    configs = spec.configs("book")
    largest = max(book["batch_sizes"])
    decaying = [c for c in configs if c.lr_power == book["lr_power"]]
    unscaled = [c for c in decaying if c.batch_size < largest and c.lr == book["lr"]]  # the sensitivity check
    main = [c for c in decaying if c not in unscaled]
    assert len(main) == len(book["seeds"]) * len(book["batch_sizes"]) * len(book["norms"])
    assert len(unscaled) == len(book["sensitivity_seeds"]) * (len(book["batch_sizes"]) - 1) * len(book["norms"])
    for c in decaying:  # one epoch of each batch size's own steps: the step size falls alike per epoch
        assert c.lr_decay_steps == round(book["lr_decay_epochs"] * math.ceil(50_000 / c.batch_size))
    # the schedule check: constant step size at the smallest and largest batch size, its own seeds
    check = [c for c in configs if c.lr_power == 0]
    assert {(c.batch_size, c.seed) for c in check} == {
        (b, s) for b in (min(book["batch_sizes"]), max(book["batch_sizes"])) for s in book["constant_step_seeds"]}
    three = spec.grid({**book, "batch_sizes": [8, 32, 128]})  # the middle size gets no constant-step runs
    assert {c.batch_size for c in three if c.lr_power == 0} == {8, 128}
    equal = [c for c in spec.grid({**book, "equal_steps": True}) if c.lr_power > 0]  # counted at the smallest size
    assert {c.lr_decay_steps for c in equal} == {round(book["lr_decay_epochs"] * 50_000 / min(book["batch_sizes"]))}
    assert all(c.lr_power == 0 for c in spec.grid({**book, "lr_power": 0.0}))  # a constant main grid has no check
    assert len(spec.grid({**book, "lr_power": 0.0})) == len(main) + len(unscaled)
    with pytest.raises(ValueError, match="lr_decay_epochs must be a finite number > 0"):
        spec.grid({**book, "lr_decay_epochs": 0})


@pytest.mark.parametrize("name", ["35-cifar-batch-construction", "37-renorm-non-iid"])
def test_the_cifar_chapters_next_scale_chooses_each_methods_step_size_on_a_validation_split(name):
    # registered before any of its runs (issues 34 and 35): every method at every step size of the grid on seed 0,
    # holding out 5,000 training images, at the learnable scale; the book profile chooses none
    spec = experiments.CHAPTERS[name]
    params = experiments.resolve(spec, "next")
    tuning = spec.tune(params)
    assert tuning.widen == 2.0 and tuning.max_widen == 2
    assert all(c.validation_size == 5000 and c.augment and c.lr_schedule == "cosine" and c.epochs == 30
               for c in tuning.runs)
    assert {c.seed for c in tuning.runs} == set(params["tune_seeds"]) == {0}
    assert {c.lr for c in tuning.runs} == set(params["lr_grid"]) and len(params["lr_grid"]) == 3
    methods = {tuning.method(c) for c in spec.grid(params)}
    assert len(tuning.runs) == len(methods) * len(params["lr_grid"]) == len(set(tuning.runs))
    chosen = {m: params["lr_grid"][1] for m in methods}  # each method at its own step size once chosen
    assert {c.lr for c in spec.grid(params, chosen)} == {params["lr_grid"][1]}
    assert spec.tune(experiments.resolve(spec, "book")) is None
