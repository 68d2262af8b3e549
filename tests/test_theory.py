"""Vectorized theorem checks against autograd and known answers; MCSGD rate helpers."""

import numpy as np
import pytest
import torch
from torch import nn

from revisit_bn import theory as T


def _dense_h(inst, i):
    a = inst.hessian_factor[i]
    return a @ torch.diag(inst.hessian_weights[i]) @ a.T + inst.hessian_shift[i] * torch.eye(a.shape[0], dtype=a.dtype)


@pytest.mark.parametrize("m,convex", [(3, True), (5, False), (16, False)])
def test_closed_forms_match_autograd_gradient_and_hessian(m, convex):
    inst = T.sample_instances(4, m, seed=(1, m), convex=convex)
    v = T.bn_gradient(inst.y, inst.g, inst.gamma, inst.eps)
    quad = T.bn_hessian_quadratic(inst.y, inst.g, inst.hvp, inst.gamma, v, inst.eps)
    for i in range(4):
        gam, eps, H, g = inst.gamma[i], inst.eps[i], _dense_h(inst, i), inst.g[i]

        def z_of(y):
            c = y - y.mean()
            return gam * c / torch.sqrt(c.square().mean() + eps)

        z0 = z_of(inst.y[i])

        def loss(y):
            d = z_of(y) - z0
            return g @ d + 0.5 * d @ H @ d

        torch.testing.assert_close(torch.func.grad(loss)(inst.y[i]), v[i], rtol=1e-8, atol=1e-10)
        hess = torch.func.hessian(loss)(inst.y[i])
        torch.testing.assert_close(v[i] @ hess @ v[i], quad[i], rtol=1e-7, atol=1e-9)


def test_bn_gradient_matches_torch_batchnorm_backward():
    y = torch.randn(1, 8, dtype=torch.float64) * 3 + 1
    g = torch.randn(1, 8, dtype=torch.float64)
    bn = nn.BatchNorm1d(1, eps=1e-3).double()
    with torch.no_grad():
        bn.weight.fill_(1.7)
    yt = y.T.clone().requires_grad_()
    (bn(yt) * g.T).sum().backward()
    torch.testing.assert_close(T.bn_gradient(y, g, 1.7, 1e-3), yt.grad.T)


def test_hvp_applies_the_low_rank_hessian():
    inst = T.sample_instances(3, 6, seed=2, convex=False)
    u = torch.randn(3, 6, dtype=torch.float64)
    for i in range(3):
        torch.testing.assert_close(inst.hvp(u)[i], _dense_h(inst, i) @ u[i])
        assert torch.linalg.matrix_norm(_dense_h(inst, i), 2) <= inst.hessian_norm_bound()[i] + 1e-9


def test_convex_instances_have_psd_hessians_and_others_do_not():
    convex = T.sample_instances(50, 4, seed=3, convex=True)
    other = T.sample_instances(50, 4, seed=3, convex=False)
    assert all(torch.linalg.eigvalsh(_dense_h(convex, i)).min() >= -1e-12 for i in range(50))
    assert any(torch.linalg.eigvalsh(_dense_h(other, i)).min() < 0 for i in range(50))


def test_violation_counter_flags_a_planted_violation_and_not_rounding():
    lhs = torch.tensor([1.0, 1.0 + 1e-14, 2.0], dtype=torch.float64)
    rhs = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)
    assert T.violations(lhs, rhs, scale=torch.ones(3, dtype=torch.float64)).tolist() == [False, False, True]


def test_check_bounds_counts_known_outcomes():
    frame = T.check_bounds(batch_sizes=(4, 32), per_size=400, chunk=200, progress=False)
    counts = frame.groupby(["statement", "form"]).violated.sum()
    assert counts[("Theorem 4.1", "1/m (appendix proof)")] == 0  # a proved identity/inequality
    assert counts[("Theorem 4.1", "1/sqrt(m) (printed in some copies)")] > 0  # the misprint fails
    exact = frame[(frame.statement == "Theorem 4.2") & (frame.form == "general") & frame.eps_zero]
    assert len(exact) > 0 and not exact.violated.any()  # an identity at eps = 0


