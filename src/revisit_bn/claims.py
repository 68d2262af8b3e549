"""The papers' claims, checked against our measurements.

Each check takes the long results frame of a notebook (one row per run and epoch, see
:meth:`revisit_bn.train.RunResult.to_frame`) and returns a :class:`Verdict`: the claim in one
line, what we measured, and whether it is reproduced at our scale. The thresholds that turn words
such as "comparable" or "far above" into numbers are ours; they are module constants, stated in
the book next to every verdict that uses them.
"""

from __future__ import annotations

import dataclasses
import json
import textwrap
from dataclasses import dataclass
from pathlib import Path

# Characters a notebook output box shows in the book without cutting a line (verdicts, printed lines).
OUTPUT_WIDTH = 88
# "Comparable" losses: within a factor of 2, or within 0.05 nats of each other.
COMPARABLE_RATIO, COMPARABLE_NATS = 2.0, 0.05
# "Far above": at least twice as large and at least 0.1 nats larger.
FAR_RATIO, FAR_NATS = 2.0, 0.1
# "Match": final test losses within 0.05 nats and test accuracies within 1 percentage point.
MATCH_NATS, MATCH_ACC = 0.05, 0.01
# Verdict categories: for experiments, then for mathematics (a verdict without one is binary, the older form).
CATEGORIES = ("reproduced", "reproduced in part", "contradicted", "inconclusive",
              "holds as printed", "holds as corrected", "false as printed")
SUPPORTING = ("reproduced", "holds as printed", "holds as corrected")
_BADGE = {"reproduced": "#1b7837", "holds as printed": "#1b7837", "reproduced in part": "#5aae61",
          "holds as corrected": "#5aae61", "contradicted": "#b2182b", "false as printed": "#b2182b",
          "inconclusive": "#777777"}
# Seed intervals: two-sided t-intervals at this confidence over per-seed effects.
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Verdict:
    """One claim of a paper and our measurement of it.

    Attributes:
        claim_id: short stable id (e.g. ``"lian-fig4"``).
        source: paper and figure.
        claim: the claim in one line.
        measured: our numbers in one line.
        scale: the scale they were measured at.
        reproduced: whether the measurement supports the claim at this scale.
        category: one of :data:`CATEGORIES` (empty for the older binary verdicts); when given,
            ``reproduced`` must agree with it (True exactly for :data:`SUPPORTING`).

    Raises:
        ValueError: an unknown category, or one that disagrees with ``reproduced``.
    """

    claim_id: str
    source: str
    claim: str
    measured: str
    scale: str
    reproduced: bool
    category: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "reproduced", bool(self.reproduced))  # numpy bools are not JSON
        if self.category and self.category not in CATEGORIES:
            raise ValueError(f"category must be one of {CATEGORIES}, got {self.category!r}")
        if self.category and self.reproduced != (self.category in SUPPORTING):
            raise ValueError(f"reproduced={self.reproduced} disagrees with category {self.category!r}")

    @classmethod
    def of(cls, claim_id: str, source: str, claim: str, measured: str, scale: str, category: str) -> "Verdict":
        """A verdict with a category (``reproduced`` follows from it)."""
        return cls(claim_id, source, claim, measured, scale, category in SUPPORTING, category)

    @property
    def verdict(self) -> str:
        if self.category:
            return self.category
        return "reproduced" if self.reproduced else "not reproduced at this scale"

    def __repr__(self) -> str:
        return self.line()

    def _repr_html_(self) -> str:
        """A category badge, the claim as a sentence, and what we measured (how the book shows a verdict)."""
        from html import escape

        colour = _BADGE.get(self.category, "#1b7837" if self.reproduced else "#b35806")
        badge = (f'<span style="background:{colour};color:white;border-radius:3px;padding:1px 6px;'
                 f'font-size:85%;font-weight:600">{escape(self.verdict)}</span>')
        return (f'<div class="verdict" id="verdict-{escape(self.claim_id)}" style="margin:0.4em 0">{badge} '
                f'<code>{escape(self.claim_id)}</code> {escape(self.claim)}.'
                f'<br><span style="color:#555">Measured: {escape(self.measured)}</span></div>')

    def line(self, width: int = OUTPUT_WIDTH) -> str:
        """``[id] VERDICT: claim`` and ``measured: ...``, wrapped to ``width`` columns for a notebook's output box."""
        head = textwrap.fill(f"[{self.claim_id}] {self.verdict.upper()}: {self.claim}", width, subsequent_indent="    ")
        body = textwrap.fill(f"measured: {self.measured}", width, initial_indent="    ", subsequent_indent="        ")
        return f"{head}\n{body}"


