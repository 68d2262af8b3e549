"""Landscape and internal-covariate-shift probes against problems with known answers."""

import copy

import pytest
import torch
from torch import nn

from revisit_bn.landscape import (
    DEFAULT_ETAS,
    TrainingProbe,
    internal_covariate_shift,
    landscape_probe,
    norm_positions,
    weight_layers,
)
from revisit_bn.models import DeepLinearNet, norm_layer, vgg


class Quadratic(nn.Module):
    """f(w) = 1/2 w^T A w with A = diag(eigenvalues): smoothness constant max(eigenvalues)."""

    def __init__(self, eigenvalues, w0):
        super().__init__()
        self.register_buffer("eigenvalues", torch.tensor(eigenvalues, dtype=torch.float64))
        self.w = nn.Parameter(torch.tensor(w0, dtype=torch.float64))

    def forward(self):
        return 0.5 * (self.eigenvalues * self.w**2).sum()


def test_effective_beta_of_a_quadratic_along_its_top_eigenvector_is_the_top_eigenvalue():
    lam = [0.5, 2.0, 3.0]
    model = Quadratic(lam, [0.0, 0.0, 1.5])  # an eigenvector of the largest eigenvalue
    probe = landscape_probe(model, model)
    assert probe.effective_beta_smoothness == pytest.approx(3.0, rel=1e-12)
    # Exact loss and gradient change along w - eta * A w = (1 - 3 eta) w.
    for eta, loss, change in zip(DEFAULT_ETAS, probe.losses, probe.grad_changes):
        assert loss == pytest.approx(0.5 * 3.0 * (1 - 3.0 * eta) ** 2 * 1.5**2, rel=1e-12)
        assert change == pytest.approx(eta * 3.0**2 * 1.5, rel=1e-12)
    assert probe.loss == pytest.approx(0.5 * 3.0 * 1.5**2) and probe.grad_norm == pytest.approx(4.5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_effective_beta_of_a_quadratic_lies_between_its_extreme_eigenvalues(seed):
    gen = torch.Generator().manual_seed(seed)
    lam = (torch.rand(6, generator=gen) * 5 + 0.1).tolist()
    model = Quadratic(lam, torch.randn(6, generator=gen).tolist())
    beta = landscape_probe(model, model).effective_beta_smoothness
    # ||A^2 w|| / ||A w|| is a Rayleigh-type ratio: between the smallest and largest eigenvalue.
    assert min(lam) - 1e-12 <= beta <= max(lam) + 1e-12
    lo, hi = landscape_probe(model, model, etas=[0.1]).loss_range
    assert lo == hi


def test_probes_leave_parameters_buffers_and_random_state_unchanged():
    torch.manual_seed(0)
    model = vgg("vgg11", norm_layer("noisy_bn"), width=0.125)
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    before = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()
    closure = lambda: nn.functional.cross_entropy(model(x), y)
    landscape_probe(model, closure)
    internal_covariate_shift(model, closure, before)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # running stats untouched too
    assert torch.equal(torch.get_rng_state(), rng)


def test_one_layer_network_has_no_internal_covariate_shift():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 3))
    x, y = torch.randn(20, 5), torch.randint(0, 3, (20,))
    closure = lambda: nn.functional.cross_entropy(model(x), y)
    before = copy.deepcopy(model.state_dict())
    nn.functional.cross_entropy(model(x), y).backward()
    torch.optim.SGD(model.parameters(), lr=0.5).step()
    shift = internal_covariate_shift(model, closure, before)
    assert list(shift) == ["0.weight"]
    l2, cos = shift["0.weight"]
    assert l2 == 0.0 and cos == pytest.approx(1.0)


@pytest.mark.parametrize("norm", ["none", "bn", "fn", "noisy_bn"])
def test_a_zero_update_gives_zero_shift_in_every_layer(norm):
    # Needs the same buffers and the same noise for G and G': a check of the state restoring.
    torch.manual_seed(0)
    model = vgg("vgg11", norm_layer(norm), width=0.125)
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    closure = lambda: nn.functional.cross_entropy(model(x), y)
    shift = internal_covariate_shift(model, closure, copy.deepcopy(model.state_dict()))
    assert len(shift) == 9  # 8 convolutions and the classifier
    for l2, cos in shift.values():
        assert l2 == 0.0 and cos == pytest.approx(1.0)


