"""FullNorm's gradient estimators (``backward=``) and the defects found by using the layer as a user would.

Each estimator is checked against a formula written out here with plain autograd or tensors, in
float64: the MCSGD and exact estimators equal BN at momentum 1; the exact estimator equals
autograd through the moving-average forward at any momentum; the decoupled estimator uses the
terms of previous batches only; the constant estimator passes no gradient through the statistics.
"""

import pytest
import torch
from torch import nn

from revisit_bn.layers import BACKWARDS, BatchRenorm2d, FullNorm1d, FullNorm2d, PolynomialMomentum

SHAPES = [(FullNorm1d, nn.BatchNorm1d, (8, 3)), (FullNorm1d, nn.BatchNorm1d, (6, 3, 5)), (FullNorm2d, nn.BatchNorm2d, (4, 3, 5, 6))]


def _dims(x):
    return (0,) + tuple(range(2, x.dim()))


def _view(t, x):
    return t.view((1, -1) + (1,) * (x.dim() - 2))


def _layer(cls, c, gen, **kw):
    layer = cls(c, **kw).double()
    with torch.no_grad():
        layer.weight.copy_(torch.rand(c, generator=gen, dtype=torch.float64) + 0.5)
        layer.bias.copy_(torch.randn(c, generator=gen, dtype=torch.float64))
        layer.running_mean.copy_(torch.randn(c, generator=gen, dtype=torch.float64))
        layer.running_var.copy_(torch.rand(c, generator=gen, dtype=torch.float64) + 0.5)
    return layer


def _grads(layer, x, upstream):
    xi = x.clone().requires_grad_()
    layer.zero_grad()
    (layer(xi) * upstream).sum().backward()
    return xi.grad, layer.weight.grad.clone(), layer.bias.grad.clone()


def _moving_average_reference(layer, x, rate):
    """The training forward as differentiable tensor code: estimates updated from the batch at ``rate``."""
    dims = _dims(x)
    q_prev = layer.running_var + layer.running_mean.square()
    mean = (1 - rate) * layer.running_mean + rate * x.mean(dims)
    q = (1 - rate) * q_prev + rate * (x * x).mean(dims)
    x_hat = (x - _view(mean, x)) / torch.sqrt(_view(q - mean.square(), x) + layer.eps)
    return _view(layer.weight, x) * x_hat + _view(layer.bias, x)


@pytest.mark.parametrize("backward", ["mcsgd", "exact"])
@pytest.mark.parametrize("fn_cls,bn_cls,shape", SHAPES)
def test_mcsgd_and_exact_equal_batchnorm_forward_and_backward_at_momentum_one(backward, fn_cls, bn_cls, shape):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen, dtype=torch.float64) * 2 + 1
    upstream = torch.randn(shape, generator=gen, dtype=torch.float64)
    fn = _layer(fn_cls, shape[1], gen, momentum=1.0, backward=backward)
    bn = bn_cls(shape[1]).double()
    bn.load_state_dict({"weight": fn.weight, "bias": fn.bias}, strict=False)
    torch.testing.assert_close(fn(x), bn(x))
    for got, want in zip(_grads(fn, x, upstream), _grads(bn, x, upstream)):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("rate", [0.3, 0.05])
@pytest.mark.parametrize("fn_cls,bn_cls,shape", SHAPES)
def test_exact_estimator_is_autograd_through_the_moving_average_forward(rate, fn_cls, bn_cls, shape):
    gen = torch.Generator().manual_seed(1)
    fn = _layer(fn_cls, shape[1], gen, momentum=rate, backward="exact")
    x = torch.randn(shape, generator=gen, dtype=torch.float64) * 2 + 1
    upstream = torch.randn(shape, generator=gen, dtype=torch.float64)
    ref = _layer(fn_cls, shape[1], torch.Generator().manual_seed(1), momentum=rate)
    xi = x.clone().requires_grad_()
    (_moving_average_reference(ref, xi, rate) * upstream).sum().backward()
    got = _grads(fn, x, upstream)
    torch.testing.assert_close(got[0], xi.grad)
    torch.testing.assert_close(got[1], ref.weight.grad)
    torch.testing.assert_close(got[2], ref.bias.grad)


