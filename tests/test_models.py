"""SimpleNet and the norm factory."""

import pytest
import torch
from torch import nn

from revisit_bn.layers import FullNorm1d, FullNorm2d
from revisit_bn.models import SimpleNet, norm_layer


@pytest.mark.parametrize("norm", ["none", "bn", "fn", "fn_const"])
@pytest.mark.parametrize("in_channels,size", [(1, 28), (3, 32)])
def test_simple_net_maps_images_to_logits(norm, in_channels, size):
    model = SimpleNet(norm, in_channels=in_channels, image_size=size)
    assert model(torch.randn(5, in_channels, size, size)).shape == (5, 10)


@pytest.mark.parametrize(
    "kind,dim,cls", [("bn", 2, nn.BatchNorm2d), ("bn", 1, nn.BatchNorm1d), ("fn", 2, FullNorm2d), ("fn", 1, FullNorm1d), ("none", 2, nn.Identity)]
)
def test_norm_factory_builds_the_named_layer(kind, dim, cls):
    layer = norm_layer(kind, dim, momentum=0.2)(8)
    assert isinstance(layer, cls)
    if kind != "none":
        assert layer.num_features == 8 and layer.momentum == 0.2


def test_fn_factory_with_a_power_uses_a_decaying_rate():
    layer = norm_layer("fn", 2, momentum=0.01, fn_momentum_power=0.5)(4)
    assert layer.momentum(4) == pytest.approx(0.5) and layer.momentum(10**6) == 0.01


def test_norm_layers_sit_in_the_conv_blocks_only():
    model = SimpleNet("fn")
    assert sum(isinstance(m, FullNorm2d) for m in model.modules()) == 2
    assert not any(isinstance(m, (FullNorm1d, nn.BatchNorm1d)) for m in model.modules())
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))


def test_fn_network_takes_an_sgd_step_at_batch_size_one():
    torch.manual_seed(0)
    model = SimpleNet("fn")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(1, 1, 28, 28), torch.tensor([3])
    before = [p.detach().clone() for p in model.parameters()]
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize("kwargs,match", [({"norm": "ln"}, "unknown norm"), ({"image_size": 30}, "divisible")])
def test_bad_model_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SimpleNet(**kwargs)


@pytest.mark.parametrize("kind,cls", [("brn", "BatchRenorm2d"), ("gn", "GroupNorm"), ("bn_ref", "ReferenceBatchNorm2d")])
def test_norm_factory_builds_the_alternatives(kind, cls):
    layer = norm_layer(kind, 2)(48)
    assert type(layer).__name__ == cls
    if kind == "gn":
        assert layer.num_groups == 24  # the largest divisor of 48 not above 32


def test_group_size_wraps_layers_in_microbatches():
    from revisit_bn.layers import MicroBatch

    layer = norm_layer("bn", 2, group_size=4)(8)
    assert isinstance(layer, MicroBatch) and layer.group_size == 4


@pytest.mark.parametrize("norm", ["bn", "fn", "brn", "gn", "none"])
def test_resnet18_takes_every_norm_and_maps_cifar_images_to_logits(norm):
    from revisit_bn.models import resnet18

    model = resnet18(norm_layer(norm, 2), num_classes=10)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    kinds = {type(m).__name__ for m in model.modules()}
    assert "BatchNorm2d" not in kinds or norm == "bn"


@pytest.mark.parametrize("norm", ["bn", "fn", "brn", "gn"])
def test_resnet18_cifar_has_the_cifar_stem_and_scales_every_stage(norm):
    from revisit_bn.models import resnet18, resnet18_cifar

    model = resnet18_cifar(norm_layer(norm, 2), num_classes=10, width=0.25)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1) and isinstance(model.maxpool, torch.nn.Identity)
    assert [model.layer1[0].conv1.in_channels] + [getattr(model, f"layer{i}")[0].conv1.out_channels for i in (1, 2, 3, 4)] \
        == [16, 16, 32, 64, 128]
    assert model.layer1[0].downsample is None and model.fc.in_features == 128
    assert "BatchNorm2d" not in {type(m).__name__ for m in model.modules()} or norm == "bn"
    full = resnet18_cifar(norm_layer("bn", 2), width=1.0)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    # torchvision's ResNet18 less its 7x7 stem, plus the 3x3 one: the same blocks at width 1
    assert count(full) == count(resnet18(norm_layer("bn", 2))) - 64 * 3 * 7 * 7 + 64 * 3 * 3 * 3
    with pytest.raises(ValueError, match="width"):
        resnet18_cifar(norm_layer("bn", 2), width=0)


