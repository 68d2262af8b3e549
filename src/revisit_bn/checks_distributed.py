"""Chapter 39's claims, checked on its data-parallel runs: label skew across workers (Lian & Liu 2019, Section 1;
Hsieh et al. 2020), DDP's rank-0 buffers, cross-worker BN and FN. Each check returns a
:class:`revisit_bn.verdicts.Verdict` by the rules of :mod:`revisit_bn.verdicts`.

Every measure is per seed and averaged over the worker counts K (each seed trains every K and skew), at each
run's last epoch: the *skew cost* of a method is its test accuracy with i.i.d. shards (``labels_per_worker`` 10)
minus with the most skewed shards of the chapter (the smallest ``labels_per_worker``).
"""

from __future__ import annotations

from .names import NORM_LABELS as _LABELS
from .verdicts import BETTER_ACC, Verdict, _gate, _gate_text, _interval_text, effect, gate

# Chapter 39's learnability gate (our choice, registered before its runs): BN with i.i.d. shards reaches this test
# accuracy on MNIST, mean over K. Lower than the book's 98 % MNIST gate (chapter 31: 10 epochs of 60,000 images): the
# chapter trains 2 epochs of 12,000 images, K processes sharing two cores.
DIST_MNIST_GATE = 0.95
IID = 10



def _check_frame(frame) -> None:
    missing = {"method", "workers", "labels_per_worker", "seed", "epoch", "test_acc"} - set(frame.columns)
    if missing:
        raise ValueError(f"the frame of chapter 39's runs lacks columns {sorted(missing)}; use chapter.frame()")
    if IID not in set(frame.labels_per_worker) or len(set(frame.labels_per_worker)) < 2:
        raise ValueError(f"chapter 39's checks need i.i.d. shards (labels_per_worker={IID}) and a skewed setting; the "
                         f"frame has {sorted(set(frame.labels_per_worker))}")


def skewed(frame) -> int:
    """The chapter's most skewed setting: the smallest ``labels_per_worker`` of the frame."""
    return int(frame.labels_per_worker.min())


def per_seed(frame, method: str, skew: int, metric: str = "test_acc"):
    """``metric`` at each run's last epoch for ``method`` at ``labels_per_worker == skew``, averaged over the
    worker counts: a :class:`pandas.Series` indexed by seed.

    Raises:
        ValueError: no such runs (the message names the method and skew), or a seed that lacks a worker count
            another seed has (the mean over K would mix settings).
    """
    _check_frame(frame)
    rows = frame[(frame.method == method) & (frame.labels_per_worker == skew)]
    if rows.empty:
        raise ValueError(f"no runs of method {method!r} at labels_per_worker={skew}; the frame has methods "
                         f"{sorted(set(frame.method))}")
    last = rows[rows.epoch == rows.groupby(["workers", "seed"]).epoch.transform("max")]
    counts = last.groupby("seed").workers.nunique()
    if counts.nunique() != 1:
        raise ValueError(f"{method} at labels_per_worker={skew}: seeds trained different worker counts {dict(counts)}; "
                         "compute the missing runs")
    return last.groupby("seed")[metric].mean().sort_index()


def skew_cost(frame, method: str, metric: str = "test_acc"):
    """Per seed: ``metric`` with i.i.d. shards minus with the most skewed ones, mean over K (:func:`per_seed`)."""
    return per_seed(frame, method, IID, metric) - per_seed(frame, method, skewed(frame), metric)


def _learned(frame, method: str):
    return gate(per_seed(frame, method, IID), DIST_MNIST_GATE)


def _learned_text(frame, method: str) -> tuple[bool, str]:
    g = _learned(frame, method)
    return g.ok, _gate_text(g, DIST_MNIST_GATE, f"{_LABELS[method]}'s test accuracy, i.i.d. shards")


def _room(frame) -> tuple[bool, str]:
    g = gate(skew_cost(frame, "bn"), BETTER_ACC)
    return g.ok, _gate_text(g, BETTER_ACC, "what the skew costs BN in test accuracy")