def seed_interval(values, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """Mean and two-sided t-interval ``(mean, low, high)`` of per-seed values (NaN bounds for one seed).

    Source: Student's t (:func:`scipy.stats.t.interval`); the values are one effect per seed.
    """
    import numpy as np
    from scipy import stats

    values = np.asarray(list(values), dtype=float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    low, high = stats.t.interval(confidence, len(values) - 1, loc=mean, scale=stats.sem(values))
    if not np.isfinite(low):  # all seeds equal: no spread
        low = high = mean
    return mean, float(low), float(high)


def threshold_category(low: float, high: float, threshold: float) -> str:
    """``reproduced`` if the interval lies above ``threshold``, ``contradicted`` if below, else ``inconclusive``."""
    if low != low:  # NaN: one seed, no interval
        return "inconclusive"
    if low > threshold:
        return "reproduced"
    if high < threshold:
        return "contradicted"
    return "inconclusive"


def comparable(a: float, b: float) -> bool:
    """Whether two losses are comparable (ratio <= 2 or difference <= 0.05 nats)."""
    lo, hi = sorted((a, b))
    return hi - lo <= COMPARABLE_NATS or (lo > 0 and hi / lo <= COMPARABLE_RATIO)


def far_above(a: float, b: float) -> bool:
    """Whether loss ``a`` is far above ``b`` (>= 2x and >= 0.1 nats larger)."""
    return a - b >= FAR_NATS and a >= FAR_RATIO * b


def final_by_norm(frame, batch_order: str, metric: str) -> dict[str, float]:
    """Last-epoch ``metric`` per norm for one batch order, averaged over seeds."""
    rows = frame[frame.batch_order == batch_order]
    last = rows[rows.epoch == rows.epoch.max()]
    return last.groupby("norm")[metric].mean().to_dict()


def check_shuffled(frame, scale: str) -> Verdict:
    """Lian & Liu Figure 7: with shuffled batches, BN's and FN's curves match."""
    test = final_by_norm(frame, "shuffled", "test_loss")
    acc = final_by_norm(frame, "shuffled", "test_acc")
    ok = abs(test["bn"] - test["fn"]) <= MATCH_NATS and abs(acc["bn"] - acc["fn"]) <= MATCH_ACC
    return Verdict(
        "lian-fig7",
        "Lian & Liu 2019, Figure 7 (MNIST, shuffled batches of 64)",
        "shuffled batches: BN and FN match (training and test loss)",
        f"final test loss BN {test['bn']:.3f} vs FN {test['fn']:.3f} nats; "
        f"test accuracy BN {acc['bn']:.3f} vs FN {acc['fn']:.3f}",
        scale,
        ok,
    )


def check_bn_mode_gap(frame, scale: str) -> Verdict:
    """Lian & Liu Section 6.2 (mechanism of Figure 4): with single-label batches, BN's running
    statistics differ from every batch's, so on the *same training images* its evaluation-mode
    loss is far above its training-mode loss; with shuffled batches the two agree.

    Effect per seed: evaluation-mode minus training-mode final loss of BN under single-label
    batches, with its t-interval against :data:`FAR_NATS` (see :func:`threshold_category`); a
    reproduced effect whose shuffled losses are not comparable is "reproduced in part".
    """
    get = lambda metric, order: final_per_seed(frame, metric, norm="bn", batch_order=order)  # noqa: E731
    gap = get("train_eval_loss", "label_sorted") - get("train_loss", "label_sorted")
    mean, low, high = seed_interval(gap)
    shuffled_ok = comparable(get("train_eval_loss", "shuffled").mean(), get("train_loss", "shuffled").mean())
    category = threshold_category(low, high, FAR_NATS)
    if category == "reproduced" and not shuffled_ok:
        category = "reproduced in part"
    return Verdict.of(
        "lian-fig4-mechanism",
        "Lian & Liu 2019, Section 6.2 (why BN's test loss is high in Figure 4)",
        "single-label batches: BN's loss on its training images in evaluation mode is far above its "
        "training-mode loss (batch statistics differ from the running ones); shuffled: they agree",
        f"BN training-set loss, eval vs train mode: single-label {get('train_eval_loss', 'label_sorted').mean():.3f} vs "
        f"{get('train_loss', 'label_sorted').mean():.3f} nats, difference {_interval_text(mean, low, high)} "
        f"({len(gap)} seeds); shuffled {get('train_eval_loss', 'shuffled').mean():.3f} vs "
        f"{get('train_loss', 'shuffled').mean():.3f} nats ({'' if shuffled_ok else 'not '}comparable)",
        scale, category)


def final_metric(frame, metric: str, **where) -> dict[str, float]:
    """Last-epoch ``metric`` per norm among rows matching ``where`` (column == value), mean over seeds."""
    rows = frame
    for column, value in where.items():
        rows = rows[rows[column] == value]
    last = rows[rows.epoch == rows.epoch.max()]
    return last.groupby("norm")[metric].mean().to_dict()


def check_batch_size_one(frame, scale: str) -> Verdict:
    """Lian & Liu Figure 1: at batch size 1, BN's training loss falls while its test loss rises
    (the test set is the training set); FN beside it."""
    bn = frame[frame.norm == "bn_ref"].groupby("epoch")[["train_loss", "test_loss"]].mean()
    fn = final_metric(frame, "test_loss")["fn"]
    train_falls = bn.train_loss.iloc[-1] < bn.train_loss.iloc[0] - COMPARABLE_NATS
    test_rises = bn.test_loss.iloc[-1] > bn.test_loss.iloc[0] + FAR_NATS
    return Verdict(
        "lian-fig1",
        "Lian & Liu 2019, Figure 1 (3 samples, 3-layer network, batch size 1)",
        "batch size 1: BN's training loss falls while its test loss (on the same 3 samples) rises",
        f"BN training loss {bn.train_loss.iloc[0]:.3f} -> {bn.train_loss.iloc[-1]:.3f} nats, test loss "
        f"{bn.test_loss.iloc[0]:.3f} -> {bn.test_loss.iloc[-1]:.3f} nats (training loss falls: {'yes' if train_falls else 'no'}; test loss rises: {'yes' if test_rises else 'no'}); "
        f"FN's final test loss {fn:.3f} nats",
        scale,
        bool(train_falls and test_rises),
    )


def check_large_variance(frame, scale: str) -> Verdict:
    """Lian & Liu Figure 3: on data of large variance, BN's logistic regression does not converge
    (to the optimum of the common objective); FN and plain logistic regression beside it."""
    final = final_metric(frame, "train_eval_loss")
    ok = final["bn"] - final["none"] > COMPARABLE_NATS
    return Verdict(
        "lian-fig3",
        "Lian & Liu 2019, Figure 3 (convex logistic regression, synthetic data of large variance)",
        "large-variance data: logistic regression with BN fails to converge where plain logistic regression does",
        f"final loss on the whole training set (evaluation mode): BN {final['bn']:.3f}, FN {final['fn']:.3f}, "
        f"plain {final['none']:.3f} nats",
        scale,
        bool(ok),
    )


# "Far behind" in accuracy: at least 5 percentage points lower; "improves": at least 1 point higher.
FAR_ACC, BETTER_ACC = 0.05, 0.01


def check_batch_size_robustness(frame, scale: str, small: int, large: int) -> Verdict:
    """Lian & Liu Figure 9: on MNIST with random per-sample scales, BN's runs at batch sizes 1 and
    16 end apart while FN's end together."""
    final = frame[frame.epoch == frame.epoch.max()].groupby(["norm", "batch_size"]).test_loss.mean()
    gap = {n: abs(final[(n, small)] - final[(n, large)]) for n in ("bn", "fn")}
    return Verdict(
        "lian-fig9",
        "Lian & Liu 2019, Figure 9 (MNIST x random scale, batch sizes 1 and 16)",
        f"BN's runs at batch sizes {small} and {large} converge to different points; FN's nearly agree",
        f"final test loss, batch size {small} vs {large}: BN {final[('bn', small)]:.3f} vs {final[('bn', large)]:.3f} "
        f"(gap {gap['bn']:.3f}); FN {final[('fn', small)]:.3f} vs {final[('fn', large)]:.3f} (gap {gap['fn']:.3f}) nats",
        scale,
        far_above(gap["bn"], gap["fn"]),
    )


def check_label_limited(frame, scale: str) -> Verdict:
    """Lian & Liu Figure 5: CIFAR-10 with at most 3 labels per batch: training losses comparable,
    BN's test error far behind FN's."""
    train = final_by_norm(frame, "label_limited", "train_loss")
    acc = final_by_norm(frame, "label_limited", "test_acc")
    ok = comparable(train["bn"], train["fn"]) and acc["fn"] - acc["bn"] >= FAR_ACC
    return Verdict(
        "lian-fig5",
        "Lian & Liu 2019, Figure 5 (CIFAR-10, at most 3 labels per batch)",
        "label-restricted batches: comparable training loss, but BN's test error far behind FN's",
        f"final training loss BN {train['bn']:.3f} vs FN {train['fn']:.3f} nats; test error "
        f"BN {1 - acc['bn']:.3f} vs FN {1 - acc['fn']:.3f}",
        scale,
        ok,
    )


def check_shuffled_cifar(frame, scale: str) -> Verdict:
    """Lian & Liu Figure 8: CIFAR-10 with shuffled batches: BN's and FN's curves match."""
    verdict = check_shuffled(frame, scale)
    return dataclasses.replace(verdict, claim_id="lian-fig8",
                               source="Lian & Liu 2019, Figure 8 (CIFAR-10, shuffled batches)")


def check_batch_size_dependence(frame, scale: str) -> Verdict:
    """Lian & Liu Figure 2: ResNet18 on CIFAR-10: BN converges to different solutions at different
    batch sizes, and smaller batches give worse solutions."""
    final = frame[(frame.epoch == frame.epoch.max()) & (frame.norm == "bn")].groupby("batch_size").test_loss.mean()
    sizes = sorted(final.index)
    worse = final[sizes[0]] - final[sizes[-1]]
    fn = frame[(frame.epoch == frame.epoch.max()) & (frame.norm == "fn")].groupby("batch_size").test_loss.mean()
    return Verdict(
        "lian-fig2",
        "Lian & Liu 2019, Figure 2 (ResNet18, CIFAR-10, several batch sizes)",
        "BN's solution moves with the batch size; the smaller the batch, the worse the solution",
        "BN final test loss by batch size: " + ", ".join(f"{b}: {final[b]:.3f}" for b in sizes)
        + "; FN: " + ", ".join(f"{b}: {fn[b]:.3f}" for b in sizes if b in fn.index) + " nats",
        scale,
        bool(worse >= COMPARABLE_NATS),
    )


def check_renorm_improves(frame, scale: str, setting: str, claim_id: str, source: str, claim: str) -> Verdict:
    """Ioffe 2017: in ``setting`` (a value of the frame's ``setting`` column), Batch Renorm's test
    accuracy is above BN's by at least one percentage point."""
    rows = frame[(frame.setting == setting) & (frame.epoch == frame.epoch.max())]
    acc = rows.groupby("norm").test_acc.mean()
    others = ", ".join(f"{n.upper()} {acc[n]:.3f}" for n in acc.index if n not in ("bn", "brn"))
    return Verdict(
        claim_id, source, claim,
        f"final test accuracy BN {acc['bn']:.3f} vs BRN {acc['brn']:.3f}" + (f"; {others}" if others else ""),
        scale,
        bool(acc["brn"] - acc["bn"] >= BETTER_ACC),
    )


# ----------------------------------------------------------------------------------------------
# Santurkar et al. (2018)
# ----------------------------------------------------------------------------------------------

# "BN does not reduce internal covariate shift": BN's median cosine is at most 0.05 above the standard network's.
ICS_COS_TOL = 0.05
# "A larger distributional shift": the drift of the activations is at least 1.5 times as large.
SHIFT_RATIO = 1.5


def ics_summary(probes, by="norm"):
    """Medians over probed steps and layers of ``ics_cos`` and ``ics_l2``, one row per value of ``by``.

    ``by`` is a column name or a list of them (e.g. ``["lr", "norm"]``); returns a
    :class:`pandas.DataFrame` with columns ``ics_cos`` and ``ics_l2``.
    """
    rows = probes[probes.quantity.isin(["ics_cos", "ics_l2"])]
    return rows.pivot_table(index=by, columns="quantity", values="value", aggfunc="median")[["ics_cos", "ics_l2"]]


def landscape_summary(probes, by: str = "norm"):
    """Per network, medians over training of the loss range, the largest gradient change and beta_eff.

    Returns a :class:`pandas.DataFrame` indexed by ``by`` with columns ``loss_range`` (nats),
    ``grad_change_max`` and ``effective_beta_smoothness``.
    """
    wide = probes.pivot_table(index=[by, "step"], columns="quantity", values="value")
    wide["loss_range"] = wide.loss_max - wide.loss_min
    return wide.groupby(by)[["loss_range", "grad_change_max", "effective_beta_smoothness"]].median()


def activation_drift(probes, by: str = "norm"):
    r"""How far a channel's distribution moves between probes: the mean over recorded layers and
    consecutive probes of :math:`|\Delta\,\text{mean}| / \text{std}` (the change of the channel's mean in
    units of its spread). Returns ``{by value: drift}``."""
    rows = probes[probes.quantity.isin(["act_mean", "act_std"])]
    wide = rows.pivot_table(index=[by, "layer", "step"], columns="quantity", values="value").sort_index()
    out = {}
    for name, part in wide.groupby(level=0):
        drifts = []
        for _, layer in part.groupby(level=1):
            mean, std = layer.act_mean.to_numpy(), layer.act_std.to_numpy()
            if len(mean) > 1:
                drifts.extend(abs(mean[1:] - mean[:-1]) / ((std[1:] + std[:-1]) / 2 + 1e-12))
        out[name] = float(sum(drifts) / len(drifts)) if drifts else float("nan")
    return out


def check_learning_rates(frame, scale: str, lrs=(0.1, 0.5)) -> Verdict:
    """Santurkar et al. Figure 1: VGG with BN trains faster than without at lr 0.1, and at the larger
    lr 0.5 too (where the standard network does worse)."""
    last = frame[frame.epoch == frame.epoch.max()].groupby(["norm", "lr"])[["train_loss", "test_acc"]].mean()
    better = all(last.train_loss[("bn", lr)] < last.train_loss[("none", lr)] - COMPARABLE_NATS for lr in lrs)
    measured = "; ".join(
        f"lr {lr}: training loss BN {last.train_loss[('bn', lr)]:.3f} vs standard {last.train_loss[('none', lr)]:.3f}"
        + (f" vs FN {last.train_loss[('fn', lr)]:.3f}" if ("fn", lr) in last.index else "")
        + f" nats, test accuracy BN {last.test_acc[('bn', lr)]:.3f} vs standard {last.test_acc[('none', lr)]:.3f}"
        + (f" vs FN {last.test_acc[('fn', lr)]:.3f}" if ("fn", lr) in last.index else "")
        for lr in lrs)
    return Verdict(
        "santurkar-fig1",
        "Santurkar et al. 2018, Figure 1 (VGG on CIFAR-10, learning rates 0.1 and 0.5)",
        "VGG with BN trains faster than the standard VGG at lr 0.1 and at lr 0.5 (BN allows the larger step)",
        measured, scale, better)


def check_noisy_bn(frame, probes, scale: str) -> Verdict:
    """Santurkar et al. Figure 2: noisy BN's activations shift far more than the standard network's
    and BN's, yet it trains about as well as BN."""
    last = frame[frame.epoch == frame.epoch.max()].groupby("norm")[["train_loss", "test_acc"]].mean()
    drift = activation_drift(probes)
    trains = comparable(last.train_loss["noisy_bn"], last.train_loss["bn"]) and \
        last.test_acc["bn"] - last.test_acc["noisy_bn"] < FAR_ACC
    shifts = drift["noisy_bn"] >= SHIFT_RATIO * max(drift["bn"], drift["none"])
    return Verdict(
        "santurkar-fig2",
        "Santurkar et al. 2018, Figure 2 (VGG on CIFAR-10, noise injected after BN)",
        "with time-varying noise after every BN layer, the activations shift far more than in the standard "
        "network, yet the network trains about as well as with BN",
        f"activation drift (|change of a channel's mean| / std between probes): noisy BN {drift['noisy_bn']:.3f}, "
        f"BN {drift['bn']:.3f}, standard {drift['none']:.3f}; final training loss noisy BN "
        f"{last.train_loss['noisy_bn']:.3f} vs BN {last.train_loss['bn']:.3f} vs standard {last.train_loss['none']:.3f} nats; "
        f"test accuracy noisy BN {last.test_acc['noisy_bn']:.3f} vs BN {last.test_acc['bn']:.3f}",
        scale, bool(trains and shifts))


def check_ics_not_reduced(probes, scale: str, claim_id: str, source: str, claim: str, by: str | None = None) -> Verdict:
    """Santurkar et al. Figure 3: BN does not reduce internal covariate shift: BN's median cosine
    between G and G' is not above the standard network's (by more than :data:`ICS_COS_TOL`).

    With ``by`` (e.g. ``"lr"``), the check must hold for every value of that column.
    """
    groups = [(None, probes)] if by is None else list(probes.groupby(by))
    ok, parts = True, []
    for value, part in groups:
        medians = ics_summary(part)
        cos, l2 = medians.ics_cos.to_dict(), medians.ics_l2.to_dict()
        ok = ok and cos["bn"] <= cos["none"] + ICS_COS_TOL
        where = "" if by is None else f"{by} {value}: "
        parts.append(where + "median cos(G, G') " + ", ".join(f"{_name(n)} {cos[n]:.3f}" for n in cos)
                     + "; median l2 " + ", ".join(f"{_name(n)} {l2[n]:.3g}" for n in l2))
    return Verdict(claim_id, source, claim, " | ".join(parts), scale, bool(ok))


def check_landscape(probes, scale: str) -> Verdict:
    """Santurkar et al. Figure 4: along the gradient, BN's loss varies less, its gradient changes
    less, and its effective beta-smoothness is lower than the standard network's."""
    summary = landscape_summary(probes)
    ok = all(summary.loc["bn", c] < summary.loc["none", c] for c in summary.columns)
    measured = "; ".join(
        f"median {label}: " + ", ".join(f"{_name(n)} {summary.loc[n, c]:.3g}" for n in summary.index)
        for c, label in (("loss_range", "loss range (nats)"), ("grad_change_max", "largest gradient change"),
                         ("effective_beta_smoothness", "effective beta-smoothness")))
    return Verdict(
        "santurkar-fig4",
        "Santurkar et al. 2018, Figure 4 (VGG on CIFAR-10, loss landscape along the gradient)",
        "with BN the loss changes less along the gradient, the gradient is more predictive, and the effective "
        "beta-smoothness is lower than without BN",
        measured, scale, bool(ok))


def _name(norm: str) -> str:
    return {"none": "standard", "bn": "BN", "fn": "FN", "noisy_bn": "noisy BN"}.get(norm, norm)


# ----------------------------------------------------------------------------------------------
# The claims ledger: chapters record their verdicts; the ledger page reads them
# ----------------------------------------------------------------------------------------------


def claims_dir(profile: str = "book") -> Path:
    """``<results root>/<profile>/claims``: one JSON file per claim, written by the chapter that tests it."""
    from .results import results_root

    return results_root(profile) / "claims"


def record(verdict: Verdict, chapter: str, profile: str = "book", params: dict | None = None,
           runs: list[str] | None = None, diverged: list[str] | None = None) -> Path:
    """Store ``verdict`` (atomically) for the ledger, with what made it.

    The record holds the notebook ``chapter``, the ``profile``, its parameters ``params``, the keys
    of the stored ``runs`` it read and the code fingerprint. When some of those runs ``diverged``,
    the verdict is recorded as ``"inconclusive: runs diverged"`` and the runs are named in ``measured``
    (a NaN never passes or fails a threshold silently).
    """
    from .results import code_fingerprint, write_json_atomic

    payload = {**dataclasses.asdict(verdict), "chapter": chapter, "verdict": verdict.verdict, "profile": profile,
               "params": params or {}, "runs": sorted(runs or []), "code": code_fingerprint()}
    if diverged:
        payload.update(reproduced=False, verdict="inconclusive: runs diverged",
                       measured=f"{verdict.measured}; diverged runs: {'; '.join(diverged)}")
    path = claims_dir(profile) / f"{verdict.claim_id}.json"
    write_json_atomic(path, payload)
    return path


def collect(profile: str = "book", directory: Path | None = None):
    """Every recorded verdict of ``profile`` as a :class:`pandas.DataFrame`, sorted by claim id (empty if none)."""
    import pandas as pd

    directory = directory or claims_dir(profile)
    rows = [json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))] if directory.is_dir() else []
    columns = ["claim_id", "source", "claim", "measured", "scale", "verdict", "chapter"]
    return pd.DataFrame(rows, columns=columns + [c for c in (rows[0] if rows else {}) if c not in columns])


