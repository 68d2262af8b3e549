"""Data-parallel runs on torch.distributed: equivalence with single-process training on the union of the
workers' batches (real gloo processes, world size 2, float64), label-skewed shards, and a run through torchrun."""

import copy
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from revisit_bn import results as results_mod
from revisit_bn.distributed import (
    CrossWorkerBatchNorm2d,
    CrossWorkerFullNorm2d,
    DistributedConfig,
    average_fn_terms,
    convert,
    label_skew_shards,
    pool_running_stats,
    worker_labels,
)
from revisit_bn.layers import FullNorm2d
from revisit_bn.models import SimpleNet
from revisit_bn.distributed_batch import compute_many
from revisit_bn.store import config_from_params, replay, run, run_many

WORLD = 2
TOL = {"rtol": 1e-10, "atol": 1e-10}
F64 = torch.float64


def _net(norm: str) -> nn.Module:
    torch.manual_seed(0)
    return SimpleNet(norm, in_channels=1, num_classes=3, widths=(3, 4), image_size=8).to(F64)


def _batches(steps: int, per_worker: int):
    """The union batches of each step (``WORLD * per_worker`` samples); worker k takes rows k*per_worker..."""
    gen = torch.Generator().manual_seed(1)
    return [(torch.randn(WORLD * per_worker, 1, 8, 8, generator=gen, dtype=F64) * 2 + 0.5,
             torch.randint(0, 3, (WORLD * per_worker,), generator=gen)) for _ in range(steps)]


def _train_ddp(model, rank, batches, per_worker, broadcast_buffers=False):
    """Three SGD steps with momentum, each worker on its rows of the union batch."""
    ddp = DistributedDataParallel(model, broadcast_buffers=broadcast_buffers)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
    rows = slice(rank * per_worker, (rank + 1) * per_worker)
    for x, y in batches:
        loss = nn.functional.cross_entropy(ddp(x[rows]), y[rows])
        opt.zero_grad()
        loss.backward()
        average_fn_terms(model)
        opt.step()
    return model


