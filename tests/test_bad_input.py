"""Bad input stops before any work starts, names itself and the fix, and leaves nothing half written.

One table of cases: notebook parameters (through :func:`revisit_bn.experiments.setup`, what a
notebook's setup cell runs), run configurations, the results root, datasets and store files.
"""

import pytest
import torch

from revisit_bn import commands, experiments, results
from revisit_bn.data import DatasetNotFoundError, load_cifar10, load_mnist
from revisit_bn.store import run
from revisit_bn.train import TrainConfig

CH31, CH22, CH34 = "31-mnist-batch-construction", "22-noisy-batchnorm", "34-scaled-mnist-batch-sizes"

PARAMETER_CASES = [
    (CH31, {"seeds": 3}, "seeds must be list"),
    (CH31, {"seeds": "0,1"}, "seeds must be list"),
    (CH31, {"seeds": []}, "seeds must be a non-empty list"),
    (CH31, {"seeds": ["0"]}, "seeds must hold int values"),
    (CH31, {"seeds": [True]}, "seeds must hold int values"),
    (CH31, {"norms": []}, "norms must be a non-empty list"),
    (CH31, {"norms": ["layernorm"]}, "unknown norm 'layernorm'"),
    (CH31, {"sgd_momentum": "0.9"}, "sgd_momentum must be float or int"),
    (CH31, {"sgd_momentum": 1.5}, r"momentum \(SGD\) must lie in \[0, 1\)"),
    (CH31, {"lr": -1.0}, "lr must hold positive finite step sizes"),
    (CH31, {"lr": "fast"}, "lr must be float or int"),
    (CH31, {"epochs": 0}, "epochs must be a positive integer"),
    (CH31, {"epochs": 2.5}, "epochs must be int"),
    (CH31, {"batch_size": -64}, "batch_size must be a positive integer"),
    (CH31, {"device": "mps"}, "cannot train these runs|not available"),
    (CH31, {"device": "meta"}, "cannot train these runs"),
    (CH31, {"device": "tpu"}, "unknown device"),
    (CH31, {"train_subset": 70000}, "train_subset=70,000 is larger than mnist's 60,000"),
    (CH31, {"test_subset": 20000}, "test_subset=20,000 is larger than mnist's 10,000"),
    (CH31, {"profile": "fast"}, "profile must be one of"),
    (CH31, {"recompute": "yes"}, "recompute must be True or False"),
    (CH31, {"colour": "red"}, r"unknown parameter\(s\) colour"),
    (CH34, {"batch_sizes": [0, 16]}, "batch_size must be a positive integer"),
    (CH22, {"noise_levels": [[1.0, 0.5, 0.5]]}, "noise_scale_max"),
    (CH22, {"width": 0}, "width .* must be a positive number"),
    (CH31, {"seeds": [0, 0]}, "seeds lists 0 more than once"),
    (CH34, {"batch_sizes": [16, 16]}, "batch_sizes lists 16 more than once"),
    (CH31, {"norms": ["bn", "fn", "bn"]}, "norms lists 'bn' more than once"),
    (CH31, {"seeds": [2**63]}, r"seed must be an integer in \[0, 2\*\*32\)"),
    ("35-cifar-batch-construction", {"batch_size": 2}, "label_limited batches draw on up to 3 labels"),
    (CH31, {"batch_size": 0}, "batch_size must be a positive integer"),
    # a run of the chapter that would fail is named before its tuning runs train (sweep of 2026-12-07)
    ("38-successors", {"seeds": [0, -1]}, r"seed must be an integer in \[0, 2\*\*32\)"),
    ("39-data-parallel-label-skew", {"workers": [2, 3]}, "gives workers=3 no skewed setting"),
    (CH31, {"lr_grid": [-1.0]}, "lr_grid must hold positive finite step sizes"),
    (CH31, {"lr": float("inf")}, "lr must"),
]


@pytest.mark.parametrize("name,bad,message", PARAMETER_CASES, ids=[f"{n[:2]}-{next(iter(b))}-{i}" for i, (n, b, _) in enumerate(PARAMETER_CASES)])
def test_a_bad_notebook_parameter_stops_setup_naming_it(name, bad, message, results_root):
    namespace = {"profile": "book", "recompute": False, **bad}
    with pytest.raises(ValueError, match=message):
        experiments.setup(name, namespace)
    assert not results_root.exists() or not any(results_root.rglob("*.json*"))  # nothing written


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_refused_before_training():
    with pytest.raises(ValueError, match="CUDA is not available"):
        TrainConfig(experiment="unit", device="cuda")


def test_a_bad_thread_count_is_refused():
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        TrainConfig(experiment="unit", threads=0)


