"""OnlineNorm1d/2d and MABN2d against plain float64 references of the papers' equations; properties; API."""

import math

import pytest
import torch
import torch.nn.functional as F

from revisit_bn.successors import MABN2d, CenteredConv2d, OnlineNorm1d, OnlineNorm2d

TOL = {"rtol": 1e-10, "atol": 1e-10}
F64 = torch.float64


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one intra-op thread is faster and does not compete with other processes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _randomize_affine(layer, gen):
    with torch.no_grad():
        layer.weight.copy_(torch.rand(layer.num_features, generator=gen, dtype=layer.weight.dtype) + 0.5)
        layer.bias.copy_(torch.randn(layer.num_features, generator=gen, dtype=layer.bias.dtype))


def _assert_steps_match(layer, batches, upstreams, expected):
    """Train ``layer`` on each batch in turn; its output, input gradient and parameter gradients equal the
    reference's at every step."""
    for x, upstream, (out_ref, grad_ref, param_ref) in zip(batches, upstreams, expected):
        out, grad, params = _step(layer, x, upstream)
        torch.testing.assert_close(out, out_ref, **TOL)
        torch.testing.assert_close(grad, grad_ref, **TOL)
        for got, want in zip(params, param_ref):
            torch.testing.assert_close(got, want, **TOL)


def _step(layer, x, upstream):
    """One training step: output, input gradient, and the affine parameters' gradients (then zeroed)."""
    x = x.clone().requires_grad_()
    out = layer(x)
    out.backward(upstream)
    grads = [p.grad.clone() for p in (layer.weight, layer.bias)] if layer.affine else []
    layer.zero_grad()
    return out.detach(), x.grad, grads


# ----------------------------------------------------------------------------------------------
# Online Normalization: a plain reference of Chiley et al. (2019), Section 3
# ----------------------------------------------------------------------------------------------


def _online_reference(batches, upstreams, weight, bias, alpha_f, alpha_b, eps, layer_scaling):
    """Sample by sample, in batch order: the forward estimates, affine map, layer scaling, and the backward
    control process, each written out (no autograd). Returns per step (output, input grad, [dw, db]) and the
    final (mu, sigma^2, eps_y, eps_1)."""
    channels = batches[0].shape[1]
    mu, var = torch.zeros(channels, dtype=F64), torch.ones(channels, dtype=F64)
    err_y, err_1 = torch.zeros(channels, dtype=F64), torch.zeros(channels, dtype=F64)
    steps = []
    for x, upstream in zip(batches, upstreams):
        outs, grads_x = [], []
        dw, db = torch.zeros(channels, dtype=F64), torch.zeros(channels, dtype=F64)
        for i in range(x.shape[0]):
            xi = x[i].reshape(channels, -1)  # (C, positions)
            gi = upstream[i].reshape(channels, -1)
            # forward: y_t = (x_t - mu_{t-1}) / sqrt(sigma^2_{t-1} + eps), then the updates
            m = xi.mean(1)
            v = ((xi - m[:, None]) ** 2).mean(1)
            sigma = torch.sqrt(var + eps)
            y = (xi - mu[:, None]) / sigma[:, None]
            var = alpha_f * var + (1 - alpha_f) * v + alpha_f * (1 - alpha_f) * (m - mu) ** 2
            mu = alpha_f * mu + (1 - alpha_f) * m
            # affine map and layer scaling (RMS over the sample's channels and positions), and their backward
            u = weight[:, None] * y + bias[:, None]
            if layer_scaling:
                rms = torch.sqrt((u ** 2).mean() + eps)
                out = u / rms
                grad_u = (gi - out * (gi * out).mean()) / rms
            else:
                out, grad_u = u, gi
            dw += (grad_u * y).sum(1)
            db += grad_u.sum(1)
            grad_y = weight[:, None] * grad_u
            # backward: x~' = y' - (1-a_b) eps_y y ; eps_y += mu(x~' y)
            #           x' = x~'/sigma - (1-a_b) eps_1 ; eps_1 += mu(x')
            tilde = grad_y - (1 - alpha_b) * err_y[:, None] * y
            err_y = err_y + (tilde * y).mean(1)
            grad_x = tilde / sigma[:, None] - (1 - alpha_b) * err_1[:, None]
            err_1 = err_1 + grad_x.mean(1)
            outs.append(out.reshape(x[i].shape))
            grads_x.append(grad_x.reshape(x[i].shape))
        steps.append((torch.stack(outs), torch.stack(grads_x), [dw, db]))
    return steps, (mu, var, err_y, err_1)


