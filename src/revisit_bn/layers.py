r"""Normalization layers: Full Normalization (FN) and its gradient estimators, Batch Renorm, references.

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
spread of the batch means. We store :math:`\hat m` as ``running_mean`` and :math:`\hat s^2` as
``running_var`` (the buffers of :class:`torch.nn.BatchNorm2d`) and compute the same update without
the cancellation of :math:`\hat q - \hat m^2` in float32:
:math:`\hat s_k^2 = (1-\alpha_k)\hat s_{k-1}^2 + \alpha_k \operatorname{var}_B x
+ \alpha_k(1-\alpha_k)(\bar x_B - \hat m_{k-1})^2`.

*Backward (Step 3: gradient with the estimates plugged in).* The gradient of objective (10) with
respect to a layer input :math:`x_j` is BN's projection formula over the dataset. Every estimator
here has the form

.. math::
    \frac{\partial \ell}{\partial x_j} = \frac{1}{\sqrt{\hat s^2+\epsilon}}\Big(
    \hat g_j - T_g - \hat x_j\,T_{gx}\Big),
    \qquad \hat g = \gamma\,\frac{\partial \ell}{\partial y},\quad
    \hat x = \frac{x-\hat m}{\sqrt{\hat s^2+\epsilon}},

and they differ in where the statistics' terms :math:`T_g \approx \operatorname{mean}\hat g` and
:math:`T_{gx} \approx \operatorname{mean}\hat g\hat x` (dataset averages in the exact gradient)
come from (``backward=``):

- ``"mcsgd"`` (default, our reconstruction of Algorithm 4): the current batch,
  :math:`T_g = \operatorname{mean}_B \hat g`, :math:`T_{gx} = \operatorname{mean}_B \hat g\hat x`.
  Both factors of the statistics' term then come from the same samples, which Remark 1 says adds
  bias; with one value per channel (batch size 1, no spatial dimensions) the input gradient is
  exactly :math:`-\gamma\,\partial\ell/\partial y\;\hat x^2/\hat s`.
- ``"decoupled"``: running averages of those batch terms over *previous* batches, updated after
  use at the estimate rate :math:`\alpha_k` (buffers ``running_grad_mean`` and
  ``running_grad_xhat_mean``, starting at 0), so that they are independent of the current batch,
  as compositional SGD's analysis needs (Wang, Fang & Liu 2017).
- ``"exact"``: the derivative of the moving-average forward,
  :math:`T = \alpha_k \times` the current batch's terms (it vanishes as :math:`\alpha_k \to 0`).
- ``"constant"``: :math:`T_g = T_{gx} = 0`, the estimates as constants (Ioffe 2017 reports that
  this makes training blow up; it is not a gradient of (10)).

With ``momentum=1`` the estimates are the batch's own statistics, and ``"mcsgd"`` and ``"exact"``
are exactly BN's forward and backward. The gradients of ``weight`` and ``bias`` are the same for
every estimator (the affine map's own derivative). All passes run torch's native batch-norm
kernels: the forward at the supplied estimates, the backward in training mode at the supplied
statistics (``"mcsgd"``, ``"exact"``) or in evaluation mode plus a per-channel correction.

The other layers of the book live beside this module and are re-exported by it: the shared base
(:mod:`revisit_bn.norm_base`) and Santurkar et al.'s :math:`\ell_p` normalization and noisy BN
(:mod:`revisit_bn.santurkar_layers`).

Source: Lian & Liu (2019), Sections 5-6, Algorithms 3 and 4, eqs. (10)-(12), Remark 1.
"""

from __future__ import annotations

from typing import Union

import torch
from torch import nn

from .norm_base import (  # noqa: F401 (PolynomialMomentum, Momentum: re-exported)
    _REDUCED, Momentum, PolynomialMomentum, _NormBase, _batch_moments, _channel_shape, _check_dtype, _compute_dtype,
    _floating_input, _number, _one_value_per_channel, _output, _reduce_dims, _schedule_rate, _whole,
)
from .santurkar_layers import (  # noqa: F401 (Santurkar et al.'s layers: re-exported)
    LP_MAX_ORDER, LpNorm1d, LpNorm2d, NoisyBatchNorm1d, NoisyBatchNorm2d, NoisyIdentity, _LpNorm, check_noise,
)

