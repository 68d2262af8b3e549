"""FullNorm1d / FullNorm2d: BN parity at momentum 1, the MCSGD backward, estimates, API."""

import pytest
import torch
from torch import nn

from revisit_bn.layers import FullNorm1d, FullNorm2d, PolynomialMomentum

SHAPES = [(FullNorm1d, nn.BatchNorm1d, (8, 3)), (FullNorm1d, nn.BatchNorm1d, (6, 3, 5)), (FullNorm2d, nn.BatchNorm2d, (4, 3, 5, 6))]


def _dims(x):
    return (0,) + tuple(range(2, x.dim()))


def _view(t, x):
    return t.view((1, -1) + (1,) * (x.dim() - 2))


def _randomize_affine(layer, gen):
    with torch.no_grad():
        layer.weight.copy_(torch.rand(layer.num_features, generator=gen, dtype=layer.weight.dtype) + 0.5)
        layer.bias.copy_(torch.randn(layer.num_features, generator=gen, dtype=layer.bias.dtype))


@pytest.mark.parametrize("fn_cls,bn_cls,shape", SHAPES)
def test_training_forward_equals_batchnorm_when_momentum_is_one(fn_cls, bn_cls, shape):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen) * 3 + 1
    fn, bn = fn_cls(shape[1], momentum=1.0), bn_cls(shape[1])
    _randomize_affine(fn, gen)
    bn.load_state_dict({k: v for k, v in fn.state_dict().items() if k in ("weight", "bias")}, strict=False)
    torch.testing.assert_close(fn(x), bn(x), rtol=1e-5, atol=1e-5)
    # The estimates are the batch's own statistics (population variance).
    var, mean = torch.var_mean(x, dim=_dims(x), unbiased=False)
    torch.testing.assert_close(fn.running_mean, mean)
    torch.testing.assert_close(fn.running_var, var, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fn_cls,bn_cls,shape", SHAPES)
def test_gradcheck_passes_in_float64_when_momentum_is_one(fn_cls, bn_cls, shape):
    gen = torch.Generator().manual_seed(1)
    layer = fn_cls(shape[1], momentum=1.0).double()
    _randomize_affine(layer, gen)
    x = torch.randn(shape, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda inp, w, b: torch.func.functional_call(layer, {"weight": w, "bias": b}, (inp,)),
                                    (x, layer.weight.detach().clone().requires_grad_(), layer.bias.detach().clone().requires_grad_()))


@pytest.mark.parametrize("fn_cls,bn_cls,shape", SHAPES)
def test_backward_matches_bn_backward_when_momentum_is_one(fn_cls, bn_cls, shape):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    upstream = torch.randn(shape, generator=gen, dtype=torch.float64)
    fn, bn = fn_cls(shape[1], momentum=1.0).double(), bn_cls(shape[1]).double()
    grads = []
    for layer in (fn, bn):
        xi = x.clone().requires_grad_()
        (layer(xi) * upstream).sum().backward()
        grads.append(xi.grad)
    torch.testing.assert_close(grads[0], grads[1])


def _mcsgd_reference(x, running_mean, running_var, rate, weight, bias, eps):
    r"""MCSGD step for one FN layer written as a composition (Lian & Liu eq. 11-12).

    Outer function f(x, m, q) = w (x - m) / sqrt(q - m^2 + eps) + b evaluated at the updated
    estimates (m_hat, q_hat); inner function g(x) = (mean_B x, mean_B x^2) differentiated on the
    current batch. ``value + (g - g.detach())`` has the value of the estimate and the gradient of
    the batch moments: the SCGD gradient, computed by autograd.
    """
    dims = _dims(x)
    batch_m, batch_q = x.mean(dims), (x * x).mean(dims)
    m_hat = (1 - rate) * running_mean + rate * batch_m.detach()
    q_hat = (1 - rate) * (running_var + running_mean**2) + rate * batch_q.detach()
    m = m_hat + (batch_m - batch_m.detach())
    q = q_hat + (batch_q - batch_q.detach())
    return _view(weight, x) * (x - _view(m, x)) / torch.sqrt(_view(q - m * m, x) + eps) + _view(bias, x)


@pytest.mark.parametrize("fn_cls,bn_cls,shape", SHAPES)
@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_backward_is_the_mcsgd_gradient_when_momentum_below_one(fn_cls, bn_cls, shape, rate):
    gen = torch.Generator().manual_seed(3)
    layer = fn_cls(shape[1], momentum=rate).double()
    _randomize_affine(layer, gen)
    with torch.no_grad():  # estimates away from the batch statistics, so the test has teeth
        layer.running_mean.copy_(torch.randn(shape[1], generator=gen, dtype=torch.float64))
        layer.running_var.copy_(torch.rand(shape[1], generator=gen, dtype=torch.float64) * 3 + 0.5)
    rm, rv = layer.running_mean.clone(), layer.running_var.clone()
    x = (torch.randn(shape, generator=gen, dtype=torch.float64) * 2 + 0.7).requires_grad_()
    upstream = torch.randn(shape, generator=gen, dtype=torch.float64)

    y = layer(x)
    (y * upstream).sum().backward()
    got_x, got_w, got_b = x.grad.clone(), layer.weight.grad.clone(), layer.bias.grad.clone()

    xr = x.detach().clone().requires_grad_()
    w, b = layer.weight.detach().clone().requires_grad_(), layer.bias.detach().clone().requires_grad_()
    ref = _mcsgd_reference(xr, rm, rv, rate, w, b, layer.eps)
    torch.testing.assert_close(y.detach(), ref.detach())  # same forward value
    (ref * upstream).sum().backward()
    torch.testing.assert_close(got_x, xr.grad)
    torch.testing.assert_close(got_w, w.grad)
    torch.testing.assert_close(got_b, b.grad)

    # By design this is not the derivative of the forward pass (whose statistics' path is
    # scaled by the rate): the two must differ here.
    xf = x.detach().clone().requires_grad_()
    m_hat = (1 - rate) * rm + rate * xf.mean(_dims(xf))
    q_hat = (1 - rate) * (rv + rm**2) + rate * (xf * xf).mean(_dims(xf))
    forward = _view(w.detach(), xf) * (xf - _view(m_hat, xf)) / torch.sqrt(_view(q_hat - m_hat**2, xf) + layer.eps)
    (forward * upstream).sum().backward()
    assert not torch.allclose(got_x, xf.grad, atol=1e-6)


@pytest.mark.parametrize("fn_cls,bn_cls,shape", SHAPES)
def test_training_forward_normalizes_with_updated_estimates(fn_cls, bn_cls, shape):
    gen = torch.Generator().manual_seed(4)
    layer = fn_cls(shape[1], momentum=0.25, affine=False)
    x = torch.randn(shape, generator=gen) * 2 + 3
    y = layer(x)
    expected = (x - _view(layer.running_mean, x)) / torch.sqrt(_view(layer.running_var, x) + layer.eps)
    torch.testing.assert_close(y, expected)


def test_running_statistics_follow_the_raw_moment_update():
    # Two known batches, rate 0.5: m = 0.5*0.5*0 + ... computed by hand on raw moments.
    layer = FullNorm1d(1, momentum=0.5, affine=False)
    layer(torch.tensor([[1.0], [3.0]]))  # mean 2, E[x^2] 5
    # m1 = 0.5*0 + 0.5*2 = 1; q1 = 0.5*(1 + 0) + 0.5*5 = 3; var1 = 3 - 1 = 2
    assert layer.running_mean.item() == pytest.approx(1.0)
    assert layer.running_var.item() == pytest.approx(2.0)
    layer(torch.tensor([[-1.0], [-1.0]]))  # mean -1, E[x^2] 1
    # m2 = 0.5*1 + 0.5*(-1) = 0; q2 = 0.5*3 + 0.5*1 = 2; var2 = 2
    assert layer.running_mean.item() == pytest.approx(0.0)
    assert layer.running_var.item() == pytest.approx(2.0)
    assert layer.num_batches_tracked.item() == 2


def test_cumulative_average_recovers_dataset_statistics_from_single_label_batches():
    # momentum=None averages the raw moments of all batches: with equal batch sizes the
    # estimates are the statistics of the whole dataset, although each batch is one "label"
    # with its own mean (an average of batch variances would miss the between-batch spread).
    gen = torch.Generator().manual_seed(5)
    batches = [torch.randn(16, 2, 3, 3, generator=gen) + 4 * k for k in range(5)]
    layer = FullNorm2d(2, momentum=None)
    for batch in batches:
        layer(batch)
    data = torch.cat(batches)
    var, mean = torch.var_mean(data, dim=(0, 2, 3), unbiased=False)
    torch.testing.assert_close(layer.running_mean, mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.running_var, var, rtol=1e-4, atol=1e-4)


def test_polynomial_momentum_decays_to_its_floor():
    schedule = PolynomialMomentum(power=0.5, minimum=0.05)
    assert schedule(1) == 1.0
    assert schedule(4) == pytest.approx(0.5)
    assert schedule(10_000) == 0.05
    layer = FullNorm1d(2, momentum=schedule)
    for _ in range(4):
        layer(torch.randn(3, 2))
    assert layer.current_rate() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="power"):
        PolynomialMomentum(power=0.0)