@pytest.mark.parametrize("fn_cls,bn_cls,shape", SHAPES)
def test_every_estimator_has_the_same_forward_and_parameter_gradients(fn_cls, bn_cls, shape):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(shape, generator=gen, dtype=torch.float64) * 2 + 1
    upstream = torch.randn(shape, generator=gen, dtype=torch.float64)
    outs, grads = [], []
    for backward in BACKWARDS:
        layer = _layer(fn_cls, shape[1], torch.Generator().manual_seed(3), momentum=0.2, backward=backward)
        outs.append(layer(x))
        grads.append(_grads(_layer(fn_cls, shape[1], torch.Generator().manual_seed(3), momentum=0.2, backward=backward),
                            x, upstream))
    for out, g in zip(outs[1:], grads[1:]):
        torch.testing.assert_close(out, outs[0])
        torch.testing.assert_close(g[1], grads[0][1])
        torch.testing.assert_close(g[2], grads[0][2])


@pytest.mark.parametrize("fn_cls,bn_cls,shape", SHAPES)
def test_decoupled_estimator_uses_previous_batches_terms_then_folds_in_the_current_one(fn_cls, bn_cls, shape):
    gen = torch.Generator().manual_seed(4)
    rate = 0.25
    layer = _layer(fn_cls, shape[1], gen, momentum=rate, backward="decoupled")
    term_g = torch.randn(shape[1], generator=gen, dtype=torch.float64)
    term_gx = torch.randn(shape[1], generator=gen, dtype=torch.float64)
    layer.running_grad_mean.copy_(term_g)
    layer.running_grad_xhat_mean.copy_(term_gx)
    x = torch.randn(shape, generator=gen, dtype=torch.float64) * 2 + 1
    upstream = torch.randn(shape, generator=gen, dtype=torch.float64)
    grad_x, _, _ = _grads(layer, x, upstream)
    invstd = torch.rsqrt(layer.running_var + layer.eps)
    x_hat = (x - _view(layer.running_mean, x)) * _view(invstd, x)
    g_hat = upstream * _view(layer.weight, x)
    expected = _view(invstd, x) * (g_hat - _view(term_g, x) - x_hat * _view(term_gx, x))
    torch.testing.assert_close(grad_x, expected.detach())
    # after use, the running terms move towards this batch's at the estimate rate
    dims = _dims(x)
    torch.testing.assert_close(layer.running_grad_mean, (1 - rate) * term_g + rate * g_hat.mean(dims).detach())
    torch.testing.assert_close(layer.running_grad_xhat_mean, (1 - rate) * term_gx + rate * (g_hat * x_hat).mean(dims).detach())


@pytest.mark.parametrize("backward,independent", [("mcsgd", False), ("exact", False), ("decoupled", True), ("constant", True)])
def test_only_decoupled_and_constant_make_a_sample_gradient_independent_of_the_batch(backward, independent):
    # d loss / d x_0 must not depend on the upstream gradient of sample 1 when the statistics'
    # terms do not come from the current batch (the independence compositional SGD needs).
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    upstream = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    changed = upstream.clone()
    changed[1] += 3.0
    first = [_grads(_layer(FullNorm1d, 3, torch.Generator().manual_seed(6), momentum=0.5, backward=backward), x, u)[0][0]
             for u in (upstream, changed)]
    assert torch.allclose(first[0], first[1]) == independent


def test_constant_estimator_is_the_direct_path_only():
    gen = torch.Generator().manual_seed(7)
    layer = _layer(FullNorm2d, 3, gen, momentum=0.1, backward="constant")
    x = torch.randn(4, 3, 2, 2, generator=gen, dtype=torch.float64)
    upstream = torch.randn(4, 3, 2, 2, generator=gen, dtype=torch.float64)
    grad_x, _, _ = _grads(layer, x, upstream)
    scale = layer.weight / torch.sqrt(layer.running_var + layer.eps)
    torch.testing.assert_close(grad_x, upstream * scale.view(1, -1, 1, 1).detach())


def test_mcsgd_at_batch_size_one_cancels_the_direct_path_and_decoupled_keeps_it():
    # One value per channel: mean_B g = g and mean_B(g x_hat) = g x_hat, so the MCSGD input
    # gradient is -gamma * g * x_hat^2 / s (documented property, the reason for chapter 32's estimators).
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(1, 4, generator=gen, dtype=torch.float64) * 3
    upstream = torch.randn(1, 4, generator=gen, dtype=torch.float64)
    mcsgd = _layer(FullNorm1d, 4, torch.Generator().manual_seed(9), momentum=0.1)
    grad_x, _, _ = _grads(mcsgd, x, upstream)
    invstd = torch.rsqrt(mcsgd.running_var + mcsgd.eps)
    x_hat = (x - mcsgd.running_mean) * invstd
    torch.testing.assert_close(grad_x, (-mcsgd.weight * upstream * x_hat.square() * invstd).detach())
    decoupled = _layer(FullNorm1d, 4, torch.Generator().manual_seed(9), momentum=0.1, backward="decoupled")
    grad_x, _, _ = _grads(decoupled, x, upstream)  # running terms start at 0: the direct path alone
    torch.testing.assert_close(grad_x, (decoupled.weight * upstream * invstd).detach())