def test_an_unwritable_results_root_fails_before_training_naming_the_variable(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("REVISIT_BN_RESULTS", str(blocker / "results"))
    with pytest.raises(results.StoreError, match="REVISIT_BN_RESULTS"):
        experiments.setup("33-large-variance", {"profile": "ci", "recompute": False})


def test_missing_runs_stop_setup_naming_make_results(results_root):
    with pytest.raises(results.MissingRunsError, match=r"make results PROFILE=paper"):
        experiments.setup("33-large-variance", {"profile": "paper", "recompute": False})


def test_a_truncated_mnist_file_is_named_with_the_fix(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte").write_bytes(b"\x00" * 100)
    with pytest.raises(DatasetNotFoundError, match="train-images-idx3-ubyte is damaged.*Delete it"):
        load_mnist(tmp_path, download=False)


def test_a_corrupt_cifar_npz_is_named_with_the_fix(tmp_path):
    npz = tmp_path / "cifar10" / "cifar10.npz"
    npz.parent.mkdir()
    npz.write_bytes(b"PK\x03\x04 not a zip archive")
    with pytest.raises(DatasetNotFoundError, match="cifar10.npz is damaged.*SHA-256"):
        load_cifar10(tmp_path, download=False)


def test_a_missing_dataset_names_the_variable(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="REVISIT_BN_DATA"):
        load_mnist(tmp_path, download=False)


TINY = dict(experiment="unit", dataset="large_variance", model="logreg", batch_size=100, epochs=1, lr=0.1, momentum=0.0)


def test_a_store_file_that_is_not_a_valid_run_is_reported_and_recomputed(results_root):
    config = TrainConfig(**TINY)
    first = run(config)
    path = first.path
    with open(path, "w") as fh:
        fh.write('{"params": ')  # a half-written file
    with pytest.warns(UserWarning, match=f"{path}.*not a valid run file.*recomputed"):
        again = run(config)
    assert not again.cached and again.metrics == first.metrics
    results.validate(__import__("pathlib").Path(path))


def test_temporary_files_left_by_a_killed_write_are_cleaned_by_make_results(results_root, capsys):
    leftover = results_root / "book" / "unit" / ".abc.123.tmp"
    leftover.parent.mkdir(parents=True)
    leftover.write_text("{")
    commands.compute_missing("book", chapters=["11-bn-objective"])
    assert not leftover.exists() and "removed a temporary file" in capsys.readouterr().out


def test_the_command_line_names_a_damaged_dataset_in_one_message(tmp_path, monkeypatch, capsys):
    # `make status` / `make results` on a machine whose data is damaged: the message with its fix, no traceback
    from revisit_bn import data

    (tmp_path / "MNIST" / "raw").mkdir(parents=True)
    (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"\x00" * 100)
    (tmp_path / "cifar10").mkdir()
    (tmp_path / "cifar10" / "cifar10.npz").write_bytes(b"\x00" * 100)
    monkeypatch.setenv("REVISIT_BN_DATA", str(tmp_path))
    monkeypatch.setattr(data, "_CHECKSUMS", {})  # checksums are cached per process; this one must read the files
    monkeypatch.setattr(data, "_DATA_CACHE", {})  # and so are the datasets, once an earlier test loaded them
    assert commands.main(["status", "--profile", "ci"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "is damaged" in err and "Traceback" not in err, err


def test_make_results_names_an_unknown_experiment_before_any_work(results_root, capsys):
    with pytest.raises(SystemExit) as stopped:
        commands.main(["results", "--profile", "paper", "--chapter", "23-internal-covariate-shift",
                          "--experiment", "santurkar_dlm"])
    assert stopped.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "--experiment santurkar_dlm" in err and "santurkar_dln, santurkar_vgg" in err, err
    assert not (results_root / "paper").exists()  # nothing computed or created


# ------------------------------------------------------------------------------------------------
# Numbers from NumPy pass as the numbers they are; configurations that fail only at compute time are refused early
# ------------------------------------------------------------------------------------------------

def test_numpy_scalars_are_taken_as_python_numbers(results_root):
    import numpy as np

    plain = experiments.setup(CH31, {"profile": "ci", "recompute": False, "lr": 0.02, "seeds": [0, 1]})
    numpy = experiments.setup(CH31, {"profile": "ci", "recompute": False, "lr": np.float64(0.02),
                                     "seeds": [np.int64(0), np.int64(1)]})
    assert numpy.params == plain.params and type(numpy.params["lr"]) is float
    assert numpy.configs == plain.configs
    config = TrainConfig(**{**TINY, "lr": np.float32(0.25), "seed": np.int64(3), "batch_size": np.int32(50)})
    assert type(config.seed) is int and config.lr == 0.25 and type(config.batch_size) is int
    assert config.key_params() == TrainConfig(**{**TINY, "lr": 0.25, "seed": 3, "batch_size": 50}).key_params()


@pytest.mark.parametrize("changes,message", [
    ({"model": "simple"}, "model 'simple' takes images, which dataset 'large_variance' does not hold"),
    ({"dataset": "mnist"}, "model 'logreg' takes feature vectors, which dataset 'mnist' does not hold"),
    ({"seed": 2**63}, r"seed must be an integer in \[0, 2\*\*32\)"),
    ({"batch_order": "label_limited", "batch_size": 2}, "batch_size must be at least 3"),
    ({"batch_order": "label_pairs", "batch_size": 5}, "batch_size must be even"),
])
def test_a_configuration_that_would_fail_at_compute_time_is_refused_when_made(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{**TINY, **changes})


# ------------------------------------------------------------------------------------------------
# Damaged data is an error naming the file, never read silently
# ------------------------------------------------------------------------------------------------

def _mnist_copy(tmp_path):
    import shutil

    from revisit_bn.data import data_root

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        shutil.copy(data_root() / "MNIST" / "raw" / name, raw / name)
    return raw


def test_mnist_images_overwritten_in_place_are_caught_by_their_md5(tmp_path):
    raw = _mnist_copy(tmp_path)
    path = raw / "train-images-idx3-ubyte"
    data = bytearray(path.read_bytes())
    data[100_000:104_096] = b"\xff" * 4096  # 4 KB of one image area, the same size
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetNotFoundError, match="train-images-idx3-ubyte is damaged: its MD5 is not MNIST's"):
        load_mnist(tmp_path, download=False)


def test_an_mnist_label_out_of_range_is_caught(tmp_path, monkeypatch):
    from revisit_bn import data

    raw = _mnist_copy(tmp_path)
    path = raw / "train-labels-idx1-ubyte"
    labels = bytearray(path.read_bytes())
    labels[8] = 200  # the first label
    path.write_bytes(bytes(labels))
    with pytest.raises(DatasetNotFoundError, match="MD5"):
        load_mnist(tmp_path, download=False)
    # and were its MD5 recorded wrongly, the labels' range still names it
    monkeypatch.setitem(data.MNIST_RAW_MD5, "train-labels-idx1-ubyte", data.file_digest(path, "md5"))
    with pytest.raises(DatasetNotFoundError, match="labels .* range over 0..200"):
        load_mnist(tmp_path, download=False)


def test_a_cifar_npz_of_float_images_is_refused_not_divided_again(tmp_path, monkeypatch):
    import numpy as np

    from revisit_bn import data

    npz = tmp_path / "cifar10" / "cifar10.npz"
    npz.parent.mkdir()
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.random((50000, 32, 32, 3), dtype=np.float32), "y_train": np.arange(50000) % 10,
              "x_test": rng.random((10000, 32, 32, 3), dtype=np.float32), "y_test": np.arange(10000) % 10}
    np.savez(npz, **arrays)
    with pytest.raises(DatasetNotFoundError, match="SHA-256"):
        load_cifar10(tmp_path, download=False)
    monkeypatch.setattr(data, "CIFAR10_NPZ_SHA256", data.file_digest(npz))  # past the checksum: the dtype names it
    with pytest.raises(DatasetNotFoundError, match="images of dtype float32, not CIFAR-10's uint8"):
        load_cifar10(tmp_path, download=False)


# ------------------------------------------------------------------------------------------------
# The store's commands refuse to pass on nothing
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [["verify", "--sample", "0"], ["verify", "--sample", "-1"]])
def test_verify_with_a_sample_of_no_runs_is_an_error(argv, capsys):
    with pytest.raises(SystemExit) as stopped:
        commands.main(argv)
    assert stopped.value.code == 2 and "--sample must be a positive number" in capsys.readouterr().err


def test_verify_against_a_misspelt_results_root_is_an_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REVISIT_BN_RESULTS", str(tmp_path / "reslts"))
    assert commands.main(["verify", "--sample", "3"]) == 2
    assert "no stored run of profile 'book'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# Verdict rules refuse degenerate input
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("call,message", [
    (lambda c: c.effect([], 0.0), "no per-seed values"),
    (lambda c: c.effect([float("inf"), 0.2, 0.3], 0.0), "must be finite"),
    (lambda c: c.effect([float("nan"), 0.2], 0.0), "must be finite"),
    (lambda c: c.effect([0.1, 0.2], float("nan")), "threshold must be a finite number"),
    (lambda c: c.effect(["a", "b"], 0.0), "must be numbers"),
    (lambda c: c.seed_interval([]), "no per-seed values"),
    (lambda c: c.gate([], 0.5), "no per-seed values"),
    (lambda c: c.gate([0.9, float("nan")], 0.5), "must be finite"),
    (lambda c: c.combine([]), "at least one part"),
    (lambda c: c.combine(["reproduced", "maybe"]), "unknown part categories"),
])
def test_a_verdict_rule_refuses_degenerate_input(call, message):
    from revisit_bn import claims

    with pytest.raises(ValueError, match=message):
        call(claims)


def test_a_gate_at_its_bound_is_met_despite_the_rounding_of_the_mean():
    from revisit_bn import claims

    assert sum([0.99] * 3) / 3 < 0.99  # what float rounding does to the mean
    assert claims.gate([0.99] * 3, 0.99).ok and not claims.gate([0.98] * 3, 0.99).ok
    assert claims.gate([0.5] * 3, 0.5, below=True).ok and not claims.gate([0.51] * 3, 0.5, below=True).ok


def test_an_unwritable_results_root_is_found_before_training(tmp_path, monkeypatch):
    # run() as a user calls it: the store's folder cannot be made (a file stands where it would go)
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("REVISIT_BN_RESULTS", str(blocker / "results"))
    trained = []
    monkeypatch.setattr(TrainConfig, "compute", lambda self, **kw: trained.append(self))
    with pytest.raises(results.StoreError, match="cannot be written"):
        run(TrainConfig(**TINY), root=results.results_root("book"))
    assert not trained  # found before any training


# ------------------------------------------------------------------------------------------------
# The classes a bad-input sweep of 813 cases found weak, crashing or silent (each a case or a few)
# ------------------------------------------------------------------------------------------------

def _layers():
    from revisit_bn import layers as L

    return L


@pytest.mark.parametrize("make,message", [
    (lambda L: L.BatchRenorm2d(3, r_max=float("inf")), "finite r_max"),
    (lambda L: L.BatchRenorm2d(3, d_max=float("nan")), "finite r_max"),
    (lambda L: L.BatchRenorm2d(3, r_max="3"), "r_max must be a number"),
    (lambda L: L.BatchRenorm2d(3, warmup_steps=2.5), "warmup_steps must be an integer"),
    (lambda L: L.LpNorm2d(3, p=64.0), r"p must be a number in \[1, 16\]"),
    (lambda L: L.LpNorm2d(3, p=float("nan")), r"p must be a number in \[1, 16\]"),
    (lambda L: L.NoisyBatchNorm2d(3, noise_std=True), "noise_std must be a finite number"),
    (lambda L: L.MicroBatch(torch.nn.BatchNorm2d(3), True), "group_size must be an integer"),
    (lambda L: L.MicroBatch(None, 4), "module must be a normalization layer"),
    (lambda L: L.PolynomialMomentum(power="0.5"), "power must be a number"),
    (lambda L: L.ReferenceBatchNorm2d(3, momentum=lambda k: 0.1), "float in \\(0, 1\\] or None"),
    (lambda L: L.FullNorm2d(3, momentum=lambda: 0.1), "momentum, a callable, must take the step"),
    (lambda L: L.FullNorm2d(3, momentum=lambda k: None), "must return a rate in \\(0, 1\\]"),
    (lambda L: L.FullNorm2d(3, eps=float("nan")), "eps must be a positive finite number"),
    (lambda L: L.FullNorm2d(True), "num_features must be an integer"),
])
def test_a_layer_refuses_a_bad_argument_when_made(make, message):
    with pytest.raises(ValueError, match=message):
        make(_layers())


def test_layers_take_numpy_scalars_as_numbers():
    import numpy as np

    L = _layers()
    assert L.FullNorm2d(np.int64(3), momentum=np.float32(0.5)).momentum == pytest.approx(0.5)
    assert L.LpNorm2d(3, p=np.float32(2.0)).p == 2.0 and L.MicroBatch(torch.nn.BatchNorm2d(3), np.int64(4)).group_size == 4
    assert L.BatchRenorm2d(3, r_max=np.float64(2.0), warmup_steps=np.int64(10)).warmup_steps == 10


@pytest.mark.parametrize("layer", ["BatchRenorm1d", "LpNorm1d"])
def test_a_training_batch_of_one_value_per_channel_is_refused_as_batchnorm_refuses_it(layer):
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        torch.nn.BatchNorm1d(3)(torch.randn(1, 3))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        getattr(_layers(), layer)(3)(torch.randn(1, 3))
    assert getattr(_layers(), layer)(3).eval()(torch.randn(1, 3)).shape == (1, 3)  # evaluation: fine


@pytest.mark.parametrize("changes,message", [
    ({"experiment": "."}, "plain folder name"),
    ({"experiment": "a\\b"}, "plain folder name"),
    ({"model": "vgg11", "dataset": "mnist"}, "takes 32x32 images"),
    ({"width": 2.0}, "model 'simple' ignores it"),
    ({"fn_momentum_power": 0.5, "norm": "bn"}, "norm 'bn' ignores it"),
    ({"norm_group_size": 4, "norm": "none"}, "norm 'none' has none"),
    ({"batch_order": "label_sorted", "train_subset": 100, "batch_size": 64}, "need a full batch of every label"),
])
def test_a_setting_the_model_or_data_would_ignore_or_refuse_is_refused_when_made(changes, message):
    base = dict(experiment="unit", train_subset=3000, test_subset=500, epochs=1)
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{**base, **changes})


