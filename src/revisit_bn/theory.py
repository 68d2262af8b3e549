r"""Numerical checks of the theorems: vectorized bound checks and rate fits (pure mathematics, no training).

**Santurkar et al., Theorems 4.1 and 4.2** concern one BN unit over a batch of ``m``:
pre-activations :math:`y`, :math:`\hat y=(y-\mu)/\sigma` with :math:`\sigma=\sqrt{\operatorname{Var}(y)+\epsilon}`,
:math:`z=\gamma\hat y+\beta`, and a downstream loss with gradient :math:`g` and Hessian :math:`H` at
:math:`z`. :func:`bn_gradient` is the exact BN backward pass (valid for every :math:`\epsilon`),
and :func:`bn_hessian_quadratic` the exact second directional derivative of the composition. Both
are in closed form and vectorized over a leading batch of instances. The printed right-hand
sides are :data:`THEOREM_4_1_FORMS` and :data:`THEOREM_4_2_FORMS`.

The experiments that evaluate these formulas on training networks live on the experiments side:
the real-layer trace in :class:`revisit_bn.landscape.TheoremTrace`, the MCSGD rate experiment in
:class:`revisit_bn.train.McsgdConfig`; :func:`fit_power_law` fits their rates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

# ----------------------------------------------------------------------------------------------
# One BN unit, vectorized: tensors of shape (n, m) for n instances of batch size m
# ----------------------------------------------------------------------------------------------


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(-1)


def bn_normalize(y: torch.Tensor, eps: torch.Tensor | float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(y_hat, sigma)`` of shape ``(n, m)`` and ``(n,)``: BN's normalization of each row (population variance)."""
    eps = torch.as_tensor(eps, dtype=y.dtype)
    centered = y - y.mean(-1, keepdim=True)
    sigma = torch.sqrt(centered.square().mean(-1) + eps)
    return centered / sigma.unsqueeze(-1), sigma


def bn_gradient(y, g, gamma, eps=0.0) -> torch.Tensor:
    r"""The BN backward pass :math:`\nabla_y\widehat{\mathcal L}` for downstream gradient ``g``.

    .. math:: \frac{\gamma}{\sigma}\Big(g-\tfrac1m\langle\mathbf 1,g\rangle\mathbf 1-\tfrac1m\langle g,\hat y\rangle\hat y\Big)

    exact for every :math:`\epsilon\ge 0` (with :math:`\sigma=\sqrt{\operatorname{Var}+\epsilon}`).

    Shape: ``y``, ``g``: ``(n, m)``; ``gamma``, ``eps``: ``(n,)`` or scalars; output ``(n, m)``.

    Source: Santurkar et al. (2018), Fact C.1.
    """
    m = y.shape[-1]
    y_hat, sigma = bn_normalize(y, eps)
    gamma = torch.as_tensor(gamma, dtype=y.dtype)
    proj = g - g.mean(-1, keepdim=True) - y_hat * (_dot(g, y_hat) / m).unsqueeze(-1)
    return (gamma / sigma).unsqueeze(-1) * proj


