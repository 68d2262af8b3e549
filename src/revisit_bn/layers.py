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

Source: Lian & Liu (2019), Sections 5-6, Algorithms 3 and 4, eqs. (10)-(12), Remark 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union

import numpy as np
import torch
from torch import nn

__all__ = [
    "FullNorm1d", "FullNorm2d", "PolynomialMomentum",
    "BatchRenorm1d", "BatchRenorm2d", "ReferenceBatchNorm1d", "ReferenceBatchNorm2d", "MicroBatch",
    "NoisyBatchNorm1d", "NoisyBatchNorm2d", "LpNorm1d", "LpNorm2d",
]


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
        for name in ("power", "minimum"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "item"):
                raise ValueError(f"{name} must be a number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if not 0.0 < self.power <= 1.0:
            raise ValueError(f"power must lie in (0, 1], got {self.power}")
        if not 0.0 <= self.minimum <= 1.0:
            raise ValueError(f"minimum must lie in [0, 1], got {self.minimum}")

    def __call__(self, step: int) -> float:
        """The rate at ``step`` (1, 2, ...; step 0, before the first batch, is treated as step 1: rate 1)."""
        return max(self.minimum, float(max(_whole(step, "step"), 1)) ** (-self.power))

    def rate_tensor(self, step: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The rate at ``step`` (a 0-dim integer tensor) as a 0-dim tensor on its device (no host sync)."""
        return step.clamp(min=1).to(dtype).pow(-self.power).clamp(min=self.minimum)


Momentum = Union[float, None, Callable[[int], float]]


def _channel_shape(x: torch.Tensor) -> tuple[int, ...]:
    return (1, x.shape[1]) + (1,) * (x.dim() - 2)


_REDUCED = (torch.float16, torch.bfloat16)


def _number(value, name: str) -> float:
    """``value`` as a float: a real number (NumPy's and 0-dim tensors' too), not a bool or a string.

    Raises:
        ValueError: naming ``name``.
    """
    if isinstance(value, bool) or (not isinstance(value, (int, float)) and not (hasattr(value, "item") and
                                                                              hasattr(value, "dtype"))):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    return float(value)


def _whole(value, name: str, least: int = 0) -> int:
    """``value`` as an int of at least ``least`` (NumPy's integers too; not a bool or a float).

    Raises:
        ValueError: naming ``name``.
    """
    if hasattr(value, "item") and hasattr(value, "dtype") and not isinstance(value, torch.Tensor):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    return value


def _schedule_rate(value, k: int) -> float:
    """A momentum schedule's rate at step ``k`` as a float: a real number in (0, 1]; NumPy's scalars and one-element
    tensors are the numbers they hold (a schedule built with ``np.clip`` or torch returns them).

    Raises:
        ValueError: naming the step and what the schedule gave.
    """
    number = value
    if hasattr(value, "item") and hasattr(value, "dtype"):
        try:
            number = value.item()
        except (ValueError, RuntimeError):  # more than one element: refused below
            pass
    if isinstance(number, bool) or not isinstance(number, (int, float)) or not 0.0 < number <= 1.0:
        raise ValueError(f"momentum, a callable, must return a rate in (0, 1]; momentum({k}) gave {value!r}")
    return float(number)


def _check_dtype(dtype) -> None:
    """A layer's ``dtype`` argument: ``None`` or a floating-point :class:`torch.dtype` (its weights and statistics are
    real numbers; torch's own error for an integer dtype names no argument).

    Raises:
        ValueError: naming ``dtype``.
    """
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"dtype must be None or a floating-point torch.dtype (torch.float32, torch.float64, "
                         f"torch.float16, torch.bfloat16), got {dtype!r}; a layer's weights and statistics are real "
                         "numbers")


def _one_value_per_channel(layer, x: torch.Tensor) -> None:
    """Refuse a training batch with one value per channel, as :class:`torch.nn.BatchNorm2d` does (its statistics
    would normalize every value to 0)."""
    if x.numel() // max(x.shape[1], 1) == 1:
        fix = ("use eval() or a larger batch" if layer.track_running_stats else "use a larger batch: without running "
               "statistics the layer normalizes with the batch's in evaluation too")
        raise ValueError(f"{type(layer).__name__}: expected more than 1 value per channel when training, got input "
                         f"size {tuple(x.shape)} (as torch.nn.BatchNorm; {fix})")


def _floating_input(layer, x: torch.Tensor) -> None:
    """Refuse an input that is not a floating-point tensor (torch's kernels raise NotImplementedError or a dtype
    mismatch that names no fix)."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError(f"{type(layer).__name__} normalizes floating-point tensors (float16, bfloat16, float32, "
                         f"float64), got {x.dtype if isinstance(x, torch.Tensor) else type(x).__name__}; convert "
                         "the input with .float()")


def _compute_dtype(x: torch.Tensor, stats: torch.Tensor) -> torch.dtype:
    """The dtype a layer computes in, as :class:`torch.nn.BatchNorm2d` does on the CPU: float16 and bfloat16
    inputs with the (float32) parameters and statistics (torch's mixed-precision kernels); otherwise the
    wider of the input's and the statistics' dtypes (a float64 input of a float32 layer: float64)."""
    if x.dtype in _REDUCED and stats.dtype == torch.float32:
        return torch.float32
    return torch.promote_types(x.dtype, stats.dtype)


def _output(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``y`` in the input's dtype where the input is float16 or bfloat16 (as BN returns), else as computed."""
    return y.to(x.dtype) if x.dtype in _REDUCED else y


def _reduce_dims(x: torch.Tensor) -> tuple[int, ...]:
    return (0,) + tuple(range(2, x.dim()))


def _batch_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel batch mean and population variance ``(C,)`` by the two-pass formula.

    ``mean((x - mean)^2)`` does not cancel when the mean is large, and on the CPU it is several
    times faster than :func:`torch.var_mean` over ``(N, H, W)`` (``benchmarks/norm_step_ratios.py``).
    """
    dims = _reduce_dims(x)
    mean = x.mean(dim=dims, keepdim=True)
    var = (x - mean).square_().mean(dim=dims)
    return mean.flatten(), var


class _NormBase(nn.Module):
    """The API of :class:`torch.nn.BatchNorm2d` shared by every layer here: arguments, buffers,
    ``reset_parameters``, ``reset_running_stats``, ``extra_repr``, input checks and the affine map."""

    _allowed_dims: tuple[int, ...] = ()

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: Momentum = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        num_features = _whole(num_features, "num_features", 1)
        eps = _number(eps, "eps")
        if not 0 < eps < float("inf"):
            raise ValueError(f"eps must be a positive finite number, got {eps}")
        if momentum is not None and not callable(momentum):
            if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) and not hasattr(momentum, "item"):
                raise ValueError(f"momentum must be a float in (0, 1], None (cumulative average) or a callable "
                                 f"step -> rate, got {momentum!r}")
            momentum = _number(momentum, "momentum")
            if not 0.0 < momentum <= 1.0:
                raise ValueError(f"momentum must lie in (0, 1], got {momentum}")
        elif callable(momentum) and not isinstance(momentum, PolynomialMomentum):
            try:  # an arbitrary schedule is called with the step (an int from 1) for a rate in (0, 1]
                first = momentum(1)
            except Exception as exc:
                raise ValueError(f"momentum, a callable, must take the step (an int from 1) and return a rate in "
                                 f"(0, 1]; momentum(1) raised {type(exc).__name__}: {exc}") from exc
            _schedule_rate(first, 1)
        for name, flag in (("affine", affine), ("track_running_stats", track_running_stats)):
            if not isinstance(flag, (bool, np.bool_)):  # a string such as 'False' would be truthy
                raise ValueError(f"{name} must be True or False, got {flag!r}")
        affine, track_running_stats = bool(affine), bool(track_running_stats)
        _check_dtype(dtype)
        factory = {"device": device, "dtype": dtype}
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
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
        )

    def _check_input(self, x: torch.Tensor) -> None:
        _floating_input(self, x)
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

    def _affine(self, x_hat: torch.Tensor) -> torch.Tensor:
        if not self.affine:
            return x_hat
        shape = _channel_shape(x_hat)
        return x_hat * self.weight.view(shape) + self.bias.view(shape)

    def _normalize_with_running_stats(self, x: torch.Tensor) -> torch.Tensor:
        shape = _channel_shape(x)
        return (x - self.running_mean.view(shape)) * torch.rsqrt(self.running_var.view(shape) + self.eps)

    def _normalize_with_batch_stats(self, x: torch.Tensor) -> torch.Tensor:
        dims, shape = _reduce_dims(x), _channel_shape(x)
        var, mean = torch.var_mean(x, dim=dims, unbiased=False)
        return (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)

    def _widened(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in the layer's compute dtype (:func:`_compute_dtype`): float16/bfloat16 inputs in float32."""
        reference = self.running_mean if self.running_mean is not None else self.weight
        return x if reference is None else x.to(_compute_dtype(x, reference))


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
        x, weight, bias, mean, var = _kernel_operands(x, self.weight, self.bias, mean, var)
        return _FullNormFunction.apply(x, weight, bias, mean, var, self.eps, self.backward, rate, terms)


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
        x, scale, shift, mean, var = _kernel_operands(x, scale, shift, mean, var)
        return _FullNormFunction.apply(x, scale, shift, mean, var, self.eps, "mcsgd", None, None)


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


# The largest finite p of LpNorm: |x|^p of float32 activations overflows for much larger p (use float("inf")).
LP_MAX_ORDER = 16.0


class _LpNorm(_NormBase):
    def __init__(self, num_features: int, p: float = 1.0, eps: float = 1e-5, momentum: float = 0.1,
                 affine: bool = True, track_running_stats: bool = True, device=None, dtype=None) -> None:
        p = _number(p, "p")
        if not (1 <= p <= LP_MAX_ORDER or p == float("inf")):
            raise ValueError(f"p must be a number in [1, {LP_MAX_ORDER:g}] or float('inf') (Santurkar et al. use 1, 2 and inf; "
                             f"|x|^p of a larger p overflows float32), got {p!r}")
        if momentum is None or callable(momentum):
            raise ValueError(f"momentum must be a float in (0, 1], got {momentum!r}")
        super().__init__(num_features, eps=eps, momentum=momentum, affine=affine,
                         track_running_stats=track_running_stats, device=device, dtype=dtype)
        self.p = float(p)
        # the running scale replaces BN's running variance (it is not a variance unless p = 2 and the mean is 0)
        self.register_buffer("running_var", None)
        if track_running_stats:
            self.register_buffer("running_scale", torch.ones(num_features, device=device, dtype=dtype))
        else:
            self.register_buffer("running_scale", None)

    def reset_running_stats(self) -> None:
        """Estimates back to mean 0, scale 1, step 0."""
        if self.track_running_stats and getattr(self, "running_scale", None) is not None:
            self.running_mean.zero_()
            self.running_scale.fill_(1.0)
            self.num_batches_tracked.zero_()

    def extra_repr(self) -> str:
        return f"p={self.p:g}, " + super().extra_repr()

    def batch_scale(self, x: torch.Tensor) -> torch.Tensor:
        """The per-channel scale :math:`s_p` ``(C,)`` of a batch ``x`` (before centering; see the class docstring)."""
        dims = _reduce_dims(x)
        if self.p == float("inf"):
            return x.abs().amax(dim=dims) + self.eps
        return (x.abs().pow(self.p).mean(dim=dims) + self.eps ** self.p).pow(1.0 / self.p)

    def _widened(self, x: torch.Tensor) -> torch.Tensor:
        reference = self.running_scale if self.running_scale is not None else self.weight
        return x if reference is None else x.to(_compute_dtype(x, reference))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Centre and divide by the batch's l_p scale (training) or the running ones (evaluation).

        A batch with no samples returns an empty output and changes nothing; a channel whose batch
        holds a NaN or inf keeps its running statistics. float16 and bfloat16 inputs are computed in
        float32 and returned in their dtype, as :class:`torch.nn.BatchNorm2d` does.
        """
        self._check_input(x)
        wide = self._widened(x)
        shape = _channel_shape(x)
        if not self.training and self.track_running_stats:
            mean, scale = self.running_mean, self.running_scale
        elif x.shape[0] == 0:
            return _output(self._affine(wide), x)
        else:  # the batch's statistics (in training, and in evaluation without running ones): as BN, not of one value
            _one_value_per_channel(self, x)
            mean, scale = wide.mean(dim=_reduce_dims(x)), self.batch_scale(wide)
            if self.training and self.track_running_stats:
                with torch.no_grad():
                    self.num_batches_tracked.add_(1)
                    finite = torch.isfinite(mean) & torch.isfinite(scale)
                    for running, batch in ((self.running_mean, mean), (self.running_scale, scale)):
                        batch = batch.detach().to(running.dtype)
                        running.copy_(torch.where(finite, torch.lerp(running, batch, self.momentum), running))
        return _output(self._affine((wide - mean.view(shape)) / scale.view(shape)), x)


class LpNorm1d(_LpNorm):
    r"""Santurkar et al.'s :math:`\ell_p` normalization: centre each channel as BN does, then divide
    by the batch's average :math:`\ell_p` norm of the *uncentered* activations instead of their
    standard deviation.

    Per channel, over the batch (and positions) :math:`B` with :math:`n` values,

    .. math::
        s_p = \Big(\frac1n\sum_{i\in B}|x_i|^p + \epsilon^p\Big)^{1/p}, \qquad
        s_\infty = \max_{i\in B}|x_i| + \epsilon, \qquad
        y = \gamma\,\frac{x-\operatorname{mean}_B x}{s_p} + \beta .

    The text says the activations are normalized "by the average of their :math:`\ell_p`-norm
    (before shifting the mean)"; its equations are not in any text we could read. **Our reading**:
    the norm is taken before the centering and averaged as a power mean, so :math:`s_2` is the root
    mean square :math:`\sqrt{\operatorname{var}_B x + (\operatorname{mean}_B x)^2}`, which differs
    from BN's standard deviation whenever the mean is not 0 (after a ReLU and a convolution it
    rarely is); unlike BN, no :math:`p` fixes the variance of the output. Gradients flow through
    the mean and the scale (autograd). In evaluation the running averages ``running_mean`` and
    ``running_scale`` (rate ``momentum``, as BN's) take their place.

    Args:
        num_features: channels ``C``.
        p: the norm's order, a number >= 1 or ``float("inf")``.
        eps, momentum, affine, track_running_stats: as :class:`torch.nn.BatchNorm1d`
            (``momentum`` a float in (0, 1]).

    Shape:
        Input ``(N, C)`` or ``(N, C, L)``; output the same.

    Raises:
        ValueError: ``p < 1``, a bad ``momentum``/``eps``/``num_features``, wrong input rank or channels; an input
            with one value per channel where the batch's statistics normalize it (in training, and in evaluation
            with ``track_running_stats=False``), as :class:`torch.nn.BatchNorm1d` refuses it.

    Source: Santurkar et al. (2018), Section 3.3 ("Is BatchNorm the best (only?) way to smoothen
    the landscape?") and its appendix figures of :math:`\ell_p` normalization.
    """

    _allowed_dims = (2, 3)


class LpNorm2d(_LpNorm):
    """:class:`LpNorm1d` over ``(N, C, H, W)`` (Santurkar et al. 2018, Section 3.3)."""

    _allowed_dims = (4,)


def _refuses_one_value(module: nn.Module) -> bool:
    """Whether ``module`` in training refuses an input with one value per channel: torch's BatchNorm (and the noisy
    BN built on it) and this module's layers that normalize with the batch's statistics (not FN with its estimates,
    nor :class:`ReferenceBatchNorm2d`, which accept a batch of one)."""
    if isinstance(module, (nn.modules.batchnorm._BatchNorm, _BatchRenorm, _LpNorm)):
        return True
    return isinstance(module, _FullNorm) and not module.track_running_stats


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


def check_noise(noise_mean_max: float, noise_scale_max: float, noise_std: float) -> None:
    """Validate noisy BN's parameters: ``noise_mean_max >= 0``, ``noise_scale_max >= 1``, ``noise_std >= 0``, all finite
    (Python's or NumPy's real numbers).

    Raises:
        ValueError: naming the first parameter out of range.
    """
    for name, value, low in (("noise_mean_max", noise_mean_max, 0.0), ("noise_scale_max", noise_scale_max, 1.0),
                             ("noise_std", noise_std, 0.0)):
        if isinstance(value, (bool, np.bool_)) or not (isinstance(value, (int, float, np.integer, np.floating))
                                                       and low <= value < float("inf")):
            raise ValueError(f"{name} must be a finite number >= {low}, got {value!r}")


class _NoisyBatchNorm:
    """Noise injection shared by :class:`NoisyBatchNorm1d` and :class:`NoisyBatchNorm2d` (a mixin before torch's BN)."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, noise_mean_max: float = 1.0, noise_scale_max: float = 2.0,
                 noise_std: float = 0.5, device=None, dtype=None) -> None:
        # torch's BatchNorm takes num_features 0, eps <= 0 (refused at the first forward) and any momentum: checked here
        # as every other layer of this module checks them
        num_features = _whole(num_features, "num_features", 1)
        eps = _number(eps, "eps")
        if not 0 < eps < float("inf"):
            raise ValueError(f"eps must be a positive finite number, got {eps}")
        if momentum is not None:
            if callable(momentum) or isinstance(momentum, str):
                raise ValueError(f"momentum must be a float in (0, 1] or None (cumulative average), as "
                                 f"torch.nn.BatchNorm's; got {momentum!r}")
            momentum = _number(momentum, "momentum")
            if not 0.0 < momentum <= 1.0:
                raise ValueError(f"momentum must lie in (0, 1], got {momentum}")
        _check_dtype(dtype)
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device=device, dtype=dtype)
        check_noise(noise_mean_max, noise_scale_max, noise_std)
        self.noise_mean_max, self.noise_scale_max, self.noise_std = float(noise_mean_max), float(noise_scale_max), float(noise_std)

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", noise_mean_max={self.noise_mean_max}, noise_scale_max={self.noise_scale_max}, "
                f"noise_std={self.noise_std}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """BN (torch's), then the noise in training or its expectation in evaluation."""
        _floating_input(self, x)
        return self._add_noise(super().forward(x))

    def _add_noise(self, z: torch.Tensor) -> torch.Tensor:
        if not self.training:  # the noise's expectation: E[a] = (1 + n_sigma) / 2, E[b] = E[xi] = 0
            return z * ((1.0 + self.noise_scale_max) / 2.0)
        shape = (1, z.shape[1]) + (1,) * (z.dim() - 2)
        # One draw per channel and step: the distribution's parameters move every step.
        shift = torch.empty(shape, device=z.device, dtype=z.dtype).uniform_(-self.noise_mean_max, self.noise_mean_max)
        scale = torch.empty(shape, device=z.device, dtype=z.dtype).uniform_(1.0, self.noise_scale_max)
        # One draw per activation and example: i.i.d. noise on top.
        noise = torch.randn_like(z) * self.noise_std if self.noise_std > 0 else 0.0
        return scale * (z + noise) + shift


class NoisyIdentity(nn.Module):
    r"""The noise of :class:`NoisyBatchNorm1d` without the normalization: a standard network's layer inputs made to shift.

    In training, per channel :math:`c` and step a shift :math:`b_c \sim U(-n_\mu, n_\mu)` and a
    scale :math:`a_c \sim U(1, n_\sigma)`, per activation an i.i.d. :math:`\xi \sim \mathcal N(0, s^2)`,
    and :math:`y = a_c (x + \xi) + b_c`; in evaluation :math:`y = \tfrac{1 + n_\sigma}{2} x`, the
    noise's expectation, as for noisy BN. Santurkar et al. report that the same noise keeps a network
    without BN from training (our choice of distribution: :class:`NoisyBatchNorm1d`'s).
    Uses torch's global generator.

    Args:
        num_features: channels ``C`` (checked against the input).
        noise_mean_max, noise_scale_max, noise_std: as :class:`NoisyBatchNorm1d`.

    Shape:
        Input ``(N, C)`` or ``(N, C, *)``; output the same shape.

    Raises:
        ValueError: ``num_features`` not an integer >= 1, a noise parameter out of range; an input that is not a
            floating-point tensor, or whose dimension 1 is not ``num_features``.

    Source: Santurkar et al. (2018), Section 2.1 (noisy BatchNorm, and the same noise on the
    standard network).
    """

    def __init__(self, num_features: int, noise_mean_max: float = 1.0, noise_scale_max: float = 2.0,
                 noise_std: float = 0.5) -> None:
        super().__init__()
        check_noise(noise_mean_max, noise_scale_max, noise_std)
        self.num_features = _whole(num_features, "num_features", 1)
        self.noise_mean_max, self.noise_scale_max, self.noise_std = float(noise_mean_max), float(noise_scale_max), float(noise_std)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, noise_mean_max={self.noise_mean_max}, noise_scale_max={self.noise_scale_max}, "
                f"noise_std={self.noise_std}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _floating_input(self, x)
        if x.dim() < 2 or x.shape[1] != self.num_features:
            raise ValueError(f"NoisyIdentity expects input (N, {self.num_features}, ...), got shape {tuple(x.shape)}")
        return _NoisyBatchNorm._add_noise(self, x)


class NoisyBatchNorm1d(_NoisyBatchNorm, nn.BatchNorm1d):
    r"""BN followed by noise whose mean and variance change every training step (Santurkar et al. 2018, Sec. 2.1).

    Santurkar et al. add "time-varying, non-zero mean, non-unit variance" noise after each BN
    layer to show that a network trains well even when its layer inputs keep shifting. Their
    Appendix A with the exact distribution was not available to us. **Our choice:** at every
    training forward pass, draw per channel :math:`c` a shift and a scale,

    .. math::
        b_c \sim U(-n_\mu, n_\mu), \qquad a_c \sim U(1, n_\sigma),

    and per activation and example an i.i.d. :math:`\xi \sim \mathcal N(0, s^2)`; the output is

    .. math::
        y = a_c\,(\mathrm{BN}(x) + \xi) + b_c ,

    so each activation's distribution has mean :math:`b_c` and standard deviation
    :math:`a_c\sqrt{1+s^2}` that are redrawn every step. Evaluation mode applies the noise's
    expectation instead of a draw, :math:`y = \tfrac{1+n_\sigma}{2}\,\mathrm{BN}(x)` (our choice, the
    analogue of dropout's rescaling: with plain BN at test time the next layers would see
    activations about :math:`2/(1+n_\sigma)` times smaller than in training, and accuracy fell to
    chance in our first run).
    The noise uses torch's global generator, so :func:`torch.manual_seed` makes it reproducible.

    Args:
        num_features, eps, momentum, affine, track_running_stats: as :class:`torch.nn.BatchNorm1d`.
        noise_mean_max: :math:`n_\mu \ge 0`, half-width of the shift's range (default 1.0).
        noise_scale_max: :math:`n_\sigma \ge 1`, upper end of the scale's range (default 2.0).
        noise_std: :math:`s \ge 0`, standard deviation of the per-activation noise (default 0.5).

    Shape:
        Input ``(N, C)`` or ``(N, C, L)``; output the same shape.

    Raises:
        ValueError: a noise parameter out of range; ``num_features`` not an integer >= 1, ``eps`` not a positive
            finite number, ``momentum`` neither None nor a number in (0, 1], or ``dtype`` not a floating-point dtype
            (checked when made, where :class:`torch.nn.BatchNorm1d` accepts some of them or fails only at the first
            forward); an input that is not a floating-point tensor. Torch's errors for wrong input shapes.

    Source: Santurkar et al. (2018), Section 2.1 and Figure 2 ("noisy BatchNorm"); Appendix A
    (distribution not available; our choice above).
    """



class NoisyBatchNorm2d(_NoisyBatchNorm, nn.BatchNorm2d):
    """:class:`NoisyBatchNorm1d` over ``(N, C, H, W)``: the shift and scale are per channel, the noise per element.

    Source: Santurkar et al. (2018), Section 2.1 and Figure 2 (our choice of distribution, see
    :class:`NoisyBatchNorm1d`).
    """
