"""The machinery every normalization layer of this package shares: momentum schedules, argument and input checks,
and :class:`_NormBase`, the API of :class:`torch.nn.BatchNorm2d` (arguments, buffers, ``reset_parameters``,
``reset_running_stats``, ``extra_repr``, the affine map, float16/bfloat16 inputs computed in float32).

The layers themselves are in :mod:`revisit_bn.layers` (FN, Batch Renorm, the reference BN, micro-batches) and
:mod:`revisit_bn.santurkar_layers` (the l_p normalizations and noisy BN of Santurkar et al. 2018); both re-export
what a user needs.

Source: Ioffe & Szegedy (2015), Algorithms 1-2 (BN's statistics and running averages); PyTorch's
``torch.nn.BatchNorm2d`` (the API followed); Lian & Liu (2019), Corollary 3 (:class:`PolynomialMomentum`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union

import numpy as np
import torch
from torch import nn

__all__ = ["PolynomialMomentum", "Momentum"]

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
    if hasattr(value, "item"):
        count = value.numel() if callable(getattr(value, "numel", None)) else getattr(value, "size", 1)
        if count != 1:  # torch's and NumPy's own errors name no argument
            raise ValueError(f"{name} must be one number, got an array or tensor of shape {tuple(value.shape)}")
        value = value.item()
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


def _check_device(device) -> None:
    """A layer's ``device`` argument: ``None`` or what :class:`torch.device` takes (torch's own error names no
    argument).

    Raises:
        ValueError: naming ``device``.
    """
    if device is None:
        return
    try:
        torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(f"device must be None or a torch device ('cpu', 'cuda', 'cuda:0', torch.device(...)), got "
                         f"{device!r} ({exc})") from exc


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
        _check_device(device)
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