@pytest.mark.parametrize("fn_cls,bn_cls,shape", SHAPES)
def test_eval_output_is_the_affine_map_of_the_estimates(fn_cls, bn_cls, shape):
    gen = torch.Generator().manual_seed(6)
    layer = fn_cls(shape[1], momentum=0.3)
    _randomize_affine(layer, gen)
    for _ in range(3):
        layer(torch.randn(shape, generator=gen) * 2 - 1)
    layer.eval()
    x = torch.randn(shape, generator=gen)
    before = layer.state_dict()
    y = layer(x)
    expected = _view(layer.weight, x) * (x - _view(layer.running_mean, x)) / torch.sqrt(
        _view(layer.running_var, x) + layer.eps) + _view(layer.bias, x)
    torch.testing.assert_close(y, expected)
    for name, value in layer.state_dict().items():  # evaluation changes no estimate
        torch.testing.assert_close(value, before[name])


def test_trains_at_batch_size_one_where_batchnorm_cannot():
    layer = FullNorm1d(4, momentum=0.1)
    x = torch.randn(1, 4, requires_grad=True)
    y = layer(x)
    y.square().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        nn.BatchNorm1d(4).train()(torch.randn(1, 4))
    conv = FullNorm2d(3)
    out = conv(torch.randn(1, 3, 4, 4))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("fn_cls,bn_cls,shape", SHAPES)
