r"""The expected gradient of FN's estimators against the exact gradient of objective (10).

On a small float64 problem the exact gradient of the full-normalization objective (Lian & Liu
2019, eq. 10) is available by autograd through *whole-dataset* statistics. Each gradient
estimator of :class:`~revisit_bn.layers.FullNorm1d` (``backward=``) gives, for one batch, a
stochastic gradient; its expectation over the batches (enumerated exactly where there are few,
else a Monte Carlo mean with its standard error) is compared with the exact gradient as a
relative bias and a cosine.

The problem (our choice): ``labels`` Gaussian classes of ``per_label`` points in ``features``
dimensions, and the network ``Linear(features, hidden) -> FullNorm1d(hidden) -> tanh ->
Linear(hidden, labels)`` with cross-entropy. The state at which every gradient is taken: random
parameters, FN's estimates at the dataset's statistics (the estimates' fixed point for these
parameters), and, for the decoupled estimator, its running terms at their expectation over an
independent batch of the same kind (what a running average of previous batches estimates; a mean
over every such batch, or over five times ``draws`` drawn ones).
Each batch's forward then updates the estimates with the batch at rate ``momentum``, as training
does. The compared parameters are those upstream of the normalization (the first layer's weight
and bias), the only ones whose gradient passes through the statistics' terms.

Batches: ``random`` (``size`` samples drawn without replacement from the whole dataset) and
``single_label`` (a label drawn uniformly, then ``size`` of its samples without replacement).

Source: Lian & Liu (2019), eq. (10), Algorithm 4 and Remark 1 ("reusing samples adds bias");
Wang, Fang & Liu (2017) for the independence compositional SGD needs.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from . import results as results_mod
from .layers import FullNorm1d
from .train import DEFAULT_THREADS, _check_common, _positive_int, torch_threads

ESTIMATORS = ("mcsgd", "decoupled", "exact", "constant")
BATCH_KINDS = ("random", "single_label")


@dataclass(frozen=True)
class BiasProblem:
    """The small problem and how the expectation is taken.

    Attributes:
        labels, per_label, features, hidden: the data and network sizes (our choice 3, 20, 4, 3).
        separation: distance of the class means, in units of the within-class standard deviation.
        momentum: FN's estimate rate in the batch's forward.
        max_exact: enumerate every batch when there are at most this many, else draw ``draws``.
        draws: Monte Carlo batches per size and kind (the same batches for every estimator).
        seed: data, parameters and draws.

    Raises:
        ValueError: a size or count below 1, ``momentum`` outside (0, 1].
    """

    labels: int = 3
    per_label: int = 20
    features: int = 4
    hidden: int = 3
    separation: float = 2.0
    momentum: float = 0.1
    max_exact: int = 2000
    draws: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("labels", "per_label", "features", "hidden", "max_exact", "draws"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0.0 < float(self.momentum) <= 1.0:
            raise ValueError(f"momentum must lie in (0, 1], got {self.momentum!r}")


class _Net(nn.Module):
    def __init__(self, problem: BiasProblem, backward: str) -> None:
        super().__init__()
        self.l1 = nn.Linear(problem.features, problem.hidden)
        self.norm = FullNorm1d(problem.hidden, momentum=problem.momentum, backward=backward)
        self.l2 = nn.Linear(problem.hidden, problem.labels)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.l2(torch.tanh(self.norm(self.l1(u))))


def make_data(problem: BiasProblem) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``(n, features)`` float64 and labels ``(n,)``, ``n = labels * per_label``, grouped by label."""
    gen = torch.Generator().manual_seed(problem.seed)
    centres = torch.randn(problem.labels, problem.features, generator=gen, dtype=torch.float64)
    centres *= problem.separation / centres.norm(dim=1, keepdim=True).clamp(min=1e-12)
    labels = torch.arange(problem.labels).repeat_interleave(problem.per_label)
    inputs = centres[labels] + torch.randn(len(labels), problem.features, generator=gen, dtype=torch.float64)
    return inputs, labels


def _upstream(net: _Net) -> torch.Tensor:
    return torch.cat([net.l1.weight.grad.flatten(), net.l1.bias.grad.flatten()])