def test_two_equal_configurations_have_one_key():
    a = TrainConfig(experiment="unit", lr=1, momentum=0)
    b = a.replace(lr=1.0, momentum=0.0)
    assert a == b and results.params_key(a.key_params()) == results.params_key(b.key_params())
    assert type(a.lr) is float


def test_label_limited_batches_too_large_for_the_subset_stop_before_training_on_empty_batches():
    config = TrainConfig(experiment="unit", batch_order="label_limited", batch_size=128, train_subset=200, test_subset=100,
                         epochs=1)
    with pytest.raises(ValueError, match="label_limited batches of 128 take pieces of 43 samples"):
        config.compute()


@pytest.mark.parametrize("call,message", [
    (lambda c: c.Verdict.of("lian-fig3", "m", "s", "reproduced", parts=[c.Part("a", "contradicted")]),
     "disagrees with its parts"),
    (lambda c: c.Verdict.of("lian-fig3", "m", "s", "inconclusive", parts="ab"), "parts must be Part objects"),
    (lambda c: c.Verdict.of("lian-fig3", "m", "s", "inconclusive", seeds=-5), "seeds must be an integer >= 0"),
    (lambda c: c.Verdict.of("lian-fig3", None, "s", "inconclusive"), "measured must be a string"),
    (lambda c: c.effect([0.01, 0.02, 0.03], 0.1, below="False"), "below must be True or False"),
    (lambda c: c.gate([0.99, 0.98], 0.9, below="no"), "below must be True or False"),
    (lambda c: c.combine(["reproduced", "contradicted"], ["False", "False"]), "must be True or False"),
    (lambda c: c.combine("reproduced"), "must be a list"),
    (lambda c: c.Part("a", "reproduced", vacuous="False"), "vacuous must be True or False"),
    (lambda c: c.Part("a", "reproduced", seeds=2.7), "seeds must be an integer"),
    (lambda c: c.Part(None, "reproduced"), "name must be a non-empty string"),
    (lambda c: c.effect({0: 0.5, 1: 0.6, 2: 0.7}, 0.1), "must be a sequence of numbers"),
    (lambda c: c.effect("567", 0.1), "must be a sequence of numbers"),
    (lambda c: c.effect([[1, 2], [3, 4]], 0.1), r"one number per seed \(1-D\)"),
    (lambda c: c.effect([1e308] * 3, 0.0), "overflow"),
    (lambda c: c.seed_interval([0.5, 0.6, 0.7], confidence=0.0), "strictly between 0 and 1"),
    (lambda c: c.family_confidence(2, confidence=1.5), "strictly between 0 and 1"),
    (lambda c: c.gate([0.95], float("nan")), "bound must be a finite number"),
])
def test_a_verdict_input_the_sweep_found_silent_is_refused(call, message):
    from revisit_bn import claims

    with pytest.raises(ValueError, match=message):
        call(claims)


def test_verdict_rules_take_numpy_scalars_as_numbers():
    import numpy as np

    from revisit_bn import claims

    assert claims.effect([0.3, 0.31, 0.29], np.float32(0.1), parts=np.int64(2))[-1] == "reproduced"
    assert claims.family_confidence(np.int64(2)) == pytest.approx(0.975)


@pytest.mark.parametrize("edit,message", [
    (lambda p: p.pop("replay_steps"), "replay_steps is None"),
    (lambda p: p.update(replay_steps="eight"), "not a count"),
    (lambda p: p.update(provenance="cpu"), "provenance is not an object"),
    (lambda p: p["metrics"].update(test_loss=["0.5"]), "metric 'test_loss' is not a list of numbers"),
    (lambda p: p.update(steps=[1.0]), "steps is not an object"),
])
def test_a_run_file_its_readers_could_not_use_is_refused(edit, message, tmp_path):
    import json
    from pathlib import Path

    source = sorted(Path(results.results_root("book"), "large_variance").glob("*.json.gz"))[0]
    payload = {k: v for k, v in json.loads(results.read_run_text(source)).items() if k != "digest"}
    edit(payload)
    path = tmp_path / "large_variance" / source.name
    results.write_json_atomic(path, payload, digest=True)
    with pytest.raises(results.StoreError, match=message):
        results.validate(path)


@pytest.mark.parametrize("bad,message", [
    ({"noise_levels": [[1.0, 2.0]]}, "triples"),
])
def test_chapter_parameters_of_the_wrong_shape_are_named(bad, message, results_root):
    with pytest.raises(ValueError, match=message):
        experiments.setup(CH22, {"profile": "book", "recompute": False, **bad})


def test_setup_names_an_unknown_chapter_and_a_bad_namespace():
    with pytest.raises(ValueError, match="unknown chapter '31'"):
        experiments.setup("31", {})
    with pytest.raises(ValueError, match="namespace must be"):
        experiments.setup("33-large-variance", None)
    import numpy as np

    assert experiments.setup("11-bn-objective", {"profile": "book", "recompute": np.bool_(False)}).recompute is False


@pytest.mark.parametrize("bad,message", [({"lr_decay_epochs": float("inf")}, "finite number > 0"),
                                         ({"batch_sizes": [0, 128]}, "batch_size must be a positive integer")])