def ensure_recorded(profile: str = "book", notebooks: Path | None = None, run: bool = True) -> list[str]:
    """Execute (papermill, with ``profile``) every chapter whose claims (its spec in :mod:`revisit_bn.experiments`) lack a verdict.

    Returns:
        The chapters executed (or, with ``run=False``, those that would be).
    """
    import tempfile

    from .data import project_root
    from .experiments import CHAPTERS

    notebooks = notebooks or project_root() / "notebooks"
    missing = [chapter for chapter, ids in ((c.name, c.claims) for c in CHAPTERS.values()) if ids
               if not all((claims_dir(profile) / f"{claim_id}.json").is_file() for claim_id in ids)]
    if run and missing:
        import papermill

        with tempfile.TemporaryDirectory() as tmp:
            for chapter in missing:
                papermill.execute_notebook(str(notebooks / f"{chapter}.ipynb"), str(Path(tmp) / f"{chapter}.ipynb"),
                                           parameters={"profile": profile}, cwd=str(notebooks), progress_bar=False,
                                           kernel_name="python3")
    return missing


# ----------------------------------------------------------------------------------------------
# Seed-aware checks with categories (FN's gradient estimators; chapters 15, 31, 32)
# ----------------------------------------------------------------------------------------------

# The learnability gate of the MNIST chapters: BN with shuffled batches must reach this test accuracy.
MNIST_GATE = 0.98
FN_LABELS = {"fn": "FN (MCSGD)", "fn_decoupled": "FN (decoupled)", "fn_exact": "FN (exact)", "fn_const": "FN (constant)"}