@pytest.mark.parametrize("backward", BACKWARDS)
def test_affine_free_layer_followed_by_inplace_relu_backpropagates(backward):
    layer = FullNorm2d(3, affine=False, momentum=0.1, backward=backward)
    x = torch.randn(4, 3, 5, 5, requires_grad=True)
    nn.ReLU(inplace=True)(layer(x)).sum().backward()
    assert torch.isfinite(x.grad).all()
    brn = BatchRenorm2d(3, affine=False, warmup_steps=0, r_ramp_end=0, d_ramp_end=0)
    x = torch.randn(4, 3, 5, 5, requires_grad=True)
    nn.ReLU(inplace=True)(brn(x)).sum().backward()
    assert torch.isfinite(x.grad).all()


def _stateful_layers():
    return [FullNorm2d(3, momentum=0.1, backward=b) for b in BACKWARDS] + [
        BatchRenorm2d(3, warmup_steps=0, r_ramp_end=0, d_ramp_end=0)]


@pytest.mark.parametrize("layer", _stateful_layers(), ids=lambda l: repr(l))
def test_empty_batch_changes_nothing_and_later_outputs_stay_finite(layer):
    layer(torch.randn(4, 3, 5, 5) + 2)
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    empty = torch.randn(0, 3, 5, 5, requires_grad=True)
    out = layer(empty)
    assert out.shape == (0, 3, 5, 5)
    out.sum().backward()
    for name, value in layer.state_dict().items():
        torch.testing.assert_close(value, before[name])
    assert torch.isfinite(layer(torch.randn(4, 3, 5, 5))).all()
    assert torch.isfinite(layer.eval()(torch.randn(4, 3, 5, 5))).all()


@pytest.mark.parametrize("layer", _stateful_layers(), ids=lambda l: repr(l))
def test_a_nan_in_a_batch_does_not_poison_the_estimates(layer):
    layer(torch.randn(4, 3, 5, 5) + 2)
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    bad = torch.randn(4, 3, 5, 5)
    bad[0, 1, 2, 2] = float("nan")
    layer(bad)
    assert torch.isfinite(layer.running_mean).all() and torch.isfinite(layer.running_var).all()
    torch.testing.assert_close(layer.running_mean[1], before["running_mean"][1])  # the NaN's channel kept its estimate
    assert not torch.equal(layer.running_mean[0], before["running_mean"][0])  # the others moved
    assert torch.isfinite(layer(torch.randn(4, 3, 5, 5))).all()
    assert torch.isfinite(layer.eval()(torch.randn(4, 3, 5, 5))).all()


def test_variance_estimate_does_not_cancel_in_float32_when_the_mean_is_large():
    # Large-variance data have means near 300: q - m^2 in float32 loses a variance of 1e-3 entirely.
    gen = torch.Generator().manual_seed(10)
    batches = [300.0 + 0.03 * torch.randn(32, 2, generator=gen, dtype=torch.float64) + 0.01 * k for k in range(20)]
    single, double = FullNorm1d(2, momentum=None), FullNorm1d(2, momentum=None).double()
    for batch in batches:
        single(batch.float())
        double(batch)
    torch.testing.assert_close(single.running_var.double(), double.running_var, rtol=2e-3, atol=0)
    for rate in (0.1, 0.5):
        single, double = FullNorm1d(2, momentum=rate), FullNorm1d(2, momentum=rate).double()
        for layer in (single, double):
            layer.running_mean.fill_(300.0)
            layer.running_var.fill_(1e-3)
        for batch in batches:
            single(batch.float())
            double(batch)
        torch.testing.assert_close(single.running_var.double(), double.running_var, rtol=2e-3, atol=0)


