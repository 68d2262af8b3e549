"""Datasets and batch orders."""

import pytest
import torch

from revisit_bn.data import (
    DATA_ENV,
    DatasetNotFoundError,
    LabelSortedOrder,
    ShuffledOrder,
    data_root,
    load_mnist,
    make_batch_order,
)


def test_mnist_loads_real_splits_standardized(mnist):
    train, test = mnist
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert train.images.dtype == torch.float32 and train.labels.dtype == torch.int64
    assert torch.bincount(train.labels).tolist()[:3] == [5923, 6742, 5958]  # MNIST's class counts
    assert abs(train.images.mean().item()) < 1e-3 and abs(train.images.std().item() - 1) < 1e-2


def test_missing_dataset_offline_names_the_variable(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=DATA_ENV):
        load_mnist(tmp_path / "empty", download=False)


def test_data_root_follows_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert data_root() == tmp_path.resolve()
    monkeypatch.delenv(DATA_ENV)
    assert data_root().name == "data"


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_shuffled_order_visits_every_sample_once_per_epoch(batch_size):
    order = ShuffledOrder(100, batch_size, seed=3)
    batches = order.batches(1)
    assert sorted(torch.cat(batches).tolist()) == list(range(100))
    assert all(len(b) == batch_size for b in batches[:-1])


def test_shuffled_order_is_seeded_and_new_each_epoch():
    a, b = ShuffledOrder(50, 10, seed=1), ShuffledOrder(50, 10, seed=1)
    assert torch.equal(torch.cat(a.batches(2)), torch.cat(b.batches(2)))
    assert not torch.equal(torch.cat(a.batches(1)), torch.cat(a.batches(2)))
    assert not torch.equal(torch.cat(a.batches(1)), torch.cat(ShuffledOrder(50, 10, seed=2).batches(1)))


def test_label_sorted_batches_hold_one_label_each(mnist):
    labels = mnist[0].labels
    order = LabelSortedOrder(labels, 64, seed=0)
    batches = order.batches(1)
    counts = torch.bincount(labels)
    assert len(batches) == int((counts // 64).sum())
    assert all(len(b) == 64 and labels[b].unique().numel() == 1 for b in batches)
    flat = torch.cat(batches)
    assert flat.unique().numel() == flat.numel()  # no sample twice in an epoch
    # The batches of different labels are interleaved, not visited label after label.
    first_labels = [labels[b[0]].item() for b in batches[:20]]
    assert len(set(first_labels)) > 3


def test_label_sorted_order_is_seeded_and_new_each_epoch():
    labels = torch.arange(40) % 4
    a, b = LabelSortedOrder(labels, 5, seed=9), LabelSortedOrder(labels, 5, seed=9)
    assert all(torch.equal(x, y) for x, y in zip(a.batches(1), b.batches(1)))
    assert not all(torch.equal(x, y) for x, y in zip(a.batches(1), a.batches(2)))


@pytest.mark.parametrize("bad", [0, -64, 2.5, True])
def test_bad_batch_size_raises_value_error(bad):
    with pytest.raises(ValueError, match="batch_size"):
        make_batch_order("shuffled", torch.zeros(10, dtype=torch.long), bad)


def test_label_sorted_needs_a_full_batch_of_every_label():
    with pytest.raises(ValueError, match="at least batch_size"):
        LabelSortedOrder(torch.tensor([0, 0, 0, 1]), 2)


def test_unknown_order_lists_the_known_ones():
    with pytest.raises(ValueError, match="label_sorted"):
        make_batch_order("sorted", torch.zeros(10, dtype=torch.long), 2)
