"""The training loop on real MNIST subsets, its validation and its cache."""

import dataclasses
import json

import pytest
import torch

from pathlib import Path

from revisit_bn import results
from revisit_bn.data import dataset_checksum, subset
from revisit_bn.store import run
from revisit_bn.train import TrainConfig, resolve_device

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
def test_run_records_every_metric_per_epoch_and_learns_on_mnist(norm, mnist, results_root):
    result = run(TrainConfig(**SMALL, norm=norm))
    m = result.metrics
    assert m["epoch"] == [1, 2] and result.status == "ok"
    for name in ("train_loss", "train_eval_loss", "train_eval_acc", "test_loss", "test_acc"):
        assert len(m[name]) == 2 and all(v == v for v in m[name])
    assert m["test_acc"][-1] > 0.6  # far above chance (0.1) after 2 epochs on 1,500 digits
    assert m["train_loss"][1] < m["train_loss"][0]
    assert not result.cached


# Cache behaviour needs no real data: the synthetic large-variance set trains in a fraction of a second.
TINY = dict(experiment="unit", dataset="large_variance", model="logreg", batch_size=100, epochs=2, lr=0.1, momentum=0.0)


def test_rerun_reads_the_store_and_recompute_reproduces_it(results_root):
    config = TrainConfig(**TINY, norm="fn")
    first = run(config)
    files = list((results_root / "book" / "unit").glob("*.json.gz"))
    assert len(files) == 1
    stored = json.loads(results.read_run_text(files[0]))
    assert stored["params"]["norm"] == "fn" and stored["provenance"]["device"] == "cpu"
    assert stored["provenance"]["cpu"] == results.cpu_arithmetic()  # the arithmetic an exact replay needs
    assert stored["params"]["threads"] == 2 and stored["params"]["data"] == dataset_checksum("large_variance")
    second = run(config)
    assert second.cached and second.metrics == first.metrics
    third = run(config, recompute=True)
    assert not third.cached and third.metrics == first.metrics  # deterministic on one machine


def test_different_parameters_and_thread_counts_get_different_keys(results_root):
    a = run(TrainConfig(**TINY, norm="bn"))
    b = run(TrainConfig(**TINY, norm="bn", seed=1))
    c = run(TrainConfig(**TINY, norm="bn", threads=1))
    assert a.metrics != b.metrics
    assert len({a.path, b.path, c.path}) == 3
    assert len(list((results_root / "book" / "unit").glob("*.json.gz"))) == 3


def test_thread_count_is_set_while_training_and_restored(monkeypatch):
    seen = []
    config = TrainConfig(**TINY, norm="bn", threads=1)
    before = torch.get_num_threads()
    monkeypatch.setattr("revisit_bn.train.seed_everything", lambda seed: seen.append(torch.get_num_threads()))
    config.compute(max_steps=1)
    assert seen == [1] and torch.get_num_threads() == before


def test_a_diverged_run_is_stored_with_its_status_and_step_as_strict_json(results_root):
    result = run(TrainConfig(**{**TINY, "lr": 1e6}, norm="bn"))
    assert result.status == "diverged" and result.diverged_at is not None
    assert result.status_text.startswith("diverged at step")
    text = results.read_run_text(Path(result.path))
    assert "NaN" not in text and "Infinity" not in text
    json.loads(text, parse_constant=lambda name: pytest.fail(f"non-strict JSON constant {name}"))
    frame = result.to_frame()
    assert set(frame.status) == {result.status_text}


def test_probes_do_not_change_training_and_are_recorded(mnist, results_root):
    from revisit_bn.train import train_model

    train, test = subset(mnist[0], 300, 0), subset(mnist[1], 100, 0)
    config = TrainConfig(**{**SMALL, "epochs": 1}, norm="noisy_bn")
    plain, probed = {}, {}
    m_plain = train_model(config, train, test, progress=False, record=plain)
    m_probed = train_model(config.replace(probe_every=4), train, test, progress=False, record=probed)
    # Same losses at every step: the probes restore weights, buffers and the noise generator.
    assert probed["steps"] == plain["steps"] and m_probed == m_plain
    assert len(plain["steps"]["train_loss"]) == 10 and plain["tables"] == {}
    rows = probed["tables"]["probes"]
    assert sorted(set(rows["step"])) == [0, 4, 8]
    assert {"loss_min", "loss_max", "grad_change_max", "effective_beta_smoothness", "ics_l2", "ics_cos", "act_q50"} <= set(rows["quantity"])
    ics_layers = {layer for q, layer in zip(rows["quantity"], rows["layer"]) if q == "ics_l2"}
    assert ics_layers == {"features.0.weight", "features.4.weight", "classifier.1.weight"}