ONLINE_CASES = [(OnlineNorm1d, (3,)), (OnlineNorm1d, (3, 5)), (OnlineNorm2d, (3, 4, 3))]


@pytest.mark.parametrize("layer_scaling", [True, False])
@pytest.mark.parametrize("cls,tail", ONLINE_CASES)
def test_online_norm_matches_plain_reference_over_steps(cls, tail, layer_scaling):
    gen = torch.Generator().manual_seed(0)
    alpha_f, alpha_b, eps = 0.9, 0.8, 1e-5
    layer = cls(tail[0], alpha_fwd=alpha_f, alpha_bkw=alpha_b, eps=eps, layer_scaling=layer_scaling).double()
    _randomize_affine(layer, gen)
    sizes = [3, 1, 4, 2]  # batches of several samples and a batch of one
    batches = [torch.randn((n,) + tail, generator=gen, dtype=F64) * 2 + 1 for n in sizes]
    upstreams = [torch.randn((n,) + tail, generator=gen, dtype=F64) for n in sizes]
    expected, state = _online_reference(batches, upstreams, layer.weight.detach(), layer.bias.detach(),
                                        alpha_f, alpha_b, eps, layer_scaling)
    _assert_steps_match(layer, batches, upstreams, expected)
    buffers = (layer.running_mean, layer.running_var, layer.grad_error_y, layer.grad_error_mean)
    for buffer, want in zip(buffers, state):
        torch.testing.assert_close(buffer, want, **TOL)
    assert int(layer.num_batches_tracked) == len(sizes)
    assert layer.grad_error_y.abs().min() > 0 and layer.grad_error_mean.abs().min() > 0  # the feedback ran


def test_online_norm_batch_equals_sequence_of_single_samples():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(6, 3, 4, 4, generator=gen, dtype=F64) + 0.5
    upstream = torch.randn(6, 3, 4, 4, generator=gen, dtype=F64)
    batched, single = OnlineNorm2d(3).double(), OnlineNorm2d(3).double()
    out_b, grad_b, params_b = _step(batched, x, upstream)
    steps = [_step(single, x[i:i + 1], upstream[i:i + 1]) for i in range(6)]
    torch.testing.assert_close(out_b, torch.cat([s[0] for s in steps]), **TOL)
    torch.testing.assert_close(grad_b, torch.cat([s[1] for s in steps]), **TOL)
    for k in range(2):
        torch.testing.assert_close(params_b[k], sum(s[2][k] for s in steps), **TOL)
    for name, buffer in batched.named_buffers():
        if name != "num_batches_tracked":
            torch.testing.assert_close(buffer, single.get_buffer(name), **TOL)