def bn_hessian_quadratic(y, g, hvp: Callable[[torch.Tensor], torch.Tensor], gamma, v, eps=0.0, return_scale: bool = False):
    r""":math:`v^\top\,\nabla^2_y\widehat{\mathcal L}\,v` for :math:`\widehat{\mathcal L}(y)=\mathcal L(z(y))`.

    With :math:`z(y+tv)` expanded to second order,
    :math:`v^\top\nabla^2\widehat{\mathcal L}v = (z')^\top H z' + g^\top z''`, where, with
    :math:`c=y-\mu\mathbf 1`, :math:`w=v-\bar v\mathbf 1`, :math:`\sigma'=\langle c,w\rangle/(m\sigma)`,
    :math:`\sigma''=\|w\|^2/(m\sigma)-\langle c,w\rangle^2/(m^2\sigma^3)`:

    .. math::
        z' = \gamma\Big(\frac{w}{\sigma}-\frac{c\,\sigma'}{\sigma^2}\Big),\qquad
        z'' = -\gamma\Big(\frac{2w\sigma'}{\sigma^2} + c\Big(\frac{\sigma''}{\sigma^2}-\frac{2\sigma'^2}{\sigma^3}\Big)\Big).

    Args:
        y, g, v: ``(n, m)``.
        hvp: ``u -> H u`` on ``(n, m)`` tensors (the downstream Hessian).
        gamma, eps: ``(n,)`` or scalars.
        return_scale: also return the magnitude of its terms, :math:`|z'^\top Hz'|+\sum|g||z''|`,
            against which float64 rounding is judged.

    Returns:
        ``(n,)``, or ``((n,), (n,))`` with ``return_scale``.

    Source: Santurkar et al. (2018), Theorem 4.2 (its left side).
    """
    m = y.shape[-1]
    eps = torch.as_tensor(eps, dtype=y.dtype)
    gamma = torch.as_tensor(gamma, dtype=y.dtype).expand(y.shape[:-1]).unsqueeze(-1)
    c = y - y.mean(-1, keepdim=True)
    w = v - v.mean(-1, keepdim=True)
    sigma = torch.sqrt(c.square().mean(-1) + eps).unsqueeze(-1)
    cw = _dot(c, w).unsqueeze(-1)
    d1 = cw / (m * sigma)
    d2 = _dot(w, w).unsqueeze(-1) / (m * sigma) - cw.square() / (m**2 * sigma**3)
    z1 = gamma * (w / sigma - c * d1 / sigma**2)
    z2 = -gamma * (2 * w * d1 / sigma**2 + c * (d2 / sigma**2 - 2 * d1.square() / sigma**3))
    curvature, correction = _dot(z1, hvp(z1)), _dot(g, z2)
    if return_scale:
        return curvature + correction, curvature.abs() + _dot(g.abs(), z2.abs())
    return curvature + correction


def theorem_4_1_rhs(y, g, gamma, eps=0.0, coefficient: str = "1/m", mean_term: str = "paper") -> torch.Tensor:
    r""":math:`\frac{\gamma^2}{\sigma^2}(\|g\|^2 - T_\mu - c\langle g,\hat y\rangle^2)`, vectorized; see :func:`revisit_bn.symbolic.theorem_4_1_rhs`.

    Args:
        coefficient: ``"1/m"`` or ``"1/sqrt(m)"``.
        mean_term: ``"paper"`` (:math:`\frac1m\langle\mathbf 1,g\rangle^2`) or ``"blog"`` (:math:`\mu(g)^2`).
    """
    m = y.shape[-1]
    y_hat, sigma = bn_normalize(y, eps)
    c = {"1/m": 1.0 / m, "1/sqrt(m)": 1.0 / math.sqrt(m)}[coefficient]
    t_mu = {"paper": g.sum(-1).square() / m, "blog": g.mean(-1).square()}[mean_term]
    gamma = torch.as_tensor(gamma, dtype=y.dtype)
    return gamma**2 / sigma**2 * (_dot(g, g) - t_mu - c * _dot(g, y_hat).square())


THEOREM_4_1_FORMS = {
    "1/m (appendix proof)": dict(coefficient="1/m", mean_term="paper"),
    "1/sqrt(m) (printed in some copies)": dict(coefficient="1/sqrt(m)", mean_term="paper"),
    "blog: mu(g)^2 and 1/sqrt(m)": dict(coefficient="1/sqrt(m)", mean_term="blog"),
    "blog mean term mu(g)^2 with 1/m": dict(coefficient="1/m", mean_term="blog"),
}