def final_per_seed(frame, metric: str, **where):
    """Last-epoch ``metric`` per seed among rows matching ``where`` (a :class:`pandas.Series` indexed by seed)."""
    rows = frame
    for column, value in where.items():
        rows = rows[rows[column] == value]
    last = rows[rows.epoch == rows.epoch.max()]
    return last.set_index("seed")[metric].sort_index()


def _interval_text(mean: float, low: float, high: float) -> str:
    return f"{mean:+.3f} [{low:+.3f}, {high:+.3f}]" if low == low else f"{mean:+.3f} (one seed, no interval)"


def mnist_gate(frame) -> tuple[bool, float]:
    """Whether BN with shuffled batches (constant step size) reached :data:`MNIST_GATE`, and its mean test accuracy."""
    acc = final_per_seed(frame, "test_acc", norm="bn", batch_order="shuffled", lr_power=0.0).mean()
    return bool(acc >= MNIST_GATE), float(acc)


def check_fig4_estimator(frame, scale: str, claim_id: str, fn_norm: str = "fn", order: str = "label_sorted",
                         schedule: bool = False) -> Verdict:
    """Lian & Liu Figure 4 with one of FN's estimators: single-label batches, BN's final test loss
    far above FN's (by more than :data:`FAR_NATS`) at comparable training loss.

    The effect is the per-seed difference BN - FN of the final test loss (runs paired by seed),
    with its t-interval: above ``FAR_NATS`` reproduced, below contradicted, straddling it
    inconclusive. Training losses not comparable (or BN's test loss under twice FN's) make a
    reproduced effect "reproduced in part". Inconclusive whatever the effect when BN with
    shuffled batches misses :data:`MNIST_GATE`. ``schedule`` selects FN's runs with Corollary 3's
    decaying rates (BN's runs keep their constant step size).
    """
    fn_rows = frame[(frame.lr_power > 0) if schedule else (frame.lr_power == 0)]
    bn_test = final_per_seed(frame, "test_loss", norm="bn", batch_order=order, lr_power=0.0)
    fn_test = final_per_seed(fn_rows, "test_loss", norm=fn_norm, batch_order=order)
    bn_train = final_per_seed(frame, "train_loss", norm="bn", batch_order=order, lr_power=0.0)
    fn_train = final_per_seed(fn_rows, "train_loss", norm=fn_norm, batch_order=order)
    seeds = bn_test.index.intersection(fn_test.index)
    diff = bn_test[seeds] - fn_test[seeds]
    mean, low, high = seed_interval(diff)
    agree = sum(far_above(bn_test[s], fn_test[s]) for s in seeds)
    gate, gate_acc = mnist_gate(frame)
    train_ok = comparable(bn_train[seeds].mean(), fn_train[seeds].mean())
    category = threshold_category(low, high, FAR_NATS)
    if category == "reproduced" and not (train_ok and bn_test[seeds].mean() >= FAR_RATIO * fn_test[seeds].mean()):
        category = "reproduced in part"
    if not gate:
        category = "inconclusive"
    label = FN_LABELS.get(fn_norm, fn_norm)
    setting = {"label_sorted": "label-sorted batches in random order", "unshuffled": "labels in sequence"}[order]
    return Verdict.of(
        claim_id,
        "Lian & Liu 2019, Figure 4 (MNIST, single-label batches of 64)",
        f"{setting}{', Corollary 3 schedule' if schedule else ''}: with {label}, training losses are comparable "
        f"but BN's test loss is far above FN's",
        f"final test loss BN {bn_test[seeds].mean():.3f} vs {label} {fn_test[seeds].mean():.3f} nats, "
        f"BN - FN {_interval_text(mean, low, high)} ({int(CONFIDENCE * 100)}% t-interval, {len(seeds)} seeds), "
        f"far above (> {FAR_NATS} nats and x{FAR_RATIO:g}) in {agree} of {len(seeds)} seeds; training loss BN "
        f"{bn_train[seeds].mean():.3f} vs FN {fn_train[seeds].mean():.3f} ({'' if train_ok else 'not '}comparable); "
        f"gate: BN shuffled test accuracy {gate_acc:.4f} ({'>=' if gate else '<'} {MNIST_GATE})",
        scale, category)


