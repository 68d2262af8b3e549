r"""Two published successors of BN that keep normalizing with statistics across samples at small batch sizes.

- :class:`OnlineNorm1d`, :class:`OnlineNorm2d`: Online Normalization (Chiley et al., NeurIPS 2019,
  arXiv:1905.05894). Each sample is normalized with running estimates of the mean and variance built
  from the samples *before* it, and the backward pass replaces BN's batch projections by an error-feedback
  ("control") process over time. Trains at batch size 1.
- :class:`MABN2d`: Moving Average Batch Normalization (Yan et al., ICLR 2020, arXiv:2001.06838).
  Normalizes by a simple moving average of the batch second moments of the last ``buffer_size``
  iterations, and replaces the batch statistic of the backward pass by its moving average too.
- :class:`CenteredConv2d`: the weight centering of the convolution MABN is paired with in the paper.

Provenance. No full text with equations of either paper could be read while this module was written.
Online Normalization's forward equations are checked against a transcription of the paper's forward
equations (paperswithcode's method page); its backward equations, layer scaling and the batch semantics
against the authors' code (``Cerebras/online-normalization``: ``online-norm/numpy_on/online_norm_2d.py``
and the PyTorch CPU kernel) and the authors' 2020 post on error compensation. MABN's algorithm is checked
against the authors' code (``megvii-model/MABN``: ``MABN.py`` and ``cls/networks/MABN.py``) and the
paper's abstract. Equation and section numbers are therefore not given (sections are named); where we
chose, the docstrings say "Our choice:". The code here is written from the equations, not copied.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .norm_base import _compute_dtype, _output, _whole
from .norm_base import _number as _real

__all__ = ["OnlineNorm1d", "OnlineNorm2d", "MABN2d", "CenteredConv2d"]

# Rows of the exponential-average scan solved at once (an (n, n) matrix per chunk: bounded memory).
_SCAN_CHUNK = 256


# ----------------------------------------------------------------------------------------------
# argument checks (revisit_bn.layers' conventions and helpers)
# ----------------------------------------------------------------------------------------------


def _number(value, name: str) -> float:
    """``value`` as a finite float (:func:`revisit_bn.norm_base._number`, and not inf or NaN).

    Raises:
        ValueError: naming ``name``.
    """
    value = _real(value, name)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def _open_unit(value, name: str, hint: str) -> float:
    value = _number(value, name)
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must lie in the open interval (0, 1) ({hint}), got {value}")
    return value


def _flag(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def _channel_view(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A per-channel ``(C,)`` or per-sample ``(N, C)`` tensor shaped to broadcast against ``x``."""
    lead = (1, x.shape[1]) if t.dim() == 1 else tuple(t.shape)
    return t.reshape(lead + (1,) * (x.dim() - 2))