def theorem_4_2_rhs(y, g, hvp, gamma, v, eps=0.0, form: str = "general") -> torch.Tensor:
    r"""Theorem 4.2's right side, vectorized; ``v`` is the BN gradient.

    ``form``: ``"general"``, ``"conditional"`` (as printed) or ``"corrected"`` (the conditional form
    with :math:`\gamma^4/\sigma^4` on :math:`g^\top Hg`, our correction); see
    :func:`revisit_bn.symbolic.theorem_4_2_rhs`. Shapes as :func:`bn_hessian_quadratic`; output ``(n,)``.

    Raises:
        ValueError: an unknown ``form``.

    Source: Santurkar et al. (2018), Theorem 4.2.
    """
    if form not in THEOREM_4_2_FORMS + ("corrected",):
        raise ValueError(f"form must be 'general', 'conditional' or 'corrected', got {form!r}")
    m = y.shape[-1]
    y_hat, sigma = bn_normalize(y, eps)
    gamma = torch.as_tensor(gamma, dtype=y.dtype)
    corr = _dot(g, y_hat) * _dot(v, v)
    if form == "general":
        return gamma**2 / sigma**2 * _dot(v, hvp(v)) - gamma / (m * sigma**2) * corr
    if form == "conditional":
        return gamma**2 / sigma**2 * (_dot(g, hvp(g)) - corr / (m * gamma))
    return gamma**4 / sigma**4 * _dot(g, hvp(g)) - gamma / (m * sigma**2) * corr


THEOREM_4_2_FORMS = ("general", "conditional")  # the printed forms (chapter 13 counts their violations)


# ----------------------------------------------------------------------------------------------
# Random instances and violation counts
# ----------------------------------------------------------------------------------------------


@dataclass
class Instances:
    """``n`` random instances of one BN unit with batch size ``m`` (float64 tensors).

    Attributes:
        y, g: ``(n, m)``; ``gamma``, ``eps``: ``(n,)``; ``hessian_factor`` ``(n, m, k)`` and
        ``hessian_weights`` ``(n, k)``, ``hessian_shift`` ``(n,)``: :math:`H = A\\,\\mathrm{diag}(d)A^\\top + \\lambda I`.
        convex: whether every ``H`` is positive semi-definite.
    """

    y: torch.Tensor
    g: torch.Tensor
    gamma: torch.Tensor
    eps: torch.Tensor
    hessian_factor: torch.Tensor
    hessian_weights: torch.Tensor
    hessian_shift: torch.Tensor
    convex: bool

    def hessian_norm_bound(self) -> torch.Tensor:
        """An upper bound ``(n,)`` on the spectral norm of each ``H``."""
        col = self.hessian_factor.square().sum(1)  # (n, k): squared column norms of A
        return (self.hessian_weights.abs() * col).sum(-1) + self.hessian_shift.abs()

    def hvp(self, u: torch.Tensor) -> torch.Tensor:
        """``H u`` for ``u`` of shape ``(n, m)``, without forming ``H``."""
        a, d = self.hessian_factor, self.hessian_weights
        coeff = torch.einsum("nmk,nm->nk", a, u) * d
        return torch.einsum("nmk,nk->nm", a, coeff) + self.hessian_shift.unsqueeze(-1) * u


def sample_instances(n: int, m: int, seed, convex: bool, with_eps: bool = True, rank: int = 6) -> Instances:
    """Random instances: heavy-tailed gradients, varied scales, convex or indefinite Hessians.

    ``y`` is Gaussian with a random mean and a log-uniform scale in [1e-2, 1e2]; ``g`` is Student-t
    with 1.5 degrees of freedom (infinite variance) times a log-uniform scale; ``gamma`` is
    log-uniform in [1e-2, 1e2]; ``eps`` is 0 or log-uniform in [1e-8, 1] (half each) when
    ``with_eps``; ``H`` has rank ``min(rank, m)`` plus a shift, with non-negative weights and shift
    when ``convex`` and mixed signs otherwise.

    Args:
        seed: an int or a tuple of ints (numpy ``SeedSequence`` entropy).

    Raises:
        ValueError: ``n < 1`` or ``m < 2``.
    """
    if n < 1 or m < 2:
        raise ValueError(f"need n >= 1 and m >= 2, got n={n}, m={m}")
    rng = np.random.default_rng(seed)

    def log_uniform(lo, hi, size):
        return np.exp(rng.uniform(math.log(lo), math.log(hi), size))

    y = rng.standard_normal((n, m)) * log_uniform(1e-2, 1e2, (n, 1)) + rng.standard_normal((n, 1)) * 10
    g = rng.standard_t(1.5, (n, m)) * log_uniform(1e-2, 1e2, (n, 1))
    gamma = log_uniform(1e-2, 1e2, n)
    eps = np.where(rng.uniform(size=n) < 0.5, 0.0, log_uniform(1e-8, 1.0, n)) if with_eps else np.zeros(n)
    k = min(rank, m)
    factor = rng.standard_normal((n, m, k)) / math.sqrt(m)
    weights = log_uniform(1e-2, 1e2, (n, k))
    shift = log_uniform(1e-3, 1e1, n)
    if not convex:
        weights = weights * rng.choice([-1.0, 1.0], (n, k))
        shift = shift * rng.choice([-1.0, 1.0], n)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))
    return Instances(t(y), t(g), t(gamma), t(eps), t(factor), t(weights), t(shift), convex)


