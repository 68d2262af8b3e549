"""Chapter 39's claims, checked on its data-parallel runs: label skew across workers (Lian & Liu 2019, Section 1;
Hsieh et al. 2020), DDP's rank-0 buffers, cross-worker BN and FN. Each check returns a
:class:`revisit_bn.verdicts.Verdict` by the rules of :mod:`revisit_bn.verdicts`.

Every measure is per seed and averaged over the worker counts K (each seed trains every K and skew), at each
run's last epoch: the *skew cost* of a method at K is its test accuracy with i.i.d. shards (``labels_per_worker``
10) minus with the most skewed shards the chapter trains at that K (its smallest ``labels_per_worker``: 5 for K in
{2, 4, 8}, where K c must be a multiple of 10).
"""

from __future__ import annotations

from .names import NORM_LABELS as _LABELS
from .verdicts import BETTER_ACC, Verdict, accuracy_verdict, gated, require_columns
from .verdicts import learnability_gate as _learnability_gate

# Chapter 39's learnability gate on MNIST (our choice, registered before its runs): BN with i.i.d. shards reaches
# this test accuracy, mean over K (on CIFAR-10, the book's CIFAR_GATE). Lower than the book's 98 % MNIST gate
# (chapter 31: 10 epochs of 60,000 images): the chapter trains 2 epochs of 12,000 images, K processes sharing two
# cores.
DIST_MNIST_GATE = 0.95
IID = 10



def _check_frame(frame) -> None:
    missing = {"method", "workers", "labels_per_worker", "seed", "epoch", "test_acc"} - set(frame.columns)
    if missing:
        raise ValueError(f"the frame of chapter 39's runs lacks columns {sorted(missing)}; use chapter.frame()")
    if IID not in set(frame.labels_per_worker) or len(set(frame.labels_per_worker)) < 2:
        raise ValueError(f"chapter 39's checks need i.i.d. shards (labels_per_worker={IID}) and a skewed setting; the "
                         f"frame has {sorted(set(frame.labels_per_worker))}")


def skewed(frame) -> dict[int, int]:
    """The most skewed setting at each worker count: ``{K: smallest labels_per_worker}``.

    Raises:
        ValueError: a frame without those columns or rows (use ``chapter.frame()``).
    """
    require_columns(frame, ["workers", "labels_per_worker"], "skewed")
    return {int(k): int(c) for k, c in frame.groupby("workers").labels_per_worker.min().items()}


def skew_text(frame) -> str:
    """``"c = 5"``, or ``"c = 5 (K = 2, 4), 2 (K = 5)"`` where the most skewed setting differs by K."""
    by_c: dict[int, list[int]] = {}
    for k, c in skewed(frame).items():
        by_c.setdefault(c, []).append(k)
    if len(by_c) == 1:
        return f"c = {next(iter(by_c))}"
    return "c = " + ", ".join(f"{c} (K = {', '.join(map(str, ks))})" for c, ks in sorted(by_c.items()))


def per_seed_k(frame, method: str, skew: int | str, metric: str = "test_acc"):
    """``metric`` at each run's last epoch for ``method`` at ``labels_per_worker == skew`` (``"skewed"``: each
    K's most skewed setting, :func:`skewed`): a :class:`pandas.Series` indexed by ``(seed, workers)``.

    Raises:
        ValueError: no such runs (the message names the method and skew).
    """
    _check_frame(frame)
    if skew == "skewed":
        chosen = frame.labels_per_worker == frame.workers.map(skewed(frame))
    else:
        chosen = frame.labels_per_worker == skew
    rows = frame[(frame.method == method) & chosen]
    if rows.empty:
        raise ValueError(f"no runs of method {method!r} at labels_per_worker={skew}; the frame has methods "
                         f"{sorted(set(frame.method))}")
    last = rows[rows.epoch == rows.groupby(["workers", "seed"]).epoch.transform("max")]
    return last.set_index(["seed", "workers"])[metric].sort_index()