@pytest.mark.parametrize("momentum", [0.1, None, PolynomialMomentum(0.5, 0.01)])
def test_training_step_reads_nothing_back_to_the_host(monkeypatch, momentum):
    # .item() in forward is a host-device sync per layer on a GPU and a graph break under torch.compile.
    layers = [FullNorm2d(3, momentum=momentum, backward=b) for b in BACKWARDS] + [BatchRenorm2d(3)]
    monkeypatch.setattr(torch.Tensor, "item", lambda self: (_ for _ in ()).throw(AssertionError(".item() called")))
    for layer in layers:
        x = torch.randn(4, 3, 5, 5, requires_grad=True)
        layer(x).square().sum().backward()


def test_polynomial_momentum_tensor_rate_equals_the_float_rate():
    schedule = PolynomialMomentum(power=0.7, minimum=0.02)
    for k in (1, 2, 5, 100, 10_000):
        assert schedule.rate_tensor(torch.tensor(k), torch.float64).item() == pytest.approx(schedule(k))


@pytest.mark.parametrize("bad", ["mcsg", "MCSGD", None, 1])
def test_unknown_backward_raises_value_error_naming_the_choices(bad):
    with pytest.raises(ValueError, match="backward must be one of"):
        FullNorm2d(3, backward=bad)


def test_decoupled_terms_are_buffers_saved_and_reset():
    layer = FullNorm2d(3, backward="decoupled")
    x = torch.randn(4, 3, 2, 2, requires_grad=True)
    layer(x).square().sum().backward()
    state = layer.state_dict()
    assert state["running_grad_mean"].abs().sum() > 0
    clone = FullNorm2d(3, backward="decoupled")
    clone.load_state_dict(state)
    torch.testing.assert_close(clone.running_grad_xhat_mean, layer.running_grad_xhat_mean)
    layer.reset_running_stats()
    assert layer.running_grad_mean.abs().sum() == 0


# ----------------------------------------------------------------------------------------------
# The gradient-bias chapter's machinery (revisit_bn.gradient_bias)
# ----------------------------------------------------------------------------------------------

from revisit_bn import gradient_bias, results  # noqa: E402


def test_closed_form_gradients_equal_the_layer_and_the_bias_pattern_holds_exactly():
    # every batch enumerated (small sizes): no Monte Carlo noise, so the checks are exact
    table = gradient_bias.measure_all([0], [0.001], [1, 2], draws=10, max_exact=5000, per_label=6)
    assert table.exact.all() and table.layer_check.max() < 1e-12
    bias = table.set_index(["kind", "size", "estimator"]).relative_bias
    assert (bias.xs("decoupled", level="estimator") < 0.01).all()  # independent terms: unbiased up to O(alpha)
    assert (bias.xs("mcsgd", level="estimator") > 0.1).all()  # same-batch terms: biased
    assert bias[("random", 2, "mcsgd")] < bias[("random", 1, "mcsgd")]  # and less so for larger random batches


def test_gradient_bias_rejects_bad_input():
    with pytest.raises(ValueError, match="momentum"):
        gradient_bias.BiasProblem(momentum=0.0)
    with pytest.raises(ValueError, match="size"):
        gradient_bias.batches(gradient_bias.BiasProblem(per_label=4), "single_label", 5, torch.arange(3).repeat_interleave(4))
    with pytest.raises(ValueError, match="estimators"):
        gradient_bias.measure(gradient_bias.BiasProblem(), [1], estimators=("sgd",))


# Chapter 15's measurement as a stored run (gradient_bias.GradientBiasConfig)

SMALL_BIAS = gradient_bias.GradientBiasConfig(seed=1, momentum=0.001, sizes=(1, 2, 4, 6), draws=300, max_exact=400,
                                              per_label=6)


@pytest.mark.parametrize("changes,name", [(dict(sizes=(1, 7)), "sizes"), (dict(sizes=()), "sizes"),
                                          (dict(sizes=(0,)), "sizes"), (dict(momentum=0.0), "momentum"),
                                          (dict(momentum="0.1"), "momentum"), (dict(draws=0), "draws"),
                                          (dict(max_exact=-1), "max_exact"), (dict(seed=-1), "seed"),
                                          (dict(experiment="a/b"), "experiment")])
def test_a_bad_bias_field_is_named_before_anything_is_computed(changes, name):
    with pytest.raises(ValueError, match=name):
        SMALL_BIAS.replace(**changes)