def _train_single(model, batches):
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for x, y in batches:
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _worker(rank: int, folder: str) -> None:
    """Every check's distributed half, in one process group (one spawn: a few seconds)."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=WORLD)
    out = {}
    # 1. cross-worker BN layer: forward, input and parameter gradients, running statistics
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2 * WORLD, 3, 4, 5, generator=gen, dtype=F64) * 3 + 1
    upstream = torch.randn(x.shape, generator=gen, dtype=F64)
    layer = CrossWorkerBatchNorm2d(3, momentum=0.3).to(F64)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([0.5, 1.5, 2.0], dtype=F64))
        layer.bias.copy_(torch.tensor([0.1, -0.2, 0.3], dtype=F64))
    rows = slice(rank * 2, rank * 2 + 2)
    xr = x[rows].clone().requires_grad_(True)
    y = layer(xr)
    (y * upstream[rows]).sum().backward()
    out["bn"] = dict(y=y.detach(), grad=xr.grad, weight_grad=layer.weight.grad, bias_grad=layer.bias.grad,
                     running_mean=layer.running_mean.clone(), running_var=layer.running_var.clone())
    # 2. DDP of a network without batch statistics (GroupNorm, none): three steps
    batches = _batches(3, per_worker=4)
    for norm in ("gn", "none"):
        out[f"ddp_{norm}"] = _state(_train_ddp(_net(norm), rank, batches, 4))
    # 3. cross-worker BN and FN (decoupled) inside DDP: three steps
    out["ddp_sync_bn"] = _state(_train_ddp(convert(_net("bn"), "sync_bn"), rank, batches, 4))
    out["ddp_fn"] = _state(_train_ddp(convert(_net("fn_decoupled"), "fn_decoupled"), rank, batches, 4))
    # 4. local BN under DDP's default buffer broadcast and without it
    out["bn_broadcast"] = _state(_train_ddp(_net("bn"), rank, batches, 4, broadcast_buffers=True))
    local = _train_ddp(_net("bn"), rank, batches, 4, broadcast_buffers=False)
    out["bn_local"] = _state(local)
    pooled = copy.deepcopy(local)
    pool_running_stats(pooled)
    out["bn_pooled"] = _state(pooled)
    torch.save(out, os.path.join(folder, f"rank{rank}.pt"))
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(str(folder),), nprocs=WORLD, join=True)
    return [torch.load(folder / f"rank{r}.pt") for r in range(WORLD)]


def test_cross_worker_bn_equals_bn_on_the_concatenated_batch(ranks):
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(2 * WORLD, 3, 4, 5, generator=gen, dtype=F64) * 3 + 1).requires_grad_(True)
    upstream = torch.randn(x.shape, generator=gen, dtype=F64)
    bn = nn.BatchNorm2d(3, momentum=0.3).to(F64)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, 1.5, 2.0], dtype=F64))
        bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3], dtype=F64))
    y = bn(x)
    (y * upstream).sum().backward()
    got = [r["bn"] for r in ranks]
    torch.testing.assert_close(torch.cat([g["y"] for g in got]), y.detach(), **TOL)
    torch.testing.assert_close(torch.cat([g["grad"] for g in got]), x.grad, **TOL)
    # each worker's parameter gradient is its loss's share; DDP sums (averages) them
    torch.testing.assert_close(sum(g["weight_grad"] for g in got), bn.weight.grad, **TOL)
    torch.testing.assert_close(sum(g["bias_grad"] for g in got), bn.bias.grad, **TOL)
    for g in got:  # every worker keeps the union's running statistics
        torch.testing.assert_close(g["running_mean"], bn.running_mean, **TOL)
        torch.testing.assert_close(g["running_var"], bn.running_var, **TOL)


@pytest.mark.parametrize("norm", ["gn", "none"])
def test_ddp_steps_equal_single_process_steps_on_the_union(ranks, norm):
    single = _state(_train_single(_net(norm), _batches(3, per_worker=4)))
    for r in ranks:
        for name, value in single.items():
            torch.testing.assert_close(r[f"ddp_{norm}"][name], value, **TOL)


def test_cross_worker_bn_network_trains_as_bn_on_the_union(ranks):
    single = _state(_train_single(_net("bn"), _batches(3, per_worker=4)))
    for r in ranks:
        assert single.keys() == r["ddp_sync_bn"].keys()
        for name, value in single.items():
            torch.testing.assert_close(r["ddp_sync_bn"][name], value, **TOL)


def test_cross_worker_fn_trains_as_fn_on_the_union(ranks):
    single = _state(_train_single(_net("fn_decoupled"), _batches(3, per_worker=4)))
    for r in ranks:
        for name, value in single.items():
            got = r["ddp_fn"][name]
            if "running_grad" in name:  # in units of the local loss: K times the union's
                value = value * WORLD
            torch.testing.assert_close(got, value, **TOL)
    assert any("running_grad_mean" in name and single[name].abs().max() > 0 for name in single)


def test_local_bn_rank0_buffers_are_what_ddp_broadcast_leaves(ranks):
    """Training with broadcast_buffers=False gives DDP's default parameters and rank 0's buffers; the other
    ranks' own buffers differ (their shards), which the pooled evaluation reads."""
    for name, value in ranks[0]["bn_broadcast"].items():
        torch.testing.assert_close(ranks[0]["bn_local"][name], value, rtol=0, atol=0)
    for r in ranks:
        for name in r["bn_local"]:
            if "running" not in name:
                torch.testing.assert_close(r["bn_local"][name], ranks[0]["bn_broadcast"][name], rtol=0, atol=0)
    own = [name for name in ranks[1]["bn_local"] if name.endswith("running_mean")]
    assert own and all(not torch.equal(ranks[1]["bn_local"][n], ranks[0]["bn_local"][n]) for n in own)