def check_fig7_match(frame, scale: str, fn_norm: str = "fn") -> Verdict:
    """Lian & Liu Figure 7: shuffled batches, BN and FN match: the per-seed final test-loss
    difference has its t-interval inside +-:data:`MATCH_NATS` (reproduced), wholly outside it
    (contradicted), or neither (inconclusive)."""
    bn = final_per_seed(frame, "test_loss", norm="bn", batch_order="shuffled", lr_power=0.0)
    fn = final_per_seed(frame, "test_loss", norm=fn_norm, batch_order="shuffled", lr_power=0.0)
    acc_bn = final_per_seed(frame, "test_acc", norm="bn", batch_order="shuffled", lr_power=0.0)
    acc_fn = final_per_seed(frame, "test_acc", norm=fn_norm, batch_order="shuffled", lr_power=0.0)
    seeds = bn.index.intersection(fn.index)
    mean, low, high = seed_interval(bn[seeds] - fn[seeds])
    if low != low:
        category = "inconclusive"
    elif -MATCH_NATS <= low and high <= MATCH_NATS:
        category = "reproduced"
    elif high < -MATCH_NATS or low > MATCH_NATS:
        category = "contradicted"
    else:
        category = "inconclusive"
    gate, gate_acc = mnist_gate(frame)
    if not gate:
        category = "inconclusive"
    label = FN_LABELS.get(fn_norm, fn_norm)
    return Verdict.of(
        "lian-fig7",
        "Lian & Liu 2019, Figure 7 (MNIST, shuffled batches of 64)",
        f"shuffled batches: BN and {label} match (final test loss within {MATCH_NATS} nats)",
        f"final test loss BN {bn[seeds].mean():.3f} vs FN {fn[seeds].mean():.3f} nats, BN - FN "
        f"{_interval_text(mean, low, high)} ({len(seeds)} seeds); test accuracy BN {acc_bn[seeds].mean():.4f} vs FN "
        f"{acc_fn[seeds].mean():.4f}; gate: BN shuffled test accuracy {gate_acc:.4f} "
        f"({'>=' if gate else '<'} {MNIST_GATE})",
        scale, category)