def test_state_dict_round_trip_restores_estimates_and_outputs(fn_cls, bn_cls, shape):
    gen = torch.Generator().manual_seed(7)
    layer = fn_cls(shape[1], momentum=0.2)
    for _ in range(3):
        layer(torch.randn(shape, generator=gen) + 1)
    assert set(layer.state_dict()) == set(bn_cls(shape[1]).state_dict())
    clone = fn_cls(shape[1], momentum=0.2)
    clone.load_state_dict(layer.state_dict())
    x = torch.randn(shape, generator=gen)
    torch.testing.assert_close(clone.eval()(x), layer.eval()(x))
    assert clone.num_batches_tracked.item() == 3


@pytest.mark.parametrize(
    "layer,bad",
    [
        (FullNorm1d(3), torch.randn(2, 3, 4, 5)),
        (FullNorm1d(3), torch.randn(3)),
        (FullNorm1d(3), torch.randn(4, 2)),
        (FullNorm2d(3), torch.randn(4, 3, 5)),
        (FullNorm2d(3), torch.randn(4, 2, 5, 5)),
    ],
)
def test_wrong_rank_or_channel_count_raises_value_error(layer, bad):
    with pytest.raises(ValueError, match="FullNorm"):
        layer(bad)


@pytest.mark.parametrize("kwargs", [{"momentum": 0.0}, {"momentum": 1.5}, {"momentum": "fast"}, {"eps": 0.0}, {"num_features": 0}])
def test_bad_constructor_arguments_raise_value_error(kwargs):
    args = {"num_features": 3, **kwargs}
    with pytest.raises(ValueError):
        FullNorm2d(**args)


def test_without_running_stats_the_layer_uses_batch_statistics_in_eval():
    layer = FullNorm2d(2, track_running_stats=False, affine=False).eval()
    x = torch.randn(5, 2, 3, 3) * 4 + 2
    var, mean = torch.var_mean(x, dim=(0, 2, 3), unbiased=False)
    torch.testing.assert_close(layer(x), (x - mean.view(1, -1, 1, 1)) / torch.sqrt(var.view(1, -1, 1, 1) + 1e-5))
    assert layer.running_mean is None


def test_repr_and_reset_mirror_batchnorm():
    layer = FullNorm2d(4, momentum=0.3)
    assert "4, eps=1e-05, momentum=0.3, affine=True, track_running_stats=True" in repr(layer)
    layer(torch.randn(2, 4, 3, 3) + 5)
    layer.reset_running_stats()
    assert layer.running_mean.abs().sum() == 0 and (layer.running_var == 1).all()
    assert layer.num_batches_tracked.item() == 0