def test_the_stored_bias_table_is_what_one_measurement_of_every_size_gives():
    import pandas as pd

    out = SMALL_BIAS.compute()
    stored = pd.DataFrame(out["tables"]["bias"])
    direct = gradient_bias.measure_all([1], [0.001], [1, 2, 4, 6], draws=300, max_exact=400, per_label=6)
    # both enumerated and drawn settings (the draws are seeded per kind and size, not by the order of the calls)
    assert stored.exact.any() and not stored.exact.all()
    assert stored[direct.columns].equals(direct)
    # a step is one (kind, size): the sum of the estimators' relative biases there
    assert out["steps"]["train_loss"] == [stored[(stored.kind == k) & (stored["size"] == s)].relative_bias.sum()
                                          for k, s in SMALL_BIAS.steps()]
    assert SMALL_BIAS.steps()[:2] == [("random", 1), ("random", 2)]


def test_a_bias_run_replays_its_first_steps_and_a_changed_value_is_caught(monkeypatch):
    from revisit_bn import store

    payload = store.compute(SMALL_BIAS)
    assert payload["replay_steps"] == 2 and len(payload["steps"]["train_loss"]) == 8
    assert store.replay(payload)[2]
    changed = {**payload, "steps": {"train_loss": [payload["steps"]["train_loss"][0] * 1.001]
                                    + payload["steps"]["train_loss"][1:]}}
    assert not store.replay(changed)[2]
    assert store.config_from_params(payload["params"]) == SMALL_BIAS
    before, code = store.store_path(SMALL_BIAS), results.code_of(SMALL_BIAS.key_params())
    monkeypatch.setattr(gradient_bias, "bias_fingerprint", lambda: "0" * 12)  # its own code is in the code it records
    assert results.code_of(SMALL_BIAS.key_params()) != code and code.endswith(payload["params"]["bias_code"])
    assert store.store_path(SMALL_BIAS) == before  # and, as every run's, it renames nothing


def _bias_rows(labels, hidden, decoupled=0.001):
    """A chapter-15 table of one problem: MCSGD biased, the decoupled estimator not (``decoupled``: its bias)."""
    import pandas as pd

    rows = [dict(estimator=e, kind=k, size=s, momentum=a, seed=seed, noise_floor=0.0, labels=labels, features=4,
                 hidden=hidden, cosine=0.5 if e == "mcsgd" else 1.0,
                 relative_bias={"mcsgd": 1.0 / s if k == "random" else 1.4, "decoupled": decoupled}.get(e, 0.5))
            for e in gradient_bias.ESTIMATORS for k in gradient_bias.BATCH_KINDS for s in (1, 4)
            for a in (0.1, 0.001) for seed in (0, 1)]
    return pd.DataFrame(rows)


def test_remark1_counts_every_problem_and_names_each():
    import pandas as pd

    from revisit_bn import claims

    both = pd.concat([_bias_rows(3, 3), _bias_rows(10, 12)], ignore_index=True)
    assert [name for name, _ in claims.problems_of(both)] == ["3 labels in 4 dimensions, width 3", "10 labels in 4 dimensions, width 12"]
    remark, decoupled = claims.check_remark1(both, "scale")
    assert remark.category == decoupled.category == "holds as printed"
    assert "2 problems" in remark.measured and "3 labels in 4 dimensions, width 3: random batches" in remark.measured
    assert "10 labels in 4 dimensions, width 12: random batches, 1.000 at size 1 -> 0.250 at size 4" in remark.measured
    assert "at most 0.0010 (3 labels in 4 dimensions, width 3) and 0.0010 (10 labels in 4 dimensions, width 12)" in decoupled.measured
    # the wider problem alone biased for the decoupled estimator: the claim is false as printed
    biased = pd.concat([_bias_rows(3, 3), _bias_rows(10, 12, decoupled=0.2)], ignore_index=True)
    assert claims.check_remark1(biased, "scale")[1].category == "false as printed"
    # one problem (no problem columns, as measure() gives): the text names none
    single = claims.check_remark1(_bias_rows(3, 3).drop(columns=["labels", "features", "hidden"]), "scale")[0]
    assert "problem" not in single.measured and "random batches: 1.000 at size 1" in single.measured


def test_a_wider_problem_is_a_run_of_its_own_with_its_size_in_the_table():
    import pandas as pd

    wide = SMALL_BIAS.replace(labels=4, features=3, hidden=5, sizes=(1, 2))
    assert store_key(wide) != store_key(SMALL_BIAS.replace(sizes=(1, 2)))
    table = pd.DataFrame(wide.compute()["tables"]["bias"])
    assert set(zip(table.labels, table.features, table.hidden)) == {(4, 3, 5)}
    with pytest.raises(ValueError, match="hidden"):
        SMALL_BIAS.replace(hidden=0)


def store_key(config):
    from revisit_bn import store

    return store.store_path(config)
