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