def test_constant_estimates_ablation_passes_no_gradient_through_the_statistics():
    gen = torch.Generator().manual_seed(8)
    layer = FullNorm2d(3, momentum=0.1, backward="constant").double()
    _randomize_affine(layer, gen)
    x = torch.randn(4, 3, 2, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(4, 3, 2, 2, generator=gen, dtype=torch.float64)
    (layer(x) * upstream).sum().backward()
    scale = layer.weight / torch.sqrt(layer.running_var + layer.eps)
    torch.testing.assert_close(x.grad, upstream * scale.view(1, -1, 1, 1).detach())
    assert "backward='constant'" in repr(layer)


# ----------------------------------------------------------------------------------------------
# Batch Renormalization, reference BN, microbatches
# ----------------------------------------------------------------------------------------------

from revisit_bn.layers import BatchRenorm1d, BatchRenorm2d, MicroBatch, ReferenceBatchNorm1d, ReferenceBatchNorm2d

BRN_SHAPES = [(BatchRenorm1d, nn.BatchNorm1d, (8, 3)), (BatchRenorm2d, nn.BatchNorm2d, (4, 3, 5, 6))]


def _bn_equivalent_brn(cls, c, **kw):
    return cls(c, r_max=1.0, d_max=0.0, warmup_steps=0, r_ramp_end=0, d_ramp_end=0, **kw)


@pytest.mark.parametrize("brn_cls,bn_cls,shape", BRN_SHAPES)
def test_batch_renorm_with_unit_limits_is_batchnorm(brn_cls, bn_cls, shape):
    gen = torch.Generator().manual_seed(10)
    x = torch.randn(shape, generator=gen, dtype=torch.float64) * 2 + 1
    upstream = torch.randn(shape, generator=gen, dtype=torch.float64)
    brn, bn = _bn_equivalent_brn(brn_cls, shape[1], eps=1e-5).double(), bn_cls(shape[1]).double()
    with torch.no_grad():  # estimates far from the batch: r and d would matter if not clipped
        brn.running_mean.fill_(5.0)
        brn.running_var.fill_(9.0)
    outs, grads = [], []
    for layer in (brn, bn):
        xi = x.clone().requires_grad_()
        out = layer(xi)
        (out * upstream).sum().backward()
        outs.append(out.detach())
        grads.append(xi.grad)
    torch.testing.assert_close(outs[0], outs[1])
    torch.testing.assert_close(grads[0], grads[1])


@pytest.mark.parametrize("brn_cls,bn_cls,shape", BRN_SHAPES)
def test_batch_renorm_gradcheck_in_float64(brn_cls, bn_cls, shape):
    layer = _bn_equivalent_brn(brn_cls, shape[1]).double()
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda inp: layer(inp), (x,))


def test_batch_renorm_backward_treats_r_and_d_as_constants():
    # Interior r, d (no clipping): the gradient is (r gamma / sigma_B) times BN's projection (Chainer's form).
    gen = torch.Generator().manual_seed(11)
    layer = BatchRenorm1d(2, eps=1e-5, warmup_steps=0, r_ramp_end=0, d_ramp_end=0, r_max=100, d_max=100).double()
    with torch.no_grad():
        layer.running_mean.copy_(torch.tensor([0.5, -1.0], dtype=torch.float64))
        layer.running_var.copy_(torch.tensor([4.0, 0.25], dtype=torch.float64))
        layer.weight.copy_(torch.tensor([1.5, 0.7], dtype=torch.float64))
    rm, rv = layer.running_mean.clone(), layer.running_var.clone()
    x = (torch.randn(16, 2, generator=gen, dtype=torch.float64) * 1.5).requires_grad_()
    g = torch.randn(16, 2, generator=gen, dtype=torch.float64)
    y = layer(x)
    (y * g).sum().backward()
    var, mean = torch.var_mean(x.detach(), dim=0, unbiased=False)
    std = torch.sqrt(var + 1e-5)
    r = std / torch.sqrt(rv + 1e-5)
    d = (mean - rm) / torch.sqrt(rv + 1e-5)
    x_tilde = (x.detach() - mean) / std
    torch.testing.assert_close(y.detach(), layer.weight.detach() * (x_tilde * r + d) + layer.bias.detach())
    expected = (r * layer.weight.detach() / std) * (g - g.mean(0) - x_tilde * (g * x_tilde).mean(0))
    torch.testing.assert_close(x.grad, expected)


def test_batch_renorm_schedule_warms_up_then_ramps_linearly():
    layer = BatchRenorm1d(1, warmup_steps=2, r_ramp_end=6, d_ramp_end=4, r_max=3.0, d_max=5.0)
    limits = []
    for _ in range(7):
        layer(torch.randn(4, 1))
        limits.append(layer.current_limits())
    assert limits[1] == (1.0, 0.0)  # step 2: still warm-up
    assert limits[3] == pytest.approx((2.0, 5.0))  # step 4: r half-way, d at its end
    assert limits[6] == (3.0, 5.0)


