r"""Loss-landscape and internal-covariate-shift probes (Santurkar et al. 2018, Sections 2.2 and 3.1).

Every probe evaluates a training objective at points other than the current weights and then puts
the model back exactly as it was: parameters, buffers (BN running averages, FN estimates) and the
random generator (the noise of :class:`~revisit_bn.layers.NoisyBatchNorm2d`). So each point sees
the same batch, the same normalization state and the same noise as the training step itself, and
a probe never changes training.

*Landscape along the gradient* (Figure 4). At weights :math:`w` with gradient
:math:`g = \nabla\mathcal L(w)` on the current batch, for step sizes :math:`\eta` in
:math:`[0.05, 0.4]`:

.. math::
    \text{loss range: } \{\mathcal L(w - \eta g)\}_\eta, \qquad
    \text{gradient predictiveness: } \{\|g - \nabla\mathcal L(w - \eta g)\|_2\}_\eta, \qquad
    \beta_{\rm eff} = \max_\eta \frac{\|g - \nabla\mathcal L(w - \eta g)\|_2}{\eta\,\|g\|_2}.

The sign (a step *down* the gradient) and the normalization of :math:`\beta_{\rm eff}` by the
distance moved are our reading of the figure's text (``../shared/papers/NOTES.md`` 1.6).

*Internal covariate shift* (Definition 2.1). For layer :math:`i` with weights :math:`W_i`, at
step :math:`t`,

.. math::
    G_{t,i} = \nabla_{W_i}\mathcal L(W_1^{t},\dots,W_k^{t}), \qquad
    G'_{t,i} = \nabla_{W_i}\mathcal L(W_1^{t+1},\dots,W_{i-1}^{t+1}, W_i^{t},\dots,W_k^{t}),

both on the batch of step :math:`t`; the shift is :math:`\|G_{t,i}-G'_{t,i}\|_2` (ideal 0) and
:math:`\cos\angle(G_{t,i},G'_{t,i})` (ideal 1). "Preceding layers" are the parameters registered
before :math:`W_i` (``model.named_parameters()`` order), which for sequential models such as
torchvision's VGG is the forward order and includes earlier normalization scales and shifts.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

__all__ = [
    "DEFAULT_ETAS", "LandscapeProbe", "landscape_probe", "internal_covariate_shift", "weight_layers",
    "norm_positions", "preserved_state", "TrainingProbe", "ACTIVATION_QUANTILES", "bn_layer_sides", "TheoremTrace",
]

# Santurkar et al.'s step-size range for Figure 4, [0.05, 0.4]; five points (our choice).
DEFAULT_ETAS = (0.05, 0.1, 0.2, 0.3, 0.4)
ACTIVATION_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)

Closure = Callable[[], torch.Tensor]


def _rng_state() -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    return torch.get_rng_state(), (torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)


def _set_rng_state(state: tuple[torch.Tensor, list[torch.Tensor] | None]) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state_all(state[1])


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@contextlib.contextmanager
def preserved_state(model: nn.Module) -> Iterator[tuple[dict[str, torch.Tensor], tuple]]:
    """Run a block, then restore ``model``'s parameters, buffers and torch's random generators.

    Yields ``(state, rng)``: copies of the state dict and of the generator state on entry, so the
    block can return to them before each evaluation. The model's training/eval mode is restored too.
    """
    state, rng, mode = _snapshot(model), _rng_state(), model.training
    try:
        yield state, rng
    finally:
        model.load_state_dict(state)
        _set_rng_state(rng)
        model.train(mode)


def _params(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def _load_point(model: nn.Module, state: dict[str, torch.Tensor], rng, values: dict[str, torch.Tensor] | None = None) -> None:
    """Put ``model`` at ``state`` (parameters and buffers), override some parameters, reset the RNG."""
    model.load_state_dict(state)
    if values:
        with torch.no_grad():
            named = dict(model.named_parameters())
            for name, value in values.items():
                named[name].copy_(value)
    _set_rng_state(rng)


@dataclass
class LandscapeProbe:
    """The loss and the gradient along the gradient direction at one point (Santurkar et al., Figure 4).

    Attributes:
        etas: step sizes :math:`\\eta` (units of the gradient, like a learning rate).
        loss: :math:`\\mathcal L(w)` at the current weights (nats for cross-entropy).
        grad_norm: :math:`\\|\\nabla\\mathcal L(w)\\|_2` over all trainable parameters.
        losses: :math:`\\mathcal L(w-\\eta g)` per step size.
        grad_changes: :math:`\\|\\nabla\\mathcal L(w) - \\nabla\\mathcal L(w-\\eta g)\\|_2` per step size.
    """

    etas: tuple[float, ...]
    loss: float
    grad_norm: float
    losses: list[float] = field(default_factory=list)
    grad_changes: list[float] = field(default_factory=list)

    @property
    def loss_range(self) -> tuple[float, float]:
        """``(min, max)`` of the loss over the step sizes (Figure 4a's band)."""
        return min(self.losses), max(self.losses)

    @property
    def grad_change_range(self) -> tuple[float, float]:
        """``(min, max)`` of the gradient change (Figure 4b's band, "gradient predictiveness")."""
        return min(self.grad_changes), max(self.grad_changes)

    @property
    def effective_beta_smoothness(self) -> float:
        """:math:`\\max_\\eta \\|\\Delta g\\| / (\\eta \\|g\\|)` (Figure 4c); ``0`` at a stationary point."""
        if self.grad_norm == 0.0:
            return 0.0
        return max(c / (eta * self.grad_norm) for c, eta in zip(self.grad_changes, self.etas))


def _check_etas(etas: Sequence[float]) -> tuple[float, ...]:
    etas = tuple(float(e) for e in etas)
    if not etas or any(not e > 0 for e in etas):
        raise ValueError(f"etas must be a non-empty sequence of positive step sizes, got {etas!r}")
    return etas


def landscape_probe(model: nn.Module, closure: Closure, etas: Sequence[float] = DEFAULT_ETAS) -> LandscapeProbe:
    r"""Loss and gradient at :math:`w - \eta\nabla\mathcal L(w)` for each step size; the model is left unchanged.

    Args:
        model: the network; its trainable parameters are :math:`w` (all of them move).
        closure: ``() -> loss``, a scalar tensor computed by ``model`` on a fixed batch (called
            ``len(etas) + 1`` times, each time from the same buffers and random state).
        etas: positive step sizes; default :data:`DEFAULT_ETAS` (Santurkar et al.'s [0.05, 0.4]).

    Returns:
        :class:`LandscapeProbe`.

    Raises:
        ValueError: empty or non-positive ``etas``; a closure that does not return a scalar.

    Source: Santurkar et al. (2018), Section 3.1 and Figure 4.
    """
    etas = _check_etas(etas)
    named = _params(model)
    with preserved_state(model) as (state, rng):
        loss, grads = _loss_and_grads(closure, [p for _, p in named])
        w0 = {n: state[n] for n, _ in named}
        g_norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads)).item()
        probe = LandscapeProbe(etas, loss, g_norm)
        for eta in etas:
            _load_point(model, state, rng, {n: w0[n] - eta * g for (n, _), g in zip(named, grads)})
            loss_eta, grads_eta = _loss_and_grads(closure, [p for _, p in named])
            change = torch.sqrt(sum(((a - b).double() ** 2).sum() for a, b in zip(grads, grads_eta))).item()
            probe.losses.append(loss_eta)
            probe.grad_changes.append(change)
    return probe