__all__ = [
    "FullNorm1d", "FullNorm2d", "PolynomialMomentum",
    "BatchRenorm1d", "BatchRenorm2d", "ReferenceBatchNorm1d", "ReferenceBatchNorm2d", "MicroBatch",
    "NoisyBatchNorm1d", "NoisyBatchNorm2d", "LpNorm1d", "LpNorm2d",
]


# FN's gradient estimators (``backward=`` of FullNorm1d/2d; formulas in the module docstring).
BACKWARDS = ("mcsgd", "decoupled", "constant", "exact")


def _rate_tensor_or_float(momentum: "Momentum", step: torch.Tensor,
                          dtype: torch.dtype = torch.float32) -> Union[float, torch.Tensor]:
    """The estimate rate at ``step`` (a 0-dim int64 tensor, >= 1), without reading it on the host where avoidable."""
    if momentum is None:  # cumulative average 1/k, as a tensor (no host-device sync)
        return 1.0 / step.clamp(min=1).to(dtype)
    if isinstance(momentum, PolynomialMomentum):
        return momentum.rate_tensor(step, dtype)
    if callable(momentum):  # an arbitrary schedule needs the step as a Python int
        k = max(int(step.item()), 1)
        return _schedule_rate(momentum(k), k)
    return float(momentum)