def test_run_stores_steps_and_probes_and_reads_them_back(mnist, results_root):
    config = TrainConfig(**{**SMALL, "epochs": 1, "train_subset": 320}, norm="bn", probe_every=5)
    first = run(config)
    second = run(config)
    assert second.cached and second.steps == first.steps and second.tables == first.tables
    assert list(second.steps_frame()["step"]) == list(range(10))
    probes = second.table_frame("probes")
    assert set(probes.columns) >= {"step", "quantity", "layer", "value", "status"}
    with pytest.raises(KeyError, match="probes"):
        second.table_frame("trace")


@pytest.mark.parametrize("changes,match", [({"probe_every": 0}, "probe_every"), ({"width": 0}, "width"),
                                           ({"noise_scale_max": 0.5}, "noise_scale_max"), ({"model": "vgg19"}, "unknown model")])
def test_bad_probe_and_model_parameters_raise_a_clear_value_error(changes, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**{**SMALL, **changes})


def test_decaying_step_size_follows_the_schedule_and_validates(monkeypatch):
    from revisit_bn.train import TrainConfig

    seen = []
    real = torch.optim.SGD.step

    def spy(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return real(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", spy)
    config = TrainConfig(experiment="unit", dataset="mnist", epochs=1, train_subset=256, test_subset=64, batch_size=64,
                         lr=0.1, lr_power=1.0, lr_decay_steps=2, threads=1)
    config.compute()
    # what the schedule is for: the first step at lr, and with lr_power 1 the step size halved after lr_decay_steps
    # steps and a third of lr after twice as many; falling at every step
    assert len(seen) == 4 and seen[0] == pytest.approx(0.1) and seen[2] == pytest.approx(0.05)
    assert all(a > b for a, b in zip(seen, seen[1:]))
    seen.clear()
    # lr_power 0 with the default lr_decay_steps (a constant step size has no pace: another value is refused)
    TrainConfig(**{**dataclasses.asdict(config), "device": "cpu", "lr_power": 0.0, "lr_decay_steps": 1000}).compute(max_steps=3)
    assert seen == [0.1, 0.1, 0.1]  # lr_power 0: constant
    for bad in (dict(lr_power=-0.1), dict(lr_power="fast"), dict(lr_decay_steps=0)):
        with pytest.raises(ValueError, match="lr_"):
            config.replace(**bad)


def test_mcsgd_with_the_decoupled_estimator_is_a_method_of_its_own():
    from revisit_bn.train import MCSGD_METHODS, McsgdConfig

    assert "mcsgd_decoupled" in MCSGD_METHODS
    same, decoupled = (McsgdConfig(method=m, steps=200, num_logs=4, batch_size=2).compute() for m in ("mcsgd", "mcsgd_decoupled"))
    # the same forward pass and logs; only the FN layers' backward differs, so the runs part after the first step
    assert same["tables"]["log"]["quantity"] == decoupled["tables"]["log"]["quantity"]
    assert same["steps"]["train_loss"][0] == decoupled["steps"]["train_loss"][0]  # the forward pass is the same
    assert same["steps"]["train_loss"][-1] != decoupled["steps"]["train_loss"][-1]  # the gradients differ
    with pytest.raises(ValueError, match="unknown method"):
        McsgdConfig(method="decoupled")


def test_fields_added_later_leave_the_key_at_their_default_and_enter_it_otherwise():
    base = TrainConfig(**TINY)
    assert "augment" not in base.key_params() and "validation_size" not in base.key_params()
    assert base.replace(validation_size=100).key_params()["validation_size"] == 100
    assert results.params_key(base.key_params()) != results.params_key(base.replace(validation_size=100).key_params())
    mnist = TrainConfig(**SMALL)
    assert mnist.replace(augment=True).key_params()["augment"] is True
    with pytest.raises(ValueError, match="augment crops and flips images"):
        base.replace(augment=True)
    with pytest.raises(ValueError, match="augment must be True or False"):
        mnist.replace(augment=1)
    with pytest.raises(ValueError, match="validation_size"):
        mnist.replace(validation_size=59_000, train_subset=1500)  # 1,000 left: fewer than the subset
    with pytest.raises(ValueError, match="validation_size"):
        mnist.replace(validation_size=0)


def test_a_run_with_a_validation_split_trains_without_it_and_records_its_metrics(mnist, results_root):
    result = run(TrainConfig(**SMALL, validation_size=2_000))
    m = result.metrics
    assert len(m["val_loss"]) == len(m["val_acc"]) == 2 and m["val_acc"][-1] > 0.6
    plain = TrainConfig(**SMALL).compute(max_steps=2)["steps"]["train_loss"]
    held = TrainConfig(**SMALL, validation_size=2_000).compute(max_steps=2)["steps"]["train_loss"]
    assert plain != held  # another training set: the 2,000 held-out images are not trained on
    train, _, val = TrainConfig(**SMALL, validation_size=2_000).splits()
    assert len(train) == 1_500 and len(val) == 2_000


def test_augmentation_changes_the_batches_not_the_evaluation(mnist):
    plain = TrainConfig(**SMALL)
    augmented = plain.replace(augment=True)
    a = augmented.compute(max_steps=3)["steps"]["train_loss"]
    assert a == augmented.compute(max_steps=3)["steps"]["train_loss"]  # seeded
    assert a[0] != plain.compute(max_steps=3)["steps"]["train_loss"][0]  # the first batch is cropped and flipped


def test_a_cosine_schedule_starts_at_lr_halves_midway_and_ends_near_zero(monkeypatch):
    seen = []
    real = torch.optim.SGD.step

    def spy(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return real(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", spy)
    config = TrainConfig(**{**TINY, "batch_size": 100, "epochs": 4}, lr_schedule="cosine")  # 20 steps an epoch
    config.compute()
    assert len(seen) == 80 and seen[0] == pytest.approx(0.1)
    assert seen[40] == pytest.approx(0.05) and seen[-1] < 1e-3 * 0.1 * 2
    assert all(a >= b for a, b in zip(seen, seen[1:]))
    with pytest.raises(ValueError, match="unknown lr_schedule"):
        config.replace(lr_schedule="step")
    with pytest.raises(ValueError, match="lr_power must be 0"):
        config.replace(lr_power=1.0)
    assert "lr_schedule" not in TrainConfig(**TINY).key_params() and config.key_params()["lr_schedule"] == "cosine"


def test_training_gives_the_caller_back_its_torch_settings():
    torch.use_deterministic_algorithms(False)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    TrainConfig(**TINY).compute()
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.equal(torch.rand(3), expected)  # the caller's random stream goes on where it was
    from revisit_bn.train import McsgdConfig

    torch.manual_seed(123)
    McsgdConfig(method="sgd", steps=20, num_logs=2).compute()
    assert torch.equal(torch.rand(3), expected) and not torch.are_deterministic_algorithms_enabled()


def test_precise_bn_evaluates_with_population_statistics_and_trains_as_without_it(mnist):
    from revisit_bn.train import precise_statistics

    plain = TrainConfig(**SMALL, validation_size=2_000)
    precise = plain.replace(precise_bn=True)
    a, b = plain.compute(), precise.compute()
    assert a["steps"] == b["steps"]  # the same training, step for step
    for name in ("train_loss", "train_eval_loss", "test_loss", "test_acc", "val_loss", "val_acc"):
        assert a["metrics"][name] == b["metrics"][name], name
    m = b["metrics"]
    assert set(m) - set(a["metrics"]) == {"test_loss_precise", "test_acc_precise", "val_loss_precise", "val_acc_precise"}
    assert len(m["test_acc_precise"]) == 2 and m["test_acc_precise"][-1] > 0.6
    assert m["test_loss_precise"] != m["test_loss"]  # other statistics, other numbers
    assert "precise_bn" not in plain.key_params() and precise.key_params()["precise_bn"] is True
    # the statistics: the plain mean over the batches of each batch's mean and unbiased variance; state restored
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.BatchNorm2d(2))
    images = torch.randn(12, 2, 3, 3) * 3 + 1
    split = type("Split", (), {"images": images, "__len__": lambda self: 12})()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    saved = precise_statistics(net, split, 4, seed=0, epoch=1)
    order = torch.randperm(12, generator=torch.Generator().manual_seed(0 * 1_000_003 + 1))
    batches = [images[i] for i in order.split(4)]
    assert torch.allclose(net[0].running_mean, torch.stack([x.mean((0, 2, 3)) for x in batches]).mean(0), atol=1e-6)
    assert torch.allclose(net[0].running_var, torch.stack([x.var((0, 2, 3)) for x in batches]).mean(0), atol=1e-5)
    assert net[0].momentum == 0.1
    assert all(torch.equal(saved[k], before[k]) for k in before)
    with pytest.raises(ValueError, match="batch_size must lie in"):
        precise_statistics(net, split, 13, seed=0, epoch=1)
    with pytest.raises(ValueError, match="precise_bn recomputes BatchNorm"):
        plain.replace(norm="gn", precise_bn=True)
    with pytest.raises(ValueError, match="precise_bn must be True or False"):
        plain.replace(precise_bn=1)
    with pytest.raises(ValueError, match="runs in SimpleNet only"):
        TrainConfig(experiment="unit", dataset="cifar10", model="vgg11", norm="mabn")