def test_chapter_36_names_a_parameter_that_would_crash_its_grid(bad, message, results_root):
    with pytest.raises(ValueError, match=message):
        experiments.setup("36-resnet18-batch-sizes", {"profile": "book", "recompute": False, **bad})


def test_a_dataset_root_that_is_not_a_path_is_named():
    with pytest.raises(ValueError, match="root must be a folder's path"):
        load_mnist(123, download=False)
    with pytest.raises(ValueError, match="root must be a folder's path"):
        load_cifar10(123, download=False)


# --- the second sweep (1,036 cases): silent acceptance in the verdict, ledger and store code ---


def test_verdict_functions_refuse_truth_values_nan_and_reversed_intervals():
    from revisit_bn import verdicts

    with pytest.raises(ValueError, match="not True/False"):
        verdicts.effect([True, True, True], 0.5)
    with pytest.raises(ValueError, match="low bound must not exceed"):
        verdicts.threshold_category(0.5, 0.1, 0.0)
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        verdicts.threshold_category(1.0, 2.0, float("nan"))
    with pytest.raises(ValueError, match="both numbers or both NaN"):
        verdicts.threshold_category(float("nan"), 1.0, 0.0)
    assert verdicts.threshold_category(float("nan"), float("nan"), 0.0) == "inconclusive"  # one seed
    for fn in (verdicts.comparable, verdicts.far_above):
        with pytest.raises(ValueError, match="finite number"):
            fn(float("nan"), 1.0)
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        verdicts.one_more_seed([1.0, 2.0, 3.0], float("nan"))
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        verdicts.flip_note([0.3, 0.4, 0.5], float("nan"))


def test_an_exact_check_is_decided_only_by_true_or_false():
    import numpy as np
    import sympy as sp

    from revisit_bn import claims

    with pytest.raises(ValueError, match=r"printed\['a'\] must be True or False"):
        claims.check_exact("lian-sec4-sampling", {"a": "no"}, "s")
    with pytest.raises(ValueError, match="undecided SymPy query"):
        claims.check_exact("lian-sec4-sampling", {"a": None}, "s")
    ok = claims.check_exact("lian-sec4-sampling", {"a": np.bool_(True), "b": sp.true}, "s")
    assert ok.category == "holds as printed"


def test_the_ledger_refuses_what_is_not_a_record():
    import pandas as pd

    from revisit_bn import ledger, names

    with pytest.raises(ValueError, match="verdict must be a recorded verdict"):
        ledger.reason("nonsense", "")
    with pytest.raises(ValueError, match="verdict must be a recorded verdict"):
        ledger.reason(None, "")
    with pytest.raises(ValueError, match="parts must be the record's parts"):
        ledger.reason("inconclusive", "", parts="abc")
    with pytest.raises(ValueError, match="ledger must be a frame of recorded verdicts"):
        ledger.table_html(None)
    with pytest.raises(ValueError, match="missing columns"):
        ledger.table_html(pd.DataFrame({"claim_id": ["x"]}))
    with pytest.raises(ValueError, match="runs must be a list of run keys"):
        ledger.record(claims_verdict(), "32-batch-size-one", profile="ci", runs="abc")
    with pytest.raises(ValueError, match="frame must be a pandas DataFrame"):
        names.display_frame({"norm": ["bn"]})


def claims_verdict():
    from revisit_bn import verdicts

    return verdicts.Verdict.of("lian-fig1", "m", "s", "inconclusive")


def test_commands_name_a_bad_chapter_list_or_shard_before_any_work():
    from revisit_bn import commands

    with pytest.raises(ValueError, match=r"chapters must be a list of names"):
        commands.compute_missing("ci", chapters="32-batch-size-one")
    with pytest.raises(ValueError, match=r"experiments must be a list of names"):
        commands.compute_missing("ci", experiments="santurkar_dln")
    with pytest.raises(ValueError, match=r"shard must be \(k, n\)"):
        commands.compute_missing("ci", shard="0/4")


def test_a_folder_where_a_run_file_goes_is_an_error_before_training(tmp_path):
    from revisit_bn import store
    from revisit_bn.results import StoreError
    from revisit_bn.train import TrainConfig

    config = TrainConfig(experiment="blocked", dataset="linear_teacher", model="mlp3", norm="none", epochs=1,
                         batch_size=8, train_subset=64, test_subset=32)
    store.store_path(config, tmp_path).mkdir(parents=True)
    with pytest.raises(StoreError, match="nothing was trained"):
        store.run(config, root=tmp_path)


def test_store_helpers_refuse_damaged_counts_and_clean_numpy_nan():
    import numpy as np

    from revisit_bn import results, store

    assert results.finite_or_none([np.float32("nan"), np.array([np.nan, 1.0])]) == [None, [None, 1.0]]
    with pytest.raises(ValueError, match="limit must be a positive integer"):
        results.compact_steps({"steps": {"train_loss": [1.0] * 10}}, limit=0)
    with pytest.raises(results.StoreError, match="steps_every must be a positive integer"):
        results.compact_steps({"steps": {"train_loss": [1.0] * 10}, "steps_every": 0}, limit=5)
    with pytest.raises(results.StoreError, match="replay_steps must be a positive integer"):
        store.replay({"replay_steps": 0, "params": {}, "steps": {"train_loss": []}, "provenance": {}})
    assert results.stored_runs("/nonexistent-folder-of-runs") == []  # a str root as well


def test_setup_names_a_profile_or_filter_of_the_wrong_type():
    from revisit_bn import experiments

    with pytest.raises(ValueError, match="parameter profile must be one of"):
        experiments.setup("32-batch-size-one", {"profile": ["ci"]})
    with pytest.raises(ValueError, match="where must be a dict of run filters"):
        experiments.setup("32-batch-size-one", {"profile": "ci"}, where="experiment")


@pytest.mark.parametrize("call,message", [
    (lambda: _layers().FullNorm2d(3, affine="False"), "affine must be True or False"),
    (lambda: _layers().FullNorm2d(3, track_running_stats="no"), "track_running_stats must be True or False"),
    (lambda: _layers().FullNorm2d(2)(torch.ones(2, 2, 3, 3, dtype=torch.int64)), "normalizes floating-point tensors"),
    (lambda: _layers().LpNorm2d(2)(torch.randn(2, 2, 3, 3, dtype=torch.complex64)), "normalizes floating-point"),
    (lambda: __import__("revisit_bn.models").models.group_count(0), "num_channels must be an integer >= 1"),
    (lambda: __import__("revisit_bn.models").models.norm_layer("gn")(0), "num_channels must be an integer >= 1"),
    (lambda: __import__("revisit_bn.models").models.SimpleNet("bn", widths=(0, 32)), "widths must be one or more"),
    (lambda: __import__("revisit_bn.models").models.vgg("vgg11", __import__("revisit_bn.models").models.norm_layer("bn"),
                                                        width=float("inf")), "width must be a positive finite"),
    (lambda: _subset(-1), r"size \(the subset's samples\) must be an integer >= 1"),
    (lambda: _subset(True), r"size \(the subset's samples\) must be an integer >= 1"),
    (lambda: __import__("revisit_bn.data").data.random_crop_flip(torch.zeros(2, 3, 8, 8), torch.Generator(), 2,
                                                                  float("nan")), "fill must be finite"),
])
def test_bad_sizes_dtypes_and_flags_the_sweep_found_silent_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def _subset(size):
    from revisit_bn.data import TensorSplit, subset

    return subset(TensorSplit(torch.zeros(10, 1, 2, 2), torch.zeros(10, dtype=torch.long)), size, 0)


def test_numpy_integers_are_sizes_and_a_rate_at_step_zero_is_one():
    import numpy as np

    from revisit_bn.data import TensorSplit, hold_out, make_batch_order

    split = TensorSplit(torch.zeros(10, 1, 2, 2), torch.arange(10) % 2)
    assert len(hold_out(split, np.int64(3))[1]) == 3
    order = make_batch_order("shuffled", split.labels, np.int64(2), np.int64(1))
    assert [len(b) for b in order.batches(1)] == [2] * 5
    assert _layers().PolynomialMomentum(0.5)(0) == 1.0 and _layers().PolynomialMomentum(0.5)(4) == 0.5
    with pytest.raises(ValueError, match="step must be an integer"):
        _layers().PolynomialMomentum(0.5)(-1)


