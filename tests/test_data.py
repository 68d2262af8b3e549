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


def test_unshuffled_order_visits_the_labels_in_sequence(mnist):
    labels = mnist[0].labels
    order = make_batch_order("unshuffled", labels, 64, seed=0)
    batches = order.batches(1)
    batch_labels = [labels[b].unique().tolist() for b in batches]
    assert all(len(b) == 64 and len(l) == 1 for b, l in zip(batches, batch_labels))
    sequence = [l[0] for l in batch_labels]
    assert sequence == sorted(sequence) and sequence[0] == 0 and sequence[-1] == 9  # all 0s, then all 1s, ...
    assert len(batches) == len(LabelSortedOrder(labels, 64, seed=0).batches(1))  # the same batches, in label order
    assert not torch.equal(torch.cat(batches), torch.cat(order.batches(2)))  # reshuffled within labels each epoch


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


def test_cifar10_loads_real_splits_standardized():
    from revisit_bn.data import load_cifar10

    train, test = load_cifar10()
    assert train.images.shape == (50000, 3, 32, 32) and test.images.shape == (10000, 3, 32, 32)
    assert torch.bincount(train.labels).tolist() == [5000] * 10
    torch.testing.assert_close(train.images.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-3, rtol=0)
    torch.testing.assert_close(train.images.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-2, rtol=0)


def test_missing_cifar10_offline_names_the_variable(tmp_path):
    from revisit_bn.data import load_cifar10

    with pytest.raises(DatasetNotFoundError, match=DATA_ENV):
        load_cifar10(tmp_path, download=False)


@pytest.mark.parametrize("batch_size,k", [(64, 3), (32, 1), (30, 3)])
def test_label_limited_batches_hold_at_most_k_labels(batch_size, k):
    from revisit_bn.data import LabelLimitedOrder

    labels = torch.arange(2000) % 10
    batches = LabelLimitedOrder(labels, batch_size, k, seed=1).batches(1)
    assert all(len(b) == batch_size and labels[b].unique().numel() <= k for b in batches)
    assert sum(labels[b].unique().numel() == k for b in batches) > len(batches) // 2  # mostly exactly k
    flat = torch.cat(batches)
    assert flat.unique().numel() == flat.numel()


def test_label_pairs_batches_are_pairs_of_one_label():
    from revisit_bn.data import LabelPairsOrder

    labels = torch.arange(1000) % 10
    batches = LabelPairsOrder(labels, 16, 2, seed=2).batches(1)
    assert len(batches) == 1000 // 32 and all(len(b) == 32 for b in batches)
    for b in batches:
        pair_labels = labels[b].view(16, 2)
        assert torch.equal(pair_labels[:, 0], pair_labels[:, 1])
    with pytest.raises(ValueError, match="even"):
        make_batch_order("label_pairs", labels, 31)


def test_scaled_copy_multiplies_each_sample_by_its_own_factor(mnist):
    from revisit_bn.data import TensorSplit, scaled_copy

    split = TensorSplit(mnist[0].images[:500], mnist[0].labels[:500])
    scaled = scaled_copy(split, 0.1, 10.0, seed=0)
    ratio = scaled.images.flatten(1).norm(dim=1) / split.images.flatten(1).norm(dim=1)
    assert ratio.min() >= 0.1 - 1e-5 and ratio.max() <= 10.0 + 1e-4 and ratio.std() > 1
    assert torch.equal(scaled.images, scaled_copy(split, 0.1, 10.0, seed=0).images)
    with pytest.raises(ValueError):
        scaled_copy(split, 0.0, 1.0, seed=0)


def test_figure_datasets_are_fixed_and_shaped():
    from revisit_bn.data import large_variance_classification, three_points

    train, test = three_points()
    assert train.images.shape == (3, 2) and torch.equal(train.labels, test.labels)
    a, _ = large_variance_classification(n=500, seed=0)
    b, _ = large_variance_classification(n=500, seed=0)
    assert torch.equal(a.images, b.images) and a.images.shape == (500, 10)
    norms = a.images.norm(dim=1)
    assert norms.max() / norms.min() > 100  # samples differ in scale by orders of magnitude
    assert 0.3 < a.labels.float().mean() < 0.7