def _loss_and_grads(closure: Closure, params: list[torch.Tensor]) -> tuple[float, list[torch.Tensor]]:
    loss = closure()
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        raise ValueError("closure must return a scalar loss tensor (e.g. cross_entropy(model(x), y))")
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g.detach() for p, g in zip(params, grads)]
    return loss.item(), grads


def weight_layers(model: nn.Module) -> list[str]:
    """Names of the ``weight`` of every :class:`~torch.nn.Conv2d` / :class:`~torch.nn.Linear` module, in registration order."""
    return [f"{name}.weight" for name, m in model.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]


def norm_positions(model: nn.Module) -> list[str]:
    """Names of the modules right after each conv/linear layer (a norm layer, or ``Identity`` without one), in order.

    These are where BN sits, so recording their outputs compares the same position across
    the standard, BN, FN and noisy-BN variants of a network (Santurkar et al., Figure 2).
    """
    leaves = [(n, m) for n, m in model.named_modules() if not list(m.children())]
    return [leaves[i + 1][0] for i, (_, m) in enumerate(leaves[:-1]) if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]


def internal_covariate_shift(
    model: nn.Module,
    closure: Closure,
    before: dict[str, torch.Tensor],
    rng_before: tuple | None = None,
    layers: Sequence[str] | None = None,
) -> dict[str, tuple[float, float]]:
    r"""Santurkar et al.'s internal covariate shift of each layer for one update (Definition 2.1).

    The model holds the weights *after* the update, :math:`W^{t+1}`; ``before`` is its state dict
    before it, :math:`W^{t}` (with the buffers of that moment). The model is left at
    :math:`W^{t+1}`, its buffers and the random generator unchanged.

    Args:
        model: the network after the update.
        closure: ``() -> loss`` on the batch of step :math:`t`.
        before: ``model.state_dict()`` copied before the update (parameters and buffers).
        rng_before: torch's generator state before the update (from :func:`preserved_state`);
            needed only when the forward pass draws random numbers (noisy BN). Default: the
            current state.
        layers: parameter names whose shift is measured; default :func:`weight_layers`.

    Returns:
        ``{layer: (l2, cos)}`` with :math:`\|G-G'\|_2` (units of the gradient) and
        :math:`\cos\angle(G, G')` in [-1, 1] (``nan`` if either gradient is zero).

    Raises:
        ValueError: a layer name that is not a trainable parameter, or ``before`` missing a key.

    Source: Santurkar et al. (2018), Section 2.2, Definition 2.1 and Figure 3.
    """
    named = _params(model)
    names = [n for n, _ in named]
    layers = list(layers) if layers is not None else weight_layers(model)
    unknown = [layer for layer in layers if layer not in names]
    if unknown:
        raise ValueError(f"unknown layer parameters {unknown}; use names from model.named_parameters()")
    missing = [k for k in model.state_dict() if k not in before]
    if missing:
        raise ValueError(f"before is missing {missing[:3]}...; pass a copy of model.state_dict() taken before the update")
    out: dict[str, tuple[float, float]] = {}
    with preserved_state(model) as (after, rng_now):
        rng = rng_before if rng_before is not None else rng_now
        _load_point(model, before, rng)
        _, grads = _loss_and_grads(closure, [p for _, p in named])
        g_before = dict(zip(names, grads))
        for layer in layers:
            index = names.index(layer)
            # Layers before this one at W^{t+1}, this one and the rest at W^{t}.
            _load_point(model, before, rng, {n: after[n] for n in names[:index]})
            _, (g_shift,) = _loss_and_grads(closure, [named[index][1]])
            g = g_before[layer]
            l2 = torch.linalg.vector_norm((g - g_shift).double()).item()
            denom = (torch.linalg.vector_norm(g.double()) * torch.linalg.vector_norm(g_shift.double())).item()
            cos = (g.double() * g_shift.double()).sum().item() / denom if denom > 0 else float("nan")
            out[layer] = (l2, cos)
    return out


