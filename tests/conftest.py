"""Shared fixtures. Real MNIST is read from $REVISIT_BN_DATA (CI: ../shared/data)."""

import pytest

from revisit_bn.data import DatasetNotFoundError, load_mnist


@pytest.fixture(scope="session")
def mnist():
    """Real MNIST (train, test) as tensors; the suite needs it (download or REVISIT_BN_DATA)."""
    try:
        return load_mnist()
    except DatasetNotFoundError as exc:  # fail loudly: a missing dataset is not a skip
        pytest.fail(str(exc))


@pytest.fixture()
def results_root(tmp_path, monkeypatch):
    """A fresh, empty results root for one test."""
    root = tmp_path / "results"
    monkeypatch.setenv("REVISIT_BN_RESULTS", str(root))
    return root