def test_online_norm_removes_gradient_components_along_y_and_mean_in_a_stationary_stream():
    # Chiley et al., Section 3: the backward control process makes the gradient orthogonal to y and to the
    # constants over time. With an upstream gradient a*y + b (entirely in those two directions) the exact
    # gradient of population normalization is 0; the accumulators learn a and b/sigma and cancel it.
    gen = torch.Generator().manual_seed(2)
    steps, channels, mean, std, a, b = 3000, 3, 1.5, 2.0, 0.7, 0.3
    layer = OnlineNorm1d(channels, affine=False, layer_scaling=False).double()
    with torch.no_grad():  # start at the stream's statistics: stationary from the first sample
        layer.running_mean.fill_(mean)
        layer.running_var.fill_(std ** 2)
    x = (torch.randn(steps, channels, generator=gen, dtype=F64) * std + mean).requires_grad_()
    y = layer(x)
    upstream = a * y.detach() + b
    y.backward(upstream)
    late = slice(steps // 2, None)
    rms_corrected = x.grad[late].square().mean().sqrt()
    # the gradient with the estimates as constants
    rms_uncorrected = (upstream / std)[late].square().mean().sqrt()
    assert rms_corrected < 0.06 * rms_uncorrected
    gain = 1 - layer.alpha_bkw
    torch.testing.assert_close(gain * layer.grad_error_y, torch.full((channels,), a, dtype=F64),
                               rtol=0, atol=0.1)
    torch.testing.assert_close(gain * layer.grad_error_mean, torch.full((channels,), b / std, dtype=F64),
                               rtol=0, atol=0.02)


def test_online_norm_trains_at_batch_size_one():
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), OnlineNorm1d(8), torch.nn.ReLU(),
                                torch.nn.Linear(8, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    inputs = torch.randn(64, 4)
    targets = inputs @ torch.tensor([[1.0], [-2.0], [0.5], [1.5]])
    losses = []
    for epoch in range(3):
        for i in range(64):
            optimizer.zero_grad()
            out = model(inputs[i:i + 1])
            loss = (out - targets[i:i + 1]).square().mean()
            loss.backward()
            assert torch.isfinite(out).all()
            assert all(torch.isfinite(p.grad).all() for p in model.parameters())
            optimizer.step()
            losses.append(loss.item())
    assert int(model[1].num_batches_tracked) == 3 * 64
    assert sum(losses[-64:]) < 0.5 * sum(losses[:64])


@pytest.mark.parametrize("shape", [(1, 3, 4, 4), (1, 3, 1, 1)])
def test_online_norm2d_batch_of_one_gives_finite_output_and_gradient(shape):
    layer = OnlineNorm2d(3)
    for _ in range(3):
        out, grad, params = _step(layer, torch.randn(shape) * 3 + 2, torch.randn(shape))
        assert torch.isfinite(out).all() and torch.isfinite(grad).all()
        assert all(torch.isfinite(p).all() for p in params)
    assert not torch.equal(layer.running_mean, torch.zeros(3))


# ----------------------------------------------------------------------------------------------
# MABN: a plain reference of Yan et al. (2020), Section 4 (final form, no centering)
# ----------------------------------------------------------------------------------------------


def _mabn_reference(batches, upstreams, weight, bias, eps, momentum, window, warmup, r_max, renorm_start):
    """Iteration by iteration: SMA of chi^2 forward, SMA of Psi backward, EMA for inference, renorm r."""
    channels = batches[0].shape[1]
    running = torch.ones(channels, dtype=F64)
    sq_history, psi_history, steps, clipped = [], [], [], 0
    for t, (x, upstream) in enumerate(zip(batches, upstreams), start=1):
        sq = (x ** 2).mean(dim=(0, 2, 3))
        sq_history.append(sq)
        sq_bar = sq if t <= warmup else torch.stack(sq_history[-window:]).mean(0)
        chi = torch.sqrt(sq_bar + eps)
        r = torch.ones(channels, dtype=F64)
        if r_max > 1 and t > max(renorm_start, warmup):
            raw = chi / torch.sqrt(running + eps)
            r = raw.clamp(1 / r_max, r_max)
            clipped += int((raw != r).sum())
        running = momentum * running + (1 - momentum) * sq_bar
        z = x / chi.view(1, -1, 1, 1)
        out = weight.view(1, -1, 1, 1) * r.view(1, -1, 1, 1) * z + bias.view(1, -1, 1, 1)
        grad_z = upstream * (weight * r).view(1, -1, 1, 1)
        psi = (grad_z * z).mean(dim=(0, 2, 3))
        psi_history.append(psi)
        psi_bar = psi if t <= warmup else torch.stack(psi_history[-window:]).mean(0)
        grad_x = (grad_z - z * psi_bar.view(1, -1, 1, 1)) / chi.view(1, -1, 1, 1)
        params = [(upstream * r.view(1, -1, 1, 1) * z).sum(dim=(0, 2, 3)), upstream.sum(dim=(0, 2, 3))]
        steps.append((out, grad_x, params))
    return steps, running, sq_history, psi_history, clipped


def test_mabn_matches_plain_reference_over_steps():
    gen = torch.Generator().manual_seed(4)
    window, warmup, renorm_start, r_max, momentum, eps = 3, 2, 4, 1.3, 0.6, 1e-5
    layer = MABN2d(3, eps=eps, momentum=momentum, buffer_size=window, warmup_iters=warmup, r_max=r_max,
                   renorm_start=renorm_start).double()
    _randomize_affine(layer, gen)
    scales = [1.0, 2.0, 0.5, 3.0, 0.3, 1.0, 2.5, 0.8]  # shifts in scale so that r reaches its limits
    batches = [torch.randn(2, 3, 3, 4, generator=gen, dtype=F64) * s + 0.5 for s in scales]
    upstreams = [torch.randn(2, 3, 3, 4, generator=gen, dtype=F64) for _ in scales]
    expected, running, sq_history, psi_history, clipped = _mabn_reference(
        batches, upstreams, layer.weight.detach(), layer.bias.detach(), eps, momentum, window, warmup, r_max,
        renorm_start)
    assert clipped > 0  # the renormalization's clipping is exercised
    _assert_steps_match(layer, batches, upstreams, expected)
    torch.testing.assert_close(layer.running_var, running, **TOL)
    # the window buffers hold the last `window` iterations' chi^2_B and Psi_B in ring order
    order = [(len(scales) - window + k) % window for k in range(window)]
    torch.testing.assert_close(layer.sq_mean_window[order], torch.stack(sq_history[-window:]), **TOL)
    torch.testing.assert_close(layer.grad_xhat_window[order], torch.stack(psi_history[-window:]), **TOL)
    assert int(layer.num_batches_tracked) == len(scales)


def _second_moment_norm(x, weight, bias, eps):
    """BN by the batch second moment: w * x / sqrt(mean_B x^2 + eps) + b (autograd differentiates it)."""
    sq = (x ** 2).mean(dim=(0, 2, 3), keepdim=True)
    return weight.view(1, -1, 1, 1) * x / torch.sqrt(sq + eps) + bias.view(1, -1, 1, 1)


@pytest.mark.parametrize("warmup", [0, 2])
def test_mabn_with_window_one_is_second_moment_batch_norm(warmup):
    # buffer_size=1 and r = 1 (r_max=1): the moving averages are the current batch's statistics, and MABN is
    # the paper's modified BN (no centering) with its exact gradient.
    gen = torch.Generator().manual_seed(5)
    layer = MABN2d(3, momentum=0.0, buffer_size=1, warmup_iters=warmup, r_max=1.0).double()
    _randomize_affine(layer, gen)
    for _ in range(4):
        x = torch.randn(2, 3, 4, 4, generator=gen, dtype=F64) * 2 + 1
        upstream = torch.randn(2, 3, 4, 4, generator=gen, dtype=F64)
        out, grad, params = _step(layer, x, upstream)
        xr = x.clone().requires_grad_()
        w, b = (p.detach().clone().requires_grad_() for p in (layer.weight, layer.bias))
        want = _second_moment_norm(xr, w, b, layer.eps)
        want.backward(upstream)
        torch.testing.assert_close(out, want.detach(), **TOL)
        torch.testing.assert_close(grad, xr.grad, **TOL)
        torch.testing.assert_close(params[0], w.grad, **TOL)
        # momentum 0: the inference statistic is the last batch's second moment
        torch.testing.assert_close(layer.running_var, (x ** 2).mean(dim=(0, 2, 3)), **TOL)


def test_mabn_gradcheck_passes_with_window_one():
    gen = torch.Generator().manual_seed(6)
    layer = MABN2d(2, buffer_size=1, warmup_iters=0, r_max=1.0).double()
    _randomize_affine(layer, gen)
    x = torch.randn(2, 2, 3, 3, generator=gen, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))


