r"""The layers of Santurkar et al. (2018): :math:`\ell_p` normalization (Section 3.3) and noisy BatchNorm (Section 2.1),
with the same noise on the standard network.

Both follow :class:`torch.nn.BatchNorm2d`'s API (:mod:`revisit_bn.norm_base`); :mod:`revisit_bn.layers`
re-exports them.

Source: Santurkar et al. (2018), Sections 2.1 and 3.3, Figure 2 and the appendix figures of
:math:`\ell_p` normalization.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .norm_base import (_NormBase, _channel_shape, _check_device, _check_dtype, _compute_dtype, _floating_input,
                        _number, _one_value_per_channel, _output, _reduce_dims, _whole)

__all__ = ["LpNorm1d", "LpNorm2d", "LP_MAX_ORDER", "NoisyBatchNorm1d", "NoisyBatchNorm2d", "NoisyIdentity",
           "check_noise"]


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
        if self.p <= 2:
            return (x.abs().pow(self.p).mean(dim=dims) + self.eps ** self.p).pow(1.0 / self.p)
        # larger p: |x|^p overflows float32 above about 255 at p = 16 and eps^p underflows to 0 (a zero channel would
        # give 0/0): the same value as M (mean (|x|/M)^p + (eps/M)^p)^(1/p) for any constant M > 0, here the channel's
        # largest |x| (at least eps), held constant for autograd (the expression does not depend on it)
        big = torch.clamp(x.detach().abs().amax(dim=dims), min=self.eps)
        shape = _channel_shape(x)
        ratio = (x.abs() / big.view(shape)).pow(self.p).mean(dim=dims) + (self.eps / big).pow(self.p)
        return big * ratio.pow(1.0 / self.p)

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


def check_noise(noise_mean_max: float, noise_scale_max: float, noise_std: float) -> None:
    """Validate noisy BN's parameters: ``noise_mean_max >= 0``, ``noise_scale_max >= 1``, ``noise_std >= 0``, all finite
    (Python's or NumPy's real numbers, or one-element tensors).

    Raises:
        ValueError: naming the first parameter out of range.
    """
    for name, value, low in (("noise_mean_max", noise_mean_max, 0.0), ("noise_scale_max", noise_scale_max, 1.0),
                             ("noise_std", noise_std, 0.0)):
        number = _number(value, name) if not isinstance(value, (bool, np.bool_, str)) else None
        if number is None or not low <= number < float("inf"):
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
        _check_device(device)
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