def test_batch_renorm_eval_uses_moving_mean_and_std():
    layer = BatchRenorm2d(2, momentum=0.5, warmup_steps=0, r_ramp_end=0, d_ramp_end=0, affine=False)
    x = torch.randn(6, 2, 3, 3) * 3 + 2
    layer(x)
    var, mean = torch.var_mean(x, dim=(0, 2, 3), unbiased=False)
    std = torch.sqrt(var + layer.eps)
    expected_std = 0.5 * torch.sqrt(torch.tensor(1.0 + layer.eps)) + 0.5 * std  # moving std from 1
    torch.testing.assert_close(layer.running_mean, 0.5 * mean)
    torch.testing.assert_close(torch.sqrt(layer.running_var + layer.eps), expected_std)
    layer.eval()
    torch.testing.assert_close(layer(x), (x - layer.running_mean.view(1, -1, 1, 1)) / expected_std.view(1, -1, 1, 1))


@pytest.mark.parametrize("ref_cls,bn_cls,shape", [(ReferenceBatchNorm1d, nn.BatchNorm1d, (8, 3)), (ReferenceBatchNorm2d, nn.BatchNorm2d, (4, 3, 5, 6))])
def test_reference_batchnorm_matches_torch_in_train_and_eval(ref_cls, bn_cls, shape):
    gen = torch.Generator().manual_seed(12)
    ref, bn = ref_cls(shape[1]).double(), bn_cls(shape[1]).double()
    for _ in range(3):
        x = torch.randn(shape, generator=gen, dtype=torch.float64) * 2 + 1
        torch.testing.assert_close(ref(x), bn(x))
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(ref, name), getattr(bn, name))
    ref.eval(), bn.eval()
    torch.testing.assert_close(ref(x), bn(x))


def test_reference_batchnorm_outputs_beta_at_batch_size_one():
    layer = ReferenceBatchNorm1d(3)
    with torch.no_grad():
        layer.bias.copy_(torch.tensor([0.5, -1.0, 2.0]))
    x = torch.randn(1, 3, requires_grad=True)
    y = layer(x)
    torch.testing.assert_close(y.detach(), layer.bias.detach().view(1, 3))
    y.sum().backward()
    assert x.grad.abs().max() == 0  # the input has no effect: BN's objective at batch size 1


def test_microbatch_normalizes_each_group_separately():
    x = torch.cat([torch.randn(4, 2, 3, 3) + 10 * k for k in range(3)])
    wrapped = MicroBatch(nn.BatchNorm2d(2, affine=False), 4)
    y = wrapped(x)
    for chunk in y.split(4):  # every group standardized on its own
        torch.testing.assert_close(chunk.mean(dim=(0, 2, 3)), torch.zeros(2), atol=1e-5, rtol=0)
    assert wrapped.module.num_batches_tracked.item() == 3
    with pytest.raises(ValueError, match="group_size"):
        MicroBatch(nn.BatchNorm2d(2), 0)


# ----------------------------------------------------------------------------------------------
# NoisyBatchNorm (Santurkar et al. 2018, Section 2.1)
# ----------------------------------------------------------------------------------------------
from revisit_bn.layers import NoisyBatchNorm1d, NoisyBatchNorm2d  # noqa: E402

NOISY = [(NoisyBatchNorm1d, nn.BatchNorm1d, (64, 3)), (NoisyBatchNorm2d, nn.BatchNorm2d, (16, 3, 4, 4))]


@pytest.mark.parametrize("noisy_cls,bn_cls,shape", NOISY)
def test_noisy_batchnorm_without_noise_is_batchnorm(noisy_cls, bn_cls, shape):
    x = torch.randn(shape) * 2 + 1
    noisy, bn = noisy_cls(3, noise_mean_max=0.0, noise_scale_max=1.0, noise_std=0.0), bn_cls(3)
    torch.testing.assert_close(noisy(x), bn(x))
    torch.testing.assert_close(noisy.running_mean, bn.running_mean)
    noisy.eval(), bn.eval()
    torch.testing.assert_close(noisy(x), bn(x))  # E[a] = 1 when n_sigma = 1


@pytest.mark.parametrize("noisy_cls,bn_cls,shape", NOISY)
def test_noisy_batchnorm_shifts_and_scales_each_channel_within_its_ranges(noisy_cls, bn_cls, shape):
    torch.manual_seed(0)
    x = torch.randn(shape) * 2 + 1
    noisy = noisy_cls(3, noise_mean_max=0.7, noise_scale_max=3.0, noise_std=0.0)
    dims = _dims(x)
    means, stds = [], []
    for _ in range(20):  # a new draw every step
        y = noisy(x)
        means.append(y.mean(dim=dims)), stds.append(y.std(dim=dims, unbiased=False))
    means, stds = torch.stack(means), torch.stack(stds)
    # y = a (BN(x)) + b: channel mean b in [-0.7, 0.7], channel std a in [1, 3] (BN's output has std ~1)
    assert means.abs().max() <= 0.7 + 1e-5 and stds.min() >= 1 - 1e-3 and stds.max() <= 3 + 1e-3
    assert means.std(dim=0).min() > 0.1 and stds.std(dim=0).min() > 0.1  # the parameters move over steps
    noisy.eval()  # evaluation: no draw, the noise's expectation (2 BN(x) for n_sigma = 3)
    expected = 2.0 * nn.functional.batch_norm(x, noisy.running_mean, noisy.running_var, noisy.weight, noisy.bias)
    torch.testing.assert_close(noisy(x), expected)


