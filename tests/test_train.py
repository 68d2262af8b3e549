"""The training loop on real MNIST subsets, its validation and its cache."""

import json

import pytest
import torch

from revisit_bn.train import TrainConfig, resolve_device, run, run_grid

SMALL = dict(experiment="unit", train_subset=1500, test_subset=500, epochs=2, batch_size=32, lr=0.05, momentum=0.0)


@pytest.mark.parametrize(
    "changes,match",
    [
        ({"batch_size": -64}, "batch_size"),
        ({"batch_size": 0}, "batch_size"),
        ({"norm": "layernorm"}, "unknown norm"),
        ({"batch_order": "sorted"}, "unknown batch_order"),
        ({"epochs": 0}, "epochs"),
        ({"lr": 0.0}, "lr"),
        ({"momentum": 1.0}, "momentum"),
        ({"norm_momentum": 0.0}, "norm_momentum"),
        ({"device": "tpu"}, "device"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_parameters_raise_a_clear_value_error(changes, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**{**SMALL, **changes})


def test_device_auto_is_cpu_without_cuda():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("norm", ["bn", "fn"])
def test_run_records_every_metric_per_epoch_and_learns(norm, mnist, results_root):
    result = run(TrainConfig(**SMALL, norm=norm), data=mnist, progress=False)
    m = result.metrics
    assert m["epoch"] == [1, 2]
    for name in ("train_loss", "train_eval_loss", "train_eval_acc", "test_loss", "test_acc"):
        assert len(m[name]) == 2 and all(v == v for v in m[name])
    assert m["test_acc"][-1] > 0.6  # far above chance (0.1) after 2 epochs on 1,500 digits
    assert m["train_loss"][1] < m["train_loss"][0]
    assert not result.cached


def test_rerun_reads_the_cache_and_recompute_reproduces_it(mnist, results_root):
    config = TrainConfig(**SMALL, norm="fn")
    first = run(config, data=mnist, progress=False)
    files = list((results_root / "unit").glob("*.json"))
    assert len(files) == 1
    stored = json.loads(files[0].read_text())
    assert stored["params"]["norm"] == "fn" and stored["provenance"]["device"] == "cpu"
    second = run(config, data=mnist, progress=False)
    assert second.cached and second.metrics == first.metrics
    third = run(config, data=mnist, progress=False, recompute=True)
    assert not third.cached and third.metrics == first.metrics  # deterministic on one machine


def test_different_parameters_get_different_results(mnist, results_root):
    a = run(TrainConfig(**SMALL, norm="bn"), data=mnist, progress=False)
    b = run(TrainConfig(**SMALL, norm="bn", seed=1), data=mnist, progress=False)
    assert a.metrics != b.metrics
    assert len(list((results_root / "unit").glob("*.json"))) == 2


def test_run_grid_returns_one_row_per_run_and_epoch(mnist, results_root, monkeypatch):
    monkeypatch.setattr("revisit_bn.train.load_dataset", lambda name: mnist)
    frame = run_grid(TrainConfig(**{**SMALL, "epochs": 1}), progress=False, norm=["bn", "fn"], batch_order=["shuffled", "label_sorted"])
    assert len(frame) == 4
    assert set(zip(frame.norm, frame.batch_order)) == {("bn", "shuffled"), ("fn", "shuffled"), ("bn", "label_sorted"), ("fn", "label_sorted")}
