"""The `paper` profiles (the papers' scale, meant for a GPU) are well formed: every distinct
model, normalization and batch shape a chapter would run at that scale builds and takes one real
SGD step on the CPU. The configurations come from the chapter specs, not from the notebooks."""

import math

import pytest

from revisit_bn.experiments import CHAPTERS
from revisit_bn.train import TrainConfig

TRAINING = [name for name, spec in CHAPTERS.items() if spec.grid is not None]


def test_every_training_chapter_is_checked():
    assert {"31-mnist-batch-construction", "35-cifar-batch-construction", "14-mcsgd-convergence"} <= set(TRAINING)


@pytest.mark.parametrize("name", TRAINING)
def test_paper_profile_builds_every_model_and_takes_one_step(name):
    steps = {}
    for config in CHAPTERS[name].configs("paper"):
        if isinstance(config, TrainConfig):  # seeds only change the draws
            key = (config.dataset, config.model, config.norm, config.batch_size, config.batch_order, config.norm_group_size)
        else:
            key = (config.method,)
        if key not in steps:
            steps[key] = config.replace(device="cpu").compute(max_steps=1)["steps"]["train_loss"][0]
    assert steps and all(math.isfinite(v) for v in steps.values()), steps


def test_chapter_36_scales_the_step_size_with_the_batch_size_at_equal_epochs():
    spec = CHAPTERS["36-resnet18-batch-sizes"]
    book = spec.profiles["book"]
    configs = spec.configs("book")
    largest = max(book["batch_sizes"])
    assert {c.batch_size for c in configs} == set(book["batch_sizes"])
    for c in configs:  # the same sum of step sizes per epoch at every batch size (Goyal et al. 2017)
        assert c.lr == pytest.approx(book["lr"] * c.batch_size / largest) and c.epochs == book["epochs"]
    assert configs[0].batch_size == largest and configs[0].norm == "bn"  # the gate's reference is computed first
    flat = spec.grid({**book, "lr_scaling": "none"})
    assert {c.lr for c in flat} == {book["lr"]}
    with pytest.raises(ValueError, match="lr_scaling must be 'linear' or 'none'"):
        spec.grid({**book, "lr_scaling": "sqrt"})