def test_noisy_batchnorm_noise_is_per_element_and_seeded():
    x = torch.randn(32, 2, 3, 3)
    layer = NoisyBatchNorm2d(2, noise_mean_max=0.0, noise_scale_max=1.0, noise_std=0.5)
    torch.manual_seed(1)
    y1 = layer(x)
    torch.manual_seed(1)
    y2 = layer(x)
    torch.testing.assert_close(y1, y2)
    residual = y1 - nn.functional.batch_norm(x, None, None, layer.weight, layer.bias, training=True)
    assert residual.std().item() == pytest.approx(0.5, rel=0.15)  # i.i.d. N(0, 0.5^2) per element
    assert "noise_std=0.5" in repr(layer)


@pytest.mark.parametrize("kwargs", [{"noise_mean_max": -1.0}, {"noise_scale_max": 0.5}, {"noise_std": float("nan")}])
def test_noisy_batchnorm_bad_noise_parameters_raise_value_error(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        NoisyBatchNorm2d(3, **kwargs)


def test_noisy_identity_is_noisy_batchnorm_without_the_normalization():
    from revisit_bn.layers import NoisyIdentity

    x = torch.randn(64, 3, 4, 4) * 5 + 2
    quiet = NoisyIdentity(3, noise_mean_max=0.0, noise_scale_max=1.0, noise_std=0.0)
    torch.testing.assert_close(quiet(x), x)  # no noise: the identity, no normalization
    layer = NoisyIdentity(3)
    torch.manual_seed(0)
    first = layer(x)
    torch.manual_seed(0)
    expected = NoisyBatchNorm2d(3)._add_noise(x)  # the same draws as noisy BN applies to its output
    torch.testing.assert_close(first, expected)
    assert not torch.allclose(layer(x).mean((0, 2, 3)), first.mean((0, 2, 3)))  # the shift moves every step
    layer.eval()
    torch.testing.assert_close(layer(x), x * 1.5)  # the noise's expectation: E[a] = (1 + 2) / 2
    with pytest.raises(ValueError, match="expects input"):
        layer(torch.randn(2, 4, 3, 3))
    with pytest.raises(ValueError):
        NoisyIdentity(3, noise_scale_max=0.5)


def test_noisy_standard_vgg_keeps_its_conv_biases():
    from revisit_bn.layers import NoisyIdentity
    from revisit_bn.models import norm_layer, vgg

    model = vgg("vgg11", norm_layer("noisy_none", 2), width=0.125)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.bias is not None for c in convs) and sum(isinstance(m, NoisyIdentity) for m in model.modules()) == len(convs)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


# --- Santurkar et al.'s l_p normalization (Section 3.3) ---
from revisit_bn.layers import LpNorm1d, LpNorm2d  # noqa: E402


@pytest.mark.parametrize("lp_cls, shape", [(LpNorm1d, (16, 3)), (LpNorm1d, (8, 3, 5)), (LpNorm2d, (4, 3, 5, 5))])
@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, float("inf")])
def test_lp_norm_centres_and_divides_by_the_uncentered_power_mean(lp_cls, shape, p):
    torch.manual_seed(0)
    x = torch.randn(*shape, dtype=torch.float64) * 2 + 1.5  # a clearly non-zero mean
    layer = lp_cls(3, p=p, eps=1e-8).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
        layer.bias.copy_(torch.tensor([0.0, -1.0, 3.0]))
    y = layer(x)
    dims = (0,) + tuple(range(2, x.dim()))
    per_channel = x.transpose(0, 1).reshape(3, -1)  # (C, n): one row per channel
    scale = per_channel.abs().amax(1) if p == float("inf") else per_channel.abs().pow(p).mean(1).pow(1 / p)
    view = (1, 3) + (1,) * (x.dim() - 2)
    expected = (x - x.mean(dims, keepdim=True)) / scale.view(view) * layer.weight.view(view) + layer.bias.view(view)
    torch.testing.assert_close(y, expected.detach())
    torch.testing.assert_close(layer.running_scale, 0.9 + 0.1 * scale.detach())
    # p = 2 is the root mean square, not BN's standard deviation: the outputs differ when the mean is not 0
    if p == 2.0:
        bn = (nn.BatchNorm1d if lp_cls is LpNorm1d else nn.BatchNorm2d)(3, eps=1e-8).double()
        bn.load_state_dict({k: v for k, v in layer.state_dict().items() if k in ("weight", "bias")}, strict=False)
        assert not torch.allclose(bn(x), y, atol=1e-3)


