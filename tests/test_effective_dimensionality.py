"""Effective dimensionality: the probe against a dense Hessian, its manners, the registry and card, and the experiment."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn
from unchanged import leaves_unchanged

import biaslab
from biaslab.card import card_html
from biaslab.experiments import CATALOG, run_spec
from biaslab.experiments.memory import default_working_memory
from biaslab.probes import curvature
from biaslab.spec import DataSpec, ModelSpec, ProbeOptions, RunSpec, SpecError, TrainSpec, with_values

NAME = "effective-dimensionality"
SIGMAS = 4.0  # the estimate must sit within this many of its own standard errors of the exact value


def trained_tiny_problem():
    """A 3-class tanh MLP of 75 parameters trained part-way on 40 Gaussian points: a Hessian with positive,
    near-zero and a few negative eigenvalues."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (40,), generator=g)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.5)
    for _ in range(200):
        grads = torch.autograd.grad(nn.functional.cross_entropy(model(x), y), list(model.parameters()))
        with torch.no_grad():
            for p, grad in zip(model.parameters(), grads):
                p -= 0.5 * grad
    return model, x, y


def dense_eigenvalues(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Every eigenvalue of the mean cross-entropy's Hessian, from the dense matrix (ascending)."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]

    def loss_of(flat: torch.Tensor) -> torch.Tensor:
        pieces, start = [], 0
        for shape in shapes:
            pieces.append(flat[start : start + shape.numel()].view(shape))
            start += shape.numel()
        return nn.functional.cross_entropy(torch.func.functional_call(model, dict(zip(names, pieces)), (x,)), y)

    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    return torch.linalg.eigvalsh(torch.autograd.functional.hessian(loss_of, flat))


def exact_n_eff(eigenvalues: torch.Tensor, z: float) -> float:
    positive = eigenvalues.clamp_min(0.0)  # as the probe: a negative eigenvalue counts 0
    return float((positive / (positive + z)).sum())


@pytest.mark.slow
@pytest.mark.parametrize("z", [0.01, 0.1, 1.0])
def test_n_eff_matches_the_dense_hessian_within_its_standard_error(z):
    model, x, y = trained_tiny_problem()
    eigenvalues = dense_eigenvalues(model, x, y)
    dim = eigenvalues.numel()
    assert (eigenvalues < 0).any() and (eigenvalues > z).any()  # the clamp and both ends of f are exercised
    k = 5
    row = curvature.effective_dimensionality(
        model, nn.functional.cross_entropy, [(x, y)], z=z, k=k, probes=60, steps=dim, tol=1e-10, generator=torch.Generator().manual_seed(1)
    )  # full quadrature steps: the only error left is the probes' sampling, which the s.e. measures
    exact = exact_n_eff(eigenvalues, z)
    assert abs(row["n_eff"] - exact) <= SIGMAS * row["n_eff_se"], (row, exact)
    assert 0 < row["n_eff_se"] < 0.1 * exact
    top = eigenvalues.flip(0)[:k]
    assert row["n_eff_top"] == pytest.approx(exact_n_eff(top, z), abs=1e-8)  # the paper's top-k truncation
    assert row["n_eff_top"] < exact and row["n_eff_z"] == z and row["n_eff_k"] == k and row["n_eff_converged"] == 1.0


def test_with_every_eigenvalue_found_n_eff_is_exact_and_has_no_error():
    model, x, y = trained_tiny_problem()
    eigenvalues = dense_eigenvalues(model, x, y)
    row = curvature.effective_dimensionality(model, nn.functional.cross_entropy, [(x, y)], z=0.1, k=eigenvalues.numel(), tol=1e-10, generator=torch.Generator().manual_seed(2))
    assert row["n_eff"] == pytest.approx(exact_n_eff(eigenvalues, 0.1), abs=1e-6) and row["n_eff_se"] < 1e-9  # a repeated eigenvalue (0) can leave a tail of zeros


def test_deflating_the_top_eigenvalues_shrinks_the_error_of_plain_quadrature():
    """What the top-k Lanczos step buys: the same probes on the same model, with and without the outliers."""
    model, x, y = trained_tiny_problem()
    args = (model, nn.functional.cross_entropy, [(x, y)])
    plain = curvature.spectral_density(*args, probes=20, steps=30, generator=torch.Generator().manual_seed(3)).effective_dimensionality(0.1)
    deflated = curvature.effective_dimensionality(*args, z=0.1, k=10, probes=20, steps=30, tol=1e-10, generator=torch.Generator().manual_seed(3))
    assert deflated["n_eff_se"] < plain.stderr


def test_the_probe_leaves_mode_parameters_and_grads_as_it_found_them():
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Dropout(0.5), nn.Linear(6, 3))
    x, y = torch.randn(30, 4), torch.randint(0, 3, (30,))
    for training in (True, False):
        model.train(training)
        with leaves_unchanged(model):
            curvature.effective_dimensionality(model, nn.functional.cross_entropy, [(x, y)], k=3, generator=torch.Generator().manual_seed(0))
    model(x).sum().backward()  # a .grad already there stays as it was
    with leaves_unchanged(model):
        curvature.effective_dimensionality(model, nn.functional.cross_entropy, [(x, y)], k=3, generator=torch.Generator().manual_seed(0))


def test_bad_settings_are_one_clear_error():
    model, x, y = trained_tiny_problem()
    with pytest.raises(ValueError, match="^z: must be positive"):
        curvature.effective_dimensionality(model, nn.functional.cross_entropy, [(x, y)], z=0.0)
    with pytest.raises(ValueError, match="^k: must be at least 1"):
        curvature.effective_dimensionality(model, nn.functional.cross_entropy, [(x, y)], k=0)