def test_mabn_backward_differs_from_batch_gradient_after_warmup():
    # After warm-up the backward uses the moving average of Psi, not the batch's own: not autograd's gradient.
    gen = torch.Generator().manual_seed(7)
    layer = MABN2d(2, buffer_size=4, warmup_iters=1, r_max=1.0).double()
    for t in range(3):
        x = torch.randn(2, 2, 3, 3, generator=gen, dtype=F64) * (1 + t)
        upstream = torch.randn(2, 2, 3, 3, generator=gen, dtype=F64)
        _, grad, _ = _step(layer, x, upstream)
    xr = x.clone().requires_grad_()
    sq_bar = layer.sq_mean_window[:3].mean(0)  # the forward's SMA statistic is a constant here
    chi = torch.sqrt(sq_bar + layer.eps).view(1, -1, 1, 1)
    (layer.weight.detach().view(1, -1, 1, 1) * xr / chi).backward(upstream)
    assert not torch.allclose(grad, xr.grad)
    # ... and it is that constant-statistic gradient minus the windowed Psi term, as the paper writes it
    z = x / torch.sqrt(sq_bar + layer.eps).view(1, -1, 1, 1)
    psi_bar = layer.grad_xhat_window[:3].mean(0)
    correction = z * psi_bar.view(1, -1, 1, 1) / torch.sqrt(sq_bar + layer.eps).view(1, -1, 1, 1)
    torch.testing.assert_close(grad, xr.grad - correction, **TOL)