def test_lp_norm_of_a_zero_mean_input_at_p_2_is_batchnorm():
    torch.manual_seed(1)
    x = torch.randn(6, 4, 3, 3, dtype=torch.float64)
    x = x - x.mean((0, 2, 3), keepdim=True)  # mean exactly 0: root mean square == standard deviation
    lp, bn = LpNorm2d(4, p=2, eps=1e-12).double(), nn.BatchNorm2d(4, eps=1e-12).double()
    torch.testing.assert_close(lp(x), bn(x))


@pytest.mark.parametrize("p", [1.0, 2.0, float("inf")])
def test_lp_norm_gradcheck_in_float64(p):
    torch.manual_seed(2)
    x = (torch.randn(5, 2, 3, 3, dtype=torch.float64) + 0.5).requires_grad_()
    layer = LpNorm2d(2, p=p).double()
    assert torch.autograd.gradcheck(lambda t: layer(t), (x,), eps=1e-6, atol=1e-5)


def test_lp_norm_eval_uses_the_running_mean_and_scale():
    torch.manual_seed(3)
    layer = LpNorm2d(3, p=1.0, momentum=0.5)
    for _ in range(3):
        layer(torch.randn(8, 3, 4, 4) + 2)
    assert int(layer.num_batches_tracked) == 3 and layer.running_var is None
    layer.eval()
    x = torch.randn(2, 3, 4, 4)
    view = (1, 3, 1, 1)
    torch.testing.assert_close(layer(x), (x - layer.running_mean.view(view)) / layer.running_scale.view(view))
    state = layer.state_dict()
    assert set(state) >= {"running_mean", "running_scale", "num_batches_tracked"} and "running_var" not in state
    layer.reset_running_stats()
    assert float(layer.running_scale.min()) == 1.0 and float(layer.running_mean.abs().max()) == 0.0


@pytest.mark.parametrize("kwargs, match", [(dict(p=0.5), "p must be"), (dict(p="inf"), "p must be"),
                                           (dict(momentum=None), "momentum must be"), (dict(momentum=1.5), "momentum must")])
def test_lp_norm_bad_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LpNorm2d(3, **kwargs)


def test_lp_norm_factory_names_give_the_orders_of_santurkar_section_3_3():
    from revisit_bn.models import norm_layer

    orders = {kind: norm_layer(kind)(4).p for kind in ("lp1", "lp2", "lpinf")}
    assert orders == {"lp1": 1.0, "lp2": 2.0, "lpinf": float("inf")}
    assert "p=1" in repr(norm_layer("lp1")(4))


# ------------------------------------------------------------------------------------------------
# Behaving as nn.BatchNorm2d does: reduced-precision and double inputs, autocast, empty and non-finite batches
# ------------------------------------------------------------------------------------------------

def _layers_like_bn():
    """Every layer of the package that stands where BatchNorm2d does, built so that its training forward is
    BN's (FN with rate 1, Batch Renorm with limits 1 and 0, l_p at p = 2 on zero-mean input aside)."""
    from revisit_bn.layers import BatchRenorm2d, LpNorm2d, NoisyBatchNorm2d, ReferenceBatchNorm2d

    return {
        "FullNorm2d": lambda: FullNorm2d(4, momentum=1.0),
        "FullNorm2d-decoupled": lambda: FullNorm2d(4, momentum=1.0, backward="decoupled"),
        "FullNorm2d-exact": lambda: FullNorm2d(4, momentum=1.0, backward="exact"),
        "BatchRenorm2d": lambda: BatchRenorm2d(4, eps=1e-5, momentum=0.1),
        "ReferenceBatchNorm2d": lambda: ReferenceBatchNorm2d(4),
        "NoisyBatchNorm2d": lambda: NoisyBatchNorm2d(4, noise_mean_max=0.0, noise_scale_max=1.0, noise_std=0.0),
        "LpNorm2d": lambda: LpNorm2d(4, p=2.0),
    }