def violations(lhs: torch.Tensor, rhs: torch.Tensor, scale: torch.Tensor, rtol: float = 1e-9) -> torch.Tensor:
    r"""Boolean ``(n,)``: ``lhs > rhs`` by more than float64 rounding can explain.

    ``scale`` is the magnitude of the terms *before* they cancel (e.g. :math:`\gamma^2\|g\|^2/\sigma^2`
    for Theorem 4.1): an identity evaluated in float64 differs from zero by up to about
    ``m * 1e-16 * scale``, and heavy-tailed instances make that large next to ``lhs`` itself.
    """
    return lhs - rhs > rtol * scale


def check_bounds(batch_sizes=(2, 4, 16, 64, 256), per_size: int = 20_000, seed: int = 0, chunk: int = 5_000,
                 progress: bool = True):
    """Both sides of every printed form of Theorems 4.1 and 4.2 on random instances.

    For each batch size, ``per_size`` instances with convex and ``per_size`` with non-convex
    downstream losses (Theorem 4.1 does not involve ``H``: it uses the convex half). Each
    instance's ``y`` is centred before the check: BN and both theorems are invariant to its mean,
    and a mean far above the spread only adds cancellation (4 of the 1.2 million instances of the
    `paper` profile, all at ``m = 2`` with a spread below 1e-5 of the mean, read as violations of
    Theorem 4.2 at ``eps = 0`` uncentred, where both sides are exactly 0).

    Returns:
        :class:`pandas.DataFrame` with one row per instance and statement form: ``statement``,
        ``form``, ``m``, ``convex``, ``eps_zero``, ``lhs``, ``rhs``, ``violated``,
        ``conditions`` (Theorem 4.2's named conditions hold: ``H`` PSD and :math:`\\langle g,\\hat y\\rangle\\ge0`).
    """
    import pandas as pd

    frames = []
    jobs = [(m, convex, start) for m in batch_sizes for convex in (True, False) for start in range(0, per_size, chunk)]
    for m, convex, start in tqdm(jobs, desc="bound checks", unit="chunk", disable=not progress):
        size = min(chunk, per_size - start)
        inst = sample_instances(size, m, seed=(seed, m, int(convex), start), convex=convex)
        # BN is invariant to the mean of y: centring it removes only float64 cancellation, which a mean
        # a million times the spread turns into spurious violations (at m = 2, where both sides are exactly 0)
        inst = replace(inst, y=inst.y - inst.y.mean(-1, keepdim=True))
        v = bn_gradient(inst.y, inst.g, inst.gamma, inst.eps)
        y_hat, _ = bn_normalize(inst.y, inst.eps)
        base = dict(m=m, convex=convex, eps_zero=(inst.eps == 0).numpy(),
                    conditions=(convex & (_dot(inst.g, y_hat) >= 0)).numpy())
        _, sigma = bn_normalize(inst.y, inst.eps)
        rows = []
        if convex:
            lhs1 = _dot(v, v)
            scale1 = inst.gamma**2 / sigma**2 * (_dot(inst.g, inst.g) + inst.g.sum(-1).square() / m + _dot(inst.g, y_hat).square())
            for form, kwargs in THEOREM_4_1_FORMS.items():
                rhs = theorem_4_1_rhs(inst.y, inst.g, inst.gamma, inst.eps, **kwargs)
                rows.append(dict(statement="Theorem 4.1", form=form, lhs=lhs1.numpy(), rhs=rhs.numpy(),
                                 violated=violations(lhs1, rhs, scale1 + lhs1).numpy()))
        lhs2, scale2 = bn_hessian_quadratic(inst.y, inst.g, inst.hvp, inst.gamma, v, inst.eps, return_scale=True)
        corr = (inst.gamma / (m * sigma**2) * (_dot(inst.g, y_hat) * _dot(v, v))).abs()
        for form in THEOREM_4_2_FORMS:
            rhs = theorem_4_2_rhs(inst.y, inst.g, inst.hvp, inst.gamma, v, inst.eps, form)
            # |u^T H u| <= ||H|| (gamma/sigma)^2 ||g||^2 for u = v or g scaled: the terms' natural size
            floor = inst.hessian_norm_bound() * inst.gamma**2 / sigma**2 * _dot(inst.g, inst.g)
            scale = scale2 + corr + (inst.gamma**2 / sigma**2 * _dot(v, inst.hvp(v))).abs() + floor
            rows.append(dict(statement="Theorem 4.2", form=form, lhs=lhs2.numpy(), rhs=rhs.numpy(),
                             violated=violations(lhs2, rhs, scale).numpy()))
        for row in rows:
            frames.append(pd.DataFrame({**base, **row}))
    return pd.concat(frames, ignore_index=True)