@pytest.mark.parametrize("name", ["OnlineNorm2d", "MABN2d"])
def test_a_successor_keeps_its_statistics_on_a_batch_that_is_not_finite(name):
    from revisit_bn import successors

    torch.manual_seed(0)
    layer = getattr(successors, name)(3).train()
    layer(torch.randn(4, 3, 5, 5) + 2.0).sum().backward()
    before = {k: v.clone() for k, v in layer.named_buffers()}
    bad = torch.randn(4, 3, 5, 5, requires_grad=True)
    with torch.no_grad():
        bad[:, 1] = float("nan")
    layer(bad).sum().backward()
    stats = "running_var" if name == "MABN2d" else "running_mean"
    after = dict(layer.named_buffers())
    assert torch.isfinite(after[stats]).all() and after[stats][1] == before[stats][1]  # channel 1 kept
    assert all(torch.isfinite(v.float()).all() for v in after.values())  # no buffer poisoned for later batches


def test_settings_a_run_would_ignore_are_refused_and_a_run_file_of_ragged_metrics_is_named(tmp_path):
    # Two configurations differing only in an ignored setting would be two stored runs of the same numbers.
    import gzip
    import json
    from pathlib import Path

    from revisit_bn import results
    from revisit_bn.train import TrainConfig

    for changes, message in [(dict(norm="bn", noise_std=0.1), "noise_std=0.1: the noise applies to norms"),
                             (dict(lr_decay_steps=50), "lr_decay_steps=50: .* lr_power=0"),
                             (dict(norm_group_size=128, batch_size=64), "norm_group_size=128 is no micro-batching")]:
        with pytest.raises(ValueError, match=message):
            TrainConfig(experiment="x", **changes)
    assert TrainConfig(experiment="x", norm="noisy_bn", noise_std=0.1).noise_std == 0.1  # where it applies: taken
    assert TrainConfig(experiment="x", lr_power=0.5, lr_decay_steps=50).lr_decay_steps == 50
    source = sorted(Path(__file__).parents[1].joinpath("results", "book", "large_variance").glob("*.json.gz"))[0]
    payload = json.loads(gzip.decompress(source.read_bytes()))
    results.validate(source)  # the stored file is valid
    payload["metrics"]["test_acc"].insert(0, 0.5)  # one metric list longer than the others, digest recomputed
    payload["digest"] = results.content_digest(payload)
    copy = tmp_path / "large_variance" / source.name
    copy.parent.mkdir()
    copy.write_bytes(gzip.compress(json.dumps(payload).encode()))
    with pytest.raises(results.StoreError, match="metric lists of unequal lengths"):
        results.validate(copy)

    def damaged(edit, folder="large_variance"):
        changed = json.loads(gzip.decompress(source.read_bytes()))
        edit(changed)
        changed["digest"] = results.content_digest(changed)
        path = tmp_path / "edited" / folder / source.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(json.dumps(changed).encode()))
        return path

    cut = damaged(lambda p: p.update(metrics={k: v[:1] for k, v in p["metrics"].items()}))  # 1 of its epochs
    with pytest.raises(results.StoreError, match="holds metrics for"):
        results.validate(cut)
    late = damaged(lambda p: p.update(status="diverged", diverged_at=10**9,
                                      metrics={**p["metrics"], "test_loss": p["metrics"]["test_loss"][:-1] + [None]}))
    with pytest.raises(results.StoreError, match="past its"):
        results.validate(late)
    with pytest.raises(results.StoreError, match="names experiments"):
        results.validate(damaged(lambda p: None, folder="large_variance_wide"))  # filed in another's folder
    for edit, message in [(lambda p: p.update(tables={"log": {"a": [1, 2], "b": [1]}}), "columns of unequal lengths"),
                          (lambda p: p.update(tables={"log": 5}), "not an object of columns"),
                          (lambda p: p.update(steps_every=3), "stored steps, where steps_every=3"),
                          (lambda p: p.update(steps_every=2, steps_total=None), "steps_total is None"),
                          # the third sweep's two silent cases: a finished run with its metrics gone, a key field that
                          # contradicts the file's name and parameters
                          (lambda p: p.update(metrics={}), "a finished run of 20 epochs with no metrics"),
                          (lambda p: p.update(key="0123456789abcdef"), "says its key is '0123456789abcdef'")]:
        with pytest.raises(results.StoreError, match=message):
            results.validate(damaged(edit))


@pytest.mark.parametrize("name,shape", [("OnlineNorm1d", (6, 3)), ("OnlineNorm2d", (6, 3, 2, 2))])
@pytest.mark.parametrize("layer_scaling", [False, True])
def test_online_norm_leaves_a_sample_that_is_not_finite_out_as_separate_calls_would(name, shape, layer_scaling):
    # The sweep's silent case: a NaN in the last sample made every earlier sample's output NaN (0 x NaN in the
    # closed-form scan). Now the samples before it are untouched, and the ones after it see the estimates that one
    # call per sample gives (the bad sample left out of its channel's estimates).
    from revisit_bn import successors

    torch.manual_seed(0)
    x = torch.randn(*shape)
    x[3, 0] = float("nan")
    x[4, 2] = float("inf")
    batched, single = (getattr(successors, name)(3, layer_scaling=layer_scaling).train() for _ in range(2))
    out = batched(x).detach()
    calls = torch.cat([single(x[i:i + 1]) for i in range(6)]).detach()
    assert torch.isfinite(out[:3]).all()  # before the first bad sample: finite
    assert torch.equal(torch.isfinite(out), torch.isfinite(calls)) and torch.isfinite(out[5]).all()
    torch.testing.assert_close(out[torch.isfinite(out)], calls[torch.isfinite(calls)], rtol=1e-5, atol=1e-6)
    for buffer in ("running_mean", "running_var"):
        assert torch.isfinite(batched.get_buffer(buffer)).all()
        torch.testing.assert_close(batched.get_buffer(buffer), single.get_buffer(buffer), rtol=1e-5, atol=1e-6)


def test_a_bad_run_of_a_tuned_chapter_is_named_before_its_tuning_runs_train(results_root):
    with pytest.raises(ValueError, match="seed must be an integer"):
        experiments.setup("38-successors", {"profile": "ci", "recompute": False, "seeds": [0, -1]})
    assert not results_root.exists() or not any(results_root.rglob("*.json*"))  # no tuning run was trained


