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


def test_probes_do_not_change_training_and_are_recorded(mnist, results_root):
    from revisit_bn.train import _subset, train_model

    train, test = _subset(mnist[0], 300, 0), _subset(mnist[1], 100, 0)
    config = TrainConfig(**{**SMALL, "epochs": 1}, norm="noisy_bn")
    plain, probed = {}, {}
    m_plain = train_model(config, train, test, progress=False, record=plain)
    m_probed = train_model(config.replace(probe_every=4), train, test, progress=False, record=probed)
    # Same losses at every step: the probes restore weights, buffers and the noise generator.
    assert probed["steps"] == plain["steps"] and m_probed == m_plain
    assert plain["steps"]["step"] == list(range(10)) and plain["probes"] == {}
    rows = probed["probes"]
    assert sorted(set(rows["step"])) == [0, 4, 8]
    assert {"loss_min", "loss_max", "grad_change_max", "effective_beta_smoothness", "ics_l2", "ics_cos", "act_q50"} <= set(rows["quantity"])
    ics_layers = {layer for q, layer in zip(rows["quantity"], rows["layer"]) if q == "ics_l2"}
    assert ics_layers == {"features.0.weight", "features.4.weight", "classifier.1.weight"}


def test_run_stores_steps_and_probes_and_grid_returns_each_table(mnist, results_root):
    config = TrainConfig(**{**SMALL, "epochs": 1, "train_subset": 320}, norm="bn", probe_every=5)
    first = run(config, data=mnist, progress=False)
    second = run(config, data=mnist, progress=False)
    assert second.cached and second.steps == first.steps and second.probes == first.probes
    steps = run_grid(config, progress=False, table="steps", norm=["bn"])
    assert list(steps["step"]) == list(range(10)) and set(steps["norm"]) == {"bn"}
    probes = run_grid(config, progress=False, table="probes", norm=["bn"])
    assert set(probes.columns) >= {"step", "quantity", "layer", "value", "norm", "lr"}
    with pytest.raises(ValueError, match="table"):
        run_grid(config, progress=False, table="epoch", norm=["bn"])


@pytest.mark.parametrize("changes,match", [({"probe_every": 0}, "probe_every"), ({"width": 0}, "width"),
                                           ({"noise_scale_max": 0.5}, "noise_scale_max"), ({"model": "vgg19"}, "unknown model")])
def test_bad_probe_and_model_parameters_raise_a_clear_value_error(changes, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**{**SMALL, **changes})