def test_linear_teacher_is_fixed_shaped_and_linearly_labelled():
    from revisit_bn.data import linear_teacher

    (train, test), (train2, _) = linear_teacher(), linear_teacher()
    assert train.images.shape == (1000, 32) and test.images.shape == (1000, 32)
    assert torch.equal(train.images, train2.images) and torch.equal(train.labels, train2.labels)
    assert set(train.labels.tolist()) == set(range(10))
    # One linear map labels both splits: least squares on one-hot targets separates them well.
    onehot = torch.nn.functional.one_hot(train.labels, 10).float()
    w = torch.linalg.lstsq(train.images, onehot).solution
    assert ((test.images @ w).argmax(1) == test.labels).float().mean() > 0.6
    with pytest.raises(ValueError, match="positive"):
        linear_teacher(n=0)


@pytest.mark.parametrize("mkl_branch", ["COMPATIBLE", "AVX2"])
def test_generated_datasets_do_not_depend_on_the_cpus_kernels(mkl_branch):
    # MKL picks its kernels by CPU (MKL_CBWR forces another CPU's choice here); the checksums in
    # the runs' keys must not move with them, or another machine finds no stored run.
    import json
    import os
    import subprocess
    import sys

    from revisit_bn.data import dataset_checksum, synthetic_regression, tensors_checksum

    names = ("large_variance", "mnist_scaled", "linear_teacher")
    script = ("import json; from revisit_bn.data import dataset_checksum, synthetic_regression, tensors_checksum; "
              f"print(json.dumps([dataset_checksum(n) for n in {names!r}] "
              "+ [tensors_checksum(*synthetic_regression(512, 8, 0))]))")
    env = {**os.environ, "MKL_CBWR": mkl_branch}
    other = json.loads(subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                                      check=True, timeout=300).stdout)
    here = [dataset_checksum(n) for n in names] + [tensors_checksum(*synthetic_regression(512, 8, 0))]
    assert other == here, f"MKL_CBWR={mkl_branch} generates other data: {other} vs {here}"


def test_random_crop_flip_is_torchvisions_crop_and_flip_image_by_image():
    # the same draws as ours, applied one image at a time with torchvision's own functions
    from torchvision.transforms.v2 import functional as TF

    from revisit_bn.data import cifar_padding_fill, random_crop_flip

    images = torch.randn(16, 3, 32, 32)
    fill = cifar_padding_fill()
    out = random_crop_flip(images, torch.Generator().manual_seed(5), padding=4, fill=fill)
    gen = torch.Generator().manual_seed(5)
    offsets = torch.randint(0, 9, (16, 2), generator=gen)
    flips = torch.rand(16, generator=gen) < 0.5
    assert 0 < flips.sum() < 16 and len({tuple(o) for o in offsets.tolist()}) > 8  # the draws vary
    for k in range(16):
        padded = TF.pad(images[k] - fill, [4]) + fill  # torchvision pads with one value: shift, pad with 0, shift back
        want = TF.crop(padded, int(offsets[k, 0]), int(offsets[k, 1]), 32, 32)
        want = TF.horizontal_flip(want) if flips[k] else want
        assert torch.allclose(out[k], want, atol=1e-6), k
    # a black pixel of the raw image is what the padding shows
    corner = random_crop_flip(images[:1], torch.Generator().manual_seed(0), padding=32, fill=fill)
    assert out.shape == images.shape and corner.shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match="padding"):
        random_crop_flip(images, torch.Generator(), padding=-1)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        random_crop_flip(images[0], torch.Generator())


def test_cifar_padding_is_a_black_pixel_after_standardization():
    from revisit_bn.data import CIFAR10_MEAN, CIFAR10_STD, _standardize_cifar, cifar_padding_fill

    black = _standardize_cifar(torch.zeros(1, 2, 2, 3, dtype=torch.uint8))
    assert torch.allclose(black[0, :, :1, :1], cifar_padding_fill(), atol=1e-6)
    assert cifar_padding_fill().shape == (3, 1, 1) and len(CIFAR10_MEAN) == len(CIFAR10_STD) == 3


def test_the_validation_split_is_one_fixed_draw_disjoint_from_the_rest():
    from revisit_bn.data import TensorSplit, hold_out

    split = TensorSplit(torch.arange(100, dtype=torch.float32).view(100, 1), torch.arange(100) % 10)
    rest, val = hold_out(split, 20)
    again_rest, again_val = hold_out(split, 20)
    assert len(rest) == 80 and len(val) == 20 and torch.equal(val.images, again_val.images)
    assert set(rest.images.flatten().tolist()).isdisjoint(val.images.flatten().tolist())
    assert sorted(rest.images.flatten().tolist() + val.images.flatten().tolist()) == list(range(100))
    assert rest.images.flatten().tolist() == sorted(rest.images.flatten().tolist())  # the rest keep their order
    for bad in (0, 100, -1, 2.5, True):
        with pytest.raises(ValueError, match="validation_size"):
            hold_out(split, bad)
