r"""SymPy: BN's objectives (Lian & Liu 2019, Section 4) and BN's gradient and Hessian (Santurkar et al. 2018, Section 4).

Everything here is exact arithmetic on SymPy expressions, for small symbolic datasets and batch
sizes. Identities are checked with ``sympy.simplify(lhs - rhs) == 0`` by the notebooks and the tests.

**Lian & Liu.** A dataset is a list of samples; a *feature* ``g`` maps a sample to a SymPy
expression (the input of a normalization layer). The normalization operator of eq. (6)
standardizes ``g`` with the mean and variance of ``g`` over a set ``B`` of samples; eq. (7) is the
plain layer. A *batch family* (a list of index tuples) turns a per-sample loss into objective (9);
the family ``[all indices]`` gives (10); the unnormalized model gives (8).

**Santurkar et al.** One unit of a BN layer over a batch of ``m``: pre-activations
:math:`y\in\mathbb R^m`, :math:`\hat y = (y-\mu\mathbf 1)/\sigma`, :math:`z=\gamma\hat y+\beta`,
and a downstream loss with gradient :math:`g` and Hessian :math:`H` at :math:`z`.

Source: Lian & Liu (2019), eqs. (6)-(10); Santurkar et al. (2018), Fact C.1, Theorems 4.1-4.2.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable, Sequence

import sympy as sp

Expr = sp.Expr
Feature = Callable[[object], Expr]
Loss = Callable[[Expr, object], Expr]

# ----------------------------------------------------------------------------------------------
# Lian & Liu: operators and objectives
# ----------------------------------------------------------------------------------------------


def mean(values: Sequence[Expr]) -> Expr:
    r""":math:`\mathbb E(g, B) = \frac1{|B|}\sum_{x\in B} g(x)` for the values of ``g`` on ``B``."""
    if not values:
        raise ValueError("the mean of an empty batch is undefined; a batch needs at least one sample")
    return sp.Add(*values) / len(values)


def variance(values: Sequence[Expr]) -> Expr:
    r""":math:`\operatorname{Var}(g, B) = \frac1{|B|}\sum_{x\in B}(g(x)-\mathbb E(g,B))^2` (population variance)."""
    mu = mean(values)
    return sp.Add(*[(v - mu) ** 2 for v in values]) / len(values)


def normalize(feature: Feature, batch: Sequence[object], eps: Expr = 0) -> Callable[[object], Expr]:
    r"""The normalization operator of eq. (6), without its activation and weights.

    .. math:: x \mapsto \frac{g(x) - \mathbb E(g, B)}{\sqrt{\operatorname{Var}(g, B) + \epsilon}}

    Args:
        feature: ``g``, a sample -> SymPy expression.
        batch: the samples ``B`` whose statistics are used.
        eps: the :math:`\epsilon` of implementations (0 in the paper's operator).

    Returns:
        A function of a sample (not necessarily in ``B``).

    Raises:
        ValueError: an empty batch.

    Source: Lian & Liu (2019), eq. (6).
    """
    values = [feature(x) for x in batch]
    mu, var = mean(values), variance(values)
    return lambda x: (feature(x) - mu) / sp.sqrt(var + eps)


def plain_layer(feature: Feature, weight: Expr, activation: Callable[[Expr], Expr] = lambda u: u) -> Callable[[object], Expr]:
    r"""The plain layer operator of eq. (7): :math:`x\mapsto f(\theta^\top g(x))` (one unit)."""
    return lambda x: activation(weight * feature(x))


def all_subsets(n: int, batch_size: int) -> list[tuple[int, ...]]:
    r"""The batch family :math:`\{B\subset\mathcal D: |B| = b\}` over indices ``0..n-1``.

    Raises:
        ValueError: ``batch_size`` outside ``1..n``.
    """
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must lie in 1..{n}, got {batch_size}")
    return list(itertools.combinations(range(n), batch_size))


def shards(parts: Sequence[Sequence[int]], batch_size: int) -> list[tuple[int, ...]]:
    r"""The distributed family :math:`\bigcup_i\{B\subset\mathcal D_i: |B|=b\}` of disjoint local datasets.

    Raises:
        ValueError: overlapping parts, or a part with fewer than ``batch_size`` samples.
    """
    flat = [i for part in parts for i in part]
    if len(flat) != len(set(flat)):
        raise ValueError("shards must be disjoint")
    if any(len(part) < batch_size for part in parts):
        raise ValueError(f"every shard needs at least batch_size={batch_size} samples")
    return [b for part in parts for b in itertools.combinations(tuple(part), batch_size)]


def full_batch(n: int) -> list[tuple[int, ...]]:
    r"""The family :math:`\{\mathcal D\}` of objective (10)."""
    return [tuple(range(n))]


def common_objective(model: Callable[[object], Expr], dataset: Sequence[tuple[object, object]], loss: Loss) -> Expr:
    r"""Objective (8): :math:`\frac1{|\mathcal D|}\sum_{(x,y)\in\mathcal D}\ell(\bar F(x;\theta), y)`."""
    return mean([loss(model(x), y) for x, y in dataset])


def bn_objective(
    model: Callable[[Sequence[object], object], Expr],
    dataset: Sequence[tuple[object, object]],
    family: Sequence[Sequence[int]],
    loss: Loss,
) -> Expr:
    r"""Objective (9): :math:`\frac1{|\mathfrak B|}\sum_{B\in\mathfrak B}\frac1{|B|}\sum_{(x,y)\in B}\ell(F_{BN}(x;\theta,B),y)`.

    Args:
        model: ``(batch_inputs, x) -> prediction``; the network normalizing with ``batch_inputs``.
        dataset: ``[(x, y), ...]``.
        family: batches as index tuples (see :func:`all_subsets`, :func:`shards`, :func:`full_batch`).
        loss: ``(prediction, y) -> expression``.

    Source: Lian & Liu (2019), eq. (9); with ``family = full_batch(n)`` eq. (10).
    """
    if not family:
        raise ValueError("the batch family is empty")
    per_batch = []
    for batch in family:
        inputs = [dataset[i][0] for i in batch]
        per_batch.append(mean([loss(model(inputs, dataset[i][0]), dataset[i][1]) for i in batch]))
    return mean(per_batch)


def fn_objective(model, dataset, loss) -> Expr:
    """Objective (10): BN's objective with the whole dataset as the only batch."""
    return bn_objective(model, dataset, full_batch(len(dataset)), loss)


def stationary_points(objective: Expr, params: Sequence[sp.Symbol]) -> list[dict]:
    """Exact solutions of :math:`\\nabla_\\theta \\text{objective} = 0` (SymPy ``solve``)."""
    return sp.solve([sp.diff(objective, p) for p in params], list(params), dict=True)


# ----------------------------------------------------------------------------------------------
# Santurkar et al.: one BN unit over a batch of m
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BNUnit:
    r"""Symbols and expressions of one BN unit over a batch of ``m`` (Santurkar et al. Sec. 4.1).

    Attributes:
        m: batch size.
        y: pre-activations :math:`y\in\mathbb R^m` (column Matrix of symbols).
        g: downstream gradient :math:`g=\partial\mathcal L/\partial z` (symbols).
        H: downstream Hessian :math:`H=\partial^2\mathcal L/\partial z^2` (symmetric symbols).
        gamma, beta, eps: scale, shift and the variance offset (``eps`` is 0 unless asked).
        mu, sigma: batch mean and standard deviation :math:`\sqrt{\operatorname{Var}+\epsilon}`.
        y_hat, z: normalized values and outputs.
    """

    m: int
    y: sp.Matrix
    g: sp.Matrix
    H: sp.Matrix
    gamma: sp.Symbol
    beta: sp.Symbol
    eps: Expr
    mu: Expr
    sigma: Expr
    y_hat: sp.Matrix
    z: sp.Matrix

    @property
    def ones(self) -> sp.Matrix:
        return sp.ones(self.m, 1)


def bn_unit(m: int, with_eps: bool = False) -> BNUnit:
    """Symbols of one BN unit over a batch of ``m`` (``m >= 2``).

    Raises:
        ValueError: ``m < 2`` (a batch of one has zero variance).
    """
    if m < 2:
        raise ValueError(f"m must be at least 2, got {m}")
    y = sp.Matrix(sp.symbols(f"y1:{m + 1}", real=True))
    g = sp.Matrix(sp.symbols(f"g1:{m + 1}", real=True))
    H = sp.Matrix(m, m, lambda i, j: sp.Symbol(f"H{min(i, j) + 1}{max(i, j) + 1}", real=True))
    gamma = sp.Symbol("gamma", positive=True)
    beta = sp.Symbol("beta", real=True)
    eps = sp.Symbol("epsilon", positive=True) if with_eps else sp.Integer(0)
    mu = sum(y) / m
    sigma = sp.sqrt(sum((yi - mu) ** 2 for yi in y) / m + eps)
    y_hat = (y - mu * sp.ones(m, 1)) / sigma
    return BNUnit(m, y, g, H, gamma, beta, eps, mu, sigma, y_hat, gamma * y_hat + beta * sp.ones(m, 1))


def bn_backward_chain_rule(unit: BNUnit) -> sp.Matrix:
    r""":math:`\nabla_y\widehat{\mathcal L} = (\partial z/\partial y)^\top g` by differentiating the forward pass."""
    return unit.z.jacobian(unit.y).T * unit.g


def bn_backward_projection(unit: BNUnit) -> sp.Matrix:
    r"""The projection form (Fact C.1):
    :math:`\frac{\gamma}{\sigma}\big(g-\frac1m\langle\mathbf 1,g\rangle\mathbf 1-\frac1m\langle g,\hat y\rangle\hat y\big)`."""
    m, g, y_hat = unit.m, unit.g, unit.y_hat
    return (unit.gamma / unit.sigma) * (g - (unit.ones.dot(g) / m) * unit.ones - (g.dot(y_hat) / m) * y_hat)


def theorem_4_1_rhs(unit: BNUnit, coefficient: Expr | None = None, mean_term: str = "paper") -> Expr:
    r"""Right side of Theorem 4.1 in one of its printed forms.

    .. math:: \frac{\gamma^2}{\sigma^2}\Big(\|g\|^2 - T_\mu - c\,\langle g,\hat y\rangle^2\Big)

    Args:
        coefficient: ``c``; default :math:`1/m` (the form the appendix proves). Pass
            ``1/sqrt(m)`` for the form printed in some copies.
        mean_term: ``"paper"`` for :math:`T_\mu=\frac1m\langle\mathbf 1,g\rangle^2`, ``"blog"`` for
            the blog's :math:`\mu(g)^2` (the mean of ``g``, squared).

    Source: Santurkar et al. (2018), Theorem 4.1; NOTES.md section 1.3.
    """
    m, g = unit.m, unit.g
    c = sp.Integer(1) / m if coefficient is None else coefficient
    if mean_term == "paper":
        t_mu = unit.ones.dot(g) ** 2 / m
    elif mean_term == "blog":
        t_mu = (unit.ones.dot(g) / m) ** 2
    else:
        raise ValueError(f"mean_term must be 'paper' or 'blog', got {mean_term!r}")
    return unit.gamma**2 / unit.sigma**2 * (g.dot(g) - t_mu - c * g.dot(unit.y_hat) ** 2)


def downstream_quadratic(unit: BNUnit) -> Expr:
    r"""A downstream loss with gradient ``g`` and Hessian ``H`` at the current output ``z``:
    :math:`\mathcal L(z') = g^\top(z'-z_0) + \tfrac12(z'-z_0)^\top H(z'-z_0)`, then :math:`z_0 := z`.

    Returned as a function of ``y`` through ``z(y)`` with a placeholder ``z0``; see :func:`bn_hessian_quadratic`.
    """
    z0 = sp.Matrix(sp.symbols(f"zeta1:{unit.m + 1}", real=True))
    d = unit.z - z0
    return unit.g.dot(d) + (d.T * unit.H * d)[0] / 2, z0


def bn_hessian_quadratic(unit: BNUnit, direction: sp.Matrix | None = None, at: dict | None = None) -> Expr:
    r""":math:`v^\top\,\partial^2\widehat{\mathcal L}/\partial y^2\,v`, by differentiating the composition twice.

    Args:
        direction: ``v``; default the BN gradient :math:`\nabla_y\widehat{\mathcal L}` (Theorem 4.2's).
        at: optional substitution for ``y`` (numbers), applied before the second differentiation's
            simplification to keep expressions small.

    Source: Santurkar et al. (2018), Theorem 4.2 (left side).
    """
    loss, z0 = downstream_quadratic(unit)
    hess = sp.hessian(loss, list(unit.y))
    grad = sp.Matrix([sp.diff(loss, v) for v in unit.y])
    at_z = {z0[i]: unit.z[i] for i in range(unit.m)}
    hess, grad = hess.subs(at_z), grad.subs(at_z)
    v = grad if direction is None else direction
    value = (v.T * hess * v)[0]
    return value.subs(at) if at else value


def theorem_4_2_rhs(unit: BNUnit, form: str = "general", direction: sp.Matrix | None = None) -> Expr:
    r"""Right side of Theorem 4.2.

    ``form="general"``:
    :math:`\frac{\gamma^2}{\sigma^2} v^\top H v - \frac{\gamma}{m\sigma^2}\langle g,\hat y\rangle\|v\|^2`;
    ``form="conditional"`` (as printed, when "H preserves the relative norms" of ``g`` and ``v``):
    :math:`\frac{\gamma^2}{\sigma^2}\big(g^\top H g - \frac{1}{m\gamma}\langle g,\hat y\rangle\|v\|^2\big)`;
    ``form="corrected"`` (our correction of it):
    :math:`\frac{\gamma^4}{\sigma^4}g^\top H g - \frac{\gamma}{m\sigma^2}\langle g,\hat y\rangle\|v\|^2`;
    with ``v`` the BN gradient (:func:`bn_backward_projection`) unless given.

    Raises:
        ValueError: an unknown ``form``.

    Source: Santurkar et al. (2018), Theorem 4.2; NOTES.md section 1.4.
    """
    v = bn_backward_projection(unit) if direction is None else direction
    m, g, gamma, s2 = unit.m, unit.g, unit.gamma, unit.sigma**2
    corr = g.dot(unit.y_hat) * v.dot(v)
    if form == "general":
        return gamma**2 / s2 * (v.T * unit.H * v)[0] - gamma / (m * s2) * corr
    if form == "conditional":
        return gamma**2 / s2 * ((g.T * unit.H * g)[0] - corr / (m * gamma))
    if form == "corrected":
        return gamma**4 / s2**2 * (g.T * unit.H * g)[0] - gamma / (m * s2) * corr
    raise ValueError(f"form must be 'general', 'conditional' or 'corrected', got {form!r}")


def is_zero(expr: Expr) -> bool:
    """``sympy.simplify(expr) == 0`` (also for matrices)."""
    simplified = sp.simplify(expr)
    if isinstance(simplified, sp.MatrixBase):
        return all(e == 0 for e in simplified)
    return simplified == 0