def _two_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    return model, x, y, (lambda: nn.functional.cross_entropy(model(x), y))


def test_shift_of_a_layer_comes_only_from_the_layers_before_it():
    model, x, y, closure = _two_layer()
    before = copy.deepcopy(model.state_dict())
    with torch.no_grad():  # update only the last layer: nothing precedes a changed layer
        model[2].weight.add_(0.3)
    shift = internal_covariate_shift(model, closure, before)
    assert shift["0.weight"][0] == 0.0 and shift["2.weight"][0] == 0.0
    model.load_state_dict(before)
    with torch.no_grad():  # update only the first layer: the second sees a shift, the first none
        model[0].weight.add_(0.3)
    shift = internal_covariate_shift(model, closure, before)
    assert shift["0.weight"][0] == 0.0 and shift["2.weight"][0] > 1e-3


def test_shift_matches_gradients_computed_by_hand():
    model, x, y, closure = _two_layer()
    before = copy.deepcopy(model.state_dict())
    nn.functional.cross_entropy(model(x), y).backward()
    g = model[2].weight.grad.clone()
    torch.optim.SGD(model.parameters(), lr=1.0).step()
    # G': first layer (weight and bias) after the update, second layer before it.
    mixed = copy.deepcopy(model)
    mixed.load_state_dict({**before, "0.weight": model[0].weight.detach(), "0.bias": model[0].bias.detach()})
    nn.functional.cross_entropy(mixed(x), y).backward()
    g_shift = mixed[2].weight.grad
    l2, cos = internal_covariate_shift(model, closure, before)["2.weight"]
    assert l2 == pytest.approx((g - g_shift).norm().item(), rel=1e-5)
    assert cos == pytest.approx(nn.functional.cosine_similarity(g.flatten(), g_shift.flatten(), dim=0).item(), rel=1e-5)


def test_deep_linear_network_layers_and_positions():
    model = DeepLinearNet(norm_layer("bn", 1), 32, 10)
    assert len(weight_layers(model)) == 25
    positions = norm_positions(model)
    assert len(positions) == 24
    assert all(isinstance(dict(model.named_modules())[p], nn.BatchNorm1d) for p in positions)
    plain = DeepLinearNet(norm_layer("none", 1), 32, 10)
    assert all(isinstance(dict(plain.named_modules())[p], nn.Identity) for p in norm_positions(plain))


def test_training_probe_records_bn_activations_standardized_at_initialization():
    torch.manual_seed(0)
    model = vgg("vgg11", norm_layer("bn"), width=0.125)
    x, y = torch.randn(32, 3, 32, 32) * 3 + 1, torch.randint(0, 10, (32,))
    probe = TrainingProbe(5, activations=norm_positions(model)[:2])
    probe.before_step(model, x, y, 0)
    probe.after_step(model)  # no update was taken: ICS of a zero update
    rows = list(zip(*probe.rows.values()))
    values = {(q, layer): v for _, q, layer, v in rows}
    for layer in norm_positions(model)[:2]:
        assert values[("act_mean", layer)] == pytest.approx(0.0, abs=1e-5)  # BN output: batch mean 0
        assert values[("act_std", layer)] == pytest.approx(1.0, abs=1e-3)  # and unit variance
        qs = [values[(f"act_q{q}", layer)] for q in ("05", "25", "50", "75", "95")]
        assert qs == sorted(qs)
    assert all(v == 0.0 for (q, _), v in values.items() if q == "ics_l2")
    probe.before_step(model, x, y, 3)  # not a probed step
    assert len(probe.rows["step"]) == len(rows)


@pytest.mark.parametrize("kwargs,match", [
    ({"etas": []}, "etas"), ({"etas": [0.1, -0.2]}, "etas"), ({"every": 0}, "every"),
])
def test_bad_probe_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainingProbe(**{"every": 1, **kwargs})


def test_unknown_layer_or_non_scalar_closure_raises_value_error():
    model, x, y, closure = _two_layer()
    with pytest.raises(ValueError, match="unknown layer"):
        internal_covariate_shift(model, closure, copy.deepcopy(model.state_dict()), layers=["1.weight"])
    with pytest.raises(ValueError, match="scalar"):
        landscape_probe(model, lambda: model(x))
    with pytest.raises(ValueError, match="missing"):
        internal_covariate_shift(model, closure, {})