class TrainingProbe:
    """Probes attached to a training loop every ``every`` steps (Santurkar et al., Figures 2-4).

    Call :meth:`before_step` with the step's batch before the optimizer step and
    :meth:`after_step` after it. At a probed step it records, in the long table :attr:`rows`:

    - ``loss``, ``grad_norm``, ``loss_min``, ``loss_max``, ``grad_change_min``, ``grad_change_max``,
      ``effective_beta_smoothness`` (:func:`landscape_probe`, if ``landscape``);
    - ``ics_l2`` and ``ics_cos`` per layer (:func:`internal_covariate_shift`, if ``ics``);
    - ``act_q05`` ... ``act_q95``, ``act_mean``, ``act_std`` per recorded position: the
      distribution of channel 0's values over the batch (and spatial positions) at the output of
      that position, in training mode (with noise for noisy BN), if ``activations`` is non-empty.

    Args:
        every: probe at steps 0, ``every``, ``2 * every``, ... (counted from 0).
        loss_fn: ``(logits, labels) -> loss``; default cross-entropy.
        etas: step sizes of the landscape probe.
        landscape, ics: which probes to run.
        ics_layers: parameter names for the shift (default :func:`weight_layers`).
        activations: module names whose outputs are recorded (see :func:`norm_positions`).

    Raises:
        ValueError: ``every < 1`` or bad ``etas``.
    """

    def __init__(self, every: int, loss_fn=nn.functional.cross_entropy, etas: Sequence[float] = DEFAULT_ETAS,
                 landscape: bool = True, ics: bool = True, ics_layers: Sequence[str] | None = None,
                 activations: Sequence[str] = ()) -> None:
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive integer, got {every!r}")
        self.every, self.loss_fn, self.etas = every, loss_fn, _check_etas(etas)
        self.landscape, self.ics, self.ics_layers, self.activations = landscape, ics, ics_layers, tuple(activations)
        self.rows: dict[str, list] = {"step": [], "quantity": [], "layer": [], "value": []}
        self._pending: tuple | None = None

    def _add(self, step: int, quantity: str, value: float, layer: str = "") -> None:
        for key, item in zip(self.rows, (step, quantity, layer, float(value))):
            self.rows[key].append(item)

    def _closure(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> Closure:
        return lambda: self.loss_fn(model(images), labels)

    def before_step(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, step: int) -> None:
        """Probe the landscape and the activations at step ``step`` (if due) and remember the state for :meth:`after_step`."""
        self._pending = None
        if step % self.every:
            return
        closure = self._closure(model, images, labels)
        if self.activations:
            self._record_activations(model, closure, step)
        if self.landscape:
            probe = landscape_probe(model, closure, self.etas)
            lo, hi = probe.loss_range
            glo, ghi = probe.grad_change_range
            for name, value in (("loss", probe.loss), ("grad_norm", probe.grad_norm), ("loss_min", lo), ("loss_max", hi),
                                ("grad_change_min", glo), ("grad_change_max", ghi),
                                ("effective_beta_smoothness", probe.effective_beta_smoothness)):
                self._add(step, name, value)
        if self.ics:
            self._pending = (step, closure, _snapshot(model), _rng_state())

    def after_step(self, model: nn.Module) -> None:
        """Measure the internal covariate shift of the update just taken (if :meth:`before_step` probed)."""
        if self._pending is None:
            return
        step, closure, before, rng = self._pending
        self._pending = None
        for layer, (l2, cos) in internal_covariate_shift(model, closure, before, rng, self.ics_layers).items():
            self._add(step, "ics_l2", l2, layer)
            self._add(step, "ics_cos", cos, layer)

    def _record_activations(self, model: nn.Module, closure: Closure, step: int) -> None:
        modules = dict(model.named_modules())
        unknown = [n for n in self.activations if n not in modules]
        if unknown:
            raise ValueError(f"unknown modules {unknown}; use names from model.named_modules()")
        seen: dict[str, torch.Tensor] = {}
        hooks = [modules[n].register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, o.detach()[:, 0].clone().flatten()))
                 for n in self.activations]
        try:
            with preserved_state(model), torch.no_grad():
                closure()
        finally:
            for h in hooks:
                h.remove()
        q = torch.tensor(ACTIVATION_QUANTILES)
        for name in self.activations:
            values = seen[name].double().cpu()
            for qq, v in zip(ACTIVATION_QUANTILES, torch.quantile(values, q.double())):
                self._add(step, f"act_q{round(qq * 100):02d}", v.item(), name)
            self._add(step, "act_mean", values.mean().item(), name)
            self._add(step, "act_std", values.std(unbiased=False).item(), name)