def test_pooled_buffers_keep_the_spread_of_the_workers_means(ranks):
    for name in ranks[0]["bn_local"]:
        if not name.endswith("running_mean"):
            continue
        var_name = name.replace("running_mean", "running_var")
        means = torch.stack([r["bn_local"][name] for r in ranks])
        variances = torch.stack([r["bn_local"][var_name] for r in ranks])
        mean = means.mean(0)
        var = (variances + means.square()).mean(0) - mean.square()  # law of total variance
        for r in ranks:
            torch.testing.assert_close(r["bn_pooled"][name], mean, **TOL)
            torch.testing.assert_close(r["bn_pooled"][var_name], var, **TOL)
        assert torch.all(var >= variances.mean(0) - 1e-12)


def test_layers_without_a_process_group_are_the_single_process_ones():
    x = torch.randn(4, 3, 2, 2, dtype=F64)
    bn, cross = nn.BatchNorm2d(3).to(F64), CrossWorkerBatchNorm2d(3).to(F64)
    torch.testing.assert_close(cross(x), bn(x), **TOL)
    fn, cross_fn = FullNorm2d(3, backward="decoupled").to(F64), CrossWorkerFullNorm2d(3, backward="decoupled").to(F64)
    torch.testing.assert_close(cross_fn(x), fn(x), **TOL)