def test_mabn_trains_at_batch_size_one():
    layer = MABN2d(3, buffer_size=4, warmup_iters=2)
    for _ in range(6):
        out, grad, params = _step(layer, torch.randn(1, 3, 5, 5) + 1, torch.randn(1, 3, 5, 5))
        assert torch.isfinite(out).all() and torch.isfinite(grad).all()
        assert all(torch.isfinite(p).all() for p in params)
    assert int(layer.num_batches_tracked) == 6 and not torch.equal(layer.running_var, torch.ones(3))


def test_centered_conv_filters_have_zero_mean_and_ignore_constant_input():
    torch.manual_seed(8)
    conv = CenteredConv2d(3, 4, kernel_size=3, bias=False)
    x = torch.randn(2, 3, 6, 6)
    weight = conv.weight - conv.weight.mean(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(conv(x), F.conv2d(x, weight))
    assert conv(torch.full((1, 3, 5, 5), 7.0)).abs().max() < 1e-4
    conv(x).square().sum().backward()
    # the gradient passes through the centering: per filter it has zero mean
    assert conv.weight.grad.mean(dim=(1, 2, 3)).abs().max() < 1e-5 < conv.weight.grad.abs().max()


# ----------------------------------------------------------------------------------------------
# API shared by both: evaluation, state_dict, dtypes, empty batches, bad input
# ----------------------------------------------------------------------------------------------

LAYERS = [
    pytest.param(lambda: OnlineNorm1d(3, alpha_fwd=0.9), (4, 3, 5), id="OnlineNorm1d"),
    pytest.param(lambda: OnlineNorm2d(3, alpha_fwd=0.9), (4, 3, 3, 3), id="OnlineNorm2d"),
    pytest.param(lambda: OnlineNorm2d(3, layer_scaling=False), (4, 3, 3, 3), id="OnlineNorm2d-no-ls"),
    pytest.param(lambda: MABN2d(3, buffer_size=2, warmup_iters=1, renorm_start=1), (4, 3, 3, 3), id="MABN2d"),
]


def _expected_eval(layer, x):
    shape = (1, -1) + (1,) * (x.dim() - 2)
    if isinstance(layer, MABN2d):
        y = x / torch.sqrt(layer.running_var.view(shape) + layer.eps)
    else:
        y = (x - layer.running_mean.view(shape)) / torch.sqrt(layer.running_var.view(shape) + layer.eps)
    u = layer.weight.view(shape) * y + layer.bias.view(shape)
    if getattr(layer, "layer_scaling", False):
        u = u / torch.sqrt(u.square().mean(dim=tuple(range(1, x.dim())), keepdim=True) + layer.eps)
    return u


def _train(layer, shape, steps, gen):
    for _ in range(steps):
        x = torch.randn(shape, generator=gen, dtype=F64) * 2 + 1
        _step(layer, x, torch.randn(shape, generator=gen, dtype=F64))


@pytest.mark.parametrize("make,shape", LAYERS)
def test_eval_uses_running_statistics_and_changes_no_buffer(make, shape):
    gen = torch.Generator().manual_seed(9)
    layer = make().double()
    _randomize_affine(layer, gen)
    _train(layer, shape, 3, gen)
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    layer.eval()
    x = torch.randn(shape, generator=gen, dtype=F64, requires_grad=True)
    out = layer(x)
    out.backward(torch.randn(shape, generator=gen, dtype=F64))
    torch.testing.assert_close(out.detach(), _expected_eval(layer, x.detach()), **TOL)
    for key, value in layer.state_dict().items():
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize("make,shape", LAYERS)
def test_state_dict_round_trip_continues_training_identically(make, shape):
    gen = torch.Generator().manual_seed(10)
    first = make().double()
    _randomize_affine(first, gen)
    _train(first, shape, 3, gen)
    second = make().double()
    second.load_state_dict(first.state_dict())
    x, upstream = torch.randn(shape, generator=gen, dtype=F64), torch.randn(shape, generator=gen, dtype=F64)
    for got, want in zip(_step(second, x, upstream)[:2], _step(first, x, upstream)[:2]):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    for (key, value), other in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(value, other), key


@pytest.mark.parametrize("make,shape", LAYERS)
def test_float64_input_to_float32_layer_and_double_layer_agree(make, shape):
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(shape, generator=gen, dtype=F64)
    upstream = torch.randn(shape, generator=gen, dtype=F64)
    single, double = make(), make().double()
    assert all(b.dtype == F64 for b in double.buffers() if b.is_floating_point())
    out32, grad32, _ = _step(single, x, upstream)
    out64, grad64, _ = _step(double, x, upstream)
    assert out32.dtype == F64 and grad32.dtype == F64
    torch.testing.assert_close(out32, out64, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad32, grad64, rtol=1e-4, atol=1e-4)
    assert single.running_var.dtype == torch.float32


@pytest.mark.parametrize("make,shape", LAYERS)
def test_bfloat16_input_returns_bfloat16(make, shape):
    layer = make()
    x = torch.randn(shape).to(torch.bfloat16).requires_grad_()
    out = layer(x)
    out.float().sum().backward()
    assert out.dtype == torch.bfloat16 and x.grad.dtype == torch.bfloat16
    assert torch.isfinite(out.float()).all() and torch.isfinite(x.grad.float()).all()


@pytest.mark.parametrize("make,shape", LAYERS)
def test_empty_batch_returns_empty_output_and_changes_nothing(make, shape):
    layer = make()
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    out = layer(torch.randn((0,) + shape[1:]))
    assert out.shape == (0,) + shape[1:]
    for key, value in layer.state_dict().items():
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize("make,shape", LAYERS)
def test_wrong_channel_count_or_rank_raises(make, shape):
    layer = make()
    with pytest.raises(ValueError, match="channels"):
        layer(torch.randn((shape[0], shape[1] + 1) + shape[2:]))
    with pytest.raises(ValueError, match="input"):
        layer(torch.randn(shape + (2,)))
    with pytest.raises(ValueError, match="floating-point"):
        layer(torch.ones(shape, dtype=torch.long))


BAD_ONLINE = [
    ("num_features", 0), ("num_features", -2), ("num_features", 2.5), ("num_features", True),
    ("alpha_fwd", 0.0), ("alpha_fwd", 1.0), ("alpha_fwd", 1.5), ("alpha_fwd", math.nan), ("alpha_fwd", True),
    ("alpha_fwd", "0.9"), ("alpha_bkw", 0.0), ("alpha_bkw", 1.0), ("alpha_bkw", -0.1),
    ("alpha_bkw", math.inf),
    ("eps", 0.0), ("eps", -1e-5), ("eps", math.inf), ("eps", math.nan), ("eps", False),
    ("affine", 1), ("layer_scaling", "yes"),
]


@pytest.mark.parametrize("cls", [OnlineNorm1d, OnlineNorm2d])
@pytest.mark.parametrize("name,value", BAD_ONLINE)
def test_online_norm_bad_argument_raises_naming_it(cls, name, value):
    kwargs = {"num_features": 3, name: value}
    with pytest.raises(ValueError, match=name):
        cls(**kwargs)


BAD_MABN = [
    ("num_features", 0), ("num_features", 3.0), ("eps", 0.0), ("eps", math.nan), ("momentum", 1.0),
    ("momentum", -0.1), ("momentum", math.nan), ("momentum", True), ("buffer_size", 0), ("buffer_size", 1.5),
    ("buffer_size", True), ("warmup_iters", -1), ("warmup_iters", 2.0), ("r_max", 0.5), ("r_max", math.inf),
    ("renorm_start", -1), ("affine", None),
]


@pytest.mark.parametrize("name,value", BAD_MABN)
def test_mabn_bad_argument_raises_naming_it(name, value):
    kwargs = {"num_features": 3, name: value}
    with pytest.raises(ValueError, match=name):
        MABN2d(**kwargs)


def test_extra_repr_names_the_hyperparameters():
    assert "alpha_bkw=0.99" in repr(OnlineNorm2d(4)) and "layer_scaling=True" in repr(OnlineNorm2d(4))
    assert "buffer_size=16" in repr(MABN2d(4)) and "momentum=0.98" in repr(MABN2d(4))


@pytest.mark.parametrize("name", ["FilterResponseNormTlu2d", "EvoNorm2dS0"])
def test_timms_published_layers_run_as_shipped_at_the_pinned_version(name):
    # Chapter 38 uses timm's layers as timm ships them (Singh & Krishnan 2020; Liu et al. 2020), not copies:
    # at batch size 1 they still normalize each sample (no batch statistics), forward and backward.
    import timm
    from timm import layers as timm_layers

    from revisit_bn.models import group_count

    assert timm.__version__ == "1.0.31"
    cls = getattr(timm_layers, name)
    layer = cls(16) if name.startswith("Filter") else cls(16, groups=group_count(16, 8))
    x = torch.randn(1, 16, 7, 7, dtype=torch.float64, requires_grad=True)
    y = layer.double()(x)
    y.square().sum().backward()
    assert y.shape == x.shape and torch.isfinite(y).all() and torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0
    # no batch statistics: a sample's output does not depend on the other samples of its batch
    pair = torch.cat([x.detach(), 3 * torch.randn_like(x.detach())])
    torch.testing.assert_close(layer(pair)[:1], y.detach(), rtol=1e-12, atol=1e-12)