def paired(*series):
    """The :func:`per_seed_k` series of a difference, checked to cover the same ``(seed, K)`` pairs.

    Raises:
        ValueError: they cover different pairs (a run missing from one side; the message names them), so that a
            mean over K never mixes settings.
    """
    first = set(series[0].index)
    for other in series[1:]:
        if set(other.index) != first:
            raise ValueError(f"the two sides of a difference trained different (seed, K) pairs: "
                             f"{sorted(first ^ set(other.index))} on one side only; compute the missing runs")
    return series


def over_k(values):
    """Per seed: the mean over the worker counts of a :func:`per_seed_k` series (or a difference of them); NaN for
    a seed with a diverged run.

    Raises:
        ValueError: seeds that trained different worker counts.
    """
    counts = values.groupby(level="seed").size()
    if counts.nunique() != 1:
        raise ValueError(f"seeds trained different worker counts {dict(counts)}; compute the missing runs")
    # a diverged run (NaN) makes its seed's mean NaN, not a mean over the other worker counts
    return values.groupby(level="seed").agg(lambda v: v.mean(skipna=False)).sort_index()


def per_seed(frame, method: str, skew: int | str, metric: str = "test_acc"):
    """:func:`per_seed_k` averaged over the worker counts: a :class:`pandas.Series` indexed by seed."""
    return over_k(per_seed_k(frame, method, skew, metric))


def skew_cost(frame, method: str, metric: str = "test_acc"):
    """Per seed: ``metric`` with i.i.d. shards minus with each K's most skewed ones, paired by seed and K, then the
    mean over K."""
    iid, skew = paired(per_seed_k(frame, method, IID, metric), per_seed_k(frame, method, "skewed", metric))
    return over_k(iid - skew)


def difference(frame, a: tuple[str, int | str, str], b: tuple[str, int | str, str]):
    """Per seed: ``a - b``, each a ``(method, skew, metric)`` of :func:`per_seed_k`, paired by seed and K, then the
    mean over K."""
    left, right = paired(per_seed_k(frame, *a), per_seed_k(frame, *b))
    return over_k(left - right)


def learnability_gate(dataset: str) -> float:
    """The chapter's gate on the i.i.d. test accuracy: :data:`DIST_MNIST_GATE` on MNIST, the book's
    :data:`revisit_bn.verdicts.CIFAR_GATE` on CIFAR-10.

    Raises:
        ValueError: another dataset.
    """
    return _learnability_gate(dataset, DIST_MNIST_GATE, "chapter 39")


def _learned_text(frame, method: str, dataset: str) -> tuple[bool, str]:
    return gated(per_seed(frame, method, IID), learnability_gate(dataset),
                 f"{_LABELS[method]}'s test accuracy, i.i.d. shards")


def _room(frame) -> tuple[bool, str]:
    return gated(skew_cost(frame, "bn"), BETTER_ACC, "what the skew costs BN in test accuracy")


def check_skew_hurts_bn(frame, scale: str, dataset: str = "mnist") -> Verdict:
    """Lian & Liu (2019), Section 1: label skew across workers hurts BN. Per seed: BN's skew cost (DDP's default:
    rank 0's running statistics) against :data:`BETTER_ACC`. Gate: BN learned with i.i.d. shards."""
    return accuracy_verdict("lian-sec1-distributed", skew_cost(frame, "bn"),
                            f"BN test accuracy i.i.d. {per_seed(frame, 'bn', IID).mean():.3f} vs {skew_text(frame)} "
                            f"{per_seed(frame, 'bn', 'skewed').mean():.3f}; skew cost", scale,
                            [_learned_text(frame, "bn", dataset)])


