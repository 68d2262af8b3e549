r"""Numerical checks of the theorems: vectorized bound checks, real-layer traces, MCSGD rates.

**Santurkar et al., Theorems 4.1 and 4.2** concern one BN unit over a batch of ``m``:
pre-activations :math:`y`, :math:`\hat y=(y-\mu)/\sigma` with :math:`\sigma=\sqrt{\operatorname{Var}(y)+\epsilon}`,
:math:`z=\gamma\hat y+\beta`, and a downstream loss with gradient :math:`g` and Hessian :math:`H` at
:math:`z`. :func:`bn_gradient` is the exact BN backward pass (valid for every :math:`\epsilon`),
and :func:`bn_hessian_quadratic` the exact second directional derivative of the composition. Both
are in closed form and vectorized over a leading batch of instances. The printed right-hand
sides are :data:`THEOREM_4_1_FORMS` and :data:`THEOREM_4_2_FORMS`.

**Lian & Liu, Lemma 1 / Theorem 2 / Corollary 3.** :func:`mcsgd_convergence` runs MCSGD on a small
FN network whose dataset statistics and full gradient are computed exactly, and plain SGD on the
unnormalized network (objective 8) beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn
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
    r"""Theorem 4.2's right side (``form`` ``"general"`` or ``"conditional"``), vectorized; ``v`` is the BN gradient.

    Source: Santurkar et al. (2018), Theorem 4.2; see :func:`revisit_bn.symbolic.theorem_4_2_rhs`.
    """
    m = y.shape[-1]
    y_hat, sigma = bn_normalize(y, eps)
    gamma = torch.as_tensor(gamma, dtype=y.dtype)
    corr = _dot(g, y_hat) * _dot(v, v)
    if form == "general":
        return gamma**2 / sigma**2 * _dot(v, hvp(v)) - gamma / (m * sigma**2) * corr
    if form == "conditional":
        return gamma**2 / sigma**2 * (_dot(g, hvp(g)) - corr / (m * gamma))
    raise ValueError(f"form must be 'general' or 'conditional', got {form!r}")


THEOREM_4_2_FORMS = ("general", "conditional")


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
    downstream losses (Theorem 4.1 does not involve ``H``: it uses the convex half).

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


# ----------------------------------------------------------------------------------------------
# Real layers: both sides of Theorems 4.1 and 4.2 for a BN layer of a training network
# ----------------------------------------------------------------------------------------------


def bn_layer_sides(bn: nn.BatchNorm2d, head: Callable[[torch.Tensor], torch.Tensor], y: torch.Tensor, channels) -> list[dict]:
    r"""Both sides of Theorems 4.1 and 4.2 for chosen channels of a BN layer in training mode.

    Args:
        bn: the layer (its ``weight`` is :math:`\gamma`, its ``eps`` the :math:`\epsilon`).
        head: ``z -> loss``, the rest of the network after the layer (a scalar).
        y: the layer's input ``(N, C, H, W)``; channel ``j`` over all ``N*H*W`` positions is one unit
            with batch size :math:`m = NHW`.
        channels: channel indices to evaluate.

    Returns:
        One dict per channel: ``channel``, ``m``, ``thm41_lhs``, ``thm41_rhs``, ``thm42_lhs``,
        ``thm42_rhs`` (general form), ``g_dot_yhat``.

    Source: Santurkar et al. (2018), Theorems 4.1-4.2, evaluated on a real network.
    """
    y = y.detach().requires_grad_(True)
    z = nn.functional.batch_norm(y, None, None, bn.weight, bn.bias, training=True, eps=bn.eps)
    z_leaf = z.detach().requires_grad_(True)
    loss_z = head(z_leaf)
    (g_full,) = torch.autograd.grad(loss_z, z_leaf, create_graph=True)
    loss_y = head(z)
    (grad_y,) = torch.autograd.grad(loss_y, y, create_graph=True)
    channels = list(channels)
    m = y.shape[0] * y.shape[2] * y.shape[3]
    var, _ = torch.var_mean(y.detach(), dim=(0, 2, 3), unbiased=False)
    # One direction per channel: the BN gradient restricted to that channel; all hvps in one call.
    masks = torch.zeros((len(channels),) + tuple(y.shape), dtype=y.dtype)
    for k, j in enumerate(channels):
        masks[k, :, j] = 1.0
    directions = grad_y.detach().unsqueeze(0) * masks
    (hv_y,) = torch.autograd.grad(grad_y, y, grad_outputs=directions, retain_graph=True, is_grads_batched=True)
    (hv_z,) = torch.autograd.grad(g_full, z_leaf, grad_outputs=directions, is_grads_batched=True)
    out = []
    for k, j in enumerate(channels):
        v = directions[k]
        g = g_full.detach()[:, j].flatten()
        yj = y.detach()[:, j].flatten()
        gamma = bn.weight.detach()[j]
        sigma2 = var[j] + bn.eps
        y_hat = (yj - yj.mean()) / torch.sqrt(sigma2)
        vj = v[:, j].flatten()
        lhs1 = vj.dot(vj)
        rhs1 = gamma**2 / sigma2 * (g.dot(g) - g.sum() ** 2 / m - g.dot(y_hat) ** 2 / m)
        lhs2 = (hv_y[k] * v).sum()
        rhs2 = gamma**2 / sigma2 * (hv_z[k] * v).sum() - gamma / (m * sigma2) * g.dot(y_hat) * vj.dot(vj)
        out.append(dict(channel=int(j), m=m, thm41_lhs=lhs1.item(), thm41_rhs=rhs1.item(),
                        thm42_lhs=lhs2.item(), thm42_rhs=rhs2.item(), g_dot_yhat=g.dot(y_hat).item()))
    return out


def trace_bn_theorems(config, log_every: int = 10, layer: int = 1, channels=(0, 1, 2, 3), progress: bool = True):
    """Train ``config`` (a BN :class:`~revisit_bn.models.SimpleNet`) and evaluate both sides of
    Theorems 4.1 and 4.2 at the ``layer``-th BN layer every ``log_every`` steps.

    The probe runs before the step, on the step's batch, in training mode (batch statistics):
    ``y`` is the BN layer's input and the "downstream loss" is the rest of the network with the
    cross-entropy on the batch. It changes nothing in training.

    Returns:
        :class:`pandas.DataFrame`, one row per (logged step, channel), columns of :func:`bn_layer_sides`
        plus ``step``.

    Raises:
        ValueError: ``config.norm`` is not ``"bn"``.

    Source: Santurkar et al. (2018), Theorems 4.1-4.2, on the MNIST network of Lian & Liu's Figures 4 and 7.
    """
    import pandas as pd

    from .train import load_dataset, _subset, train_model

    if config.norm != "bn":
        raise ValueError(f"the theorems concern BN layers; config.norm is {config.norm!r}, use 'bn'")
    rows: list[dict] = []

    def probe(model, images, labels, step):
        if step % log_every:
            return
        features = model.features
        bns = [i for i, mod in enumerate(features) if isinstance(mod, nn.BatchNorm2d)]
        at = bns[layer]
        with torch.no_grad():
            y = features[:at](images)
        rest = features[at + 1:]

        def head(z):
            # clone: the network's ReLUs are in-place, which autograd refuses on a leaf tensor
            return nn.functional.cross_entropy(model.classifier(rest(z.clone())), labels)

        for row in bn_layer_sides(features[at], head, y, channels):
            rows.append({"step": step, **row})

    train, test = load_dataset(config.dataset)
    train = _subset(train, config.train_subset, config.seed)
    test = _subset(test, config.test_subset, config.seed)
    train_model(config, train, test, progress=progress, on_step=probe)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------
# MCSGD convergence on a small FN problem with exact dataset statistics
# ----------------------------------------------------------------------------------------------


def synthetic_regression(n: int = 512, d: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A regression set: ``x ~ N(mu, diag(s^2))`` with non-zero means and unequal scales, ``t`` from a random tanh teacher.

    Returns ``(x, t)`` of shapes ``(n, d)`` and ``(n, 1)``, float64.
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64) * torch.linspace(0.5, 4.0, d, dtype=torch.float64) + 2.0
    teacher = torch.randn(d, 1, generator=gen, dtype=torch.float64) / math.sqrt(d)
    t = torch.tanh((x - 2.0) @ teacher) + 0.1 * torch.randn(n, 1, generator=gen, dtype=torch.float64)
    return x, t


class FNRegressor(nn.Module):
    """``linear - norm - tanh - linear - norm - tanh - linear``: two normalized layers (or none)."""

    def __init__(self, d: int, hidden: int, norm: Callable[[int], nn.Module] | None):
        super().__init__()
        self.l1, self.l2, self.l3 = nn.Linear(d, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, 1)
        self.n1 = norm(hidden) if norm else nn.Identity()
        self.n2 = norm(hidden) if norm else nn.Identity()

    def forward(self, x, collect: list | None = None):
        h = self.l1(x)
        if collect is not None:
            collect.append(h)
        h = torch.tanh(self.n1(h))
        h = self.l2(h)
        if collect is not None:
            collect.append(h)
        return self.l3(torch.tanh(self.n2(h)))


def exact_fn_state(model: FNRegressor, x: torch.Tensor, t: torch.Tensor) -> tuple[list, float]:
    """The exact dataset statistics of each FN layer's input and :math:`\\|\\nabla f(\\theta)\\|^2` of objective (10).

    Objective (10) normalizes every layer with the statistics of the *whole dataset*, the lower
    layers normalized the same way; a full-batch pass with batch statistics computes exactly that.
    """
    inputs: list[torch.Tensor] = []
    h = model.l1(x)
    inputs.append(h)
    h = torch.tanh(nn.functional.batch_norm(h, None, None, model.n1.weight, model.n1.bias, True, 0.0, model.n1.eps))
    h = model.l2(h)
    inputs.append(h)
    out = model.l3(torch.tanh(nn.functional.batch_norm(h, None, None, model.n2.weight, model.n2.bias, True, 0.0, model.n2.eps)))
    loss = 0.5 * (out - t).square().mean()
    grads = torch.autograd.grad(loss, [p for p in model.parameters()])
    stats = [(a.detach().mean(0), a.detach().var(0, unbiased=False)) for a in inputs]
    return stats, float(sum(gr.square().sum() for gr in grads))


def exact_plain_grad_norm(model: FNRegressor, x, t) -> float:
    """:math:`\\|\\nabla f(\\theta)\\|^2` of objective (8) for the unnormalized network."""
    loss = 0.5 * (model(x) - t).square().mean()
    return float(sum(gr.square().sum() for gr in torch.autograd.grad(loss, list(model.parameters()))))


def mcsgd_convergence(steps: int = 20_000, lr: float = 0.05, lr_power: float = 0.5, rate_power: float = 0.25,
                      batch_size: int = 8, hidden: int = 16, seed: int = 0, n: int = 512, d: int = 8,
                      num_logs: int = 60, progress: bool = True):
    r"""MCSGD on a two-FN-layer regressor (objective 10) and plain SGD (objective 8), with exact diagnostics.

    Step sizes :math:`\gamma_k = \gamma_0 k^{-a}` (``lr``, ``lr_power``) for both methods; FN's
    estimate rates :math:`\alpha_k = k^{-b}` (``rate_power``). At ``num_logs`` geometrically spaced
    iterations it records, per FN layer, the squared error of the estimates against the exact
    dataset statistics at the current parameters, and the exact squared gradient norm of each
    method's objective.

    Returns:
        :class:`pandas.DataFrame` with columns ``step``, ``method`` (``"MCSGD (FN)"`` or
        ``"SGD (no normalization)"``), ``quantity`` and ``value``.

    Source: Lian & Liu (2019), Algorithm 3, Lemma 1, Theorem 2, Corollary 3. Our choice: the
    network, data, batch size and exponents (the paper's are lost).
    """
    import pandas as pd

    from .layers import FullNorm1d, PolynomialMomentum

    x, t = synthetic_regression(n, d, seed)
    logs = sorted(set(np.unique(np.geomspace(1, steps, num_logs).astype(int)).tolist()))
    rows = []
    for method in ("MCSGD (FN)", "SGD (no normalization)"):
        torch.manual_seed(seed)
        norm = (lambda c: FullNorm1d(c, momentum=PolynomialMomentum(rate_power), eps=1e-5)) if method.startswith("MCSGD") else None
        model = FNRegressor(d, hidden, norm).double()
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: (k + 1) ** (-lr_power))
        gen = torch.Generator().manual_seed(seed + 1)
        batches = torch.randint(0, n, (steps, batch_size), generator=gen)
        log_iter = iter(logs)
        next_log = next(log_iter)
        for k in tqdm(range(1, steps + 1), desc=method, disable=not progress, mininterval=2.0):
            idx = batches[k - 1]
            loss = 0.5 * (model(x[idx]) - t[idx]).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            if k == next_log:
                if norm is not None:
                    stats, grad_norm = exact_fn_state(model, x, t)
                    for i, (layer, (mu, var)) in enumerate(zip((model.n1, model.n2), stats), start=1):
                        err = (layer.running_mean - mu).square().sum() + (layer.running_var - var).square().sum()
                        rows.append(dict(step=k, method=method, quantity=f"estimation error, layer {i}", value=err.item()))
                else:
                    grad_norm = exact_plain_grad_norm(model, x, t)
                rows.append(dict(step=k, method=method, quantity="squared gradient norm", value=grad_norm))
                next_log = next(log_iter, None)
    return pd.DataFrame(rows)


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