def exact_gradient(net: _Net, inputs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The gradient of objective (10) for the upstream parameters, and the dataset statistics ``(mean, var)``.

    The normalization uses the whole dataset's mean and (population) variance, differentiated
    through (``torch.nn.functional.batch_norm`` in training mode on all ``n`` samples).
    """
    net.zero_grad()
    h = net.l1(inputs)
    z = nn.functional.batch_norm(h, None, None, net.norm.weight, net.norm.bias, True, 0.0, net.norm.eps)
    nn.functional.cross_entropy(net.l2(torch.tanh(z)), labels).backward()
    var, mean = torch.var_mean(h.detach(), dim=0, unbiased=False)
    return _upstream(net).clone(), mean, var


def batches(problem: BiasProblem, kind: str, size: int, labels: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """The batches of ``kind`` and ``size``, equally weighted, as an index tensor ``(M, size)``.

    Every batch when there are at most ``max_exact`` (returns ``True``), else ``draws`` random ones
    (``False``).

    Raises:
        ValueError: unknown ``kind``, or ``size`` larger than the population it draws from.
    """
    if kind not in BATCH_KINDS:
        raise ValueError(f"kind must be one of {BATCH_KINDS}, got {kind!r}")
    groups = torch.stack([torch.nonzero(labels == c).flatten() for c in range(problem.labels)])
    pool = len(labels) if kind == "random" else problem.per_label
    if not isinstance(size, int) or not 1 <= size <= pool:
        raise ValueError(f"size must be an integer in 1..{pool} for {kind} batches, got {size!r}")
    count = math.comb(pool, size) * (1 if kind == "random" else problem.labels)
    if count <= problem.max_exact:
        combos = torch.from_numpy(np.array(list(itertools.combinations(range(pool), size)), dtype=np.int64))
        if kind == "random":
            return combos, True
        return groups[:, combos].reshape(-1, size), True
    gen = torch.Generator().manual_seed(problem.seed * 1000 + size * 2 + (kind == "single_label"))
    picks = torch.rand(problem.draws, pool, generator=gen).argsort(dim=1)[:, :size]
    if kind == "random":
        return picks, False
    which = torch.randint(problem.labels, (problem.draws,), generator=gen)
    return groups[which[:, None], picks], False


class Network:
    """The problem's parameters in float64 and the estimators' batch gradients in closed form, vectorized over batches.

    ``gradients(index, estimator, mean, var, terms)`` returns, for every batch (row of
    ``index``), the gradient of the batch's mean cross-entropy with respect to the upstream
    parameters as :class:`~revisit_bn.layers.FullNorm1d` with ``backward=estimator`` computes it
    (checked against the layer by :func:`layer_gradient`), after the forward has updated the
    estimates ``(mean, var)`` with the batch at rate ``momentum``.
    """

    def __init__(self, problem: BiasProblem) -> None:
        gen = torch.Generator().manual_seed(problem.seed + 1)
        f, h, k = problem.features, problem.hidden, problem.labels
        draw = lambda *shape, s=1.0: torch.randn(*shape, generator=gen, dtype=torch.float64) * s  # noqa: E731
        self.w1, self.b1 = draw(h, f, s=f ** -0.5), draw(h, s=0.3)
        self.gamma = torch.rand(h, generator=gen, dtype=torch.float64) + 0.5
        self.beta, self.w2, self.b2 = draw(h, s=0.3), draw(k, h, s=h ** -0.5), draw(k, s=0.1)
        self.momentum, self.eps, self.problem = float(problem.momentum), 1e-5, problem

    def module(self, estimator: str) -> _Net:
        """The same network as a module with a real :class:`FullNorm1d` (``backward=estimator``)."""
        net = _Net(self.problem, estimator).double()
        with torch.no_grad():
            for dst, src in ((net.l1.weight, self.w1), (net.l1.bias, self.b1), (net.norm.weight, self.gamma),
                             (net.norm.bias, self.beta), (net.l2.weight, self.w2), (net.l2.bias, self.b2)):
                dst.copy_(src)
        return net

    def exact_gradient(self, inputs: torch.Tensor, labels: torch.Tensor):
        """Objective (10)'s upstream gradient by autograd through whole-dataset statistics, and those statistics."""
        return exact_gradient(self.module("mcsgd"), inputs, labels)

    def _backprop(self, u, t, mean, var):
        a = self.momentum
        h = u @ self.w1.T + self.b1  # (M, b, H)
        mu_b = h.mean(1)
        var_b = (h - mu_b[:, None]).square().mean(1)
        delta = mu_b - mean
        m_k = mean + a * delta
        v_k = (1 - a) * var + a * var_b + a * (1 - a) * delta * delta
        invstd = torch.rsqrt(v_k + self.eps)[:, None]
        x_hat = (h - m_k[:, None]) * invstd
        act = torch.tanh(self.gamma * x_hat + self.beta)
        p = torch.softmax(act @ self.w2.T + self.b2, dim=-1)
        dz = (p - nn.functional.one_hot(t, self.problem.labels).to(p.dtype)) / u.shape[1]
        g_hat = self.gamma * (dz @ self.w2) * (1 - act * act)
        return u, x_hat, invstd, g_hat

    def terms(self, u, t, mean, var):
        """Every batch's ``(mean_B g_hat, mean_B g_hat x_hat)``, ``(M, H)`` each."""
        _, x_hat, _, g_hat = self._backprop(u, t, mean, var)
        return g_hat.mean(1), (g_hat * x_hat).mean(1)

    def gradients(self, u, t, estimator, mean, var, terms=None) -> torch.Tensor:
        """``(M, H*F + H)``: each batch's upstream gradient (first-layer weight, then bias)."""
        u, x_hat, invstd, g_hat = self._backprop(u, t, mean, var)
        if estimator in ("mcsgd", "exact"):
            t_g, t_gx = g_hat.mean(1, keepdim=True), (g_hat * x_hat).mean(1, keepdim=True)
            if estimator == "exact":
                t_g, t_gx = self.momentum * t_g, self.momentum * t_gx
        elif estimator == "decoupled":
            t_g, t_gx = terms[0][None, None], terms[1][None, None]
        elif estimator == "constant":
            t_g = t_gx = torch.zeros(())
        else:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
        dh = invstd * (g_hat - t_g - x_hat * t_gx)
        return torch.cat([torch.einsum("mbh,mbf->mhf", dh, u).flatten(1), dh.sum(1)], dim=1)


def layer_gradient(net: _Net, inputs, labels, index, mean, var, terms=None) -> torch.Tensor:
    """One batch's upstream gradient from the real layer (``net.norm`` with its ``backward``), estimates set to ``(mean, var)``."""
    with torch.no_grad():
        net.norm.running_mean.copy_(mean)
        net.norm.running_var.copy_(var)
        net.norm.num_batches_tracked.fill_(1)
        if terms is not None:
            net.norm.running_grad_mean.copy_(terms[0])
            net.norm.running_grad_xhat_mean.copy_(terms[1])
    net.zero_grad()
    nn.functional.cross_entropy(net(inputs[index]), labels[index]).backward()
    return _upstream(net).clone()


def measure(problem: BiasProblem, sizes: list[int], kinds: tuple[str, ...] = BATCH_KINDS,
            estimators: tuple[str, ...] = ESTIMATORS, check_batches: int = 3, chunk: int = 20000):
    """Relative bias and cosine of every estimator's expected gradient, per batch kind and size.

    Args:
        problem: the problem and the sampling (see :class:`BiasProblem`).
        sizes: batch sizes.
        kinds, estimators: subsets of :data:`BATCH_KINDS` and :data:`ESTIMATORS`.
        check_batches: per (kind, size, estimator), this many batches are also run through the
            real layer; the largest difference from the closed form is returned in ``layer_check``.
        chunk: batches per vectorized pass (memory).

    Returns:
        A :class:`pandas.DataFrame` with one row per (kind, size, estimator): ``batches`` (how
        many), ``exact`` (all enumerated, or Monte Carlo), ``relative_bias`` = ||E g - grad|| /
        ||grad||, ``cosine`` = cos(E g, grad), ``noise_floor`` = ||standard error of E g|| /
        ||grad|| (0 when enumerated), and ``layer_check`` = max |closed form - layer| / ||grad||.

    Raises:
        ValueError: an unknown estimator or kind, or a size its kind cannot draw.
    """
    import pandas as pd

    bad = [e for e in estimators if e not in ESTIMATORS]
    if bad:
        raise ValueError(f"estimators must be among {ESTIMATORS}, got {bad}")
    inputs, labels = make_data(problem)
    network = Network(problem)
    exact, mean, var = network.exact_gradient(inputs, labels)
    scale = exact.norm()
    modules = {e: network.module(e) for e in estimators}
    rows = []
    for kind in kinds:
        for size in sizes:
            index, enumerated = batches(problem, kind, size, labels)
            # the decoupled terms at their expectation over batches of the same kind and size
            # (five times as many independent draws as the estimator's batches, where they are drawn)
            independent = BiasProblem(**{**problem.__dict__, "seed": problem.seed + 7919, "draws": 5 * problem.draws})
            other, _ = batches(independent, kind, size, labels)
            parts = [network.terms(inputs[c], labels[c], mean, var) for c in other.split(chunk)]
            terms = tuple(sum(p[i].sum(0) for p in parts) / len(other) for i in (0, 1))
            for estimator in estimators:
                total = torch.zeros_like(exact)
                square = torch.zeros_like(exact)
                for c in index.split(chunk):
                    g = network.gradients(inputs[c], labels[c], estimator, mean, var, terms)
                    total += g.sum(0)
                    square += g.square().sum(0)
                m = len(index)
                expected = total / m
                noise = 0.0
                if not enumerated:
                    spread = (square / m - expected.square()).clamp(min=0) * m / (m - 1)
                    noise = float((spread / m).sqrt().norm() / scale)
                check = max(float((layer_gradient(modules[estimator], inputs, labels, index[i], mean, var,
                                                  terms if estimator == "decoupled" else None)
                                   - network.gradients(inputs[index[i:i + 1]], labels[index[i:i + 1]], estimator,
                                                       mean, var, terms)[0]).abs().max() / scale)
                            for i in range(min(check_batches, m)))
                rows.append(dict(kind=kind, size=size, estimator=estimator, batches=m, exact=enumerated,
                                 relative_bias=float((expected - exact).norm() / scale),
                                 cosine=float(torch.dot(expected, exact) / (expected.norm() * scale)),
                                 noise_floor=noise, layer_check=check))
    return pd.DataFrame(rows)


def measure_all(seeds: list[int], momenta: list[float], sizes: list[int], draws: int, max_exact: int,
                per_label: int = 20, estimators: tuple[str, ...] = ESTIMATORS):
    """:func:`measure` for every seed (data and parameters) and estimate rate, with ``seed`` and ``momentum`` columns."""
    import pandas as pd

    frames = []
    for seed in seeds:
        for momentum in momenta:
            problem = BiasProblem(per_label=per_label, momentum=momentum, draws=draws, max_exact=max_exact, seed=seed)
            frames.append(measure(problem, sizes, estimators=estimators).assign(seed=seed, momentum=momentum))
    return pd.concat(frames, ignore_index=True)


@functools.lru_cache(maxsize=1)
def bias_fingerprint() -> str:
    """A 12-hex-digit hash of this module's syntax tree (its docstrings and comments do not count)."""
    return results_mod.source_fingerprint(Path(__file__).read_text())[:12]


@dataclass(frozen=True)
class GradientBiasConfig:
    """Chapter 15's measurement of one problem at one seed and estimate rate, a run of the results store.

    A run kind beside :class:`revisit_bn.train.TrainConfig` and :class:`revisit_bn.bounds.BoundsConfig`:
    :func:`measure` of one :class:`BiasProblem` for every batch kind and size, stored as the table
    ``bias`` (one row per kind, size and estimator, with ``seed`` and ``momentum``), so that a
    chapter can show a scale it would take minutes to recompute (the ``paper`` profile's 200,000
    drawn batches, enumeration up to 600,000). Its key holds the numeric modules' fingerprint
    (:func:`revisit_bn.results.code_fingerprint`, which covers the layer the closed form is checked
    against) and this module's own (:func:`bias_fingerprint`), so that editing either makes its
    runs stale while the training runs stay valid.

    Attributes:
        seed: the data, the parameters and the draws (:class:`BiasProblem`).
        momentum: FN's estimate rate in the batch's forward, in (0, 1].
        sizes: the batch sizes, each at least 1 (at most ``per_label`` for single-label batches).
        draws, max_exact, per_label, labels, features, hidden: as in :class:`BiasProblem` (the
            problem's size: the book's is 3 labels in 4 dimensions, hidden width 3; a wider one tests
            that choice).
        experiment, threads, device: as in :class:`revisit_bn.train.TrainConfig` (float64 on the
            CPU; ``device`` is recorded, not used).

    Raises:
        ValueError: any invalid field, named, before anything is computed.

    Source: Lian & Liu (2019), eq. (10), Algorithm 4 and Remark 1.
    """

    seed: int = 0
    momentum: float = 0.1
    sizes: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 12, 16, 20)
    draws: int = 20_000
    max_exact: int = 50_000
    per_label: int = 20
    labels: int = 3
    features: int = 4
    hidden: int = 3
    experiment: str = "gradient_bias"
    threads: int = DEFAULT_THREADS
    device: str = field(default="cpu", compare=False)
    # a replay recomputes the first two (kind, size) steps: random batches of the two smallest sizes
    replay_steps: ClassVar[int] = 2

    def __post_init__(self) -> None:
        _check_common(self.experiment, self.seed, self.threads, self.device)
        object.__setattr__(self, "sizes", tuple(self.sizes))
        for name in ("draws", "max_exact", "per_label", "labels", "features", "hidden"):
            _positive_int(name, getattr(self, name))
        if (not self.sizes or any(isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= self.per_label
                                  for s in self.sizes)):
            raise ValueError(f"sizes must be a non-empty list of integers in 1..per_label ({self.per_label}), "
                             f"got {list(self.sizes)!r}")
        if isinstance(self.momentum, bool) or not isinstance(self.momentum, (int, float)) or not 0 < self.momentum <= 1:
            raise ValueError(f"momentum must be a number in (0, 1] (FN's estimate rate), got {self.momentum!r}")

    def problem(self) -> BiasProblem:
        return BiasProblem(labels=self.labels, per_label=self.per_label, features=self.features, hidden=self.hidden,
                           momentum=self.momentum, draws=self.draws, max_exact=self.max_exact, seed=self.seed)

    def steps(self) -> list[tuple[str, int]]:
        """The (batch kind, size) pairs in the order they are measured: a run's "steps"."""
        return [(kind, size) for kind in BATCH_KINDS for size in self.sizes]

    def key_params(self) -> dict[str, Any]:
        params = dataclasses.asdict(self)
        params.pop("device")
        params["sizes"] = list(self.sizes)
        params["code"] = results_mod.code_fingerprint()
        params["bias_code"] = bias_fingerprint()
        return params

    def replace(self, **changes: Any) -> "GradientBiasConfig":
        return dataclasses.replace(self, **changes)

    def label(self) -> str:
        return (f"{self.experiment}: {self.labels} labels x {self.per_label} in {self.features} dimensions, width "
                f"{self.hidden}, rate {self.momentum:g}, sizes {list(self.sizes)}, {self.draws:,} draws "
                f"(enumerated to {self.max_exact:,})/seed{self.seed}")

    def compute(self, progress: bool = False, max_steps: int | None = None) -> dict[str, Any]:
        """Measure every estimator, batch kind and size (a "step" is one kind and size, see :meth:`steps`).

        Returns ``{"metrics": {}, "steps": {"train_loss": [...]}, "tables": {"bias": ...}}``:
        ``steps`` holds, per step, the sum over the estimators of their relative bias (the values
        a replay of the first steps recomputes, :func:`revisit_bn.store.replay`; the store's
        generic name), ``bias`` the rows of :func:`measure` with ``seed``, ``momentum`` and the
        problem's ``labels``, ``features`` and ``hidden``.
        ``max_steps``: only the first steps.
        """
        import pandas as pd
        from tqdm import tqdm

        pairs = self.steps() if max_steps is None else self.steps()[:max_steps]
        problem, parts = self.problem(), []
        with torch_threads(self.threads):
            # batches are seeded per (seed, kind, size): step by step measures what one call measures
            for kind, size in tqdm(pairs, desc=self.label(), disable=not progress, leave=False):
                parts.append(measure(problem, [size], kinds=(kind,)))
        table = pd.concat(parts, ignore_index=True).assign(seed=self.seed, momentum=float(self.momentum),
                                                           labels=self.labels, features=self.features, hidden=self.hidden)
        per_step = [float(part.relative_bias.sum()) for part in parts]
        columns = {c: [v.item() if hasattr(v, "item") else v for v in table[c]] for c in table.columns}
        return {"metrics": {}, "steps": {"train_loss": per_step}, "tables": {"bias": columns}}