def check_bn_hurt_more_than_gn(frame, scale: str, dataset: str = "mnist") -> Verdict:
    """Hsieh et al. (2020): label skew costs BN more than GroupNorm. Per seed: BN's minus GN's skew cost against
    :data:`BETTER_ACC`. Gates: BN and GN learned with i.i.d. shards."""
    bn = paired(per_seed_k(frame, "bn", IID), per_seed_k(frame, "bn", "skewed"))
    gn = paired(per_seed_k(frame, "gn", IID), per_seed_k(frame, "gn", "skewed"), bn[0])
    return accuracy_verdict("hsieh-bn-skew", over_k((bn[0] - bn[1]) - (gn[0] - gn[1])),
                            f"skew cost BN {skew_cost(frame, 'bn').mean():+.3f}, GroupNorm "
                            f"{skew_cost(frame, 'gn').mean():+.3f}; BN - GroupNorm", scale,
                            [_learned_text(frame, "bn", dataset), _learned_text(frame, "gn", dataset)])


def check_gn_recovers(frame, scale: str, dataset: str = "mnist") -> Verdict:
    """Hsieh et al. (2020): GroupNorm recovers much of what BN loses. Per seed: GN - BN test accuracy with skewed
    shards against :data:`BETTER_ACC`. Gates: BN learned; the skew costs BN at least :data:`BETTER_ACC` (room)."""
    gn, bn = per_seed(frame, "gn", "skewed"), per_seed(frame, "bn", "skewed")
    values = difference(frame, ("gn", "skewed", "test_acc"), ("bn", "skewed", "test_acc"))
    return accuracy_verdict("hsieh-gn-recovers", values,
                            f"test accuracy at {skew_text(frame)}: GroupNorm {gn.mean():.3f}, BN {bn.mean():.3f}; "
                            "GroupNorm - BN", scale, [_learned_text(frame, "bn", dataset), _room(frame)])


def check_rank0_buffers(frame, scale: str, dataset: str = "mnist") -> Verdict:
    """DDP's default: BN evaluated with rank 0's running statistics against statistics pooled over workers, skewed
    shards. Per seed: pooled - rank 0 test accuracy against :data:`BETTER_ACC`. Gate: BN learned."""
    pooled, rank0 = per_seed(frame, "bn", "skewed", "test_acc_pooled"), per_seed(frame, "bn", "skewed")
    values = difference(frame, ("bn", "skewed", "test_acc_pooled"), ("bn", "skewed", "test_acc"))
    return accuracy_verdict("ddp-rank0-buffers", values,
                            f"BN test accuracy at {skew_text(frame)}: rank 0's statistics {rank0.mean():.3f}, pooled "
                            f"{pooled.mean():.3f}; pooled - rank 0", scale, [_learned_text(frame, "bn", dataset)])


def check_skew_free(frame, scale: str, method: str, claim_id: str, dataset: str = "mnist") -> Verdict:
    """A method that takes its statistics over every worker (``"sync_bn"``, ``"fn_decoupled"``) has no skew cost:
    per seed, its skew cost below :data:`BETTER_ACC`. Gates: it learned with i.i.d. shards; the skew costs BN at least
    :data:`BETTER_ACC` (otherwise there is no cost to remove)."""
    return accuracy_verdict(claim_id, skew_cost(frame, method), f"skew cost of {_LABELS[method]}", scale,
                            [_learned_text(frame, method, dataset), _room(frame)], below=True)


def verdicts(frame, scale: str, dataset: str = "mnist") -> list[Verdict]:
    """Chapter 39's six verdicts, in its order of claims, with the learnability gate of ``dataset``
    (:func:`learnability_gate`)."""
    return [check_skew_hurts_bn(frame, scale, dataset), check_bn_hurt_more_than_gn(frame, scale, dataset),
            check_gn_recovers(frame, scale, dataset), check_rank0_buffers(frame, scale, dataset),
            check_skew_free(frame, scale, "sync_bn", "sync-bn-skew", dataset),
            check_skew_free(frame, scale, "fn_decoupled", "fn-distributed-skew", dataset)]
