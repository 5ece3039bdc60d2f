"""Generalization bounds against hand computations, validity and determinism checks, and model invariance."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from biaslab import probes
from biaslab.probes import bounds

from unchanged import leaves_unchanged


def _kl(q: float, p: float) -> float:
    """The binary kl written out by hand, for 0 < q, p < 1."""
    return q * math.log(q / p) + (1 - q) * math.log((1 - q) / (1 - p))


# ---------------------------------------------------------------- kl inverse


@pytest.mark.parametrize("q, c", [(0.028, 0.01), (0.028, 0.5), (0.3, 0.05), (0.001, 2.0), (0.9, 0.001), (0.5, 1e-6)])
def test_kl_inverse_solves_kl_equals_c(q, c):
    p = bounds.kl_inverse_upper(q, c)
    assert p > q
    assert _kl(q, p) == pytest.approx(c, abs=1e-9)


def test_kl_inverse_of_a_hand_computed_case():
    # c = kl(0.028 || 0.1) = 0.028 ln(0.28) + 0.972 ln(0.972 / 0.9), so kl^-1(0.028, c) = 0.1
    c = 0.028 * math.log(0.028 / 0.1) + 0.972 * math.log(0.972 / 0.9)
    assert c == pytest.approx(0.0391631, abs=1e-6)
    assert bounds.kl_inverse_upper(0.028, c) == pytest.approx(0.1, abs=1e-9)


def test_kl_inverse_edge_cases():
    # q = 0: kl(0 || p) = -ln(1 - p), so the inverse is 1 - exp(-c)
    assert bounds.kl_inverse_upper(0.0, 0.3) == pytest.approx(1 - math.exp(-0.3), abs=1e-12)
    assert bounds.kl_inverse_upper(0.2, 0.0) == pytest.approx(0.2, abs=1e-12)
    assert bounds.kl_inverse_upper(0.2, 1e6) == 1.0
    assert bounds.kl_inverse_upper(1.0, 0.1) == 1.0
    with pytest.raises(ValueError, match="c must be >= 0"):
        bounds.kl_inverse_upper(0.2, -1.0)


def test_kl_bernoulli_conventions():
    assert bounds.kl_bernoulli(0.0, 0.5) == pytest.approx(math.log(2))
    assert bounds.kl_bernoulli(0.3, 0.3) == 0.0
    assert bounds.kl_bernoulli(0.3, 0.0) == math.inf


# ---------------------------------------------------------------- the Bound type


def test_bound_metrics_and_vacuous_flag():
    b = bounds.Bound("x", 1.2, {"kl": 3.0}, "none", chance_error=0.9)
    assert b.vacuous is True and b.above_chance is True
    assert b.as_metrics() == {"x": 1.2, "x_vacuous": 1.0, "x_above_chance": 1.0, "x.kl": 3.0}
    assert bounds.Bound("x", 0.4, chance_error=0.9).vacuous is False
    useless = bounds.Bound("x", 0.95, chance_error=0.9)
    assert useless.vacuous is False and useless.above_chance is True
    assert bounds.Bound("x", 0.4).above_chance is None  # chance unknown
    relative = bounds.Bound("r", 7.0, constant_explicit=False)
    assert relative.vacuous is None and math.isnan(relative.as_metrics()["r_vacuous"])


# ---------------------------------------------------------------- PAC-Bayes


def test_gaussian_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mean = {"a": torch.randn(3, 2, generator=g, dtype=torch.float64), "b": torch.randn(4, generator=g, dtype=torch.float64)}
    log_std = {k: 0.3 * torch.randn(v.shape, generator=g, dtype=torch.float64) - 1 for k, v in mean.items()}
    prior = {k: torch.randn(v.shape, generator=g, dtype=torch.float64) for k, v in mean.items()}
    log_var = torch.tensor(math.log(0.7), dtype=torch.float64)
    got = bounds.gaussian_kl(mean, log_std, prior, log_var).item()
    expected = sum(
        torch.distributions.kl_divergence(torch.distributions.Normal(mean[k], log_std[k].exp()), torch.distributions.Normal(prior[k], math.sqrt(0.7))).sum().item()
        for k in mean
    )
    assert got == pytest.approx(expected, rel=1e-12)


def test_pac_bayes_complexity_by_hand():
    # Dziugaite & Roy's B_RE with lambda = c exp(-j/b): (KL + 2 ln(b ln(c/lambda)) + ln(pi^2 m / (6 delta))) / (m - 1)
    c, b, j, m, delta, kl = 0.1, 100.0, 37, 55000, 0.025, 5000.0
    lam = c * math.exp(-j / b)
    expected = (kl + 2 * math.log(b * math.log(c / lam)) + math.log(math.pi**2 * m / (6 * delta))) / (m - 1)
    assert bounds.pac_bayes_complexity(kl, j, m, delta) == pytest.approx(expected, rel=1e-12)
    maurer = (kl + 2 * math.log(j) + math.log(math.pi**2 / 6) + math.log(2 * math.sqrt(m) / delta)) / m
    assert bounds.pac_bayes_complexity(kl, j, m, delta, "maurer") == pytest.approx(maurer, rel=1e-12)


def _pac_bayes(model, x, y, init, seed=0, **options):
    settings = {"steps": 20, "mc_samples": 30, "batch_size": 16} | options
    return bounds.pac_bayes_bound(model, x, y, init, torch.Generator().manual_seed(seed), **settings)


def test_pac_bayes_is_valid_deterministic_and_assembled_from_its_ingredients(tiny_mlp, batch):
    x, y = batch
    init = {name: p.detach() + 0.1 for name, p in tiny_mlp.named_parameters()}
    first = _pac_bayes(tiny_mlp, x, y, init)
    second = _pac_bayes(tiny_mlp, x, y, init)
    assert first.value == second.value and first.ingredients == second.ingredients
    i = first.ingredients
    assert first.value >= i["mc_error_upper"] >= i["mc_error"]
    assert 0.0 <= i["mc_error_stderr"] < 0.5
    upper = bounds.kl_inverse_upper(i["mc_error"], math.log(2 / 0.01) / 30)
    assert i["mc_error_upper"] == pytest.approx(upper, abs=1e-12)
    j = int(i["prior_grid_index"])
    assert i["prior_variance"] == pytest.approx(0.1 * math.exp(-j / 100))
    assert i["complexity"] == pytest.approx((i["kl"] + 2 * math.log(j) + math.log(math.pi**2 * 32 / (6 * 0.025))) / 31)
    assert first.value == pytest.approx(bounds.kl_inverse_upper(upper, i["complexity"]), abs=1e-12)
    assert first.vacuous is (first.value >= 1.0)
    assert first.chance_error == pytest.approx(2 / 3)  # three classes
    assert "stochastic classifier" in first.assumptions


def test_pac_bayes_rejects_an_incomplete_init(tiny_mlp, batch):
    x, y = batch
    with pytest.raises(ValueError, match="init: no initial value"):
        _pac_bayes(tiny_mlp, x, y, {"layers.0.weight": tiny_mlp.layers[0].weight.detach()})


def _blobs(m: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two Gaussian classes at (+-2, 0) with unit variance: Bayes error Phi(-2) = 0.023."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (m,), generator=g)
    x = torch.randn(m, 2, generator=g, dtype=torch.float64) + torch.stack([4.0 * y - 2.0, 0 * y], 1).double()
    return x, y


def test_pac_bayes_is_nonvacuous_for_a_linear_model_on_easy_data():
    """d = 6 parameters, m = 1000, weights of size ~1.4 (so the prior grid starts at c = 1): the bound is near the error."""
    x, y = _blobs(1000, 0)
    model = torch.nn.Linear(2, 2).double()
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
    init = probes.snapshot(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(50):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    model.zero_grad(set_to_none=True)
    got = _pac_bayes(model, x, y, init, steps=150, mc_samples=1000, batch_size=100, prior_c=1.0)
    assert got.ingredients["mc_error"] < 0.06
    assert got.value < 0.15 and got.vacuous is False  # measured 0.106 at an MC error of 0.023


# ---------------------------------------------------------------- compression


def test_description_length_of_a_hand_made_tensor():
    symbols = torch.tensor([0, 0, 1, 2])  # counts (2, 1, 1), n = 4, L = 3
    code = bounds.description_length(symbols, levels=3, codebook_bits=32, configurations=4)
    assert code["bits_counts"] == pytest.approx(math.log2(15))  # C(4 + 2, 2) compositions
    assert code["bits_symbols"] == pytest.approx(math.log2(12))  # 4! / (2! 1! 1!)
    assert code["bits_codebook"] == 96.0
    assert code["bits_choice"] == pytest.approx(2.0)
    assert code["bits"] == pytest.approx(math.log2(180) + 96 + 2)
    assert code["bits_entropy"] == pytest.approx(-(2 * math.log2(0.5) + 2 * math.log2(0.25)))


def test_quantization_is_exact_on_values_already_on_the_levels():
    values = torch.tensor([-0.5, 0.25, 0.25, 1.0, -0.5, 1.0, 1.0], dtype=torch.float64)
    codebook, symbols = bounds.quantize(values, levels=3, method="kmeans")
    assert codebook.tolist() == [-0.5, 0.25, 1.0]
    assert torch.equal(codebook[symbols], values)
    uniform, _ = bounds.quantize(values, levels=4, method="uniform")
    assert uniform.tolist() == pytest.approx([-0.5, 0.0, 0.5, 1.0])
    with pytest.raises(ValueError, match="method.*kmeans, uniform"):
        bounds.quantize(values, 3, method="lloyd")


def test_occam_bound_formula_by_hand():
    value, complexity = bounds.occam_bound(0.05, bits=1000.0, m=10000, delta=0.05)
    assert complexity == pytest.approx((1000 * math.log(2) + math.log(20)) / 10000)
    assert _kl(0.05, value) == pytest.approx(complexity, abs=1e-9)


def test_compression_bound_is_assembled_from_its_ingredients(tiny_mlp, batch):
    x, y = batch
    got = bounds.compression_bound(tiny_mlp, x, y, levels=4, configurations=2, delta=0.1)
    i = got.ingredients
    n = sum(p.numel() for p in tiny_mlp.parameters())
    assert i["parameters"] == n and i["bits_codebook"] == 128 and i["bits_choice"] == pytest.approx(1.0)
    assert i["bits"] == pytest.approx(i["bits_counts"] + i["bits_symbols"] + 128 + 1.0)
    assert got.value == pytest.approx(bounds.occam_bound(i["train_error_quantized"], i["bits"], 32, 0.1)[0])
    codebook, symbols = bounds.quantize(torch.cat([p.detach().flatten() for p in tiny_mlp.parameters()]), 4)
    quantized = codebook[symbols]
    offset, state = 0, {}
    for name, p in tiny_mlp.named_parameters():
        state[name] = quantized[offset : offset + p.numel()].view_as(p)
        offset += p.numel()
    reference = type(tiny_mlp)(5, 4, 2, 3, "relu", bias=True).double()
    reference.load_state_dict(state)
    assert i["train_error_quantized"] == pytest.approx((reference(x).argmax(1) != y).double().mean().item())


# ---------------------------------------------------------------- spectral and path-norm bounds


def test_spectral_complexity_by_hand(tiny_mlp):
    weights = [l.weight.detach().numpy() for l in tiny_mlp.layers]
    reference = {f"layers.{i}.weight": torch.full_like(l.weight, 0.1) for i, l in enumerate(tiny_mlp.layers)}
    spectral = [np.linalg.norm(w, 2) for w in weights]
    two_one = [np.linalg.norm(w - 0.1, axis=1).sum() for w in weights]  # rows of A = columns of A^T
    expected = np.prod(spectral) * sum((b / s) ** (2 / 3) for b, s in zip(two_one, spectral)) ** 1.5
    got = bounds.spectral_complexity(tiny_mlp, reference)
    assert got["spectral_complexity"] == pytest.approx(expected)
    assert got["spectral_product"] == pytest.approx(np.prod(spectral))


def test_spectral_bound_formula_and_normalized_margins(tiny_mlp, batch):
    x, y = batch
    got = bounds.spectral_bound(tiny_mlp, x, y, margin_quantile=0.9, delta=0.1)
    i = got.ingredients
    margins = probes.margins(tiny_mlp, x, y).numpy()
    gamma = np.quantile(margins, 0.9)
    assert gamma > 0  # the untrained model gets most examples wrong; its top decile of margins is positive
    assert i["gamma"] == pytest.approx(gamma)
    assert i["margin_error"] == pytest.approx((margins <= gamma).mean())
    data_norm = np.linalg.norm(x.numpy())
    r_a = bounds.spectral_complexity(tiny_mlp)["spectral_complexity"]
    expected = (margins <= gamma).mean() + 8 / 32 + 72 * data_norm * math.log(2 * 5) * math.log(32) * r_a / (gamma * 32) + 3 * math.sqrt(math.log(20) / 64)
    assert got.value == pytest.approx(expected)
    assert got.vacuous is True
    scaled = bounds.spectral_normalized_margins(tiny_mlp, x, y).numpy()
    np.testing.assert_allclose(scaled, margins / (r_a * data_norm / 32))
    distribution = bounds.spectral_margin_distribution(tiny_mlp, x, y, quantiles=(0.25, 0.5))
    assert distribution["margin_spectral_q50"] == pytest.approx(np.quantile(scaled, 0.5))
    assert distribution["margin_spectral_negative"] == pytest.approx((scaled <= 0).mean())


def test_a_nonpositive_margin_makes_the_margin_bounds_infinite(tiny_mlp, batch):
    x, y = batch
    assert probes.margins(tiny_mlp, x, y).min() < 0
    assert bounds.spectral_bound(tiny_mlp, x, y, margin_quantile=0.0).value == math.inf
    assert bounds.path_norm_bound(tiny_mlp, x, y, margin_quantile=0.0).value == math.inf


def test_spectral_bound_is_nan_for_a_model_that_is_not_a_linear_chain():
    model = torch.nn.Sequential(torch.nn.Conv1d(1, 2, 3), torch.nn.Flatten(), torch.nn.Linear(6, 2))
    x, y = torch.randn(10, 1, 5), torch.randint(0, 2, (10,))
    got = bounds.spectral_bound(model, x, y)
    assert math.isnan(got.value) and got.vacuous is None and "not a chain" in got.assumptions


def test_path_norm_bound_is_a_relative_measure(tiny_mlp, batch):
    x, y = batch
    got = bounds.path_norm_bound(tiny_mlp, x, y, margin_quantile=0.9)
    i = got.ingredients
    assert i["gamma"] > 0
    assert got.vacuous is None and not got.constant_explicit
    assert i["path_norm"] == pytest.approx(probes.path_norm(tiny_mlp)["path_norm"])
    assert i["input_radius"] == pytest.approx(x.norm(dim=1).max().item())
    assert got.value == pytest.approx(i["margin_error"] + i["path_norm"] * i["input_radius"] / (i["gamma"] * math.sqrt(32)))


# ---------------------------------------------------------------- no probe changes the model


PROBES = {
    "pac_bayes": lambda model, x, y, init: _pac_bayes(model, x, y, init, steps=5, mc_samples=3),
    "compression": lambda model, x, y, init: bounds.compression_bound(model, x, y, levels=4),
    "spectral": lambda model, x, y, init: bounds.spectral_bound(model, x, y, reference=init),
    "path_norm": lambda model, x, y, init: bounds.path_norm_bound(model, x, y),
    "margins": lambda model, x, y, init: bounds.spectral_margin_distribution(model, x, y, reference=init),
}


@pytest.mark.parametrize("probe", sorted(PROBES))
@pytest.mark.parametrize("training", [True, False])
def test_bounds_leave_mode_parameters_and_grads_unchanged(tiny_mlp, batch, probe, training):
    x, y = batch
    init = {name: p.detach().clone() for name, p in tiny_mlp.named_parameters()}
    tiny_mlp.train(training)
    if training:  # with gradients present they must stay as they were; without, none may appear
        torch.nn.functional.cross_entropy(tiny_mlp(x), y).backward()
    with leaves_unchanged(tiny_mlp):
        PROBES[probe](tiny_mlp, x, y, init)


def test_bounds_work_on_a_module_with_convolutions_and_batchnorm_without_touching_its_buffers():
    g = torch.Generator().manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Conv1d(1, 3, 3), torch.nn.BatchNorm1d(3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(3 * 6, 2))
    x, y = torch.randn(40, 1, 8, generator=g), torch.randint(0, 2, (40,), generator=g)
    model.train()
    model(x)  # running statistics that a train-mode forward would keep changing
    init = probes.snapshot(model)
    with leaves_unchanged(model):
        pac = _pac_bayes(model, x, y, init, steps=3, mc_samples=4)
        compressed = bounds.compression_bound(model, x, y, levels=8)
    assert 0.0 <= pac.ingredients["mc_error"] <= pac.value <= 1.0
    assert compressed.ingredients["bits_extra"] == 32.0 * 6  # running mean and variance, 3 values each