def _ema_scan(values: torch.Tensor, start: torch.Tensor, decay: float,
              gain: float, skip_nonfinite: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Run :math:`s_t = \text{decay}\, s_{t-1} + \text{gain}\, v_t` over the rows of ``values`` ``(N, C)``.

    Returns the state *before* each row, :math:`(s_{t-1})_{t=0..N-1}` ``(N, C)`` with :math:`s_{-1}` =
    ``start``, and the final state :math:`s_{N-1}` ``(C,)``. Solved in closed form per chunk,
    :math:`s_{t-1} = d^t s_{-1} + g\sum_{s<t} d^{t-1-s} v_s`, instead of ``N`` sequential small kernels.

    Causal as the sequential recurrence is: a non-finite value in row ``t`` never reaches the states before it (the
    matrix product would multiply it by the zero weights of earlier rows: 0 x NaN). After it, the states of its
    channel are NaN (inf where the recurrence would give inf is NaN here); with ``skip_nonfinite`` the row is skipped
    instead (:math:`s_t = s_{t-1}`), as a separate call on that one sample keeps the estimates (the rows of such a
    chunk are then run one at a time).
    """
    state, before = start, []
    # the matmul stays in the statistics' dtype under autocast
    with torch.autocast(device_type=values.device.type, enabled=False):
        for low in range(0, values.shape[0], _SCAN_CHUNK):
            chunk = values[low:low + _SCAN_CHUNK]
            steps = torch.arange(chunk.shape[0], device=values.device, dtype=values.dtype)
            lag = steps[:, None] - steps[None, :] - 1
            weights = torch.where(lag >= 0, decay ** lag.clamp(min=0), torch.zeros((), dtype=values.dtype,
                                                                                    device=values.device))
            bad = ~torch.isfinite(chunk)
            if bad.any() and skip_nonfinite:  # rare (a diverging run): the recurrence row by row, bad rows skipped
                rows = []
                for t in range(chunk.shape[0]):
                    rows.append(state)
                    state = torch.where(bad[t], state, decay * state + gain * chunk[t])
                before.append(torch.stack(rows))
                continue
            if bad.any():  # rows after a non-finite value are NaN; the rows before it keep their finite states
                after_bad = (bad.cumsum(0) - bad.to(torch.long)) > 0
                clean = chunk.masked_fill(bad, 0.0)
                prev = (decay ** steps)[:, None] * state[None, :] + gain * (weights @ clean)
                prev = prev.masked_fill(after_bad, float("nan"))
            else:
                prev = (decay ** steps)[:, None] * state[None, :] + gain * (weights @ chunk)
            before.append(prev)
            state = decay * prev[-1] + gain * chunk[-1]
    return torch.cat(before), state


class _NormModule(nn.Module):
    """Input checks, ``reset_parameters`` and the affine map shared by the layers here (each defines
    ``reset_running_stats``)."""

    _allowed_dims: tuple[int, ...] = ()

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise ValueError(f"{type(self).__name__} expects a floating-point tensor, got "
                             f"{type(x).__name__ if not isinstance(x, torch.Tensor) else x.dtype}")
        if x.dim() not in self._allowed_dims:
            raise ValueError(
                f"{type(self).__name__} expects a {' or '.join(f'{d}D' for d in self._allowed_dims)} "
                f"input (N, C, ...), got {x.dim()}D with shape {tuple(x.shape)}")
        if x.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}({self.num_features}) got {x.shape[1]} channels in input "
                             f"of shape {tuple(x.shape)}; the channel dimension is dim 1")

    def reset_parameters(self) -> None:
        """Running state reset; ``weight`` to 1 and ``bias`` to 0."""
        self.reset_running_stats()
        if self.affine:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    def _init_affine(self, factory: dict) -> None:
        """``weight`` and ``bias`` of ``num_features`` (set by ``reset_parameters``), or ``None`` without ``affine``."""
        if self.affine:
            self.weight = nn.Parameter(torch.empty(self.num_features, **factory))
            self.bias = nn.Parameter(torch.empty(self.num_features, **factory))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def _affine(self, y: torch.Tensor) -> torch.Tensor:
        if not self.affine:
            return y
        return y * _channel_view(self.weight.to(y.dtype), y) + _channel_view(self.bias.to(y.dtype), y)


# ----------------------------------------------------------------------------------------------
# Online Normalization (Chiley et al. 2019)
# ----------------------------------------------------------------------------------------------


class _OnlineNormFunction(torch.autograd.Function):
    r"""``y = (x - center) / scale`` per sample and channel; backward: Online Normalization's control process.

    ``center`` and ``scale`` ``(N, C)`` are :math:`\mu_{t-1}` and :math:`\sqrt{\sigma^2_{t-1}+\epsilon}` of
    each sample (constants for autograd). The backward pass runs the two error-feedback projections sample
    by sample in batch order, starting from the accumulators ``grad_error_y`` and ``grad_error_mean`` as they
    are when backward runs, and writes their final values back once (a second backward over the same graph
    reuses the same starting values and changes nothing). A sample whose gradient or output is not finite in a
    channel is left out of that channel's feedback, as one call per sample leaves it (its own input gradient is not
    finite; the later samples' are those of separate calls).
    """

    @staticmethod
    def forward(ctx, x, center, scale, alpha_bkw, grad_error_y, grad_error_mean):
        y = (x - _channel_view(center, x)) / _channel_view(scale, x)
        ctx.save_for_backward(y, scale)
        ctx.alpha_bkw, ctx.buffers, ctx.start = alpha_bkw, (grad_error_y, grad_error_mean), None
        return y

    @staticmethod
    def backward(ctx, grad):
        y, scale = ctx.saved_tensors
        first = ctx.start is None
        if first:  # the accumulators as this backward finds them
            ctx.start = tuple(b.detach().clone() for b in ctx.buffers)
        grad = grad.to(y.dtype)
        error_y, error_mean = (s.to(y.dtype) for s in ctx.start)
        gain = 1.0 - ctx.alpha_bkw
        dims = tuple(range(2, y.dim()))
        # mu(y_t^2) and mu(y'_t y_t) per sample and channel (mu: the mean over a sample's positions)
        y_sq = (y * y).mean(dims) if dims else y * y
        grad_y = (grad * y).mean(dims) if dims else grad * y
        # eps^(y)_t = eps^(y)_{t-1} + mu(x~'_t y_t) = (1 - (1 - a_b) mu(y_t^2)) eps^(y)_{t-1} + mu(y'_t y_t):
        # its coefficient depends on the data, so it runs as a loop over the samples (on (C,) vectors)
        decay_y = 1.0 - gain * y_sq
        # a sample whose gradient or output is not finite in a channel is left out of that channel's feedback, as a
        # separate call on that sample alone leaves the accumulators (checked once: the usual loop has no where)
        bad = ~(torch.isfinite(grad_y) & torch.isfinite(decay_y))
        skip = bool(bad.any())
        before_y = []
        for t in range(y.shape[0]):
            before_y.append(error_y)
            step = torch.addcmul(grad_y[t], decay_y[t], error_y)
            error_y = torch.where(bad[t], error_y, step) if skip else step
        before_y = torch.stack(before_y)
        # x~'_t = y'_t - (1 - a_b) eps^(y)_{t-1} y_t, then divide by sigma_{t-1}
        scaled = (grad - gain * _channel_view(before_y, y) * y) / _channel_view(scale, y)
        # eps^(1)_t = eps^(1)_{t-1} + mu(x'_t) = a_b eps^(1)_{t-1} + mu(x~'_t / sigma_{t-1}): a constant decay
        scaled_mean = scaled.mean(dims) if dims else scaled
        before_mean, error_mean = _ema_scan(scaled_mean, error_mean, ctx.alpha_bkw, 1.0, skip_nonfinite=True)
        grad_x = scaled - gain * _channel_view(before_mean, y)
        if first:
            with torch.no_grad():  # a channel whose gradient is not finite keeps its error feedback
                for buffer, value in zip(ctx.buffers, (error_y, error_mean)):
                    buffer.copy_(torch.where(torch.isfinite(value), value.to(buffer.dtype), buffer))
        return grad_x, None, None, None, None, None


class _OnlineNorm(_NormModule):
    def __init__(self, num_features: int, alpha_fwd: float = 0.999, alpha_bkw: float = 0.99,
                 eps: float = 1e-5, affine: bool = True, layer_scaling: bool = True, device=None,
                 dtype=None) -> None:
        num_features = _whole(num_features, "num_features", 1)
        alpha_fwd = _open_unit(alpha_fwd, "alpha_fwd", "decay of the forward estimates; paper: 0.999")
        alpha_bkw = _open_unit(alpha_bkw, "alpha_bkw", "decay of the backward error feedback; paper: 0.99")
        eps = _number(eps, "eps")
        if eps <= 0:
            raise ValueError(f"eps must be a positive finite number, got {eps}")
        affine, layer_scaling = _flag(affine, "affine"), _flag(layer_scaling, "layer_scaling")
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.num_features, self.alpha_fwd, self.alpha_bkw, self.eps = num_features, alpha_fwd, alpha_bkw, eps
        self.affine, self.layer_scaling = affine, layer_scaling
        self._init_affine(factory)
        self.register_buffer("running_mean", torch.zeros(num_features, **factory))
        self.register_buffer("running_var", torch.ones(num_features, **factory))
        self.register_buffer("grad_error_y", torch.zeros(num_features, **factory))
        self.register_buffer("grad_error_mean", torch.zeros(num_features, **factory))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device))
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        """Estimates back to mean 0, variance 1; both error accumulators to 0; step 0."""
        self.running_mean.zero_()
        self.running_var.fill_(1.0)
        self.grad_error_y.zero_()
        self.grad_error_mean.zero_()
        self.num_batches_tracked.zero_()

    def extra_repr(self) -> str:
        return (f"{self.num_features}, alpha_fwd={self.alpha_fwd}, alpha_bkw={self.alpha_bkw}, "
                f"eps={self.eps}, affine={self.affine}, layer_scaling={self.layer_scaling}")

    def _scale_layer(self, u: torch.Tensor) -> torch.Tensor:
        r"""Layer scaling: each sample divided by the root mean square over all its channels and positions."""
        if not self.layer_scaling or u.shape[0] == 0:
            return u
        rms = torch.sqrt(u.square().mean(dim=tuple(range(1, u.dim())), keepdim=True) + self.eps)
        return u / rms

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize each sample with the estimates of the samples before it (training) or the running ones.

        A batch with no samples returns an empty output and changes nothing. A sample whose values in a channel are
        not finite (a NaN or inf) gets non-finite outputs there and is left out of that channel's estimates, as a
        call on that sample alone would leave them: the samples before and after it are normalized as in separate
        calls.
        """
        self._check_input(x)
        wide = x.to(_compute_dtype(x, self.running_mean))
        if not self.training:
            y = (wide - _channel_view(self.running_mean.to(wide.dtype), wide)) * torch.rsqrt(
                _channel_view(self.running_var.to(wide.dtype), wide) + self.eps)
            return _output(self._scale_layer(self._affine(y)), x)
        if x.numel() == 0:
            return _output(self._scale_layer(self._affine(wide)), x)
        dims = tuple(range(2, x.dim()))
        with torch.no_grad(), torch.autocast(device_type=x.device.type, enabled=False):
            sample = wide.detach()
            # mu(x_t), sigma^2(x_t): a sample's per-channel mean and population variance over its positions
            if dims:
                sample_mean = sample.mean(dims)
                sample_var = (sample - _channel_view(sample_mean, sample)).square().mean(dims)
            else:
                sample_mean, sample_var = sample, torch.zeros_like(sample)
            a = self.alpha_fwd
            # mu_t = a mu_{t-1} + (1 - a) mu(x_t)
            center, mean_last = _ema_scan(sample_mean, self.running_mean.to(wide.dtype), a, 1.0 - a, True)
            # sigma^2_t = a sigma^2_{t-1} + (1 - a) [sigma^2(x_t) + a (mu(x_t) - mu_{t-1})^2]
            spread = sample_var + a * (sample_mean - center).square()
            var_before, var_last = _ema_scan(spread, self.running_var.to(wide.dtype), a, 1.0 - a, True)
            scale = torch.sqrt(var_before + self.eps)
            finite = torch.isfinite(mean_last) & torch.isfinite(var_last)  # a channel with a NaN or inf keeps them
            self.running_mean.copy_(torch.where(finite, mean_last.to(self.running_mean.dtype), self.running_mean))
            self.running_var.copy_(torch.where(finite, var_last.to(self.running_var.dtype), self.running_var))
            self.num_batches_tracked.add_(1)
        y = _OnlineNormFunction.apply(wide, center, scale, self.alpha_bkw, self.grad_error_y,
                                      self.grad_error_mean)
        return _output(self._scale_layer(self._affine(y)), x)


class OnlineNorm1d(_OnlineNorm):
    r"""Online Normalization over ``(N, C)`` or ``(N, C, L)`` (Chiley et al. 2019).

    **Forward, training.** Samples arrive as a stream ``t = 1, 2, ...``; per channel, with a sample's
    mean :math:`\mu(x_t)` and population variance :math:`\sigma^2(x_t)` over its positions (for
    ``(N, C)`` input :math:`\mu(x_t) = x_t` and :math:`\sigma^2(x_t) = 0`),

    .. math::
        y_t = \frac{x_t - \mu_{t-1}}{\sqrt{\sigma^2_{t-1} + \epsilon}}, \qquad
        \mu_t = \alpha_f\,\mu_{t-1} + (1-\alpha_f)\,\mu(x_t),

        \sigma^2_t = \alpha_f\,\sigma^2_{t-1} + (1-\alpha_f)\,\sigma^2(x_t)
            + \alpha_f(1-\alpha_f)\,\big(\mu(x_t) - \mu_{t-1}\big)^2 ,

    so every sample is normalized with estimates from the samples before it only. Stored as
    ``running_mean`` (:math:`\mu`) and ``running_var`` (:math:`\sigma^2`).

    **Backward** (the control process). With the incoming gradient :math:`y'_t` of :math:`y_t` and
    :math:`\mu(\cdot)` the mean over a sample's positions, two error accumulators (``grad_error_y``
    :math:`=\varepsilon^{(y)}`, ``grad_error_mean`` :math:`=\varepsilon^{(1)}`) feed back the components
    that the exact gradient of normalization would project out (the one along :math:`y` and the mean):

    .. math::
        \tilde x'_t = y'_t - (1-\alpha_b)\,\varepsilon^{(y)}_{t-1}\,y_t, \qquad
        \varepsilon^{(y)}_t = \varepsilon^{(y)}_{t-1} + \mu(\tilde x'_t\,y_t),

        x'_t = \frac{\tilde x'_t}{\sqrt{\sigma^2_{t-1}+\epsilon}}
            - (1-\alpha_b)\,\varepsilon^{(1)}_{t-1}, \qquad
        \varepsilon^{(1)}_t = \varepsilon^{(1)}_{t-1} + \mu(x'_t).

    The sums over time of :math:`\mu(\tilde x'_t y_t)` and :math:`\mu(x'_t)` telescope into the
    accumulators, so while these stay bounded the gradient is orthogonal to :math:`y` and to the constants
    on average over time, as BN's is within a batch. In a stationary stream (checked in
    ``tests/test_successors.py``) :math:`(1-\alpha_b)\varepsilon^{(y)}` and :math:`(1-\alpha_b)
    \varepsilon^{(1)}` settle at the coefficients of :math:`y` and of the constant in :math:`y'` (the
    latter divided by :math:`\sigma`), and an upstream gradient in their span is cancelled.

    **A batch** of ``N`` samples is ``N`` consecutive time steps in batch order, forward and backward
    (sample ``i`` is normalized with the estimates after samples ``0..i-1`` of the batch and the previous
    batches); a batch of ``N`` therefore gives the same outputs, input gradients and buffers as ``N`` calls
    with batch size 1, computed in one call. Our choice: these are the semantics of the authors' code
    (CPU kernel, NumPy reference and their "batched" variant, which computes the same recursion with
    convolutions); the paper's equations are written per sample and we found no different batch rule.

    **Layer scaling** (``layer_scaling=True``, the default): after the affine map each sample is divided by
    the root mean square over all its channels and positions, :math:`z = u/\sqrt{\operatorname{mean}_{C,L}
    u^2 + \epsilon}`, differentiated by autograd. The paper makes it part of the Online Normalization layer
    (its guard against the growth of activations from errors of the running estimates; the authors' 2020
    post says so in as many words). Activation clamping, which that post introduced after the paper and
    which is now their code's default, is left out.

    **Evaluation** (``eval()``): :math:`y = (x - \mu)/\sqrt{\sigma^2+\epsilon}` with the running estimates,
    which do not change, then the affine map and layer scaling; the backward pass is autograd's.

    Our choices: :math:`\epsilon` inside the square root (the paper divides by :math:`\sigma_{t-1}`; the
    authors' code adds :math:`\epsilon` as here); initial estimates mean 0, variance 1 and accumulators 0 (as
    the authors' code); the accumulators start each backward pass from their values when it runs and are
    written once per forward pass (no ``retain_graph`` double counting); no ``track_running_stats`` (the
    estimates are the method). A sample whose input holds a NaN or inf in a channel gets non-finite outputs
    there and is left out of that channel's estimates and error feedback, as a call on that sample alone would
    leave them: a batch equals its samples' separate calls, forward and backward.

    Args:
        num_features: ``C``, the number of channels (an int >= 1).
        alpha_fwd: :math:`\alpha_f \in (0, 1)`, decay of the forward estimates (default 0.999, the
            authors' code's default).
        alpha_bkw: :math:`\alpha_b \in (0, 1)`, decay of the backward error feedback (default 0.99, the
            authors' code's default).
        eps: added to the variance (default 1e-5), and to the mean square of layer scaling.
        affine: learn a per-channel ``weight`` (init 1) and ``bias`` (init 0) (default True).
        layer_scaling: apply the paper's layer scaling after the affine map (default True).

    Shape:
        Input ``(N, C)`` or ``(N, C, L)``, any ``N >= 0`` (``N = 1`` trains); output the same shape and,
        for float16/bfloat16 input, dtype (computed in float32). Buffers ``running_mean``,
        ``running_var``, ``grad_error_y``, ``grad_error_mean`` ``(C,)``; ``num_batches_tracked`` a scalar
        (training forward calls).

    Raises:
        ValueError: ``num_features`` not an int >= 1; ``alpha_fwd``/``alpha_bkw`` not a real number in
            (0, 1); ``eps`` not a positive finite number; ``affine``/``layer_scaling`` not a bool (each
            message names the argument); an input that is not a floating-point 2D/3D tensor or whose
            dim 1 is not ``C``.

    Source: Chiley et al. (2019), "Online Normalization for Training Neural Networks", NeurIPS, the
    section "Online Normalization" (forward estimates, backward control process) and layer scaling;
    authors' code ``Cerebras/online-normalization`` for the batch order and the constants.
    """

    _allowed_dims = (2, 3)


class OnlineNorm2d(_OnlineNorm):
    r"""Online Normalization over ``(N, C, H, W)`` (Chiley et al. 2019); see :class:`OnlineNorm1d`.

    A sample's statistics :math:`\mu(x_t)`, :math:`\sigma^2(x_t)` and the means :math:`\mu(\cdot)` of the
    backward pass are taken per channel over ``H`` and ``W``; layer scaling over ``C``, ``H`` and ``W``.
    A batch is ``N`` consecutive time steps in batch order (the authors' code's semantics).

    Args:
        num_features, alpha_fwd, alpha_bkw, eps, affine, layer_scaling: as :class:`OnlineNorm1d`.

    Shape:
        Input ``(N, C, H, W)``, any ``N >= 0``; output the same.

    Raises:
        ValueError: bad arguments (naming them), a non-4D input, or a channel count other than ``C``.

    Source: Chiley et al. (2019), the section "Online Normalization"; authors' code
    ``Cerebras/online-normalization``.
    """

    _allowed_dims = (4,)


# ----------------------------------------------------------------------------------------------
# Moving Average Batch Normalization (Yan et al. 2020)
# ----------------------------------------------------------------------------------------------


class _MABNFunction(torch.autograd.Function):
    r"""``z = x / chi`` per channel, with MABN's backward (the statistic :math:`\Psi` averaged over time).

    ``inv_chi`` ``(C,)`` is :math:`1/\sqrt{\bar\chi^2_t+\epsilon}` (a constant for autograd). The backward
    pass computes this batch's :math:`\Psi_B = \operatorname{mean}_B(z'\,z)`, stores it in slot ``slot`` of
    the window buffer and uses the mean over the first ``count`` slots (or :math:`\Psi_B` itself when
    ``use_window`` is false, during warm-up).
    """

    @staticmethod
    def forward(ctx, x, inv_chi, psi_window, slot, count, use_window):
        z = x * _channel_view(inv_chi, x)
        ctx.save_for_backward(z, inv_chi)
        ctx.window, ctx.slot, ctx.count, ctx.use_window = psi_window, slot, count, use_window
        return z

    @staticmethod
    def backward(ctx, grad):
        z, inv_chi = ctx.saved_tensors
        grad = grad.to(z.dtype)
        dims = (0,) + tuple(range(2, z.dim()))
        psi = (grad * z).mean(dims)  # Psi_B = mean_B(dL/dz * z)
        if ctx.use_window:
            history = ctx.window[:ctx.count].to(z.dtype).clone()
            history[ctx.slot] = psi
            psi_bar = history.mean(0)
        else:
            psi_bar = psi
        with torch.no_grad():  # rewriting the slot with the same value is harmless (a second backward)
            # a channel whose gradient is not finite keeps the slot's old value
            ctx.window[ctx.slot].copy_(torch.where(torch.isfinite(psi), psi.to(ctx.window.dtype), ctx.window[ctx.slot]))
        grad_x = (grad - z * _channel_view(psi_bar, z)) * _channel_view(inv_chi, z)
        return grad_x, None, None, None, None, None


class MABN2d(_NormModule):
    r"""Moving Average Batch Normalization over ``(N, C, H, W)`` (Yan et al. 2020), in its final form.

    Yan et al. show that BN's backward pass depends on two batch statistics of the gradient,
    :math:`g_B = \operatorname{mean}_B \partial\ell/\partial\hat x` and :math:`\Psi_B = \operatorname{mean}_B
    \hat x\,\partial\ell/\partial\hat x`, besides the forward's :math:`\mu_B, \sigma_B`, and replace all of
    them by moving averages. To need fewer statistics, the final MABN does not centre: it divides by the
    root of a second moment, which removes :math:`\mu_B` and :math:`g_B` and leaves :math:`\chi^2` forward
    and :math:`\Psi` backward (the centred variant with four averaged statistics is not implemented here).
    Per channel, at training iteration :math:`t` (``num_batches_tracked``),
    with :math:`B` the batch's ``N*H*W`` values and :math:`m` = ``buffer_size``:

    .. math::
        \chi^2_{B_t} = \operatorname{mean}_B x^2, \qquad
        \bar\chi^2_t = \frac{1}{m}\sum_{s=0}^{m-1}\chi^2_{B_{t-s}} \ \text{(simple moving average)},

        z = \frac{x}{\sqrt{\bar\chi^2_t + \epsilon}}, \qquad
        y = \gamma\,r\,z + \beta, \qquad
        r = \operatorname{sg}\operatorname{clip}_{[1/r_{\max},\, r_{\max}]}
            \frac{\sqrt{\bar\chi^2_t+\epsilon}}{\sqrt{\hat\chi^2+\epsilon}},

    and backward, with :math:`z' = \gamma\,r\,\partial\ell/\partial y` (autograd),

    .. math::
        \Psi_{B_t} = \operatorname{mean}_B (z'\,z), \qquad
        \bar\Psi_t = \frac{1}{m}\sum_{s=0}^{m-1}\Psi_{B_{t-s}}, \qquad
        \frac{\partial\ell}{\partial x} = \frac{z' - z\,\bar\Psi_t}{\sqrt{\bar\chi^2_t+\epsilon}} .

    The inference statistic is the exponential average :math:`\hat\chi^2 \leftarrow m_\chi \hat\chi^2 +
    (1-m_\chi)\bar\chi^2_t` (``momentum`` :math:`= m_\chi` weighs the *old* value, as in the authors'
    code, unlike :class:`torch.nn.BatchNorm2d`'s), stored as ``running_var`` (it is a second
    moment, not a variance); ``eval()`` computes :math:`y = \gamma x/\sqrt{\hat\chi^2+\epsilon} + \beta`.
    With ``buffer_size=1`` and :math:`r = 1` the layer is exactly "BN by the batch second moment":
    :math:`x/\sqrt{\operatorname{mean}_B x^2+\epsilon}` with its true gradient.

    **Warm-up.** For the first ``warmup_iters`` iterations the batch's own :math:`\chi^2_{B_t}` and
    :math:`\Psi_{B_t}` are used (as in the authors' code); later the average runs over the last
    :math:`\min(t, m)` iterations. :math:`r = 1` until iteration
    ``max(renorm_start, warmup_iters)``; ``r_max=1`` switches the renormalization off.

    **Weight centering.** The paper pairs MABN with centering the weights of the preceding convolution
    (each filter's weights minus their mean), which restores what the dropped centering did; it is not
    part of this layer: use :class:`CenteredConv2d` (with ``bias=False``) before it.

    Our choices (the paper's text was not available to us; the authors' code decides): SMA for both
    :math:`\chi^2` and :math:`\Psi` (not an exponential average for :math:`\Psi`); the renormalization
    :math:`r` (Batch Renorm's, against the EMA statistic, computed before that statistic's update, with the
    authors' limits ``r_max=5`` after 1000 iterations) is in the authors' code, and we could not check
    whether the paper states it, so ``r_max=1`` removes it;
    the averages include the current batch; warm-up counted as "the first ``warmup_iters`` iterations"
    (the authors' code also keeps batch statistics until the window is full, ``t <= buffer_size``; here a
    window filled for :math:`t < m` iterations averages over those); ``running_var`` starts at 1 (as BN). A
    training forward without a backward (e.g. under ``torch.no_grad``) leaves that iteration's
    :math:`\Psi` slot as it was.

    Args:
        num_features: ``C`` (an int >= 1).
        eps: added to the second moment (default 1e-5).
        momentum: :math:`m_\chi \in [0, 1)`, weight of the old value in the inference EMA (default 0.98,
            the authors').
        buffer_size: :math:`m`, iterations in the simple moving averages (default 16: the authors'
            ImageNet setting, where 16 iterations of batch 2 stand in for a normalization batch of 32).
        warmup_iters: iterations that use batch statistics (default 100, the authors').
        affine: learn ``weight`` (init 1) and ``bias`` (init 0) (default True).
        r_max: renormalization limit :math:`r_{\max} \ge 1` (default 5.0; 1 disables it).
        renorm_start: :math:`r = 1` up to this iteration (default 1000).

    Shape:
        Input ``(N, C, H, W)``, any ``N >= 0`` (``N = 1`` trains); output the same shape (float16/bfloat16
        inputs computed in float32 and returned in their dtype). Buffers ``running_var`` ``(C,)``,
        ``sq_mean_window`` and ``grad_xhat_window`` ``(buffer_size, C)`` (the last :math:`m` values of
        :math:`\chi^2_B` and :math:`\Psi_B`), ``num_batches_tracked`` a scalar.

    Raises:
        ValueError: ``num_features``/``buffer_size`` not an int >= 1, ``warmup_iters``/``renorm_start`` not
            an int >= 0, ``eps`` not positive and finite, ``momentum`` outside [0, 1), ``r_max`` not a
            finite number >= 1, ``affine`` not a bool (each naming the argument); an input that is not a
            floating-point 4D tensor or whose dim 1 is not ``C``.

    Source: Yan et al. (2020), "Towards Stabilizing Batch Statistics in Backward Propagation of Batch
    Normalization", ICLR: the batch statistics of the backward pass (:math:`g_B`, :math:`\Psi_B`), their
    replacement by moving averages, the reduction to :math:`\chi^2` and :math:`\Psi` with weight centering,
    and the MABN algorithm; authors' code ``megvii-model/MABN`` (``MABN.py``) for the warm-up, the
    renormalization and the defaults.
    """

    _allowed_dims = (4,)

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.98, buffer_size: int = 16,
                 warmup_iters: int = 100, affine: bool = True, r_max: float = 5.0, renorm_start: int = 1000,
                 device=None, dtype=None) -> None:
        num_features = _whole(num_features, "num_features", 1)
        eps = _number(eps, "eps")
        if eps <= 0:
            raise ValueError(f"eps must be a positive finite number, got {eps}")
        momentum = _number(momentum, "momentum")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must lie in [0, 1) (the weight of the old inference statistic; the "
                             f"authors use 0.98), got {momentum}")
        buffer_size = _whole(buffer_size, "buffer_size", 1)
        warmup_iters = _whole(warmup_iters, "warmup_iters", 0)
        affine = _flag(affine, "affine")
        r_max = _number(r_max, "r_max")
        if r_max < 1.0:
            raise ValueError(f"r_max must be a finite number >= 1 (1 disables renormalization), got {r_max}")
        renorm_start = _whole(renorm_start, "renorm_start", 0)
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.buffer_size, self.warmup_iters, self.affine = buffer_size, warmup_iters, affine
        self.r_max, self.renorm_start = r_max, renorm_start
        self._init_affine(factory)
        self.register_buffer("running_var", torch.ones(num_features, **factory))
        self.register_buffer("sq_mean_window", torch.zeros(buffer_size, num_features, **factory))
        self.register_buffer("grad_xhat_window", torch.zeros(buffer_size, num_features, **factory))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device))
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        """Inference statistic back to 1, both windows to 0, iteration 0 (warm-up starts again)."""
        self.running_var.fill_(1.0)
        self.sq_mean_window.zero_()
        self.grad_xhat_window.zero_()
        self.num_batches_tracked.zero_()

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"buffer_size={self.buffer_size}, warmup_iters={self.warmup_iters}, affine={self.affine}, "
                f"r_max={self.r_max}, renorm_start={self.renorm_start}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Training: divide by the moving-average second moment (MABN's backward); eval: by the inference EMA.

        A batch with no samples returns an empty output and changes nothing; a channel whose values are not
        finite keeps its window slot and inference statistic (its outputs are not finite).
        """
        self._check_input(x)
        wide = x.to(_compute_dtype(x, self.running_var))
        if not self.training:
            z = wide * torch.rsqrt(_channel_view(self.running_var.to(wide.dtype), wide) + self.eps)
            return _output(self._affine(z), x)
        if x.numel() == 0:
            return _output(self._affine(wide), x)
        step = int(self.num_batches_tracked.item()) + 1
        slot, count = (step - 1) % self.buffer_size, min(step, self.buffer_size)
        use_window = step > self.warmup_iters
        with torch.no_grad(), torch.autocast(device_type=x.device.type, enabled=False):
            sq_mean = wide.detach().square().mean(dim=(0, 2, 3))  # chi^2_B
            if use_window:
                history = self.sq_mean_window[:count].to(wide.dtype).clone()
                history[slot] = sq_mean
                sq_bar = history.mean(0)
            else:
                sq_bar = sq_mean
            chi = torch.sqrt(sq_bar + self.eps)
            running = self.running_var.to(wide.dtype)
            if self.r_max > 1.0 and step > max(self.renorm_start, self.warmup_iters):
                r = (chi / torch.sqrt(running + self.eps)).clamp(1.0 / self.r_max, self.r_max)
            else:
                r = None
            finite = torch.isfinite(sq_mean)  # a channel with a NaN or inf keeps its window slot and statistic
            window = self.sq_mean_window[slot]
            window.copy_(torch.where(finite, sq_mean.to(window.dtype), window))
            inference = self.momentum * running + (1.0 - self.momentum) * sq_bar
            self.running_var.copy_(torch.where(finite, inference.to(self.running_var.dtype), self.running_var))
            self.num_batches_tracked.fill_(step)
        z = _MABNFunction.apply(wide, 1.0 / chi, self.grad_xhat_window, slot, count, use_window)
        if r is not None:
            z = z * _channel_view(r, z)
        return _output(self._affine(z), x)


class CenteredConv2d(nn.Conv2d):
    r""":class:`torch.nn.Conv2d` with centred filters, :math:`\hat W_o = W_o - \operatorname{mean}(W_o)`.

    The mean is over each output channel's ``in_channels/groups x kH x kW`` weights, recomputed at every
    forward (so the gradient passes through the centering). With it, a spatially constant input gives a
    constant output ``bias`` (0 with ``bias=False``), which takes over the role of the centering that
    :class:`MABN2d` drops. This is centering only, not a standardization (no division by the filters' norms).

    Args:
        As :class:`torch.nn.Conv2d`; ``bias=False`` is the pairing with :class:`MABN2d`.

    Shape:
        As :class:`torch.nn.Conv2d`.

    Raises:
        As :class:`torch.nn.Conv2d`; and ValueError: filters of one weight (``in_channels/groups x kH x kW = 1``, e.g.
        a 1x1 convolution of one input channel per group), which the centering sets to 0 (the layer would output its
        bias whatever the input, and its weight would get no gradient).

    Source: Yan et al. (2020) (weight centralization paired with MABN); the authors' ``CenConv2d``.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.in_channels // self.groups * self.kernel_size[0] * self.kernel_size[1] == 1:
            raise ValueError(f"CenteredConv2d(in_channels={self.in_channels}, kernel_size={self.kernel_size}, "
                             f"groups={self.groups}) has filters of in_channels/groups x kH x kW = 1 weight, which its "
                             "centering sets to 0 (output the bias alone, no gradient for the weight); use a larger "
                             "kernel_size or more input channels per group, or torch.nn.Conv2d")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight - self.weight.mean(dim=(1, 2, 3), keepdim=True)
        return self._conv_forward(x, weight, self.bias)

