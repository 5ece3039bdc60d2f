"""Weight spectra against hand cases, a known power law, and WeightWatcher where it is installed."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch

from biaslab.probes import spectra

from unchanged import leaves_unchanged


def _pareto(n: int, alpha: float, xmin: float, seed: int) -> np.ndarray:
    """n samples of p(x) ~ x^-alpha on x >= xmin, by inverting the CDF."""
    u = np.random.default_rng(seed).random(n)
    return xmin * (1.0 - u) ** (-1.0 / (alpha - 1.0))


def test_stable_and_effective_rank_of_the_identity_and_of_rank_one():
    eye = spectra.singular_values(torch.eye(7))
    assert spectra.stable_rank(eye) == pytest.approx(7.0)
    assert spectra.effective_rank(eye) == pytest.approx(7.0)
    u, v = torch.randn(6, 1, dtype=torch.float64), torch.randn(1, 9, dtype=torch.float64)
    rank_one = spectra.singular_values(u @ v)
    assert spectra.stable_rank(rank_one) == pytest.approx(1.0, abs=1e-9)
    assert spectra.effective_rank(rank_one) == pytest.approx(1.0, abs=1e-6)


def test_ranks_of_a_diagonal_matrix_by_hand():
    s = spectra.singular_values(torch.diag(torch.tensor([3.0, 1.0, 0.0])))
    assert spectra.stable_rank(s) == pytest.approx((9 + 1) / 9)
    p = np.array([0.75, 0.25])
    assert spectra.effective_rank(s) == pytest.approx(math.exp(-(p * np.log(p)).sum()))


@pytest.mark.parametrize("alpha", [2.0, 2.5, 3.5])
def test_mle_recovers_the_exponent_of_a_pure_power_law(alpha):
    samples = _pareto(4000, alpha, 1.0, seed=int(alpha * 10))
    fit = spectra.fit_power_law(samples)
    # stderr (alpha - 1) / sqrt(n_tail) is at most 0.04 here even if xmin cuts the tail to 2000; allow 4 of them
    assert abs(fit.alpha - alpha) < 0.16
    assert fit.alpha_stderr == pytest.approx((fit.alpha - 1) / math.sqrt(fit.n_tail))
    assert fit.ks_distance < 0.05


def test_xmin_is_found_above_a_body_that_is_not_a_power_law():
    body = np.random.default_rng(0).uniform(0.05, 1.0, 3000)
    tail = _pareto(3000, 3.0, 1.0, seed=1)
    fit = spectra.fit_power_law(np.concatenate([body, tail]))
    assert 0.9 <= fit.xmin <= 1.5
    assert abs(fit.alpha - 3.0) < 0.25


def test_mle_at_a_fixed_xmin_is_the_closed_form():
    tail = np.array([1.0, 2.0, 4.0, 8.0])
    assert spectra.power_law_mle(tail, 1.0) == pytest.approx(1 + 4 / (math.log(2) + math.log(4) + math.log(8)))


def test_ks_distance_by_hand():
    # alpha = 2, xmin = 1: F(x) = 1 - 1/x; tail (1, 2): F = (0, 0.5); steps at 1/2 and 1
    tail = np.array([1.0, 2.0])
    assert spectra.ks_distance(tail, 1.0, 2.0) == pytest.approx(0.5)  # 1/2 - 0 just after x = 1
    assert spectra.ks_distance(tail, 1.0, 2.0, "weightwatcher") == pytest.approx(0.0)  # |0 - 0|, |0.5 - 0.5|


def test_weight_spectra_names_every_layer_and_leaves_the_model_unchanged(tiny_mlp, batch):
    x, y = batch
    tiny_mlp.train(True)
    torch.nn.functional.cross_entropy(tiny_mlp(x), y).backward()
    with leaves_unchanged(tiny_mlp):
        got = spectra.weight_spectra(tiny_mlp)
    w = tiny_mlp.layers[1].weight.detach().numpy()
    s = np.linalg.svd(w, compute_uv=False)
    assert got["stable_rank.layers.1.weight"] == pytest.approx((s**2).sum() / s[0] ** 2)
    assert got["spectral_norm.layers.1.weight"] == pytest.approx(s[0])
    assert {"alpha_mean", "alpha_weighted_mean", "stable_rank_mean", "effective_rank_mean"} <= set(got)
    assert "alpha.layers.0.bias" not in got
    by_layer = spectra.singular_values_by_layer(tiny_mlp)
    assert list(by_layer) == ["layers.0.weight", "layers.1.weight", "layers.2.weight"]
    np.testing.assert_allclose(by_layer["layers.1.weight"].numpy(), s)


def _heavy_tailed_net(seed: int) -> torch.nn.Module:
    """Linear layers with Student-t entries (2, 3, 4 degrees of freedom), every layer >= 100 eigenvalues."""
    g = torch.Generator().manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(200, 300), torch.nn.ReLU(), torch.nn.Linear(300, 100), torch.nn.ReLU(), torch.nn.Linear(100, 400))
    with torch.no_grad():
        for dof, layer in enumerate(net[::2], start=2):
            z = torch.randn(layer.weight.shape, generator=g)
            chi2 = torch.randn((dof, *layer.weight.shape), generator=g).square().sum(0)
            layer.weight.copy_(0.05 * z / (chi2 / dof).sqrt())
    return net


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_alpha_agrees_with_weightwatcher(seed):
    """Same layers, same eigenvalues: with WeightWatcher's KS convention our fit is its fit (to 1e-6);
    with the two-sided KS the Cauchy-like first layer (t with 2 dof) agrees within 0.1 (measured: <= 0.06)."""
    ww = pytest.importorskip("weightwatcher")
    logging.getLogger("weightwatcher").setLevel(logging.ERROR)
    net = _heavy_tailed_net(seed)
    theirs = ww.WeightWatcher(model=net).analyze()["alpha"].to_numpy()
    names = [name for name, p in net.named_parameters() if p.ndim >= 2]
    same_convention = spectra.weight_spectra(net, ks="weightwatcher")
    ours = np.array([same_convention[f"alpha.{name}"] for name in names])
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    two_sided = spectra.weight_spectra(net)
    assert abs(two_sided["alpha.0.weight"] - theirs[0]) < 0.1