# --- the registry: spec.probes asks for it in any training run ---------------------------------------------------


def small_run(**probe_options) -> RunSpec:
    data = DataSpec(name="mnist1d", n_train=100, n_test=100, standardize=False)
    train = TrainSpec(optimizer="sgd", lr=0.05, batch_size=50, max_steps=20, eval_every=10)
    return RunSpec(data=data, model=ModelSpec(width=8), train=train, probes=("effective_dim",), probe_options=ProbeOptions(**probe_options))


def test_spec_probes_measure_n_eff_at_every_evaluation_with_the_specs_settings():
    record = run_spec(small_run(n_eff_z=0.5, n_eff_k=4, n_eff_examples=60))
    assert record.status == "ok", record.error
    assert len(record.curves["n_eff"]) == 3 and all(v > 0 for v in record.curves["n_eff"])  # steps 0, 10, 20
    assert record.final["n_eff_z"] == 0.5 and record.final["n_eff_k"] == 4
    assert record.final["n_eff_top"] <= record.final["n_eff"] <= record.final["n_params"]
    other = run_spec(small_run(n_eff_z=0.05, n_eff_k=4, n_eff_examples=60))
    assert other.final["n_eff"] > record.final["n_eff"]  # a weaker prior: more directions count as determined


def test_probe_options_are_refused_without_their_probe_and_by_runs_that_measure_no_probes():
    with pytest.raises(SpecError, match=r"^probe_options\.n_eff_z: read only when probes holds 'effective_dim'"):
        with_values(RunSpec(), {"probe_options.n_eff_z": 0.5})
    assert with_values(RunSpec(probes=("effective_dim",)), {"probe_options.n_eff_z": 0.5}).probe_options.n_eff_z == 0.5
    width_sweep = CATALOG.get("width-sweep")  # any experiment that trains a network honours the probe and its settings
    spec = width_sweep.sweep("tiny").expand()[0]
    width_sweep.check(with_values(spec, {"probes": ["effective_dim"], "probe_options.n_eff_z": 0.5}))


def test_the_memory_estimate_counts_the_hessian_graph():
    plain = small_run().model_copy(update={"probes": ()})
    assert default_working_memory(small_run()) > default_working_memory(plain)
    assert default_working_memory(small_run(n_eff_examples=10)) < default_working_memory(small_run())


@pytest.mark.slow
def test_the_card_shows_n_eff_with_its_z_and_standard_error():
    model, x, y = trained_tiny_problem()
    card = biaslab.probe(model, train=(x, y), test=(x[:20], y[:20]), sections=["curvature"], budget="small", effective_dim_z=0.1,
                          density_probes=40, density_steps=75)  # enough quadrature for the dense check; the card's default is 3 x 60
    row = card["curvature"]
    exact = exact_n_eff(dense_eigenvalues(model, x, y), 0.1)
    assert row["n_eff_z"] == 0.1 and row["n_eff_se"] > 0
    assert abs(row["n_eff"] - exact) <= SIGMAS * row["n_eff_se"]
    page = card_html(card)
    assert "effective dimensionality N_eff" in page and "at z = 0.1" in page and "the rest estimated" in page
    assert "Maddox" in page


# --- the experiment ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_records():
    experiment = CATALOG.get(NAME)
    return [experiment.run(spec) for spec in experiment.sweep("tiny").expand()]


def test_the_tiny_preset_measures_n_eff_at_the_end_and_fails_for_want_of_widths(tiny_records):
    assert all(r.status == "ok" for r in tiny_records)
    assert all("n_eff" in r.final and r.final["n_eff_se"] > 0 for r in tiny_records)
    verdict = CATALOG.get(NAME).verdict(tiny_records)
    # three widths and one seed: the rank correlations with test loss can only be +-0.5 or +-1, and tie here
    assert not verdict.passed
    assert "rank correlation with test loss over 3 widths" in verdict.reason and "needs N_eff's higher" in verdict.reason
    assert verdict.numbers["spearman_n_eff_vs_test_loss"] <= verdict.numbers["spearman_params_vs_test_loss"]
    assert set(CATALOG.get(NAME).figures(tiny_records)) == {"neff_vs_width"}


def test_the_claim_passes_on_numbers_that_show_the_finding_and_fails_on_numbers_that_do_not(tiny_records):
    """The check reads the records' numbers: rewritten to the paper's shape (N_eff peaks with test loss and falls
    past it while the parameters grow) it passes; with N_eff growing with the parameter count it fails."""
    base = tiny_records[0]
    widths, losses = (4, 8, 16, 32, 64, 128), (2.0, 2.5, 4.0, 3.5, 3.0, 2.8)

    def records(n_effs):
        out = []
        for width, loss, n_eff in zip(widths, losses, n_effs):
            spec = with_values(base.run_spec, {"model.width": width})
            final = dict(base.final) | {"test_loss": loss, "n_eff": n_eff, "n_eff_top": n_eff / 2, "n_params": 50.0 * width}
            out.append(replace(base, spec=spec.model_dump(mode="json"), spec_id=spec.spec_id, final=final))
        return out

    experiment = CATALOG.get(NAME)
    good = experiment.claim(records((10.0, 20.0, 40.0, 30.0, 25.0, 22.0)))
    assert good.passed, good.reason
    bad = experiment.claim(records((10.0, 20.0, 40.0, 50.0, 60.0, 70.0)))
    assert not bad.passed and "past the peak N_eff goes 40.0 -> 70.0" in bad.reason