def check_fn_trains_at_batch_size_one(frame, scale: str, fn_norm: str, claim_id: str) -> Verdict:
    """Lian & Liu Figure 1, FN beside BN: at batch size 1 FN's loss on the 3 samples (evaluation
    mode, which is objective (10)) falls. Effect per seed: first-epoch minus final test loss; its
    t-interval above :data:`COMPARABLE_NATS` reproduced, below contradicted, else inconclusive."""
    rows = frame[frame.norm == fn_norm]
    first = rows[rows.epoch == rows.epoch.min()].set_index("seed").test_loss.sort_index()
    last = rows[rows.epoch == rows.epoch.max()].set_index("seed").test_loss.sort_index()
    drop = first - last
    mean, low, high = seed_interval(drop)
    label = FN_LABELS.get(fn_norm, fn_norm)
    return Verdict.of(
        claim_id,
        "Lian & Liu 2019, Figure 1 (3 samples, batch size 1), FN",
        f"batch size 1: {label}'s loss on the 3 samples falls (where BN's rises)",
        f"{label} loss {first.mean():.3f} -> {last.mean():.3f} nats (mean of {len(drop)} seeds), fall "
        f"{_interval_text(mean, low, high)} ({int(CONFIDENCE * 100)}% t-interval; threshold {COMPARABLE_NATS}), "
        f"falls by more than {COMPARABLE_NATS} in {int((drop > COMPARABLE_NATS).sum())} of {len(drop)} seeds",
        scale, threshold_category(low, high, COMPARABLE_NATS))