class _FullNormFunction(torch.autograd.Function):
    """``y = weight * (x - mean) / sqrt(var + eps) + bias`` with one of FN's gradient estimators.

    The forward is torch's evaluation-mode batch-norm kernel at the (already updated) estimates;
    every backward is BN's projection formula with the statistics' terms taken from a source of
    its own (see :class:`FullNorm1d`), computed with torch's native batch-norm backward kernel:
    in training mode at the supplied statistics (the current batch's terms), in evaluation mode
    (the direct term and the channel sums of ``g`` and ``g * x_hat``).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, mean, var, eps, mode, rate, grad_terms):
        out = torch.batch_norm(x, weight, bias, mean, var, False, 0.0, eps, torch.backends.cudnn.enabled)
        ctx.save_for_backward(x, weight, mean, var)
        ctx.eps, ctx.mode, ctx.rate, ctx.grad_terms = eps, mode, rate, grad_terms
        # The decoupled terms as this batch finds them: every backward over this forward uses them, and the
        # buffers take this batch in once, however often backward runs (retain_graph)
        ctx.terms_used = tuple(t.clone() for t in grad_terms) if mode == "decoupled" else None
        ctx.terms_updated = False
        return out

    @staticmethod
    def backward(ctx, grad):
        x, weight, mean, var = ctx.saved_tensors
        mode, rate, eps = ctx.mode, ctx.rate, ctx.eps
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad = grad.contiguous()
        shape = _channel_shape(x)
        if mode in ("mcsgd", "exact"):  # the statistics' terms from the current batch
            invstd = torch.rsqrt(var + eps)
            gx, gw, gb = torch.ops.aten.native_batch_norm_backward(
                grad, x, weight, None, None, mean, invstd, True, eps, [need_x, need_w, need_b])
            if mode == "exact" and need_x:  # the terms scaled by the rate: rate * mcsgd + (1 - rate) * direct
                direct = grad * (invstd if weight is None else weight * invstd).view(shape)
                gx = torch.lerp(direct.to(gx.dtype), gx, rate)
            return gx, gw, gb, None, None, None, None, None, None
        decoupled = mode == "decoupled"
        # Empty saved statistics, not None: CUDA's kernel asserts they are defined when the channel
        # stride is 1 ((N, C) inputs, 1x1 maps); evaluation mode reads only the running ones.
        unused = mean.new_empty(0)
        gx, gw, gb = torch.ops.aten.native_batch_norm_backward(
            grad, x, weight, mean, var, unused, unused, False, eps, [need_x, need_w or decoupled, need_b or decoupled])
        if decoupled:  # the terms of previous batches (running averages), then this batch's folded in, after use
            running_g, running_gx = ctx.grad_terms
            used_g, used_gx = ctx.terms_used
            if need_x:  # dx = invstd * (g_hat - T_g - x_hat * T_gx) = direct - slope * x + offset
                invstd = torch.rsqrt(var + eps)
                slope = used_gx * invstd * invstd
                offset = torch.addcmul(slope * mean, invstd, used_g, value=-1.0)
                gx = gx.add_(offset.view(shape)).addcmul_(x, slope.view(shape), value=-1.0)
            with torch.no_grad():
                per_sample = (1.0 if weight is None else weight) / (grad.numel() // grad.shape[1])
                for running, batch_sum in ((running_g, gb), (running_gx, gw)) if not ctx.terms_updated else ():
                    batch = (batch_sum * per_sample).to(running.dtype)  # mean_B g_hat and mean_B (g_hat * x_hat)
                    running.copy_(torch.where(torch.isfinite(batch), torch.lerp(running, batch, rate), running))
                ctx.terms_updated = True
        return gx, gw if need_w else None, gb if need_b else None, None, None, None, None, None, None


def _kernel_operands(x, weight, bias, mean, var):
    """The operands of torch's batch-norm kernels in dtypes they accept together: a float16 or bfloat16
    ``x`` with float32 parameters and statistics (the mixed-precision kernels, as BN's own), else all in the
    dtype of :func:`_compute_dtype` (a float64 input of a float32 layer: everything in float64)."""
    dtype = _compute_dtype(x, mean)
    if x.dtype in _REDUCED and dtype == torch.float32:
        cast = lambda t: t if t is None else t.to(torch.float32)  # noqa: E731
        return x, cast(weight), cast(bias), mean.to(torch.float32), var.to(torch.float32)
    cast = lambda t: t if t is None else t.to(dtype)  # noqa: E731
    return x.to(dtype), cast(weight), cast(bias), mean.to(dtype), var.to(dtype)


class _FullNorm(_NormBase):
    """Shared implementation of :class:`FullNorm1d` and :class:`FullNorm2d`."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: Momentum = 0.1, affine: bool = True,
                 track_running_stats: bool = True, backward: str = "mcsgd", device=None, dtype=None) -> None:
        if backward not in BACKWARDS:
            raise ValueError(f"backward must be one of {BACKWARDS}, got {backward!r}")
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)
        self.backward = backward
        if backward == "decoupled" and track_running_stats:
            factory = {"device": device, "dtype": dtype}
            self.register_buffer("running_grad_mean", torch.zeros(num_features, **factory))
            self.register_buffer("running_grad_xhat_mean", torch.zeros(num_features, **factory))

    def reset_running_stats(self) -> None:
        """Estimates back to mean 0, variance 1, step 0; the decoupled gradient terms to 0."""
        super().reset_running_stats()
        if getattr(self, "running_grad_mean", None) is not None:
            self.running_grad_mean.zero_()
            self.running_grad_xhat_mean.zero_()

    def extra_repr(self) -> str:
        return super().extra_repr() + ("" if self.backward == "mcsgd" else f", backward={self.backward!r}")

    def _batch_statistics(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch mean and population variance ``(C,)`` the estimates take in (the batch of this
        process; :class:`revisit_bn.distributed.CrossWorkerFullNorm2d` takes those of every worker's)."""
        return _batch_moments(x)

    def current_rate(self) -> float:
        r"""The estimate rate :math:`\alpha_k` for the step ``k = num_batches_tracked`` (>= 1), as a float."""
        rate = _rate_tensor_or_float(self.momentum, self.num_batches_tracked)
        return float(rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize ``x``; in training, first update the estimates (MCSGD Step 2).

        A batch with no samples returns an empty output and changes nothing; a channel whose
        batch statistics are not finite (a NaN or inf in the batch) keeps its estimates.
        """
        self._check_input(x)
        if not self.track_running_stats:  # no estimates kept: the batch's own statistics (BN), in training and eval
            _one_value_per_channel(self, x)
            return _output(self._affine(self._normalize_with_batch_stats(self._widened(x))), x)
        if not self.training or x.shape[0] == 0:  # inference (Algorithm 2): the estimates, as constants
            return _output(self._affine(self._normalize_with_running_stats(self._widened(x))), x)
        with torch.no_grad():
            if callable(self.momentum) and not isinstance(self.momentum, PolynomialMomentum):
                # an arbitrary schedule's rate is checked before the step is counted: a refused rate leaves the layer
                # as it was (a retry uses the same step)
                rate = _rate_tensor_or_float(self.momentum, self.num_batches_tracked + 1, self.running_mean.dtype)
                self.num_batches_tracked.add_(1)
            else:
                self.num_batches_tracked.add_(1)
                rate = _rate_tensor_or_float(self.momentum, self.num_batches_tracked, self.running_mean.dtype)
            batch_mean, batch_var = self._batch_statistics(x.detach())
            running_mean, running_var = self.running_mean, self.running_var
            if batch_mean.dtype != running_mean.dtype:  # reduced-precision inputs, float32 estimates
                batch_mean, batch_var = batch_mean.to(running_mean.dtype), batch_var.to(running_var.dtype)
            # Raw moments q = s^2 + m^2 averaged at rate a, written without the cancellation of q - m^2:
            # m_k = m_{k-1} + a (mean_B - m_{k-1}),  s_k^2 = (1-a) s_{k-1}^2 + a var_B + a (1-a) (mean_B - m_{k-1})^2.
            delta = batch_mean - running_mean
            mean = torch.lerp(running_mean, batch_mean, rate)
            var = torch.lerp(running_var, batch_var, rate)
            if isinstance(rate, float):
                var.addcmul_(delta, delta, value=rate * (1.0 - rate))
            else:
                var.addcmul_(delta * (rate * (1.0 - rate)), delta)
            # A NaN or inf anywhere in a channel makes its batch variance NaN or inf: that channel keeps its estimates.
            finite = batch_var < float("inf")
            mean = torch.where(finite, mean, running_mean)
            var = torch.where(finite, var, running_var)
            running_mean.copy_(mean)
            running_var.copy_(var)
        terms = (self.running_grad_mean, self.running_grad_xhat_mean) if self.backward == "decoupled" else None
        wide, weight, bias, mean, var = _kernel_operands(x, self.weight, self.bias, mean, var)
        # float16/bfloat16 in, the same dtype out, whatever the layer's (as in evaluation)
        return _output(_FullNormFunction.apply(wide, weight, bias, mean, var, self.eps, self.backward, rate, terms), x)


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
        backward: the gradient estimator, one of :data:`BACKWARDS`: ``"mcsgd"`` (default: the
            statistics' terms from the current batch), ``"decoupled"`` (from previous batches),
            ``"exact"`` (derivative of the moving-average forward) or ``"constant"`` (estimates
            as constants); formulas in the module docstring.

    Shape:
        Input ``(N, C)`` or ``(N, C, L)``; output the same shape. Buffers ``running_mean``,
        ``running_var`` of shape ``(C,)``, ``num_batches_tracked`` a scalar; with
        ``backward="decoupled"`` also ``running_grad_mean`` and ``running_grad_xhat_mean``,
        ``(C,)``. A batch with ``N = 0`` changes nothing; a channel whose batch holds a NaN or
        inf keeps its estimates (its outputs for that batch are not finite).

    Raises:
        ValueError: bad constructor arguments (naming the argument and its allowed values; ``dtype`` not a
            floating-point dtype), an input that is not 2D/3D, or whose dim 1 is not C; with
            ``track_running_stats=False``, an input with one value per channel (as :class:`torch.nn.BatchNorm1d`:
            its batch statistics would normalize every value to 0); a ``momentum`` schedule whose rate at the
            coming step is not in (0, 1] (raised before the step is counted, so the layer is left as it was).

    Source: Lian & Liu (2019), Algorithms 3-4, eq. (10) and Remark 1; the update and the
    estimators are our reconstruction.
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
        backward: the gradient estimator (see :class:`FullNorm1d`), default ``"mcsgd"``.

    Shape:
        Input ``(N, C, H, W)``; output the same shape.

    Raises:
        ValueError: bad constructor arguments, a non-4D input, or a channel count other than C; with
            ``track_running_stats=False``, an input with one value per channel; a ``momentum`` schedule's rate
            outside (0, 1] (see :class:`FullNorm1d`).

    Source: Lian & Liu (2019), Algorithms 3-4 and eq. (10); the update is our reconstruction.
    """

    _allowed_dims = (4,)



# ----------------------------------------------------------------------------------------------
# Batch Renormalization (Ioffe 2017) and a reference BN (Ioffe & Szegedy 2015, Algorithms 1-2)
# ----------------------------------------------------------------------------------------------


class _BatchRenorm(_NormBase):
    def __init__(self, num_features: int, eps: float = 1e-3, momentum: float = 0.01, affine: bool = True,
                 r_max: float = 3.0, d_max: float = 5.0, warmup_steps: int = 5000, r_ramp_end: int = 40000,
                 d_ramp_end: int = 25000, device=None, dtype=None) -> None:
        if callable(momentum) or momentum is None:
            raise ValueError("BatchRenorm's momentum must be a float in (0, 1]")
        super().__init__(num_features, eps, momentum, affine, True, device, dtype)
        r_max, d_max = _number(r_max, "r_max"), _number(d_max, "d_max")
        if not (1 <= r_max < float("inf") and 0 <= d_max < float("inf")):
            raise ValueError(f"need finite r_max >= 1 and d_max >= 0, got r_max={r_max}, d_max={d_max}")
        warmup_steps = _whole(warmup_steps, "warmup_steps")
        r_ramp_end, d_ramp_end = _whole(r_ramp_end, "r_ramp_end"), _whole(d_ramp_end, "d_ramp_end")
        if not warmup_steps <= min(r_ramp_end, d_ramp_end):
            raise ValueError("need 0 <= warmup_steps <= r_ramp_end and <= d_ramp_end")
        self.r_max, self.d_max = r_max, d_max
        self.warmup_steps, self.r_ramp_end, self.d_ramp_end = warmup_steps, r_ramp_end, d_ramp_end

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"r_max={self.r_max}, d_max={self.d_max}, warmup_steps={self.warmup_steps}")

    def _ramp(self, final: float, start: float, end: int) -> torch.Tensor:
        """The limit at step ``num_batches_tracked``, as a 0-dim tensor (no host-device sync)."""
        step = self.num_batches_tracked.to(self.running_mean.dtype)
        if end <= self.warmup_steps:
            return torch.where(step <= self.warmup_steps, start, final).to(step.dtype)
        progress = ((step - self.warmup_steps) / (end - self.warmup_steps)).clamp(0.0, 1.0)
        return start + (final - start) * progress

    def current_limits(self) -> tuple[float, float]:
        """``(r_max, d_max)`` at the current step: 1 and 0 during warm-up, then linear ramps."""
        return float(self._ramp(self.r_max, 1.0, self.r_ramp_end)), float(self._ramp(self.d_max, 0.0, self.d_ramp_end))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Training: batch-normalize, then correct by the stop-gradient ``r``, ``d``; eval: moving averages.

        In training the layer is torch's batch-norm kernels at the batch's statistics with the
        affine map folded with the corrections, ``weight * r`` and ``weight * d + bias`` (the same
        function and gradient as Algorithm 1, since ``r`` and ``d`` are constants for the gradient). A batch with no
        samples returns an empty output and changes nothing; a channel whose batch statistics are
        not finite keeps its moving averages.
        """
        self._check_input(x)
        if not self.training or x.shape[0] == 0:
            return _output(self._affine(self._normalize_with_running_stats(self._widened(x))), x)
        _one_value_per_channel(self, x)
        with torch.no_grad():
            mean, var = _batch_moments(self._widened(x.detach()))
            mean, var = mean.to(self.running_mean.dtype), var.to(self.running_var.dtype)
            std = torch.sqrt(var + self.eps)
            self.num_batches_tracked.add_(1)
            r_max, d_max = self._ramp(self.r_max, 1.0, self.r_ramp_end), self._ramp(self.d_max, 0.0, self.d_ramp_end)
            running_std = torch.sqrt(self.running_var + self.eps)
            r = torch.minimum(torch.maximum(std / running_std, 1.0 / r_max), r_max)
            d = torch.minimum(torch.maximum((mean - self.running_mean) / running_std, -d_max), d_max)
            # moving mean and moving standard deviation (Ioffe 2017, Algorithm 1)
            finite = torch.isfinite(mean) & torch.isfinite(var)
            new_mean = self.running_mean + self.momentum * (mean - self.running_mean)
            new_std = running_std + self.momentum * (std - running_std)
            self.running_mean.copy_(torch.where(finite, new_mean, self.running_mean))
            self.running_var.copy_(torch.where(finite, (new_std.square() - self.eps).clamp_(min=0.0), self.running_var))
        scale = r if self.weight is None else self.weight * r
        shift = d if self.bias is None else self.weight * d + self.bias
        # BN's kernels at the batch's statistics, with the corrections folded into the affine map
        wide, scale, shift, mean, var = _kernel_operands(x, scale, shift, mean, var)
        return _output(_FullNormFunction.apply(wide, scale, shift, mean, var, self.eps, "mcsgd", None, None), x)


class BatchRenorm1d(_BatchRenorm):
    r"""Batch Renormalization over a 2D or 3D input (Ioffe 2017, Algorithm 1).

    In training, with batch statistics :math:`\mu_B,\sigma_B=\sqrt{\operatorname{Var}_B+\epsilon}`
    and moving averages :math:`\mu,\sigma`,

    .. math::
        r=\operatorname{sg}\,\operatorname{clip}_{[1/r_{\max},r_{\max}]}\frac{\sigma_B}{\sigma},\quad
        d=\operatorname{sg}\,\operatorname{clip}_{[-d_{\max},d_{\max}]}\frac{\mu_B-\mu}{\sigma},\quad
        y=\gamma\Big(\frac{x-\mu_B}{\sigma_B}r+d\Big)+\beta,

    with ``sg`` stop-gradient, then :math:`\mu\leftarrow\mu+\alpha(\mu_B-\mu)` and
    :math:`\sigma\leftarrow\sigma+\alpha(\sigma_B-\sigma)` (a moving *standard deviation*;
    stored as ``running_var`` :math:`=\sigma^2-\epsilon` for the BatchNorm API). In evaluation,
    :math:`y=\gamma(x-\mu)/\sigma+\beta`. ``r_max`` and ``d_max`` are 1 and 0 (plain BN) for
    ``warmup_steps``, then rise linearly to their final values at ``r_ramp_end`` and
    ``d_ramp_end`` steps.

    Args:
        num_features: C.
        eps: added to the variance (default 1e-3, as Ioffe's Inception setup).
        momentum: moving-average rate :math:`\alpha` (default 0.01, Ioffe's).
        affine: learn ``weight`` and ``bias``.
        r_max, d_max: final clipping limits (defaults 3 and 5, Ioffe's).
        warmup_steps, r_ramp_end, d_ramp_end: the schedule in steps (defaults 5k, 40k, 25k,
            Ioffe's). Our choice: linear ramps (the paper says only "gradually").

    Shape:
        Input ``(N, C)`` or ``(N, C, L)``; output the same.

    Raises:
        ValueError: bad arguments, wrong input rank or channel count.

    Source: Ioffe (2017), Algorithm 1 and Section 4 (hyperparameters).
    """

    _allowed_dims = (2, 3)


class BatchRenorm2d(_BatchRenorm):
    """Batch Renormalization over ``(N, C, H, W)``; see :class:`BatchRenorm1d` (Ioffe 2017, Algorithm 1)."""

    _allowed_dims = (4,)


class _ReferenceBatchNorm(_NormBase):
    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, device=None, dtype=None) -> None:
        if callable(momentum):
            raise ValueError("momentum must be a float in (0, 1] or None (cumulative average), as torch.nn.BatchNorm's; "
                             f"got a callable {momentum!r}")
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Algorithm 1 in training (batch statistics; running averages updated), Algorithm 2 in eval."""
        self._check_input(x)
        wide = self._widened(x)
        if not self.training and self.track_running_stats:
            return _output(self._affine(self._normalize_with_running_stats(wide)), x)
        if x.shape[0] == 0:  # no samples: an empty output, and the statistics keep their values
            return _output(self._affine(wide), x)
        if self.training and self.track_running_stats:
            dims = _reduce_dims(x)
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                rate = 1.0 / int(self.num_batches_tracked.item()) if self.momentum is None else float(self.momentum)
                count = x.numel() // x.shape[1]
                var, mean = torch.var_mean(wide.detach(), dim=dims, unbiased=False)
                if count > 1:  # unbiased, as torch.nn.BatchNorm*d; a single value has variance 0
                    var = var * count / (count - 1)
                finite = torch.isfinite(mean) & torch.isfinite(var)  # a channel with a NaN or inf keeps its statistics
                mean, var = mean.to(self.running_mean.dtype), var.to(self.running_var.dtype)
                for running, batch in ((self.running_mean, mean), (self.running_var, var)):
                    running.copy_(torch.where(finite, running.mul(1 - rate).add_(batch, alpha=rate), running))
        return _output(self._affine(self._normalize_with_batch_stats(wide)), x)


class ReferenceBatchNorm1d(_ReferenceBatchNorm):
    r"""BN as Algorithms 1-2 of Lian & Liu (Ioffe & Szegedy 2015), accepting a batch of one.

    Identical to :class:`torch.nn.BatchNorm1d` (tested), except that a training batch with one
    value per channel is allowed: its variance is 0, every normalized value is 0, and the output
    is :math:`\beta`, whatever the input. That is the mechanism of Lian & Liu's Figure 1.

    Args:
        num_features, eps, momentum (float or ``None``), affine, track_running_stats: as torch.

    Shape:
        Input ``(N, C)`` or ``(N, C, L)``, ``N >= 1``.

    Raises:
        ValueError: wrong input rank or channel count, bad arguments.

    Source: Lian & Liu (2019), Algorithms 1-2; Ioffe & Szegedy (2015), Algorithm 1.
    """

    _allowed_dims = (2, 3)


class ReferenceBatchNorm2d(_ReferenceBatchNorm):
    """:class:`ReferenceBatchNorm1d` over ``(N, C, H, W)`` (Lian & Liu 2019, Algorithms 1-2)."""

    _allowed_dims = (4,)


def _refuses_one_value(module: nn.Module) -> bool:
    """Whether ``module`` in training refuses an input with one value per channel: torch's BatchNorm (and the noisy
    BN built on it) and this module's layers that normalize with the batch's statistics (not FN with its estimates,
    nor :class:`ReferenceBatchNorm2d`, which accept a batch of one)."""
    def refuses(m: nn.Module) -> bool:
        if isinstance(m, (nn.modules.batchnorm._BatchNorm, _BatchRenorm, _LpNorm)):
            return True
        return isinstance(m, _FullNorm) and not m.track_running_stats

    return any(refuses(m) for m in module.modules())  # the layer itself, or one inside a container


class MicroBatch(nn.Module):
    """Apply a normalization layer separately to consecutive groups of ``group_size`` samples.

    In training, a batch of 32 with ``group_size=4`` is normalized as 8 microbatches of 4
    (each a separate forward call, so BN's running averages see 8 updates); in evaluation the
    whole batch goes through at once (running statistics do not depend on grouping).

    Args:
        module: the normalization layer (any of this module's layers, ``BatchNorm*d``, ...).
        group_size: samples per microbatch (the last group may be smaller).

    Shape:
        Any input ``(N, C, ...)`` the wrapped module accepts.

    Raises:
        ValueError: ``group_size < 1``; in training, a batch whose last micro-batch holds one value per channel
            (one sample of a ``(N, C)`` input: ``N % group_size == 1``) for a module that normalizes with the
            batch's statistics and refuses that (torch's BatchNorm, :class:`BatchRenorm2d`, :class:`LpNorm2d`,
            :class:`FullNorm2d` without running estimates), named before any micro-batch is normalized.

    Source: Ioffe (2017), Section 4.2 ("microbatches" of 4 inside a batch of 32).
    """

    def __init__(self, module: nn.Module, group_size: int) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise ValueError(f"module must be a normalization layer (an nn.Module), got {module!r}")
        group_size = _whole(group_size, "group_size", 1)
        self.module, self.group_size = module, group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"MicroBatch takes a torch tensor (N, C, ...), got {type(x).__name__}; convert it with "
                             "torch.as_tensor")
        if not self.training:
            return self.module(x)
        chunks = x.split(self.group_size)
        last = chunks[-1]  # the only one that can be smaller than group_size
        if last.dim() >= 2 and last.shape[0] == 1 and last.numel() == last.shape[1] and _refuses_one_value(self.module):
            raise ValueError(f"MicroBatch(group_size={self.group_size}): a training batch of {x.shape[0]} samples "
                             f"leaves a last micro-batch of 1 sample, one value per channel (input size "
                             f"{tuple(last.shape)}), which {type(self.module).__name__} cannot normalize (as "
                             f"torch.nn.BatchNorm: expected more than 1 value per channel when training); choose the "
                             f"batch size and group_size so that no micro-batch holds a single sample (here "
                             f"{x.shape[0]} % {self.group_size} = 1)")
        return torch.cat([self.module(chunk) for chunk in chunks])

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}"