def test_real_layer_sides_agree_for_theorem_4_1():
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(3).double()
    conv = nn.Conv2d(3, 2, 3).double()
    head = lambda z: torch.relu(conv(z)).square().mean()
    y = torch.randn(4, 3, 5, 5, dtype=torch.float64) * 2 + 1
    from revisit_bn.landscape import bn_layer_sides

    rows = bn_layer_sides(bn, head, y, channels=[0, 2])
    for row in rows:
        assert row["m"] == 100
        assert row["thm41_lhs"] <= row["thm41_rhs"] * (1 + 1e-9)
        assert row["thm41_lhs"] == pytest.approx(row["thm41_rhs"], rel=1e-3)  # eps=1e-5 is small here
        assert row["thm42_lhs"] == pytest.approx(row["thm42_rhs"], rel=1e-3, abs=1e-9)


def test_power_law_fit_recovers_a_known_exponent():
    steps = np.geomspace(1, 1e4, 40)
    assert T.fit_power_law(steps, 3.0 * steps**-0.75) == pytest.approx(0.75)
    with pytest.raises(ValueError):
        T.fit_power_law([1, 2], [1, 0.5])


def test_exact_fn_state_matches_full_batch_statistics():
    from revisit_bn.data import synthetic_regression
    from revisit_bn.layers import FullNorm1d
    from revisit_bn.models import FNRegressor
    from revisit_bn.train import exact_fn_state

    x, t = synthetic_regression(n=64, d=3, seed=1)
    model = FNRegressor(3, 4, lambda c: FullNorm1d(c)).double()
    stats, grad_norm = exact_fn_state(model, x, t)
    h = model.l1(x)
    torch.testing.assert_close(stats[0][0], h.mean(0).detach())
    assert grad_norm > 0


def test_check_bounds_centres_y_so_a_huge_mean_over_a_tiny_spread_is_no_violation():
    # the paper profile's draw at m = 2, non-convex, chunk starting at 55,000: its instance 4,723 has y = [24.02015,
    # 24.02008] (spread 6.6e-5) and eps = 0; uncentred, cancellation made Theorem 4.2's exact identity (both sides 0) a
    # violation. Centred, no instance of the chunk violates the general form at eps = 0.
    inst = T.sample_instances(5_000, 2, seed=(0, 2, 0, 55_000), convex=False)
    assert abs(float(inst.y[4723].mean())) > 1e5 * float((inst.y[4723, 0] - inst.y[4723, 1]).abs()) and inst.eps[4723] == 0
    frame = T.check_bounds(batch_sizes=(2,), per_size=60_000, chunk=5_000, progress=False)
    exact = frame[(frame.statement == "Theorem 4.2") & (frame.form == "general") & frame.eps_zero]
    assert len(exact) > 40_000 and not exact.violated.any()


def test_conditional_instances_meet_every_hypothesis_of_theorem_4_2s_conditional_form():
    inst = T.conditional_instances(200, 5, seed=3)
    v = T.bn_gradient(inst.y, inst.g, inst.gamma)
    y_hat, _ = T.bn_normalize(inst.y)
    assert (inst.eps == 0).all() and ((inst.g * y_hat).sum(-1) >= 0).all()
    for i in (0, 7, 199):  # H is PSD and maps g and v to rho g and rho v
        h = _dense_h(inst, i)
        assert torch.linalg.eigvalsh(h).min() >= -1e-12
        for u in (inst.g[i], v[i]):
            assert torch.allclose(h @ u, inst.hessian_shift[i] * u, rtol=1e-10, atol=1e-12 * u.norm())
    with pytest.raises(ValueError, match="m >= 3"):
        T.conditional_instances(10, 2, seed=0)


def test_conditional_form_fails_as_printed_only_when_gamma_exceeds_sigma_and_holds_as_corrected():
    table = T.check_conditional_form(batch_sizes=(3, 8), per_size=2_000, seed=1)
    assert (table["printed violated"] > 100).all()  # the printed form can fail ...
    assert (table["printed violated"] <= table["gamma > sigma"]).all()
    assert (table["printed violated, gamma <= sigma"] == 0).all()  # ... but never with gamma <= sigma
    assert (table["corrected violated"] == 0).all() and (table["general violated"] == 0).all()
    assert (table["hypothesis gap"] < 1e-10).all()
    with pytest.raises(ValueError, match="batch size >= 3"):
        T.check_conditional_form(batch_sizes=(2, 4), per_size=10)
    inst = T.conditional_instances(3, 4, seed=0)
    with pytest.raises(ValueError, match="form must be"):
        T.theorem_4_2_rhs(inst.y, inst.g, inst.hvp, inst.gamma, inst.g, form="other")
