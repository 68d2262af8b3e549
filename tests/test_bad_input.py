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
    (CH31, {"lr": -1.0}, "lr must be a positive number"),
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
