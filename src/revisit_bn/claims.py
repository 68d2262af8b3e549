"""The papers' claims, checked against our measurements.

Each check takes the long results frame of a notebook (one row per run and epoch, see
:meth:`revisit_bn.train.RunResult.to_frame`) and returns a :class:`Verdict`: the claim in one
line, what we measured, and whether it is reproduced at our scale. The thresholds that turn words
such as "comparable" or "far above" into numbers are ours; they are module constants, stated in
the book next to every verdict that uses them.
"""

from __future__ import annotations

from dataclasses import dataclass

# "Comparable" losses: within a factor of 2, or within 0.05 nats of each other.
COMPARABLE_RATIO, COMPARABLE_NATS = 2.0, 0.05
# "Far above": at least twice as large and at least 0.1 nats larger.
FAR_RATIO, FAR_NATS = 2.0, 0.1
# "Match": final test losses within 0.05 nats and test accuracies within 1 percentage point.
MATCH_NATS, MATCH_ACC = 0.05, 0.01


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
    """

    claim_id: str
    source: str
    claim: str
    measured: str
    scale: str
    reproduced: bool

    @property
    def verdict(self) -> str:
        return "reproduced" if self.reproduced else "not reproduced at this scale"

    def line(self) -> str:
        """``[id] verdict: claim -- measured``, for printing in a notebook."""
        return f"[{self.claim_id}] {self.verdict.upper()}: {self.claim}\n    measured: {self.measured}"


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


def check_label_sorted(frame, scale: str) -> Verdict:
    """Lian & Liu Figure 4: with single-label batches, train losses are comparable but BN's test
    loss is far above FN's."""
    train = final_by_norm(frame, "label_sorted", "train_loss")
    test = final_by_norm(frame, "label_sorted", "test_loss")
    ok = comparable(train["bn"], train["fn"]) and far_above(test["bn"], test["fn"])
    return Verdict(
        "lian-fig4",
        "Lian & Liu 2019, Figure 4 (MNIST, label-sorted batches of 64)",
        "label-sorted batches: BN and FN reach comparable training loss, but BN's test loss is far above FN's",
        f"final training loss BN {train['bn']:.3f} vs FN {train['fn']:.3f} nats; "
        f"final test loss BN {test['bn']:.3f} vs FN {test['fn']:.3f} nats",
        scale,
        ok,
    )


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
    loss is far above its training-mode loss; with shuffled batches the two agree."""
    train_mode = {o: final_by_norm(frame, o, "train_loss")["bn"] for o in ("label_sorted", "shuffled")}
    eval_mode = {o: final_by_norm(frame, o, "train_eval_loss")["bn"] for o in ("label_sorted", "shuffled")}
    ok = far_above(eval_mode["label_sorted"], train_mode["label_sorted"]) and comparable(
        eval_mode["shuffled"], train_mode["shuffled"])
    return Verdict(
        "lian-fig4-mechanism",
        "Lian & Liu 2019, Section 6.2 (why BN's test loss is high in Figure 4)",
        "label-sorted batches: BN's loss on its training images in evaluation mode is far above its "
        "training-mode loss (batch statistics differ from the running ones); shuffled: they agree",
        f"BN training-set loss, eval vs train mode: label-sorted {eval_mode['label_sorted']:.3f} vs "
        f"{train_mode['label_sorted']:.3f} nats; shuffled {eval_mode['shuffled']:.3f} vs {train_mode['shuffled']:.3f} nats",
        scale,
        ok,
    )