def check_remark1(table, scale: str, tolerance: float = 0.01, noise_factor: float = 3.0) -> list[Verdict]:
    """Lian & Liu Remark 1 on the exact small problem (:func:`revisit_bn.gradient_bias.measure` rows, with ``seed`` and ``momentum``).

    Two verdicts. ``lian-remark1``: reusing the current batch for both factors of the statistics'
    term (MCSGD) biases the expected gradient: its relative bias exceeds ``max(tolerance,
    noise_factor x noise floor)`` at every size, kind and seed. ``fn-decoupled-unbiased``: the
    decoupled estimator's relative bias is within that bound at the smallest estimate rate, for
    every size, kind and seed (at larger rates the forward's own use of the batch adds bias).
    """
    bound = lambda rows: (rows.noise_floor * noise_factor).clip(lower=tolerance)  # noqa: E731
    mcsgd = table[table.estimator == "mcsgd"]
    biased = (mcsgd.relative_bias > bound(mcsgd))
    small = table[(table.estimator == "decoupled") & (table.momentum == table.momentum.min())]
    unbiased = (small.relative_bias <= bound(small))
    seeds = table.seed.nunique()
    low = mcsgd[mcsgd.momentum == mcsgd.momentum.min()]
    single, rand = low[low.kind == "single_label"], low[low.kind == "random"]
    sizes = sorted(table["size"].unique())
    remark = Verdict.of(
        "lian-remark1",
        "Lian & Liu 2019, Remark 1 (reusing samples in the gradient oracle)",
        "reusing the same samples for the estimate and the gradient adds bias (MCSGD's expected gradient "
        "is not the gradient of objective (10))",
        f"MCSGD's relative bias exceeds max({tolerance}, {noise_factor:g} x noise floor) in {int(biased.sum())} of "
        f"{len(mcsgd)} cases ({seeds} seeds, sizes {sizes[0]}-{sizes[-1]}, both kinds, both rates); at rate "
        f"{low.momentum.min():g}, random batches: "
        f"{rand[rand['size'] == sizes[0]].relative_bias.mean():.3f} at size {sizes[0]} -> "
        f"{rand[rand['size'] == sizes[-1]].relative_bias.mean():.3f} at size {sizes[-1]}; single-label: "
        f"{single.relative_bias.min():.3f}-{single.relative_bias.max():.3f}, cosine with the exact gradient "
        f"{single.cosine.min():+.2f} to {single.cosine.max():+.2f}",
        scale, "holds as printed" if biased.all() else "false as printed")
    decoupled = Verdict.of(
        "fn-decoupled-unbiased",
        "this book (FN's decoupled gradient estimator; Wang, Fang & Liu 2017)",
        "taking the statistics' terms from previous batches removes the bias, for random and single-label "
        "batches of every size",
        f"decoupled relative bias at estimate rate {small.momentum.min():g}: at most {small.relative_bias.max():.4f} "
        f"(within the bound in {int(unbiased.sum())} of {len(small)} cases, {seeds} seeds); at rate "
        f"{table.momentum.max():g}: up to "
        f"{table[(table.estimator == 'decoupled') & (table.momentum == table.momentum.max())].relative_bias.max():.3f} "
        f"(the forward's update with the batch); exact and constant estimators: "
        f"{table[table.estimator.isin(['exact', 'constant'])].relative_bias.min():.2f}-"
        f"{table[table.estimator.isin(['exact', 'constant'])].relative_bias.max():.2f}",
        scale, "holds as printed" if unbiased.all() else "false as printed")
    return [remark, decoupled]