# ----------------------------------------------------------------------------------------------
# Santurkar et al.'s Theorems 4.1 and 4.2 evaluated on a BN layer of a training network
# ----------------------------------------------------------------------------------------------


def bn_layer_sides(bn: nn.BatchNorm2d, head: Callable[[torch.Tensor], torch.Tensor], y: torch.Tensor, channels) -> list[dict]:
    r"""Both sides of Theorems 4.1 and 4.2 (general form, 1/m) for chosen channels of a BN layer in training mode.

    The left sides come from autograd through the real layer (:math:`\|\nabla_y\widehat{\mathcal L}\|^2`
    and :math:`v^\top\nabla_y^2\widehat{\mathcal L}\,v` along the BN gradient :math:`v`, by double
    backward); the right sides are :func:`revisit_bn.theory.theorem_4_1_rhs` and
    :func:`revisit_bn.theory.theorem_4_2_rhs` evaluated at the layer's input, downstream gradient
    and downstream Hessian-vector product.

    Args:
        bn: the layer (its ``weight`` is :math:`\gamma`, its ``eps`` the :math:`\epsilon`).
        head: ``z -> loss``, the rest of the network after the layer (a scalar).
        y: the layer's input ``(N, C, H, W)``; channel ``j`` over all ``N*H*W`` positions is one unit
            with batch size :math:`m = NHW`.
        channels: channel indices to evaluate.

    Returns:
        One dict per channel: ``channel``, ``m``, ``thm41_lhs``, ``thm41_rhs``, ``thm42_lhs``,
        ``thm42_rhs``, ``g_dot_yhat``.

    Source: Santurkar et al. (2018), Theorems 4.1-4.2, evaluated on a real network.
    """
    from . import theory

    y = y.detach().requires_grad_(True)
    z = nn.functional.batch_norm(y, None, None, bn.weight, bn.bias, training=True, eps=bn.eps)
    z_leaf = z.detach().requires_grad_(True)
    (g_full,) = torch.autograd.grad(head(z_leaf), z_leaf, create_graph=True)
    (grad_y,) = torch.autograd.grad(head(z), y, create_graph=True)
    channels = list(channels)
    m = y.shape[0] * y.shape[2] * y.shape[3]
    # One direction per channel: the BN gradient restricted to that channel; all hvps in one call.
    masks = torch.zeros((len(channels),) + tuple(y.shape), dtype=y.dtype)
    for k, j in enumerate(channels):
        masks[k, :, j] = 1.0
    directions = grad_y.detach().unsqueeze(0) * masks
    (hv_y,) = torch.autograd.grad(grad_y, y, grad_outputs=directions, retain_graph=True, is_grads_batched=True)
    (hv_z,) = torch.autograd.grad(g_full, z_leaf, grad_outputs=directions, is_grads_batched=True)
    out = []
    for k, j in enumerate(channels):
        v = directions[k][:, j].reshape(1, -1)
        g = g_full.detach()[:, j].reshape(1, -1)
        yj = y.detach()[:, j].reshape(1, -1)
        gamma = bn.weight.detach()[j]
        hv = hv_z[k][:, j].reshape(1, -1)  # H v at this channel's direction: the only hvp the general form needs
        rhs1 = theory.theorem_4_1_rhs(yj, g, gamma, bn.eps)
        rhs2 = theory.theorem_4_2_rhs(yj, g, lambda u: hv, gamma, v, bn.eps, form="general")
        y_hat, _ = theory.bn_normalize(yj, bn.eps)
        out.append(dict(channel=int(j), m=m, thm41_lhs=v.square().sum().item(), thm41_rhs=rhs1.item(),
                        thm42_lhs=(hv_y[k] * directions[k]).sum().item(), thm42_rhs=rhs2.item(),
                        g_dot_yhat=(g * y_hat).sum().item()))
    return out


