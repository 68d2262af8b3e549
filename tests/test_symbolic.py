"""SymPy identities of BN's objective and BN's gradient/Hessian, asserted with simplify(lhs - rhs) == 0."""

import pytest
import sympy as sp

from revisit_bn import symbolic as S


def test_mean_and_variance_of_a_symbolic_batch():
    a, b = sp.symbols("a b", real=True)
    assert S.is_zero(S.mean([a, b]) - (a + b) / 2)
    assert S.is_zero(S.variance([a, b]) - (a - b) ** 2 / 4)
    with pytest.raises(ValueError, match="empty"):
        S.mean([])


def test_normalized_value_is_zero_for_a_batch_of_one():
    x, w = sp.symbols("x w", real=True)
    eps = sp.Symbol("epsilon", positive=True)
    assert S.normalize(lambda s: w * s, [x], eps)(x) == 0


def test_batch_families():
    assert len(S.all_subsets(4, 2)) == 6 and S.full_batch(3) == [(0, 1, 2)]
    assert S.shards([[0, 1], [2, 3]], 2) == [(0, 1), (2, 3)]
    with pytest.raises(ValueError, match="disjoint"):
        S.shards([[0, 1], [1, 2]], 1)
    with pytest.raises(ValueError, match="batch_size"):
        S.all_subsets(3, 4)


def test_fn_objective_equals_common_objective_after_affine_reparameterization():
    # one normalized unit, linear head, squared loss on 3 symbolic samples
    xs = sp.symbols("x1:4", real=True)
    ys = sp.symbols("t1:4", real=True)
    a, c, w = sp.symbols("a c w", positive=True)
    data = list(zip(xs, ys))
    loss = lambda p, t: (p - t) ** 2
    fn_model = lambda batch, x: a * S.normalize(lambda s: w * s, batch)(x) + c
    f10 = S.fn_objective(fn_model, data, loss)
    mu = S.mean(list(xs))
    sd = sp.sqrt(S.variance(list(xs)))
    f8 = S.common_objective(lambda x: (a / sd) * x + (c - a * mu / sd), data, loss)
    assert S.is_zero(f10 - f8)


@pytest.mark.parametrize("m", [2, 3])
def test_bn_backward_projection_equals_the_chain_rule(m):
    unit = S.bn_unit(m)
    assert S.is_zero(S.bn_backward_chain_rule(unit) - S.bn_backward_projection(unit))


@pytest.mark.parametrize("m", [2, 3])
def test_theorem_4_1_is_an_identity_with_one_over_m(m):
    unit = S.bn_unit(m)
    grad = S.bn_backward_projection(unit)
    assert S.is_zero(grad.dot(grad) - S.theorem_4_1_rhs(unit))


def test_theorem_4_1_with_one_over_sqrt_m_has_a_counterexample():
    unit = S.bn_unit(4)
    point = dict(zip(unit.y, [0, 1, 2, 5])) | dict(zip(unit.g, [1, 0, 0, 3])) | {unit.gamma: 1}
    grad = S.bn_backward_projection(unit)
    lhs = sp.nsimplify(grad.dot(grad).subs(point))
    rhs = sp.nsimplify(S.theorem_4_1_rhs(unit, coefficient=1 / sp.sqrt(4)).subs(point))
    assert sp.simplify(lhs - rhs) > 0  # the printed "<=" fails


def test_theorem_4_2_general_form_is_an_identity_at_a_point():
    unit = S.bn_unit(3)
    at = dict(zip(unit.y, [1, sp.Rational(5, 2), -2]))
    lhs = S.bn_hessian_quadratic(unit, at=at)
    rhs = S.theorem_4_2_rhs(unit, "general").subs(at)
    assert S.is_zero(sp.expand(lhs - rhs))


def test_theorem_4_2_corrected_conditional_form_is_met_where_the_printed_one_fails():
    unit = S.bn_unit(3)
    point = (dict(zip(unit.y, [0, 1, 2])) | dict(zip(unit.g, [1, -2, 1])) | {unit.gamma: 2}
             | {unit.H[i, j]: int(i == j) for i in range(3) for j in range(3)})  # H = I, <g, y_hat> = 0
    lhs = S.bn_hessian_quadratic(unit, at=dict(zip(unit.y, [0, 1, 2]))).subs(point)
    value = lambda form: sp.nsimplify(sp.simplify(S.theorem_4_2_rhs(unit, form).subs(point)))  # noqa: E731
    assert sp.simplify(lhs) == value("general") == value("corrected") == 216 and value("conditional") == 36


def test_bad_forms_raise_value_error():
    unit = S.bn_unit(2)
    with pytest.raises(ValueError, match="form"):
        S.theorem_4_2_rhs(unit, "other")
    with pytest.raises(ValueError, match="mean_term"):
        S.theorem_4_1_rhs(unit, mean_term="x")
    with pytest.raises(ValueError, match="m must"):
        S.bn_unit(1)