def conditional_instances(n: int, m: int, seed) -> Instances:
    r"""Random instances meeting every hypothesis of Theorem 4.2's conditional form, at :math:`\epsilon=0`.

    ``y`` and ``gamma`` as in :func:`sample_instances` (``y`` centred); ``g`` Student-t with its sign
    chosen so that :math:`\langle g,\hat y\rangle\ge0`; :math:`H=\rho I+w\,uu^\top` with
    :math:`\rho, w\ge0` (so :math:`H\succeq0`) and a unit ``u`` orthogonal to ``g`` and to the BN
    gradient ``v``. Then :math:`Hg=\rho g` and :math:`Hv=\rho v`: ``H`` preserves the relative
    norms of ``g`` and ``v`` under every reading we can give the phrase (equal Rayleigh quotients,
    :math:`\|Hg\|/\|Hv\|=\|g\|/\|v\|`), yet ``H`` is not a multiple of the identity (our choice).

    Args:
        seed: an int or a tuple of ints (numpy ``SeedSequence`` entropy).

    Raises:
        ValueError: ``n < 1`` or ``m < 3`` (``u`` needs a third dimension).

    Source: Santurkar et al. (2018), Theorem 4.2 (conditional form); NOTES.md section 1.4.
    """
    if n < 1 or m < 3:
        raise ValueError(f"need n >= 1 and m >= 3 (u must be orthogonal to g and v), got n={n}, m={m}")
    rng = np.random.default_rng(seed)

    def log_uniform(lo, hi, size):
        return np.exp(rng.uniform(math.log(lo), math.log(hi), size))

    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))  # noqa: E731
    y = t(rng.standard_normal((n, m)) * log_uniform(1e-2, 1e2, (n, 1)))
    y = y - y.mean(-1, keepdim=True)
    g = t(rng.standard_t(1.5, (n, m)) * log_uniform(1e-2, 1e2, (n, 1)))
    gamma = t(log_uniform(1e-2, 1e2, n))
    y_hat, _ = bn_normalize(y)
    g = torch.where((_dot(g, y_hat) < 0).unsqueeze(-1), -g, g)
    v = bn_gradient(y, g, gamma)
    q1 = v / v.norm(dim=-1, keepdim=True)
    q2 = g - _dot(g, q1).unsqueeze(-1) * q1
    q2 = q2 / q2.norm(dim=-1, keepdim=True)
    u = t(rng.standard_normal((n, m)))
    for q in (q1, q2, q1, q2):  # twice: the second pass removes what rounding left of the first
        u = u - _dot(u, q).unsqueeze(-1) * q
    u = u / u.norm(dim=-1, keepdim=True)
    weights, shift = t(log_uniform(1e-2, 1e2, (n, 1))), t(log_uniform(1e-3, 1e1, n))
    return Instances(y, g, gamma, torch.zeros(n, dtype=torch.float64), u.unsqueeze(-1), weights, shift, True)