class TheoremTrace:
    """Both sides of Theorems 4.1 and 4.2 at one BN layer of a :class:`~revisit_bn.models.SimpleNet`, every ``every`` steps.

    Attach :meth:`before_step` to a training loop: on the step's batch, in training mode (batch
    statistics), ``y`` is the ``layer``-th BN layer's input and the downstream loss is the rest of
    the network with the cross-entropy. It changes nothing in training. :attr:`rows` is a columnar
    table with the fields of :func:`bn_layer_sides` and ``step``.

    Args:
        every: evaluate at steps 0, ``every``, ... .
        layer: which BN layer (0-based) of ``model.features``.
        channels: channels to evaluate. Our choice: the first four of the second layer.

    Raises:
        ValueError: ``every < 1``; at the first step, a model without that many BN layers.

    Source: Santurkar et al. (2018), Theorems 4.1-4.2.
    """

    FIELDS = ("step", "channel", "m", "thm41_lhs", "thm41_rhs", "thm42_lhs", "thm42_rhs", "g_dot_yhat")

    def __init__(self, every: int, layer: int = 1, channels: Sequence[int] = (0, 1, 2, 3)) -> None:
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive integer, got {every!r}")
        self.every, self.layer, self.channels = every, layer, tuple(channels)
        self.rows: dict[str, list] = {name: [] for name in self.FIELDS}

    def before_step(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, step: int) -> None:
        if step % self.every:
            return
        features = model.features
        bns = [i for i, mod in enumerate(features) if isinstance(mod, nn.BatchNorm2d)]
        if len(bns) <= self.layer:
            raise ValueError(f"the model has {len(bns)} BatchNorm2d layers in .features; layer={self.layer} needs more")
        at = bns[self.layer]
        with torch.no_grad():
            y = features[:at](images)
        rest = features[at + 1:]

        def head(z):
            # clone: the network's ReLUs are in-place, which autograd refuses on a leaf tensor
            return nn.functional.cross_entropy(model.classifier(rest(z.clone())), labels)

        for row in bn_layer_sides(features[at], head, y, self.channels):
            for name in self.FIELDS:
                self.rows[name].append(step if name == "step" else row[name])