# --- shards ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("workers,c", [(2, 5), (2, 10), (4, 5), (5, 2), (8, 5), (10, 1)])
def test_label_skew_shards(workers, c):
    labels = torch.arange(10).repeat_interleave(500)[torch.randperm(5000, generator=torch.Generator().manual_seed(0))]
    size = 20 * workers * c
    shards = label_skew_shards(labels, workers, c, size, seed=3)
    assert [len(s) for s in shards] == [size // workers] * workers
    held = worker_labels(workers, c)
    for shard, mine in zip(shards, held):
        assert sorted(set(labels[shard].tolist())) == sorted(mine)
        assert np.unique(np.bincount(labels[shard].numpy(), minlength=10)[list(mine)]).size == 1
    union = torch.cat(shards)
    assert len(torch.unique(union)) == len(union)  # no sample on two workers
    assert np.unique(np.bincount(labels[union].numpy(), minlength=10)).size == 1  # the union is balanced
    assert all(torch.equal(a, b) for a, b in zip(shards, label_skew_shards(labels, workers, c, size, seed=3)))
    assert not all(torch.equal(a, b) for a, b in zip(shards, label_skew_shards(labels, workers, c, size, seed=4)))


@pytest.mark.parametrize("workers,c,message", [(4, 3, "use one of \\[5, 10\\]"), (0, 5, "workers must be"),
                                                 (2, 11, "at most the 10"), (2, True, "labels_per_worker must be")])
def test_worker_labels_refuses_unbalanced_or_bad_skews(workers, c, message):
    with pytest.raises(ValueError, match=message):
        worker_labels(workers, c)


def test_shards_refuse_sizes_that_do_not_fit():
    labels = torch.arange(10).repeat_interleave(30)
    with pytest.raises(ValueError, match="multiple of workers x labels_per_worker = 10"):
        label_skew_shards(labels, 2, 5, 105, seed=0)
    with pytest.raises(ValueError, match="label 0 has 30 samples"):
        label_skew_shards(labels, 2, 5, 1000, seed=0)


@pytest.mark.parametrize("change,message", [
    (dict(method="brn"), "unknown method"), (dict(backend="mpi"), "unknown backend"),
    (dict(workers=4, labels_per_worker=3, train_size=1200), "use one of"),
    (dict(train_size=1001), "train_size must be"), (dict(train_size=10**6), "train_size must be"),
    (dict(batch_size=5000, train_size=2000), "larger than a worker's shard"),
    (dict(model="vgg11"), "32x32"), (dict(width=0.5), "width"), (dict(lr=0.0), "lr must"),
    (dict(backend="nccl", device="cpu"), "GPUs"), (dict(test_subset=20_000), "test_subset"),
])
def test_config_refuses_bad_settings(change, message):
    with pytest.raises(ValueError, match=message):
        DistributedConfig("dp", **change)


def test_key_names_workers_skew_backend_and_both_codes():
    key = DistributedConfig("dp", workers=4, labels_per_worker=5).key_params()
    assert key["workers"] == 4 and key["labels_per_worker"] == 5 and key["backend"] == "gloo"
    assert "device" not in key and key["code"] and key["distributed_code"]
    assert results_mod.code_of(key).count("+") == 1
    assert config_from_params(key) == DistributedConfig("dp", workers=4, labels_per_worker=5)


def test_a_run_through_torchrun_is_stored_and_replays_with_its_workers(tmp_path):
    """make results' path: torchrun starts K workers; the stored run replays (same arithmetic: exactly)."""
    config = DistributedConfig("dp_test", method="sync_bn", workers=2, labels_per_worker=5, train_size=400,
                               batch_size=20, epochs=2, test_subset=200, validation_size=500, lr=0.02)
    result = run(config, root=tmp_path)
    assert result.status == "ok" and not result.cached
    assert result.metrics["epoch"] == [1, 2] and len(result.steps["train_loss"]) == 20
    assert set(result.metrics) >= {"train_loss", "test_acc", "val_loss", "val_acc"}
    assert 0.0 <= result.metrics["test_acc"][-1] <= 1.0 and result.metrics["train_loss"][1] < result.metrics["train_loss"][0]
    assert result.provenance["device"] == "cpu"
    payload = results_mod.validate(result.path)
    stored, replayed, match = replay(payload)
    assert match and stored == replayed[: len(stored)]
    assert run(config, root=tmp_path).cached


def test_runs_sharing_a_launch_are_the_runs_of_their_own_launches(tmp_path):
    """A notebook's ci runs share torchrun launches (store.run_many); each run's numbers are its own launch's.
    Also the "bn" path: the pooled statistics' collective inside training, one value of each metric an epoch."""
    config = DistributedConfig("dp_test", method="bn", workers=2, labels_per_worker=5, train_size=200,
                               batch_size=20, epochs=2, test_subset=200, validation_size=500, lr=0.02)
    gn = config.replace(method="gn")
    shared = run_many([config, gn, config], root=tmp_path)  # one launch for both runs
    assert [r.cached for r in shared] == [False, False, False] and shared[0] is shared[2]
    assert shared[0].provenance["seconds"] > 0
    out = config.compute()  # a launch of its own
    assert shared[0].steps["train_loss"] == out["steps"]["train_loss"] and shared[0].metrics == out["metrics"]
    stored, replayed, match = replay(results_mod.validate(shared[1].path))  # gn, replayed in a launch of its own
    assert match and stored == replayed[: len(stored)]
    with pytest.raises(ValueError, match="share workers, backend and threads"):
        compute_many([config, config.replace(workers=5, labels_per_worker=2, batch_size=24)])
    metrics = out["metrics"]
    assert set(metrics) == {"epoch", "train_loss", "test_loss", "test_acc", "val_loss", "val_acc", "test_loss_pooled",
                            "test_acc_pooled", "val_loss_pooled", "val_acc_pooled"}
    assert all(len(values) == 2 for values in metrics.values())
    assert all(0.0 <= a <= 1.0 for a in metrics["test_acc_pooled"] + metrics["val_acc"])
    assert len(out["steps"]["train_loss"]) == 10


def test_an_nccl_run_is_rebuilt_for_the_gpus_it_needs():
    key = DistributedConfig("dp", backend="nccl").key_params()
    rebuilt = config_from_params(key)  # replay's default device is "cpu", which NCCL cannot use
    assert rebuilt.backend == "nccl" and rebuilt.device == "auto"
    if torch.cuda.device_count() < 2:
        with pytest.raises(RuntimeError, match="one GPU per worker"):
            rebuilt.compute(max_steps=1)