def check_conditional_form(batch_sizes=(3, 4, 16, 64), per_size: int = 20_000, seed: int = 0):
    r"""Theorem 4.2's conditional form, as printed and as corrected, on :func:`conditional_instances`.

    Returns:
        :class:`pandas.DataFrame` indexed by ``m`` with ``instances``, ``gamma > sigma`` (instances
        with :math:`\gamma>\sigma`), ``printed violated``, ``printed violated, gamma <= sigma``,
        ``corrected violated``, ``general violated`` (the general form, an identity here) and
        ``hypothesis gap`` (the largest relative difference of the Rayleigh quotients of ``g`` and
        ``v``: rounding only).

    Raises:
        ValueError: ``per_size < 1`` or a batch size below 3.

    Source: Santurkar et al. (2018), Theorem 4.2.
    """
    import pandas as pd

    if per_size < 1 or min(batch_sizes, default=0) < 3:
        raise ValueError(f"need per_size >= 1 and every batch size >= 3, got per_size={per_size}, "
                         f"batch_sizes={list(batch_sizes)}")
    rows = []
    for m in batch_sizes:
        inst = conditional_instances(per_size, m, seed=(seed, m))
        v = bn_gradient(inst.y, inst.g, inst.gamma)
        y_hat, sigma = bn_normalize(inst.y)
        lhs, scale = bn_hessian_quadratic(inst.y, inst.g, inst.hvp, inst.gamma, v, return_scale=True)
        ratio = inst.gamma**2 / sigma**2
        scale = (scale + (inst.gamma / (m * sigma**2) * _dot(inst.g, y_hat) * _dot(v, v)).abs()
                 + ratio * _dot(v, inst.hvp(v)).abs() + ratio**2 * _dot(inst.g, inst.hvp(inst.g)).abs())
        violated = {form: violations(lhs, theorem_4_2_rhs(inst.y, inst.g, inst.hvp, inst.gamma, v, form=form), scale)
                    for form in ("conditional", "corrected", "general")}
        above = inst.gamma > sigma
        quotient = lambda u: _dot(u, inst.hvp(u)) / _dot(u, u)  # noqa: E731
        gap = ((quotient(inst.g) - quotient(v)).abs() / quotient(inst.g)).max()
        rows.append({"m": m, "instances": per_size, "gamma > sigma": int(above.sum()),
                     "printed violated": int(violated["conditional"].sum()),
                     "printed violated, gamma <= sigma": int((violated["conditional"] & ~above).sum()),
                     "corrected violated": int(violated["corrected"].sum()),
                     "general violated": int(violated["general"].sum()), "hypothesis gap": float(gap)})
    return pd.DataFrame(rows).set_index("m")


# ----------------------------------------------------------------------------------------------
# Rates
# ----------------------------------------------------------------------------------------------


def fit_power_law(steps, values, tail: float = 0.5) -> float:
    r"""Exponent :math:`c` of :math:`v \approx C k^{-c}` by least squares on log-log, over the last ``tail`` of the log-steps.

    Raises:
        ValueError: fewer than 3 points in the fitted range or non-positive values.
    """
    steps, values = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    keep = np.log(steps) >= np.log(steps.max()) * (1 - tail)
    if keep.sum() < 3 or (values[keep] <= 0).any():
        raise ValueError("need at least 3 positive values in the fitted range")
    slope, _ = np.polyfit(np.log(steps[keep]), np.log(values[keep]), 1)
    return float(-slope)