def _verdict(claim_id: str, values, what: str, scale: str, gates: list[tuple[bool, str]], below: bool = False) -> Verdict:
    mean, low, high, agree, category = effect(values, BETTER_ACC, below=below)
    ok = all(g for g, _ in gates)
    sign = "<" if below else ">"
    return Verdict.of(claim_id, f"{what} {_interval_text(mean, low, high)} ({agree}/{len(values)} seeds {sign} "
                      f"{BETTER_ACC}); " + "; ".join(text for _, text in gates),
                      scale, _gate(ok, category), len(values), _interval_text(mean, low, high))


def check_skew_hurts_bn(frame, scale: str) -> Verdict:
    """Lian & Liu (2019), Section 1: label skew across workers hurts BN. Per seed: BN's skew cost (DDP's default:
    rank 0's running statistics) against :data:`BETTER_ACC`. Gate: BN learned with i.i.d. shards."""
    c = skewed(frame)
    return _verdict("lian-sec1-distributed", skew_cost(frame, "bn"),
                    f"BN test accuracy i.i.d. {per_seed(frame, 'bn', IID).mean():.3f} vs c = {c} "
                    f"{per_seed(frame, 'bn', c).mean():.3f}; skew cost", scale, [_learned_text(frame, "bn")])


def check_bn_hurt_more_than_gn(frame, scale: str) -> Verdict:
    """Hsieh et al. (2020): label skew costs BN more than GroupNorm. Per seed: BN's minus GN's skew cost against
    :data:`BETTER_ACC`. Gates: BN and GN learned with i.i.d. shards."""
    return _verdict("hsieh-bn-skew", skew_cost(frame, "bn") - skew_cost(frame, "gn"),
                    f"skew cost BN {skew_cost(frame, 'bn').mean():+.3f}, GroupNorm {skew_cost(frame, 'gn').mean():+.3f}; "
                    "BN - GroupNorm", scale, [_learned_text(frame, "bn"), _learned_text(frame, "gn")])


def check_gn_recovers(frame, scale: str) -> Verdict:
    """Hsieh et al. (2020): GroupNorm recovers much of what BN loses. Per seed: GN - BN test accuracy with skewed
    shards against :data:`BETTER_ACC`. Gates: BN learned; the skew costs BN at least :data:`BETTER_ACC` (room)."""
    c = skewed(frame)
    return _verdict("hsieh-gn-recovers", per_seed(frame, "gn", c) - per_seed(frame, "bn", c),
                    f"test accuracy at c = {c}: GroupNorm {per_seed(frame, 'gn', c).mean():.3f}, BN "
                    f"{per_seed(frame, 'bn', c).mean():.3f}; GroupNorm - BN", scale, [_learned_text(frame, "bn"), _room(frame)])


def check_rank0_buffers(frame, scale: str) -> Verdict:
    """DDP's default: BN evaluated with rank 0's running statistics against statistics pooled over workers, skewed
    shards. Per seed: pooled - rank 0 test accuracy against :data:`BETTER_ACC`. Gate: BN learned."""
    c = skewed(frame)
    pooled, rank0 = per_seed(frame, "bn", c, "test_acc_pooled"), per_seed(frame, "bn", c)
    return _verdict("ddp-rank0-buffers", pooled - rank0,
                    f"BN test accuracy at c = {c}: rank 0's statistics {rank0.mean():.3f}, pooled {pooled.mean():.3f}; "
                    "pooled - rank 0", scale, [_learned_text(frame, "bn")])


def check_skew_free(frame, scale: str, method: str, claim_id: str) -> Verdict:
    """A method that takes its statistics over every worker (``"sync_bn"``, ``"fn_decoupled"``) has no skew cost:
    per seed, its skew cost below :data:`BETTER_ACC`. Gates: it learned with i.i.d. shards; the skew costs BN at least
    :data:`BETTER_ACC` (otherwise there is no cost to remove)."""
    return _verdict(claim_id, skew_cost(frame, method), f"skew cost of {_LABELS[method]}", scale,
                    [_learned_text(frame, method), _room(frame)], below=True)


def verdicts(frame, scale: str) -> list[Verdict]:
    """Chapter 39's six verdicts, in its order of claims."""
    return [check_skew_hurts_bn(frame, scale), check_bn_hurt_more_than_gn(frame, scale), check_gn_recovers(frame, scale),
            check_rank0_buffers(frame, scale), check_skew_free(frame, scale, "sync_bn", "sync-bn-skew"),
            check_skew_free(frame, scale, "fn_decoupled", "fn-distributed-skew")]
