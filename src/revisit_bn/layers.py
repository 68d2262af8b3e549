r"""Normalization layers: Full Normalization (FN) trained by MCSGD.

Lian & Liu (2019) replace BN's batch-dependent objective (their eq. 9) by the *full
normalization* objective (eq. 10), which normalizes every layer input with the statistics of the
whole dataset, and solve it with MCSGD (their Algorithm 3), implemented for normalization layers
as Algorithm 4. The equations of Algorithms 3-4 are stripped from every text we could read, so
the update below is **our reconstruction** (``../shared/papers/NOTES.md``, sections 2.3-2.4):

*Forward, training (Step 2 of Algorithm 3: estimate).* Per channel, with the batch moments
:math:`\bar x_B = \operatorname{mean}_B x` and :math:`\overline{x^2}_B = \operatorname{mean}_B x^2`
and the estimate rate :math:`\alpha_k` (``momentum``),

.. math::
    \hat m_k = (1-\alpha_k)\,\hat m_{k-1} + \alpha_k\,\bar x_B, \qquad
    \hat q_k = (1-\alpha_k)\,\hat q_{k-1} + \alpha_k\,\overline{x^2}_B, \qquad
    \hat s_k^2 = \hat q_k - \hat m_k^2,

and the output is :math:`y = \gamma\,(x-\hat m_k)/\sqrt{\hat s_k^2+\epsilon} + \beta`.
The paper's inner function is :math:`g(u) = (u, u^{\circ 2})` (Section 5), so the estimates track
the first two *raw* moments: their difference estimates the dataset variance, which includes the
spread of the batch means. (An average of per-batch variances would not: with single-label batches
it would estimate the within-label variance only.) We store :math:`\hat m` as ``running_mean`` and
:math:`\hat s^2` as ``running_var``, the buffers of :class:`torch.nn.BatchNorm2d`, and recover
:math:`\hat q = \hat s^2 + \hat m^2` from them.

*Backward (Step 3: gradient with the estimates plugged in).* The gradient of objective (10) with
respect to a layer input :math:`x_j` is BN's projection formula over the dataset; MCSGD replaces
the dataset averages by averages over the current batch and the statistics by their estimates
(the SCGD pattern: inner gradient from the sample, outer function at the estimate):

.. math::
    \frac{\partial \ell}{\partial x_j} = \frac{1}{\sqrt{\hat s^2+\epsilon}}\Big(
    \hat g_j - \operatorname{mean}_B \hat g - \hat x_j \operatorname{mean}_B(\hat g\,\hat x)\Big),
    \qquad \hat g = \gamma\,\frac{\partial \ell}{\partial y},\quad
    \hat x = \frac{x-\hat m}{\sqrt{\hat s^2+\epsilon}}.

With ``momentum=1`` the estimates are the batch's own statistics and this is exactly BN's
forward and backward. For ``momentum < 1`` it is *by design* not the derivative of the forward
pass (which would scale the statistics' paths by :math:`\alpha_k`).

Alternatives we weighed (NOTES.md 2.4): (a) no gradient through the statistics (treat the
estimates as constants) -- Ioffe (2017) reports that this makes training blow up, and it is not a
gradient of (10); (b) the exact derivative of the forward pass, i.e. only an
:math:`\alpha_k`-weighted path through the statistics -- it vanishes as :math:`\alpha_k \to 0`,
so it too loses the statistics' term of the gradient of (10). Our choice follows the composition
structure of eq. (11)-(12), which is what the paper's convergence proof analyses.

Source: Lian & Liu (2019), Sections 5-6, Algorithms 3 and 4, eqs. (10)-(12).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union

import torch
from torch import nn

__all__ = ["FullNorm1d", "FullNorm2d", "PolynomialMomentum"]


@dataclass(frozen=True)
class PolynomialMomentum:
    r"""A decaying estimate rate :math:`\alpha_k = \max(\alpha_{\min},\ k^{-p})`, ``k = 1, 2, ...``.

    Pass an instance as ``momentum`` of :class:`FullNorm2d`. At ``k = 1`` the rate is 1, so the
    first batch replaces the initial estimates; afterwards the estimates average over a window
    that grows like :math:`k^{p}` batches.

    Args:
        power: decay exponent ``p`` in ``(0, 1]``; ``p = 1`` is the cumulative average.
        minimum: floor ``alpha_min`` in ``[0, 1]`` so that the estimates keep following the
            parameters late in training; 0 for none.

    Raises:
        ValueError: ``power`` outside ``(0, 1]`` or ``minimum`` outside ``[0, 1]``.

    Source: Lian & Liu (2019), Corollary 3 (polynomially decaying step sizes). Our choice: the
    exponent and floor are free parameters (the paper's values are not recoverable).
    """

    power: float = 0.5
    minimum: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 < self.power <= 1.0:
            raise ValueError(f"power must lie in (0, 1], got {self.power}")
        if not 0.0 <= self.minimum <= 1.0:
            raise ValueError(f"minimum must lie in [0, 1], got {self.minimum}")

    def __call__(self, step: int) -> float:
        return max(self.minimum, float(step) ** (-self.power))


Momentum = Union[float, None, Callable[[int], float]]


class _NormalizeWithEstimates(torch.autograd.Function):
    """x_hat = (x - mean) * invstd, with the MCSGD backward (BN's projection at the estimates)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, mean: torch.Tensor, invstd: torch.Tensor, dims: tuple[int, ...]):
        shape = _channel_shape(x)
        x_hat = (x - mean.view(shape)) * invstd.view(shape)
        ctx.save_for_backward(x_hat, invstd)
        ctx.dims = dims
        return x_hat

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x_hat, invstd = ctx.saved_tensors
        dims, shape = ctx.dims, _channel_shape(grad)
        # dx = invstd * (g - mean_B g - x_hat * mean_B(g x_hat))
        mean_g = grad.mean(dim=dims, keepdim=True)
        mean_gx = (grad * x_hat).mean(dim=dims, keepdim=True)
        grad_x = (grad - mean_g - x_hat * mean_gx) * invstd.view(shape)
        return grad_x, None, None, None


def _channel_shape(x: torch.Tensor) -> tuple[int, ...]:
    return (1, x.shape[1]) + (1,) * (x.dim() - 2)


class _FullNorm(nn.Module):
    """Shared implementation of :class:`FullNorm1d` and :class:`FullNorm2d`."""

    _allowed_dims: tuple[int, ...] = ()

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: Momentum = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        stats_gradient: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"num_features must be a positive integer, got {num_features!r}")
        if not eps > 0:
            raise ValueError(f"eps must be positive, got {eps}")
        if isinstance(momentum, (int, float)) and not isinstance(momentum, bool):
            if not 0.0 < float(momentum) <= 1.0:
                raise ValueError(f"momentum must lie in (0, 1], got {momentum}")
        elif momentum is not None and not callable(momentum):
            raise ValueError(
                f"momentum must be a float in (0, 1], None (cumulative average) or a callable "
                f"step -> rate, got {momentum!r}"
            )
        factory = {"device": device, "dtype": dtype}
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.stats_gradient = bool(stats_gradient)
        if affine:
            self.weight = nn.Parameter(torch.empty(num_features, **factory))
            self.bias = nn.Parameter(torch.empty(num_features, **factory))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features, **factory))
            self.register_buffer("running_var", torch.ones(num_features, **factory))
            self.register_buffer(
                "num_batches_tracked",
                torch.tensor(0, dtype=torch.long, **{k: v for k, v in factory.items() if k != "dtype"}),
            )
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        """Estimates back to mean 0, variance 1, step 0 (as :class:`torch.nn.BatchNorm2d`)."""
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1.0)
            self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        """Estimates reset; ``weight`` to 1 and ``bias`` to 0."""
        self.reset_running_stats()
        if self.affine:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}, track_running_stats={self.track_running_stats}"
            + ("" if self.stats_gradient else ", stats_gradient=False")
        )

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() not in self._allowed_dims:
            raise ValueError(
                f"{type(self).__name__} expects a {' or '.join(f'{d}D' for d in self._allowed_dims)} "
                f"input (N, C, ...), got {x.dim()}D with shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"{type(self).__name__}({self.num_features}) got {x.shape[1]} channels in input of "
                f"shape {tuple(x.shape)}; the channel dimension is dim 1"
            )

    def current_rate(self) -> float:
        r"""The estimate rate :math:`\alpha_k` for the step ``k = num_batches_tracked`` (>= 1)."""
        step = max(int(self.num_batches_tracked.item()), 1)
        if self.momentum is None:
            return 1.0 / step
        rate = float(self.momentum(step)) if callable(self.momentum) else float(self.momentum)
        if not 0.0 < rate <= 1.0:
            raise ValueError(f"momentum schedule returned {rate} at step {step}; it must lie in (0, 1]")
        return rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize ``x``; in training, first update the estimates (MCSGD Step 2)."""
        self._check_input(x)
        dims = (0,) + tuple(range(2, x.dim()))
        shape = _channel_shape(x)
        if self.training and self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                rate = self.current_rate()
                batch_mean = x.mean(dim=dims).to(self.running_mean.dtype)
                batch_sq = (x * x).mean(dim=dims).to(self.running_mean.dtype)
                second = self.running_var + self.running_mean.square()
                self.running_mean.mul_(1.0 - rate).add_(batch_mean, alpha=rate)
                second.mul_(1.0 - rate).add_(batch_sq, alpha=rate)
                # q - m^2 can round below zero when the variance is tiny.
                self.running_var.copy_((second - self.running_mean.square()).clamp_(min=0.0))
            mean, var = self.running_mean.to(x.dtype), self.running_var.to(x.dtype)
            if self.stats_gradient:
                x_hat = _NormalizeWithEstimates.apply(x, mean, torch.rsqrt(var + self.eps), dims)
            else:  # alternative (a): the estimates are constants for the gradient
                x_hat = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        elif self.training or not self.track_running_stats:
            # No estimates kept: the batch's own statistics (BN's training step).
            var, mean = torch.var_mean(x, dim=dims, unbiased=False)
            x_hat = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        else:
            # Inference (Algorithm 2): the estimates, as constants.
            x_hat = (x - self.running_mean.view(shape)) * torch.rsqrt(self.running_var.view(shape) + self.eps)
        if self.affine:
            x_hat = x_hat * self.weight.view(shape) + self.bias.view(shape)
        return x_hat


class FullNorm1d(_FullNorm):
    r"""Full Normalization over a 2D or 3D input, trained by MCSGD (Lian & Liu 2019, Algorithm 4).

    A drop-in replacement for :class:`torch.nn.BatchNorm1d` that normalizes with running
    estimates of the *dataset* mean and variance instead of the batch's. See the module docstring
    for the update and its backward pass; in short, in training

    .. math::
        y = \gamma\,\frac{x-\hat m_k}{\sqrt{\hat s_k^2+\epsilon}}+\beta,

    with :math:`(\hat m_k, \hat s_k^2)` updated from the current batch at rate :math:`\alpha_k`,
    and the gradient passed through the batch statistics with the Jacobian at the estimates.
    Unlike BN it trains at batch size 1.

    Args:
        num_features: C, the number of channels.
        eps: added to the variance for stability (default 1e-5).
        momentum: the estimate rate :math:`\alpha_k`: a float in (0, 1] (constant), ``None``
            (cumulative average, :math:`1/k`), or a callable ``step -> rate`` such as
            :class:`PolynomialMomentum`. ``1`` makes FN a BN step. Default 0.1, as PyTorch.
        affine: learn a per-channel scale ``weight`` and shift ``bias`` (default True).
        track_running_stats: keep the estimates (default True). If False there are no estimates
            and the layer normalizes with batch statistics in training and evaluation (BN's
            behaviour).
        stats_gradient: pass the gradient through the batch statistics at the estimates (the
            MCSGD backward, default). False treats the estimates as constants, the alternative
            (a) of the module docstring, kept for ablations.

    Shape:
        Input ``(N, C)`` or ``(N, C, L)``; output the same shape. Buffers ``running_mean``,
        ``running_var`` of shape ``(C,)``, ``num_batches_tracked`` a scalar.

    Raises:
        ValueError: bad constructor arguments, an input that is not 2D/3D, or whose dim 1 is not C.

    Source: Lian & Liu (2019), Algorithms 3-4 and eq. (10); the update is our reconstruction.
    """

    _allowed_dims = (2, 3)


class FullNorm2d(_FullNorm):
    r"""Full Normalization over a 4D input ``(N, C, H, W)``, trained by MCSGD.

    The convolutional counterpart of :class:`FullNorm1d` (a drop-in replacement for
    :class:`torch.nn.BatchNorm2d`); statistics are per channel over ``N``, ``H`` and ``W``.

    Args:
        num_features: C, the number of channels.
        eps: added to the variance (default 1e-5).
        momentum: estimate rate :math:`\alpha_k` (float in (0, 1], ``None`` or callable);
            default 0.1.
        affine: learn ``weight`` and ``bias`` (default True).
        track_running_stats: keep the estimates (default True).
        stats_gradient: MCSGD backward through the batch statistics (default True); False treats
            the estimates as constants (ablation).

    Shape:
        Input ``(N, C, H, W)``; output the same shape.

    Raises:
        ValueError: bad constructor arguments, a non-4D input, or a channel count other than C.

    Source: Lian & Liu (2019), Algorithms 3-4 and eq. (10); the update is our reconstruction.
    """

    _allowed_dims = (4,)

