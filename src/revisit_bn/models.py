"""Models of the experiments, each taking its normalization from one factory.

The factory :func:`norm_layer` turns a name (``none``, ``bn``, ``fn``) into a constructor
``num_features -> nn.Module``, the same signature torchvision's ``norm_layer`` arguments take, so
a model is written once and run with every normalization.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from .layers import (
    BatchRenorm1d,
    BatchRenorm2d,
    FullNorm1d,
    FullNorm2d,
    LpNorm1d,
    LpNorm2d,
    MicroBatch,
    NoisyBatchNorm1d,
    NoisyBatchNorm2d,
    NoisyIdentity,
    PolynomialMomentum,
    ReferenceBatchNorm1d,
    ReferenceBatchNorm2d,
)
from .successors import MABN2d, CenteredConv2d, OnlineNorm1d, OnlineNorm2d

NORMS = ("none", "bn", "fn", "fn_decoupled", "fn_exact", "fn_const", "brn", "gn", "bn_ref", "noisy_bn", "noisy_none",
         "lp1", "lp2", "lpinf", "online", "mabn", "frn", "evonorm")
# Normalizations that include their activation (FRN's TLU, EvoNorm-S0's swish-like numerator): a network puts no ReLU
# after them, as their papers replace "norm - ReLU" by the layer.
ACTIVATION_NORMS = ("frn", "evonorm")
# Normalizations the book runs in SimpleNet only: the two above (a torchvision model puts its own ReLU after every norm
# layer) and MABN, which the paper pairs with centred convolution weights (:class:`~revisit_bn.successors.CenteredConv2d`).
SIMPLE_ONLY_NORMS = ("frn", "evonorm", "mabn")
# Santurkar et al.'s l_p normalizations (Section 3.3) by norm name: the order p of LpNorm2d.
LP_ORDERS = {"lp1": 1.0, "lp2": 2.0, "lpinf": float("inf")}
# FN's gradient estimators by norm name (FullNorm2d's ``backward``).
FN_BACKWARDS = {"fn": "mcsgd", "fn_decoupled": "decoupled", "fn_exact": "exact", "fn_const": "constant"}
MODELS = ("simple", "simple_wide", "resnet18", "resnet18_cifar", "mlp3", "logreg", "vgg11", "vgg16", "deep_linear")
# Santurkar et al.'s noisy BN: our default noise (see NoisyBatchNorm1d): shift in [-1, 1], scale in [1, 2], s = 0.5.
NOISE_DEFAULTS = (1.0, 2.0, 0.5)


def group_count(num_channels: int, preferred: int = 32) -> int:
    """GroupNorm's group count: the largest divisor of ``num_channels`` not above ``preferred`` (32, Wu & He).

    Raises:
        ValueError: ``num_channels`` or ``preferred`` not an integer >= 1 (Python's or NumPy's).
    """
    for name, value in (("num_channels", num_channels), ("preferred", preferred)):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    num_channels, preferred = int(num_channels), int(preferred)
    return max(g for g in range(1, min(preferred, num_channels) + 1) if num_channels % g == 0)

NormFactory = Callable[[int], nn.Module]


def norm_layer(kind: str, dim: int = 2, momentum: float = 0.1, fn_momentum_power: float = 0.0,
               group_size: int | None = None, brn_warmup_steps: int = 5000, brn_ramp_steps: int = 35000,
               noise: tuple[float, float, float] = NOISE_DEFAULTS) -> NormFactory:
    r"""A constructor ``num_features -> nn.Module`` for the normalization named ``kind``.

    Args:
        kind: ``"none"`` (identity), ``"bn"`` (:class:`torch.nn.BatchNorm1d`/``2d``), ``"fn"``
            (:class:`~revisit_bn.layers.FullNorm1d`/``2d``, MCSGD backward), or FN with another
            gradient estimator (:data:`FN_BACKWARDS`): ``"fn_decoupled"`` (the statistics' terms
            from previous batches), ``"fn_exact"`` (the derivative of the moving-average forward)
            or ``"fn_const"`` (the estimates as constants).
        dim: 1 for inputs ``(N, C)`` or ``(N, C, L)``, 2 for ``(N, C, H, W)``.
        momentum: running-average rate of BN; FN's estimate rate :math:`\alpha` (constant when
            ``fn_momentum_power`` is 0, else the floor of the schedule).
        fn_momentum_power: if positive, FN uses the decaying rate
            :math:`\alpha_k = \max(\text{momentum}, k^{-p})` (:class:`PolynomialMomentum`).
        group_size: if set, each layer normalizes microbatches of this many samples
            (:class:`~revisit_bn.layers.MicroBatch`).
        brn_warmup_steps, brn_ramp_steps: Batch Renorm's schedule: plain BN for the warm-up, then
            ``r_max`` 1 -> 3 and ``d_max`` 0 -> 5 linearly over the ramp. Our choice: both limits
            reach their final values together (Ioffe's defaults: 5k warm-up, then 35k and 20k).
            BRN's moving-average rate is Ioffe's 0.01, not ``momentum``.

    Other kinds: ``"brn"`` (:class:`~revisit_bn.layers.BatchRenorm2d`), ``"gn"``
    (:class:`torch.nn.GroupNorm`, :func:`group_count` groups), ``"bn_ref"``
    (:class:`~revisit_bn.layers.ReferenceBatchNorm2d`, which accepts batch size 1), ``"noisy_bn"``
    (:class:`~revisit_bn.layers.NoisyBatchNorm2d` with ``noise = (noise_mean_max,
    noise_scale_max, noise_std)``, Santurkar et al. 2018), ``"noisy_none"``
    (:class:`~revisit_bn.layers.NoisyIdentity`: the same noise on the standard network),
    ``"lp1"``, ``"lp2"``, ``"lpinf"`` (:class:`~revisit_bn.layers.LpNorm2d` with p = 1, 2, inf,
    ``momentum`` as BN's; Santurkar et al. 2018, Section 3.3).

    BN's successors (chapter 38), each at its paper's hyperparameters: ``"online"``
    (:class:`~revisit_bn.successors.OnlineNorm1d`/``2d``, Chiley et al. 2019: ``alpha_fwd`` 0.999, ``alpha_bkw``
    0.99), ``"mabn"`` (:class:`~revisit_bn.successors.MABN2d`, Yan et al. 2020: window 16, warm-up 100, ``r_max`` 5
    from iteration 1000; 2-D only), and, as timm ships them (2-D only, each including its activation:
    :data:`ACTIVATION_NORMS`), ``"frn"`` (``timm.layers.FilterResponseNormTlu2d``, Singh & Krishnan 2020) and
    ``"evonorm"`` (``timm.layers.EvoNorm2dS0``, Liu et al. 2020, with :func:`group_count` groups as GroupNorm).

    Returns:
        A callable taking ``num_features`` and returning a fresh layer.

    Raises:
        ValueError: unknown ``kind`` or ``dim``, or a 2-D-only kind with ``dim=1``; ``momentum`` not a number in
            (0, 1], ``fn_momentum_power`` not a number in [0, 1], or ``noise`` not three numbers (each named).

    Source: Lian & Liu (2019), Section 6 (BN vs FN in the same network).
    """
    if dim not in (1, 2):
        raise ValueError(f"dim must be 1 or 2, got {dim}")
    # the layers' own checks would name their own arguments (PolynomialMomentum's "power"), or none (torch's BN takes
    # any momentum): the factory's arguments are checked here, by their names
    for name, value, low, high in (("momentum", momentum, 0.0, 1.0),
                                   ("fn_momentum_power", fn_momentum_power, 0.0, 1.0)):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not (low < value <= high if name == "momentum" else low <= value <= high):
            interval = "(0, 1] (BN's running-average rate, FN's estimate rate)" if name == "momentum" else \
                "[0, 1] (0: FN's rate constant)"
            raise ValueError(f"{name} must be a number in {interval}, got {value!r}")
    if not isinstance(noise, (tuple, list)) or len(noise) != 3:
        raise ValueError(f"noise must be three numbers (noise_mean_max, noise_scale_max, noise_std), got {noise!r}")
    if kind == "none":
        return lambda num_features: nn.Identity()
    if kind == "bn":
        cls = nn.BatchNorm1d if dim == 1 else nn.BatchNorm2d
        make = lambda c: cls(c, momentum=momentum)
    elif kind in FN_BACKWARDS:
        cls = FullNorm1d if dim == 1 else FullNorm2d
        rate = PolynomialMomentum(fn_momentum_power, momentum) if fn_momentum_power > 0 else momentum
        make = lambda c: cls(c, momentum=rate, backward=FN_BACKWARDS[kind])
    elif kind == "brn":
        cls = BatchRenorm1d if dim == 1 else BatchRenorm2d
        end = brn_warmup_steps + brn_ramp_steps
        make = lambda c: cls(c, warmup_steps=brn_warmup_steps, r_ramp_end=end, d_ramp_end=end)
    elif kind == "gn":
        make = lambda c: nn.GroupNorm(group_count(c), c)
    elif kind == "noisy_bn":
        cls = NoisyBatchNorm1d if dim == 1 else NoisyBatchNorm2d
        mean_max, scale_max, std = noise
        make = lambda c: cls(c, momentum=momentum, noise_mean_max=mean_max, noise_scale_max=scale_max, noise_std=std)
    elif kind == "noisy_none":
        mean_max, scale_max, std = noise
        make = lambda c: NoisyIdentity(c, noise_mean_max=mean_max, noise_scale_max=scale_max, noise_std=std)
    elif kind in LP_ORDERS:
        cls = LpNorm1d if dim == 1 else LpNorm2d
        make = lambda c: cls(c, p=LP_ORDERS[kind], momentum=momentum)
    elif kind == "bn_ref":
        cls = ReferenceBatchNorm1d if dim == 1 else ReferenceBatchNorm2d
        make = lambda c: cls(c, momentum=momentum)
    elif kind == "online":
        cls = OnlineNorm1d if dim == 1 else OnlineNorm2d
        make = lambda c: cls(c)
    elif kind in ("mabn", "frn", "evonorm"):
        if dim != 2:
            raise ValueError(f"norm {kind!r} normalizes (N, C, H, W) feature maps only; use it in a convolutional "
                             "model, not with dim=1")
        if kind == "mabn":
            make = lambda c: MABN2d(c)
        else:
            from timm.layers import EvoNorm2dS0, FilterResponseNormTlu2d  # imported here: timm takes a second to load

            make = ((lambda c: FilterResponseNormTlu2d(c)) if kind == "frn"
                    else (lambda c: EvoNorm2dS0(c, groups=group_count(c))))
    else:
        raise ValueError(f"unknown norm {kind!r}; choose one of {NORMS}")
    if group_size is not None:
        return lambda c: MicroBatch(make(c), group_size)
    return make


def resnet18(norm_layer_factory: NormFactory, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """torchvision's ResNet18 with every BatchNorm replaced by ``norm_layer_factory`` (random init).

    Source: Lian & Liu (2019), Figure 2 (ResNet18 on CIFAR-10). torchvision's ImageNet stem is
    kept as it is (our choice: the paper does not say whether it adapted the stem to 32x32).
    """
    from torchvision.models import resnet18 as tv_resnet18

    model = tv_resnet18(weights=None, num_classes=num_classes, norm_layer=norm_layer_factory)
    if in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model


def resnet18_cifar(norm_layer_factory: NormFactory, num_classes: int = 10, in_channels: int = 3,
                   width: float = 1.0) -> nn.Module:
    """torchvision's ResNet18 with the usual CIFAR stem and a channel multiplier.

    The stem is a 3x3 convolution with stride 1 and no max-pool (He et al. 2016, Section 4.2,
    for 32x32 images), so the four stages see 32, 16, 8 and 4 pixels a side. ``width`` multiplies
    every stage's channels (64, 128, 256, 512 -> round(64 * width), ...); the blocks are
    torchvision's ``BasicBlock`` with ``norm_layer_factory`` in place of every BatchNorm.

    Args:
        norm_layer_factory: ``channels -> module`` (see :func:`norm_layer`).
        num_classes: output logits.
        in_channels: image channels.
        width: channel multiplier; the narrowest stage keeps at least 1 channel.

    Input ``(N, in_channels, H, W)`` (H, W >= 8), output ``(N, num_classes)``.
    Source: Lian & Liu (2019), Figure 2 (ResNet18 on CIFAR-10; the paper does not give the stem,
    the CIFAR stem is our choice).

    Raises:
        ValueError: ``width`` not positive.
    """
    from torchvision.models.resnet import BasicBlock, ResNet

    if not width > 0:
        raise ValueError(f"width (ResNet18's channel multiplier) must be positive, got {width!r}")
    planes = [max(1, round(64 * width * 2 ** i)) for i in range(4)]

    class _WideResNet(ResNet):
        def _make_layer(self, block, stage_planes, blocks, stride=1, dilate=False):
            if stage_planes == 64:  # the first stage: its input is the stem's output
                self.inplanes = planes[0]
            return super()._make_layer(block, planes[[64, 128, 256, 512].index(stage_planes)], blocks, stride, dilate)

    model = _WideResNet(BasicBlock, [2, 2, 2, 2], num_classes=num_classes, norm_layer=norm_layer_factory)
    model.conv1 = nn.Conv2d(in_channels, planes[0], kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")  # as torchvision's other convs
    model.bn1 = norm_layer_factory(planes[0])
    model.maxpool = nn.Identity()
    model.fc = nn.Linear(planes[3] * BasicBlock.expansion, num_classes)
    return model


VGG_CONFIGS = {"vgg11": "A", "vgg16": "D"}


def vgg(name: str, norm_layer_factory: NormFactory, num_classes: int = 10, in_channels: int = 3,
        width: float = 1.0, image_size: int = 32) -> nn.Module:
    """torchvision's VGG (configuration A or D) for 32x32 images, with ``norm_layer_factory`` after every conv.

    The features are torchvision's ``cfgs`` layer list (``conv3x3 - norm - ReLU`` blocks and five
    2x2 max-pools), built with our factory where torchvision's ``make_layers`` puts
    ``BatchNorm2d``; the model is torchvision's :class:`~torchvision.models.VGG` with its
    initialization. For 32x32 inputs the five pools leave ``1 x 1`` maps, so, as is usual for
    CIFAR-10, the ImageNet head (7x7 pooling, two 4096-wide layers, dropout) is replaced by one
    linear layer ``channels -> num_classes`` (our choice: Santurkar et al. do not give their head).

    Args:
        name: ``"vgg11"`` (configuration A, 8 conv layers) or ``"vgg16"`` (D, 13 conv layers).
        norm_layer_factory: ``num_features -> module`` (see :func:`norm_layer`); ``"none"`` gives
            the standard network, whose convolutions then have a bias (as with ``"noisy_none"``).
        num_classes, in_channels: output logits and input channels.
        width: multiplier of every conv width (1.0 = 64...512 channels); ``0.25`` gives
            16...128, the book's CPU scale (our choice).
        image_size: input height = width (must be divisible by 32).

    Shape:
        Input ``(N, in_channels, image_size, image_size)``; output ``(N, num_classes)``.

    Raises:
        ValueError: unknown ``name``, ``width`` not positive and finite, or ``image_size`` not divisible by 32.

    Source: Santurkar et al. (2018), Section 2 and Figure 1 (VGG on CIFAR-10, with and without
    BN); Simonyan & Zisserman (2015), configurations A and D.
    """
    from torchvision.models.vgg import VGG, cfgs

    if name not in VGG_CONFIGS:
        raise ValueError(f"unknown VGG {name!r}; choose one of {tuple(VGG_CONFIGS)}")
    if not 0 < width < float("inf"):
        raise ValueError(f"width must be a positive finite number, got {width!r}")
    if image_size % 32:
        raise ValueError(f"image_size must be divisible by 32 (five 2x2 pools), got {image_size}")
    probe = norm_layer_factory(1)
    has_norm = not isinstance(probe, (nn.Identity, NoisyIdentity))  # the standard network's convs have a bias
    layers: list[nn.Module] = []
    channels = in_channels
    for item in cfgs[VGG_CONFIGS[name]]:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        out = max(1, round(int(item) * width))
        layers += [nn.Conv2d(channels, out, kernel_size=3, padding=1, bias=not has_norm),
                   norm_layer_factory(out), nn.ReLU(inplace=True)]
        channels = out
    model = VGG(nn.Sequential(*layers), num_classes=num_classes, init_weights=True, dropout=0.0)
    side = image_size // 32
    model.avgpool = nn.Identity()
    model.classifier = nn.Linear(channels * side * side, num_classes)
    nn.init.normal_(model.classifier.weight, 0, 0.01)  # torchvision's initialization of its linear layers
    nn.init.zeros_(model.classifier.bias)
    return model


class DeepLinearNet(nn.Module):
    """A deep linear network: ``depth`` linear layers with a normalization (or nothing) between them.

    ``[linear - norm] x (depth - 1) - linear``, no activation, so the standard network is a
    product of matrices. Our choice (Santurkar et al. give only "25 layers", trained with
    full-batch gradient descent): constant width, orthogonal initialization (which keeps the
    product well conditioned at any depth, Saxe et al. 2014) and zero biases.

    Args:
        norm_factory: ``num_features -> module`` (see :func:`norm_layer` with ``dim=1``).
        in_features, num_classes: input and output sizes.
        depth: number of linear layers (default 25).
        width: hidden width (default 32).

    Shape:
        Input ``(N, in_features)`` (trailing dims are flattened); output ``(N, num_classes)``.

    Raises:
        ValueError: ``depth < 2`` or ``width < 1``.

    Source: Santurkar et al. (2018), Section 2.2 and Figure 3 (25-layer deep linear network).
    """

    def __init__(self, norm_factory: NormFactory, in_features: int, num_classes: int, depth: int = 25, width: int = 32) -> None:
        super().__init__()
        if depth < 2 or width < 1:
            raise ValueError(f"depth must be >= 2 and width >= 1, got depth={depth}, width={width}")
        sizes = [in_features] + [width] * (depth - 1) + [num_classes]
        layers: list[nn.Module] = [nn.Flatten()]
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            linear = nn.Linear(a, b)
            nn.init.orthogonal_(linear.weight)
            nn.init.zeros_(linear.bias)
            layers.append(linear)
            if i < depth - 1:
                layers.append(norm_factory(b))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class SimpleNet(nn.Module):
    """The "simple network" of the FN-vs-BN experiments: two conv-norm-ReLU blocks and a linear head.

    ``[conv3x3 - norm - ReLU - maxpool2] x 2 - flatten - linear(-> classes)``.

    Our choice: the paper's Figure 6 (the architecture) is not in any text we could read. We keep
    normalization in the convolutional blocks only, where a channel's statistics pool the batch
    *and* the spatial positions: with a normalized fully connected layer before the classifier,
    a batch whose samples share one label (the "unshuffled" setting of Figures 4-5) is
    standardized across that label's samples, which erases the label from the features and stops
    even BN from lowering its training loss -- contrary to the paper's report that BN's training
    loss falls in that setting. The head reads the flattened feature maps (not a global average),
    so the spatial pattern of a digit, which per-channel normalization preserves, reaches it.
    Convolutions have no bias when a normalization follows (its shift takes that role). With a
    normalization that includes its activation (:data:`ACTIVATION_NORMS`: FRN+TLU, EvoNorm-S0) a block
    has no ReLU; with ``"mabn"`` its convolutions centre their weights
    (:class:`~revisit_bn.successors.CenteredConv2d`), as Yan et al. (2020) pair them.

    Args:
        norm: a name of :data:`NORMS` (see :func:`norm_layer`).
        in_channels: input channels (1 for MNIST).
        num_classes: output logits.
        widths: channels of the conv blocks.
        image_size: input height = width, divisible by ``2 ** len(widths)``.
        momentum, fn_momentum_power: passed to :func:`norm_layer`.
        norm_factory: a ready factory (overrides ``norm``'s default options, e.g. microbatches).

    Shape:
        Input ``(N, in_channels, image_size, image_size)``; output logits ``(N, num_classes)``.

    Raises:
        ValueError: unknown ``norm``, ``widths`` empty or holding a count below 1, or ``image_size`` not divisible
            by ``2 ** len(widths)``.

    Source: Lian & Liu (2019), Section 6 and Figure 6 (content lost; our choice).
    """

    def __init__(
        self,
        norm: str = "bn",
        in_channels: int = 1,
        num_classes: int = 10,
        widths: tuple[int, ...] = (16, 32),
        image_size: int = 28,
        momentum: float = 0.1,
        fn_momentum_power: float = 0.0,
        norm_factory: NormFactory | None = None,
    ) -> None:
        super().__init__()
        bad = [w for w in widths if isinstance(w, bool) or not isinstance(w, int) or w < 1]
        if not widths or bad:
            raise ValueError(f"widths must be one or more channel counts, integers >= 1, got {widths!r}")
        if image_size % 2 ** len(widths):
            raise ValueError(f"image_size must be divisible by {2 ** len(widths)} (one 2x2 pooling per block), got {image_size}")
        norm2d = norm_factory or norm_layer(norm, 2, momentum, fn_momentum_power)
        bias = norm == "none"
        conv = CenteredConv2d if norm == "mabn" else nn.Conv2d
        layers: list[nn.Module] = []
        channels = in_channels
        for width in widths:
            act = [] if norm in ACTIVATION_NORMS else [nn.ReLU(inplace=True)]
            layers += [conv(channels, width, 3, padding=1, bias=bias), norm2d(width), *act, nn.MaxPool2d(2)]
            channels = width
        self.features = nn.Sequential(*layers)
        side = image_size // 2 ** len(widths)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(channels * side * side, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


class MLP3(nn.Module):
    """The 3-layer network of Lian & Liu's Figure 1: ``linear - norm - ReLU - linear - norm - ReLU - linear``.

    Our choice: widths and activation (the paper gives only "3 layers").

    Shape: input ``(N, in_features)`` (any trailing dims are flattened); output ``(N, num_classes)``.

    Source: Lian & Liu (2019), Figure 1.
    """

    def __init__(self, norm_factory: NormFactory, in_features: int, num_classes: int, hidden: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(in_features, hidden), norm_factory(hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), norm_factory(hidden), nn.ReLU(), nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        return self.net(x)


class LogisticRegression(nn.Module):
    """Logistic regression on normalized inputs: ``norm(x) -> linear`` (Lian & Liu's Figure 3).

    With ``norm="none"`` this is plain (convex) logistic regression; with BN the objective is
    BN's batch-dependent one (eq. 9), convex in the linear layer for each fixed batch.

    Shape: input ``(N, in_features)``; output logits ``(N, num_classes)``.

    Source: Lian & Liu (2019), Figure 3.
    """

    def __init__(self, norm_factory: NormFactory, in_features: int, num_classes: int = 2) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), norm_factory(in_features), nn.Linear(in_features, num_classes))

    def forward(self, x):
        return self.net(x)


class FNRegressor(nn.Module):
    """``linear - norm - tanh - linear - norm - tanh - linear``: a regressor with two normalized layers (or none).

    Used by the MCSGD rate experiment, where every dataset statistic and the full gradient of
    objective (10) can be computed exactly.

    Shape: input ``(N, d)``; output ``(N, 1)``.

    Source: Lian & Liu (2019), Algorithm 3 / Corollary 3. Our choice: the architecture.
    """

    def __init__(self, d: int, hidden: int, norm: NormFactory | None):
        super().__init__()
        self.l1, self.l2, self.l3 = nn.Linear(d, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, 1)
        self.n1 = norm(hidden) if norm else nn.Identity()
        self.n2 = norm(hidden) if norm else nn.Identity()

    def forward(self, x):
        return self.l3(torch.tanh(self.n2(self.l2(torch.tanh(self.n1(self.l1(x)))))))


def build_model(config, in_channels: int, image_size: int, num_classes: int) -> nn.Module:
    """The model named by ``config.model`` with the normalization ``config.norm`` and its options.

    Args:
        config: any object with the fields of :class:`revisit_bn.train.TrainConfig` (``model``,
            ``norm``, ``norm_momentum``, ``fn_momentum_power``, ``norm_group_size``,
            ``brn_warmup_steps``, ``brn_ramp_steps``, the noise fields and ``width``).
        in_channels: input channels (images) or features (vectors).
        image_size: side of the square input images (1 for vectors).
        num_classes: output logits.

    Raises:
        ValueError: unknown ``config.model`` or ``config.norm``, or a norm of :data:`SIMPLE_ONLY_NORMS` with
            another model.
    """
    if config.model not in MODELS:
        raise ValueError(f"unknown model {config.model!r}; choose one of {MODELS}")
    dim = 1 if config.model in ("mlp3", "logreg", "deep_linear") else 2
    factory = norm_layer(config.norm, dim, config.norm_momentum, config.fn_momentum_power, config.norm_group_size,
                         config.brn_warmup_steps, config.brn_ramp_steps,
                         (config.noise_mean_max, config.noise_scale_max, config.noise_std))
    if config.norm in SIMPLE_ONLY_NORMS and config.model not in ("simple", "simple_wide"):
        raise ValueError(f"norm {config.norm!r} runs in SimpleNet only (model 'simple' or 'simple_wide'), where its "
                         f"activation or centred convolutions are wired in; got model {config.model!r}")
    if config.model == "deep_linear":
        return DeepLinearNet(factory, in_channels, num_classes)
    if config.model in VGG_CONFIGS:
        return vgg(config.model, factory, num_classes, in_channels, config.width, image_size)
    if config.model == "mlp3":
        return MLP3(factory, in_channels, num_classes)
    if config.model == "logreg":
        return LogisticRegression(factory, in_channels, num_classes)
    if config.model == "resnet18":
        return resnet18(factory, num_classes, in_channels)
    if config.model == "resnet18_cifar":
        return resnet18_cifar(factory, num_classes, in_channels, config.width)
    widths = (32, 64) if config.model == "simple_wide" else (16, 32)
    return SimpleNet(config.norm, in_channels=in_channels, num_classes=num_classes, widths=widths,
                     image_size=image_size, norm_factory=factory)