LAYERS_LIKE_BN = _layers_like_bn()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", list(LAYERS_LIKE_BN))
def test_reduced_precision_input_runs_as_batchnorm_does(name, training, dtype):
    # BN on the CPU takes float16/bfloat16 input with float32 parameters and statistics, and returns the input's dtype
    torch.manual_seed(0)
    x32 = torch.randn(8, 4, 3, 3)
    x32 = x32 - x32.mean(dim=(0, 2, 3), keepdim=True)  # zero mean: l_p at p = 2 is BN there
    layer, bn = LAYERS_LIKE_BN[name]().train(training), nn.BatchNorm2d(4).train(training)
    x = x32.to(dtype).requires_grad_()
    y, reference = layer(x), bn(x32.to(dtype))
    assert y.dtype == reference.dtype == dtype and layer.running_mean.dtype == torch.float32
    assert torch.allclose(y.float(), reference.float(), atol=0.05 if dtype == torch.bfloat16 else 5e-3)
    y.float().square().sum().backward()
    assert x.grad.dtype == dtype and torch.isfinite(x.grad.float()).all()
    if training:
        assert torch.allclose(layer.running_mean, bn.running_mean, atol=1e-2)


@pytest.mark.parametrize("name", list(LAYERS_LIKE_BN))
def test_under_cpu_autocast_after_a_convolution_the_layer_runs_as_batchnorm_does(name):
    torch.manual_seed(0)
    conv, layer, bn = nn.Conv2d(3, 4, 3), LAYERS_LIKE_BN[name](), nn.BatchNorm2d(4)
    x = torch.randn(8, 3, 5, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = conv(x)
        y, reference = layer(h), bn(h)
    assert h.dtype == torch.bfloat16 and y.dtype == reference.dtype
    y.float().sum().backward()
    assert conv.weight.grad is not None and torch.isfinite(conv.weight.grad).all()


@pytest.mark.parametrize("name", list(LAYERS_LIKE_BN))
def test_a_double_layer_takes_double_input_as_batchnorm_does(name):
    torch.manual_seed(0)
    x = torch.randn(8, 4, 3, 3, dtype=torch.float64)
    x = (x - x.mean(dim=(0, 2, 3), keepdim=True)).requires_grad_()
    layer, bn = LAYERS_LIKE_BN[name]().double(), nn.BatchNorm2d(4).double()
    y = layer(x)
    assert y.dtype == torch.float64 and torch.allclose(y, bn(x), atol=1e-6)
    y.sum().backward()


@pytest.mark.parametrize("name", [n for n in LAYERS_LIKE_BN if n != "NoisyBatchNorm2d"])
def test_double_input_of_a_float32_layer_is_computed_in_double(name):
    # where nn.BatchNorm2d refuses the mix ("mixed dtype"), these layers widen to float64 and return it
    x = torch.randn(8, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    for training in (True, False):
        y = LAYERS_LIKE_BN[name]().train(training)(x)
        assert y.dtype == torch.float64
        y.sum().backward()


@pytest.mark.parametrize("name", list(LAYERS_LIKE_BN))
def test_an_empty_batch_changes_no_statistic(name):
    layer = LAYERS_LIKE_BN[name]()
    layer(torch.randn(8, 4, 3, 3))
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    out = layer(torch.randn(0, 4, 3, 3))
    assert out.shape == (0, 4, 3, 3)
    after = layer.state_dict()
    for key, value in before.items():
        if key != "num_batches_tracked":
            assert torch.equal(after[key], value), key
    layer.eval()
    assert torch.isfinite(layer(torch.randn(2, 4, 3, 3))).all()


@pytest.mark.parametrize("name", [n for n in LAYERS_LIKE_BN if n not in ("NoisyBatchNorm2d",)])
def test_a_channel_with_a_nan_keeps_its_statistics_and_the_others_move(name):
    layer = LAYERS_LIKE_BN[name]()
    layer(torch.randn(8, 4, 3, 3))
    before = layer.running_mean.clone()
    x = torch.randn(8, 4, 3, 3) + 3.0
    x[0, 1, 0, 0] = float("nan")
    layer(x)
    assert torch.isfinite(layer.running_mean).all()
    assert layer.running_mean[1] == before[1] and not torch.equal(layer.running_mean[[0, 2, 3]], before[[0, 2, 3]])
    layer.eval()
    assert torch.isfinite(layer(torch.randn(2, 4, 3, 3))).all()  # a NaN is not kept for good


def test_the_decoupled_terms_take_a_batch_in_once_however_often_backward_runs():
    torch.manual_seed(0)
    layer = FullNorm2d(4, momentum=0.5, backward="decoupled")
    x = torch.randn(8, 4, 3, 3, requires_grad=True)
    y = layer(x)
    y.square().sum().backward(retain_graph=True)
    once = layer.running_grad_mean.clone(), layer.running_grad_xhat_mean.clone()
    first = x.grad.clone()
    y.square().sum().backward()
    assert torch.equal(layer.running_grad_mean, once[0]) and torch.equal(layer.running_grad_xhat_mean, once[1])
    assert torch.allclose(x.grad, 2 * first)  # the second backward gives the same gradient, accumulated