def test_check_and_figure_helpers_name_a_frame_they_cannot_use():
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd

    from revisit_bn import checks_distributed, checks_successors, plots, verdicts

    table = pd.DataFrame({"method": ["bn", "gn"], "setting": ["micro2"] * 2, "seed": [0, 0], "test_acc": [0.9, 0.8]})
    cases = [
        (lambda: verdicts.at_most("1e-3"), "non-negative finite size"),
        (lambda: verdicts.accuracy_verdict("wu-precisebn", ["0.1", "0.2"], "w", "s", []), "must be numbers"),
        (lambda: verdicts.accuracy_verdict("wu-precisebn", np.ones((2, 3)), "w", "s", []), "one number per seed"),
        (lambda: verdicts.accuracy_verdict("wu-precisebn", [0.02, 0.03], "w", "s", [True]), "gates must be"),
        (lambda: verdicts.holds_on_means(lambda a, b: a > b, [0.2, 0.3], [0.1, 0.1]), "takes pandas Series"),
        (lambda: verdicts.final_per_seed(table.assign(epoch=1), "test_accuracy"), r"lacks columns \['test_accuracy'\]"),
        (lambda: verdicts.mnist_gate(table.assign(epoch=1)), "lacks columns"),
        (lambda: checks_successors.cells(pd.DataFrame(columns=["norm", "batch_order", "lr", "seed", "epoch", "status",
                                                               "test_acc"]), {}, settings=["micro8"]),
         "are not chapter 38's"),
        (lambda: checks_successors.best_other(table[table.method == "x"], "micro2"), "no method but"),
        (lambda: checks_successors.recommendation(table.assign(setting="micro8")), "are not chapter 38's"),
        (lambda: checks_distributed.skew_text(pd.DataFrame(columns=["workers", "labels_per_worker"])), "no rows"),
        (lambda: plots.curves(pd.DataFrame(), ["test_loss"]), "lacks columns"),
        (lambda: plots.curves(table.assign(epoch=1, norm="bn"), "test_acc"), "metrics must be a non-empty list"),
        (lambda: plots.curves(table.assign(epoch=1, norm="bn")[table.method == "x"], ["test_acc"]), "no rows"),
        (lambda: plots.step_size_sweep(pd.DataFrame(columns=["norm", "lr", "seed", "test_loss"]), "test_loss"),
         "no rows"),
        (lambda: plots.by_setting(table[table.method == "x"]), "no rows"),
        (lambda: plots.by_skew(pd.DataFrame(columns=["method", "workers", "labels_per_worker", "test_acc"])), "no rows"),
        (lambda: plots.skew_last_epoch(pd.DataFrame()), "lacks columns"),
        (lambda: plots.results_table([[1, 2]]), "takes a pandas DataFrame"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
            raise AssertionError(f"no ValueError matching {message!r}")
    plt.close("all")
    # a diverged run stays a verdict: inconclusive, named
    verdict = verdicts.accuracy_verdict("wu-precisebn", [0.02, float("nan")], "w", "s", [])
    assert verdict.category == "inconclusive" and "diverged" in verdict.measured


def test_store_helpers_take_a_str_root_and_name_keys_they_cannot_make(tmp_path):
    import json

    import numpy as np

    from revisit_bn import results

    assert results.params_key({"seed": np.int64(1)}) == results.params_key({"seed": 1})  # NumPy scalars are numbers
    with pytest.raises(ValueError, match="run parameters must be finite numbers"):
        results.params_key({"lr": float("nan")})
    with pytest.raises(ValueError, match="experiment must be a plain folder name"):
        results.result_path(5, {})
    assert results.result_path("e", {"a": 1}, str(tmp_path)) == results.result_path("e", {"a": 1}, tmp_path)
    (tmp_path / ".x.tmp").write_text("")
    assert results.clean_temporary(str(tmp_path)) == [tmp_path / ".x.tmp"]
    index = tmp_path / "validated.json"
    index.write_text(json.dumps({"format": results.ValidationIndex.FORMAT, "codes": {"abc": []}}))
    with pytest.raises(results.StoreError, match="not a validation index"):
        results.ValidationIndex.read(tmp_path)


# ------------------------------------------------------------------------------------------------
# The sweep of 2026-12-07 (84 cases not good): refused when made or before any state changes, named
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("call,message", [
    # a batch of one value per channel normalized with its own statistics: refused as torch.nn.BatchNorm2d refuses it
    (lambda L: L.FullNorm2d(3, track_running_stats=False).train()(torch.randn(1, 3, 1, 1)),
     "more than 1 value per channel"),
    (lambda L: L.FullNorm2d(3, track_running_stats=False).eval()(torch.randn(1, 3, 1, 1)),
     "more than 1 value per channel"),
    (lambda L: L.LpNorm2d(3, p=2, track_running_stats=False).eval()(torch.randn(1, 3, 1, 1)),
     "more than 1 value per channel"),
    (lambda L: L.MicroBatch(torch.nn.BatchNorm1d(3), 4).train()(torch.randn(5, 3)),
     r"MicroBatch\(group_size=4\): a training batch of 5 samples leaves a last micro-batch of 1 sample"),
    # torch's BatchNorm subclass and the noise layer check their arguments as the other layers do
    (lambda L: L.NoisyBatchNorm2d(0), "num_features must be an integer >= 1, got 0"),
    (lambda L: L.NoisyBatchNorm2d(2.5), "num_features must be an integer >= 1, got 2.5"),
    (lambda L: L.NoisyIdentity(0), "num_features must be an integer >= 1, got 0"),
    (lambda L: L.NoisyIdentity(2.5), "num_features must be an integer >= 1, got 2.5"),
    (lambda L: L.NoisyIdentity("4"), "num_features must be an integer >= 1, got '4'"),
    (lambda L: L.NoisyBatchNorm2d(4, eps=-1.0), "eps must be a positive finite number"),
    (lambda L: L.NoisyBatchNorm2d(4, momentum=1.5), r"momentum must lie in \(0, 1\]"),
    (lambda L: L.NoisyBatchNorm2d(4, momentum=lambda k: 0.1), "momentum must be a float in"),
    (lambda L: L.NoisyBatchNorm2d(3).train()(torch.randint(0, 9, (4, 3, 2, 2))), "normalizes floating-point tensors"),
    (lambda L: L.NoisyIdentity(3).train()(torch.randint(0, 9, (4, 3))), "normalizes floating-point tensors"),
    (lambda L: L.FullNorm2d(4, dtype=torch.int64), "dtype must be None or a floating-point torch.dtype"),
    (lambda L: L.NoisyBatchNorm2d(4, dtype=torch.int64), "dtype must be None or a floating-point torch.dtype"),
    (lambda L: L.FullNorm2d(3, momentum=lambda k: __import__("numpy").ones(2)), r"momentum\(1\) gave array"),
])
def test_a_layer_input_the_sweep_found_silent_or_raw_is_refused_and_named(call, message):
    with pytest.raises(ValueError, match=message):
        call(_layers())


def test_layers_refuse_what_batchnorm_refuses_and_take_what_it_takes():
    import numpy as np

    L = _layers()
    for mode in ("train", "eval"):  # torch's BatchNorm without running statistics refuses one value in both modes
        with pytest.raises(ValueError, match="more than 1 value per channel"):
            getattr(torch.nn.BatchNorm2d(3, track_running_stats=False), mode)()(torch.randn(1, 3, 1, 1))
    x = torch.randn(2, 3, 1, 1)  # two values per channel: as BN
    bn = torch.nn.BatchNorm2d(3, track_running_stats=False)
    torch.testing.assert_close(L.FullNorm2d(3, track_running_stats=False).eval()(x), bn(x))
    assert L.FullNorm2d(3).train()(torch.randn(1, 3, 1, 1)).shape == (1, 3, 1, 1)  # FN's estimates: one sample is fine
    assert L.MicroBatch(L.FullNorm2d(3), 4).train()(torch.randn(5, 3, 1, 1)).shape == (5, 3, 1, 1)
    assert L.MicroBatch(torch.nn.BatchNorm2d(3), 4).train()(torch.randn(5, 3, 2, 2)).shape == (5, 3, 2, 2)
    # a schedule's NumPy or 0-dim tensor rate is the number it holds
    x = torch.randn(4, 3, 2, 2)
    plain = L.FullNorm2d(3, momentum=lambda k: 0.5).train()
    for rate in (lambda k: np.float32(0.5), lambda k: torch.tensor(0.5)):
        layer = L.FullNorm2d(3, momentum=rate).train()
        torch.testing.assert_close(layer(x), plain(x), rtol=0, atol=0)
        plain.reset_running_stats()
    assert L.NoisyBatchNorm2d(4, noise_std=np.float32(0.5), momentum=np.float64(0.2)).noise_std == 0.5
    assert L.NoisyIdentity(np.int64(3)).num_features == 3


def test_a_refused_momentum_schedule_leaves_the_layer_as_it_was():
    layer = _layers().FullNorm2d(3, momentum=lambda k: 0.5 if k < 3 else 2.0).train()
    x = torch.randn(4, 3, 2, 2)
    layer(x), layer(x)
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    for _ in range(2):  # a retry meets the same step
        with pytest.raises(ValueError, match=r"momentum\(3\) gave 2.0"):
            layer(x)
    assert all(torch.equal(before[k], v) for k, v in layer.state_dict().items()) and layer.num_batches_tracked == 2


@pytest.mark.parametrize("make,message", [
    (lambda S: S.CenteredConv2d(1, 4, kernel_size=1, bias=False), r"filters of in_channels/groups x kH x kW = 1 weight"),
    (lambda S: S.CenteredConv2d(4, 4, kernel_size=1, groups=4), r"filters of in_channels/groups x kH x kW = 1 weight"),
])
def test_a_centred_convolution_of_one_weight_per_filter_is_refused(make, message):
    from revisit_bn import successors

    with pytest.raises(ValueError, match=message):
        make(successors)
    assert successors.CenteredConv2d(2, 4, kernel_size=1)(torch.randn(2, 2, 3, 3)).shape == (2, 4, 3, 3)  # two weights


@pytest.mark.parametrize("call,message", [
    (lambda M: M.norm_layer("bn", momentum=1.5), r"momentum must be a number in \(0, 1\]"),
    (lambda M: M.norm_layer("noisy_bn", momentum=0.0), r"momentum must be a number in \(0, 1\]"),
    (lambda M: M.norm_layer("fn", fn_momentum_power=2.0), r"fn_momentum_power must be a number in \[0, 1\]"),
    (lambda M: M.norm_layer("noisy_bn", noise=(1.0, 2.0)), "noise must be three numbers"),
    (lambda M: M.group_count(2.5), "num_channels must be an integer >= 1"),
])
def test_the_norm_factory_names_its_own_arguments(call, message):
    import numpy as np

    from revisit_bn import models

    with pytest.raises(ValueError, match=message):
        call(models)
    assert models.group_count(np.int64(64)) == 32 and type(models.group_count(np.int64(12))) is int
    assert models.norm_layer("bn", momentum=np.float64(0.2))(8).momentum == 0.2


def _data():
    from revisit_bn import data

    return data


@pytest.mark.parametrize("call,message", [
    (lambda D: D.TensorSplit(__import__("numpy").zeros((4, 1, 2, 2)), __import__("numpy").zeros(4)),
     "images and labels must be torch tensors, got ndarray and ndarray"),
    (lambda D: D.TensorSplit(torch.zeros(4, 2), torch.zeros(4)), "labels must be a 1-D int64 tensor of class indices"),
    (lambda D: D.TensorSplit(torch.zeros(4, 2), torch.zeros(4, 1, dtype=torch.long)), "labels must be a 1-D int64"),
    (lambda D: D.TensorSplit(torch.zeros(4, 2, dtype=torch.uint8), torch.zeros(4, dtype=torch.long)),
     "images must be a floating-point tensor"),
    (lambda D: D.scaled_copy(D.TensorSplit(torch.randn(20, 1, 4, 4), torch.arange(20) % 10), 1.0, float("inf"), seed=0),
     r"need 0 < low <= high < inf"),
    (lambda D: D.random_crop_flip(torch.randn(2, 1, 8, 8), torch.Generator().manual_seed(0), padding=True),
     "padding must be a non-negative integer, got True"),
    (lambda D: D.random_crop_flip(torch.randn(2, 1, 8, 8), torch.Generator().manual_seed(0), fill=torch.zeros(3, 1, 1)),
     r"fill must be one number or one per channel of shape \(1, 1, 1\)"),
    (lambda D: D.ShuffledOrder(2.5, 4), "num_samples must be an integer >= 1, got 2.5"),
    (lambda D: D.LabelPairsOrder(torch.arange(200) % 10, num_labels=2.5), "num_labels must be an integer >= 1"),
    (lambda D: D.large_variance_classification(n=0), r"n \(samples per split\) must be an integer >= 1"),
    (lambda D: D.large_variance_classification(scale_range=(10.0, 0.1)), "scale_range must be two finite numbers"),
    (lambda D: D.large_variance_classification(scale_range=(0.1, float("inf"))), "scale_range must be two finite"),
])
def test_data_helpers_refuse_what_the_sweep_found_silent_or_crashing(call, message):
    with pytest.raises(ValueError, match=message):
        call(_data())


def test_data_helpers_take_numpy_integers_and_the_per_channel_fill():
    import numpy as np

    D = _data()
    images, g = torch.randn(2, 3, 8, 8), torch.Generator().manual_seed(0)
    same = D.random_crop_flip(images, torch.Generator().manual_seed(0), padding=4, fill=D.cifar_padding_fill())
    torch.testing.assert_close(D.random_crop_flip(images, g, padding=np.int64(4), fill=D.cifar_padding_fill()), same)
    assert D.ShuffledOrder(np.int64(10), 4).num_samples == 10
    assert len(D.LabelPairsOrder(torch.arange(200) % 10, num_labels=np.int64(4)).batches(1)[0]) == 8


@pytest.mark.parametrize("download", [False, True])
def test_a_damaged_mnist_archive_beside_a_missing_file_is_named(tmp_path, monkeypatch, download):
    from torchvision.datasets import MNIST

    monkeypatch.setattr(MNIST, "mirrors", [])  # offline, whatever this machine's network: the download fails at once
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b\x08" + b"\x00" * 50)  # a truncated archive
    with pytest.raises(DatasetNotFoundError, match=r"t10k-labels-idx1-ubyte.gz is damaged: the MD5 .*Delete it"):
        load_mnist(tmp_path, download=download)


@pytest.mark.parametrize("changes,message", [
    (dict(model="mlp3", train_subset=65, batch_size=64),
     r"train_subset=65 in shuffled batches of batch_size=64 leave a last batch of 1 sample .* norm 'bn'"),
    (dict(model="logreg", norm="lp2", validation_size=999, batch_size=100),
     r"large_variance's 2,000 training samples less validation_size=999 .* last batch of 1 sample"),
    (dict(dataset="three_points", model="mlp3", batch_size=1), "batch_size=1 cannot train: norm 'bn'"),
    (dict(model="deep_linear", dataset="linear_teacher", norm="gn", batch_size=1), "batch_size=1 cannot train"),
    (dict(dataset="mnist", model="resnet18", batch_size=1), "batch_size=1 cannot train: .* model 'resnet18'"),
    (dict(model="mlp3", train_subset=640, batch_size=64, norm_group_size=3),
     r"norm_group_size=3 cuts a batch of 64 samples .* \(64 % 3 = 1\)"),
    (dict(model="mlp3", norm="brn", batch_size=64, norm_group_size=1),
     "norm_group_size=1 normalizes every sample alone"),
])
def test_a_run_that_would_normalize_one_value_per_channel_is_refused_when_made(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{**TINY, **changes})


def test_batches_of_one_sample_stay_allowed_where_they_train():
    for changes in (dict(model="mlp3", norm="fn", train_subset=65, batch_size=64),  # FN's estimates take one sample
                    dict(dataset="three_points", model="mlp3", norm="bn_ref", batch_size=1),
                    dict(dataset="mnist", model="simple", batch_size=1),  # 28x28 maps: many values per channel
                    dict(model="mlp3", batch_order="label_sorted", train_subset=65, batch_size=64),  # full batches only
                    dict(model="mlp3", train_subset=66, batch_size=64, norm_group_size=4)):
        TrainConfig(**{**TINY, **changes})


def test_the_table_of_norms_that_cannot_take_one_value_per_channel_is_what_the_models_do():
    import types

    from revisit_bn.models import NORMS, SIMPLE_ONLY_NORMS, build_model
    from revisit_bn.train import ONE_VALUE_NORMS

    for model, shape in (("mlp3", (1, 10)), ("logreg", (1, 10)), ("deep_linear", (1, 32)),
                         ("resnet18", (1, 1, 28, 28)), ("resnet18", (1, 3, 32, 32)), ("resnet18_cifar", (1, 3, 32, 32)),
                         ("simple", (1, 1, 28, 28))):
        for norm in NORMS:
            if norm in SIMPLE_ONLY_NORMS and model != "simple":
                continue
            spec = types.SimpleNamespace(model=model, norm=norm, norm_momentum=0.1, fn_momentum_power=0.0,
                                         norm_group_size=None, brn_warmup_steps=5, brn_ramp_steps=5,
                                         noise_mean_max=1.0, noise_scale_max=2.0, noise_std=0.5,
                                         width=0.125 if model == "resnet18_cifar" else 1.0)
            net = build_model(spec, shape[1], shape[-1] if len(shape) == 4 else 1, 3).train()
            try:
                net(torch.randn(shape))
                refused = False
            except ValueError as exc:
                assert "more than 1 value per" in str(exc), (model, norm, exc)
                refused = True
            assert refused == (norm in ONE_VALUE_NORMS.get(model, ())), (model, norm, shape)


def test_train_model_names_a_split_it_cannot_train_on():
    from revisit_bn.data import TensorSplit
    from revisit_bn.train import train_model

    config = TrainConfig(**TINY)
    images, labels = torch.randn(40, 10), torch.arange(40) % 2
    bad = labels.clone()
    bad[0] = -1
    for train, test, message in (
            (TensorSplit(images, bad), TensorSplit(images, labels),
             r"train_split's labels must be class indices in 0..1"),
            (TensorSplit(images[:0], labels[:0]), TensorSplit(images, labels), "train_split holds no samples"),
            (TensorSplit(images, labels), TensorSplit(images[:0], labels[:0]), "test_split holds no samples"),
            (TensorSplit(images, labels), TensorSplit(images, labels + 1), r"test_split's labels .* got labels 1..2"),
            (TensorSplit(images, labels), (images, labels), "test_split must be a revisit_bn.data.TensorSplit")):
        with pytest.raises(ValueError, match=message):
            train_model(config, train, test, progress=False)


@pytest.mark.parametrize("changes,message", [
    (dict(validation_size=70_000), r"validation_size=70,000 leaves 0 of mnist's 60,000 training samples"),
    (dict(validation_size=55_000), r"train_size must be at most the 5,000 training samples that validation_size=55,000 "
                                   r"leaves of mnist's 60,000, got 12,000; lower train_size or validation_size"),
    (dict(train_size=10**6), r"train_size must be at most the 60,000 training samples of mnist"),
])
def test_a_data_parallel_run_names_the_size_that_does_not_fit(changes, message):
    from revisit_bn.distributed import DistributedConfig

    with pytest.raises(ValueError, match=message):
        DistributedConfig(experiment="unit", device="cpu", **changes)


def test_a_data_parallel_run_takes_numpy_scalars_and_keys_whole_step_sizes_as_floats():
    import numpy as np

    from revisit_bn.distributed import DistributedConfig

    plain = DistributedConfig(experiment="unit", device="cpu", lr=0.05, batch_size=32, seed=1, workers=2,
                              train_size=12_000)
    numpy = DistributedConfig(experiment="unit", device="cpu", lr=np.float64(0.05), batch_size=np.int64(32),
                              seed=np.int64(1), workers=np.int64(2), train_size=np.int64(12_000))
    assert numpy == plain and type(numpy.seed) is int and type(numpy.lr) is float
    assert DistributedConfig(experiment="unit", device="cpu", lr=np.float32(0.25)).lr == 0.25
    whole, point = (DistributedConfig(experiment="unit", device="cpu", lr=v) for v in (1, 1.0))
    assert whole == point and results.params_key(whole.key_params()) == results.params_key(point.key_params())
    assert type(whole.lr) is float and type(point.key_params()["lr"]) is float


# ------------------------------------------------------------------------------------------------
# The second sweep (2026-12-07, 870 inputs, 96.0 % good): its numeric-module cases
# ------------------------------------------------------------------------------------------------

def test_train_config_refuses_a_rate_its_norm_ignores_and_names_a_bad_group_size():
    from revisit_bn.train import TrainConfig

    with pytest.raises(ValueError, match="norm_momentum=0.5: .*'brn'"):
        TrainConfig(experiment="x", norm="brn", norm_momentum=0.5)
    with pytest.raises(ValueError, match="the cosine schedule ignores it"):
        TrainConfig(experiment="x", lr_schedule="cosine", lr_decay_steps=50)
    with pytest.raises(ValueError, match="norm_group_size must be a positive integer"):
        TrainConfig(experiment="x", norm_group_size="4")
    assert TrainConfig(experiment="x", norm="fn", norm_momentum=0.5).norm_momentum == 0.5  # where it applies


@pytest.mark.parametrize("p", [12.0, 16.0])
def test_lp_norm_of_a_large_order_stays_finite_and_exact_in_float32(p):
    from revisit_bn.layers import LpNorm2d

    torch.manual_seed(0)
    dead = torch.randn(8, 3, 4, 4).relu()
    dead[:, 1] = 0.0  # a dead ReLU channel: eps^p underflowed to 0 and gave 0/0
    out = LpNorm2d(3, p=p).train()(dead)
    assert torch.isfinite(out).all() and (out[:, 1] == 0).all()
    big = 300 * torch.randn(8, 3, 4, 4)  # |x|^p overflowed float32 and every output was 0
    layer, reference = LpNorm2d(3, p=p).train(), LpNorm2d(3, p=p).double().train()
    torch.testing.assert_close(layer(big).double(), reference(big.double()), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.running_scale.double(), reference.running_scale, rtol=1e-5, atol=1e-5)


def test_fn_and_batch_renorm_return_a_half_input_in_its_dtype_in_training_as_in_evaluation():
    from revisit_bn.layers import BatchRenorm2d, FullNorm2d

    x = torch.randn(4, 3, 2, 2).half()
    for layer in (FullNorm2d(3, dtype=torch.float64), BatchRenorm2d(3, dtype=torch.float64)):
        assert layer.train()(x).dtype == torch.float16 and layer.eval()(x).dtype == torch.float16


def test_layer_arguments_of_several_values_or_a_bad_device_are_named():
    import numpy as np

    from revisit_bn.layers import FullNorm2d, LpNorm2d, NoisyBatchNorm2d

    for make, name in [(lambda: LpNorm2d(3, p=torch.tensor([1.0, 2.0])), "p"),
                       (lambda: FullNorm2d(3, momentum=torch.tensor([0.1, 0.2])), "momentum"),
                       (lambda: FullNorm2d(3, eps=np.array([1e-5, 1e-5])), "eps")]:
        with pytest.raises(ValueError, match=f"{name} must be one number"):
            make()
    for make in (lambda: FullNorm2d(3, device="gpu0"), lambda: NoisyBatchNorm2d(3, device="gpu0")):
        with pytest.raises(ValueError, match="device must be None or a torch device"):
            make()
    assert NoisyBatchNorm2d(3, noise_std=torch.tensor(0.25)).noise_std == 0.25  # a 0-dim tensor is a number


def test_micro_batch_finds_a_batch_norm_inside_a_container_before_any_statistics_change():
    import numpy as np
    from torch import nn

    from revisit_bn.layers import MicroBatch

    wrapped = MicroBatch(nn.Sequential(nn.BatchNorm1d(3), nn.ReLU()), 4).train()
    with pytest.raises(ValueError, match="last micro-batch of 1 sample"):
        wrapped(torch.randn(5, 3))
    assert int(wrapped.module[0].num_batches_tracked) == 0  # no micro-batch was normalized first
    with pytest.raises(ValueError, match="takes a torch tensor"):
        wrapped(np.zeros((4, 3), dtype=np.float32))


@pytest.mark.parametrize("name,shape", [("OnlineNorm1d", (6, 3)), ("OnlineNorm2d", (6, 3, 2, 2))])
def test_online_norm_backward_leaves_a_sample_that_is_not_finite_out_as_separate_calls_would(name, shape):
    from revisit_bn import successors

    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    x[2, 1] = float("nan")
    batched, single = (getattr(successors, name)(3, layer_scaling=False).train() for _ in range(2))
    whole = x.clone().requires_grad_()
    out = batched(whole)
    out[torch.isfinite(out)].sum().backward()
    grads = []
    for i in range(x.shape[0]):
        part = x[i:i + 1].clone().requires_grad_()
        y = single(part)
        y[torch.isfinite(y)].sum().backward()
        grads.append(part.grad)
    calls = torch.cat(grads)
    assert torch.equal(torch.isfinite(whole.grad), torch.isfinite(calls)) and torch.isfinite(whole.grad[3:]).all()
    torch.testing.assert_close(whole.grad[torch.isfinite(whole.grad)], calls[torch.isfinite(calls)])
    for buffer in ("grad_error_y", "grad_error_mean"):
        torch.testing.assert_close(batched.get_buffer(buffer), single.get_buffer(buffer))