@pytest.mark.parametrize("norm", ["bn_ref", "fn", "none", "brn", "gn"])
def test_figure_models_take_one_dimensional_norms(norm):
    from revisit_bn.models import MLP3, LogisticRegression

    mlp = MLP3(norm_layer(norm, 1), in_features=2, num_classes=3)
    assert mlp(torch.randn(1 if norm in ("bn_ref", "fn", "none") else 4, 2)).shape[1] == 3
    assert LogisticRegression(norm_layer(norm, 1), in_features=10)(torch.randn(5, 10)).shape == (5, 2)


@pytest.mark.parametrize("norm", ["none", "bn", "fn", "noisy_bn"])
def test_vgg11_takes_every_norm_and_maps_cifar_images_to_logits(norm):
    from revisit_bn.models import vgg

    torch.manual_seed(0)
    model = vgg("vgg11", norm_layer(norm), width=0.125)
    assert model(torch.randn(4, 3, 32, 32)).shape == (4, 10)
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 16, 32, 32, 64, 64, 64, 64]  # configuration A at 1/8 width
    assert all((c.bias is None) == (norm != "none") for c in convs)  # the norm's shift replaces the bias
    if norm != "none":
        assert sum(1 for m in model.modules() if m.__class__.__name__.startswith(("BatchNorm", "FullNorm", "NoisyBatchNorm"))) == 8


@pytest.mark.parametrize("kwargs,match", [({"name": "vgg19"}, "unknown VGG"), ({"width": 0}, "width"), ({"image_size": 28}, "divisible")])
def test_bad_vgg_arguments_raise_value_error(kwargs, match):
    from revisit_bn.models import vgg

    with pytest.raises(ValueError, match=match):
        vgg(**{"name": "vgg11", "norm_layer_factory": norm_layer("bn"), **kwargs})


def test_deep_linear_network_without_norm_is_one_linear_map_of_preserved_scale():
    from revisit_bn.models import DeepLinearNet

    torch.manual_seed(0)
    model = DeepLinearNet(norm_layer("none", 1), 32, 32, depth=25, width=32)
    x = torch.randn(8, 32)
    # Orthogonal square layers and zero biases: the product is orthogonal, norms are preserved.
    torch.testing.assert_close(model(x).norm(dim=1), x.norm(dim=1), rtol=1e-4, atol=1e-4)
    assert model(2 * x).allclose(2 * model(x), atol=1e-5)  # linear
    with pytest.raises(ValueError, match="depth"):
        DeepLinearNet(norm_layer("none", 1), 32, 10, depth=1)


@pytest.mark.parametrize("kind,cls_name", [("online", "OnlineNorm2d"), ("mabn", "MABN2d"),
                                           ("frn", "FilterResponseNormTlu2d"), ("evonorm", "EvoNorm2dS0")])
def test_the_successors_build_in_simple_net_as_their_papers_wire_them(kind, cls_name):
    from revisit_bn.successors import CenteredConv2d

    model = SimpleNet(kind, in_channels=1, image_size=28)
    assert [type(m).__name__ for m in model.features if type(m).__name__ == cls_name] == [cls_name, cls_name]
    relus = [m for m in model.features if isinstance(m, nn.ReLU)]
    assert len(relus) == (0 if kind in ("frn", "evonorm") else 2)  # FRN's TLU and EvoNorm-S0 are their activation
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert all(isinstance(c, CenteredConv2d) == (kind == "mabn") and c.bias is None for c in convs)
    model.train()
    assert model(torch.randn(1, 1, 28, 28)).shape == (1, 10)  # none of them needs a batch of more than one
    if kind == "evonorm":  # GroupNorm's groups: 16 of 16 channels, 32 of 32
        assert [m.groups for m in model.features if type(m).__name__ == cls_name] == [16, 32]


def test_two_dimensional_successors_refuse_vectors_and_torchvision_models():
    from types import SimpleNamespace

    from revisit_bn.models import build_model
    from revisit_bn.successors import OnlineNorm1d

    assert isinstance(norm_layer("online", 1)(4), OnlineNorm1d)
    for kind in ("mabn", "frn", "evonorm"):
        with pytest.raises(ValueError, match="not with dim=1"):
            norm_layer(kind, 1)
    config = SimpleNamespace(model="vgg11", norm="frn", norm_momentum=0.1, fn_momentum_power=0.0, norm_group_size=None,
                             brn_warmup_steps=1, brn_ramp_steps=1, noise_mean_max=1.0, noise_scale_max=2.0,
                             noise_std=0.5, width=0.125)
    with pytest.raises(ValueError, match="runs in SimpleNet only"):
        build_model(config, 3, 32, 10)
