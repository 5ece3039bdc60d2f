"""scaling-laws: the exact excess loss against test sampling, the slope claim on made-up records, bad specs;
part (b): the MLP sweeps' axes, the power-law fits on synthetic curves, the MLP notes on made-up records."""

from __future__ import annotations

import math

import numpy as np
import pytest

from biaslab.experiments import CATALOG, run_spec
from biaslab.experiments.scaling_laws import NAME, excess_loss, fitted_slopes, offset_fits, offset_power_law, quick, spectrum
from biaslab.spec import DataSpec, EstimatorSpec, ModelSpec, PowerLawFeatures, RunSpec, SpecError, TrainSpec, with_values
from biaslab.store import RunRecord

experiment = CATALOG.get(NAME)


def test_the_spectrum_is_the_stated_power_law():
    lam = spectrum(PowerLawFeatures(latent=5, alpha=0.5))
    assert np.allclose(lam, [1.0, 2**-1.5, 3**-1.5, 4**-1.5, 5**-1.5])


@pytest.mark.parametrize("n_features", [60, 15])  # all features (min-norm), random projections
def test_the_exact_excess_loss_matches_the_error_on_fresh_test_points(n_features):
    problem = PowerLawFeatures(n=20, latent=60, alpha=1.0)
    exact = excess_loss(problem, n_features, 0.0, np.random.default_rng(5))
    # replay the same draws independently: beta, X, (P), then the fit by pinv; test on fresh points
    rng = np.random.default_rng(5)
    lam = np.arange(1, 61) ** -2.0
    beta = rng.standard_normal(60)
    X = rng.standard_normal((20, 60)) * np.sqrt(lam)
    y = X @ beta + 0.0 * rng.standard_normal(20)
    if n_features == 60:
        beta_hat = np.linalg.pinv(X) @ y
    else:
        P = rng.standard_normal((n_features, 60)) / math.sqrt(60)
        beta_hat = P.T @ (np.linalg.pinv(X @ P.T) @ y)
    X_test = np.random.default_rng(9).standard_normal((200_000, 60)) * np.sqrt(lam)
    sampled = float(np.mean((X_test @ (beta - beta_hat)) ** 2))
    assert exact == pytest.approx(sampled, rel=0.02)


def test_with_more_examples_than_dimensions_and_no_noise_the_teacher_is_recovered():
    assert excess_loss(PowerLawFeatures(n=50, latent=20, alpha=1.0), 20, 0.0, np.random.default_rng(0)) < 1e-20


# ---------------------------------------------------------------- the claim on made-up records


def _records(exponent: float, spread: float = 0.03, seeds=(0, 1, 2, 3)) -> list[RunRecord]:
    wiggle = np.random.default_rng(0).standard_normal((len(seeds) // 2 + 1, 4))  # seeds in pairs with opposite wiggles:
    records = []  # the seed-mean slope is exactly the exponent, and the seeds still spread
    for axis, sizes in (("train_size", (10, 20, 40, 80)), ("model_size", (4, 8, 16, 32))):
        for seed in seeds:
            for i, size in enumerate(sizes):
                problem = PowerLawFeatures(alpha=1.0, latent=1000, n=size if axis == "train_size" else 500)
                est = EstimatorSpec(kind="min_norm", n_features=1000 if axis == "train_size" else size, axis=axis)
                spec = RunSpec(experiment=NAME, problem=problem, estimator=est, seed=seed)
                loss = 3.0 * size**-exponent * math.exp((-1) ** seed * spread * wiggle[seed // 2, i])
                records.append(RunRecord(spec=spec.model_dump(mode="json"), spec_id=spec.spec_id, status="ok", final={"test_loss": loss, "size": float(size)}))
    return records


def test_claim_passes_when_the_loss_falls_with_the_predicted_exponent():
    verdict = experiment.claim(_records(1.0))
    assert verdict.passed, verdict.reason
    assert verdict.numbers["train_size_slope"] == pytest.approx(-1.0, abs=0.05)


def test_claim_fails_when_the_exponent_is_off():
    verdict = experiment.claim(_records(0.6))
    assert not verdict.passed and "predicted -1" in verdict.reason


def test_claim_fails_with_one_seed_as_there_is_no_interval():
    verdict = experiment.claim(_records(1.0, seeds=(0,)))
    assert not verdict.passed and math.isnan(verdict.numbers["train_size_slope_low"]) and math.isnan(verdict.numbers["model_size_slope_high"])
    assert verdict.reason.count("[nan, nan] (95% CI over seeds)") == 2  # the slope is right; there is no interval to hold it


def test_fitted_slopes_are_per_seed_least_squares():
    import pandas as pd

    frame = pd.DataFrame({"seed": [0, 0, 0], "size": [1.0, 10.0, 100.0], "test_loss": [1.0, 0.1, 0.01]})
    assert fitted_slopes(frame)[0] == pytest.approx(-1.0)


# ---------------------------------------------------------------- bad input


def test_bad_fields_name_the_field():
    spec = RunSpec(experiment=NAME, problem=PowerLawFeatures(), estimator=EstimatorSpec(kind="min_norm", n_features=1000, axis="train_size"))
    with pytest.raises(SpecError, match=r"problem\.power_law_features\.alpha: .*greater than 0"):
        with_values(spec, {"problem.alpha": 0.0})
    with pytest.raises(SpecError, match=r"estimator\.axis: .*'model_size' or 'train_size'"):
        with_values(spec, {"estimator.axis": "width"})
    with pytest.raises(SpecError, match="estimator.n_features: at most problem.latent"):
        experiment.check(with_values(spec, {"estimator.n_features": 2000}))
    with pytest.raises(SpecError, match="estimator.kind"):
        experiment.check(with_values(spec, {"estimator.kind": "random_features"}))


def test_an_mlp_spec_must_be_an_mlp_without_estimator():
    spec = RunSpec(experiment=NAME, data=DataSpec(name="mnist1d", n_train=100, n_test=100), model=ModelSpec(kind="mlp", width=8))
    experiment.check(spec)  # no problem: an MLP run, accepted
    with pytest.raises(SpecError, match="model.kind"):
        experiment.check(with_values(spec, {"model.kind": "cnn"}))
    with pytest.raises(SpecError, match="^estimator: scaling-laws does not read this section"):
        experiment.check(spec.model_copy(update={"estimator": EstimatorSpec(kind="neural_net")}))


# ---------------------------------------------------------------- part (b): MLPs on MNIST-1D


def test_quick_mlp_parts_sweep_n_at_the_widest_width_and_width_at_the_largest_n():
    specs = [s for s in quick().expand() if s.problem is None]
    assert specs, "quick has no MLP runs"
    assert len({s.spec_id for s in specs}) == len(specs)  # the shared point is run once, in one part
    for spec in specs:
        experiment.check(spec)
        assert (spec.data.name, spec.model.kind, spec.model.depth, spec.model.activation) == ("mnist1d", "mlp", 1, "relu")
        assert spec.train.optimizer == "adam" and spec.train.stop_zero_error_evals is None and spec.train.stop_loss is None
    pairs = {(s.data.n_train, s.model.width, s.seed) for s in specs}
    widths, ns = {w for _, w, _ in pairs}, {n for n, _, _ in pairs}
    seeds = {seed for _, _, seed in pairs}
    data_curve = {(n, seed) for n, w, seed in pairs if w == max(widths)}
    model_curve = {(w, seed) for n, w, seed in pairs if n == max(ns)}
    assert data_curve == {(n, seed) for n in ns for seed in seeds} and len(ns) >= 5 and max(ns) <= 4000
    assert model_curve == {(w, seed) for w in widths for seed in seeds} and len(widths) >= 5 and max(widths) <= 512
    assert len(pairs) == len(data_curve) + len(model_curve) - len(seeds)  # nothing off the two curves; they share one point
    assert len(seeds) >= 2


def test_the_mlp_runner_records_the_best_test_loss_of_the_supervised_run():
    spec = RunSpec(
        experiment=NAME, data=DataSpec(name="mnist1d", n_train=100, n_test=100, standardize=False), model=ModelSpec(kind="mlp", width=16),
        train=TrainSpec(optimizer="adam", lr=1e-3, max_steps=60, eval_every=20),
    )  # fmt: skip
    record = run_spec(spec)
    assert record.status == "ok"
    assert record.final["best_test_loss"] == pytest.approx(min(record.curves["test_loss"]))
    assert record.final["best_test_loss"] <= record.final["test_loss"]
    assert record.final["n_params"] == 40 * 16 + 16 + 16 * 10 + 10


def test_log_log_least_squares_recovers_a_known_exponent():
    import pandas as pd

    rng = np.random.default_rng(1)
    sizes = np.array([100.0, 200, 400, 800, 1600])
    rows = [(seed, n, 5.0 * n**-0.35 * math.exp(0.01 * rng.standard_normal())) for seed in range(4) for n in sizes]
    slopes = fitted_slopes(pd.DataFrame(rows, columns=["seed", "size", "test_loss"]))
    assert len(slopes) == 4 and slopes.mean() == pytest.approx(-0.35, abs=0.02)


def test_the_offset_fit_recovers_a_known_exponent_and_floor_where_log_log_is_biased():
    import pandas as pd

    sizes = np.array([250.0, 500, 1000, 2000, 4000, 8000])
    losses = 2.0 * (sizes / 250.0) ** -0.7 + 0.3
    a, b, c = offset_power_law(sizes, losses)
    assert (a, b, c) == (pytest.approx(2.0, rel=1e-3), pytest.approx(0.7, rel=1e-3), pytest.approx(0.3, rel=1e-3))
    pure = fitted_slopes(pd.DataFrame({"seed": 0, "size": sizes, "test_loss": losses}))[0]
    assert -pure < 0.6  # the bend towards c flattens the log-log line: the pure fit underestimates b
    rows = [(seed, n, loss * (1 + 0.002 * (-1) ** (seed + i))) for seed in range(3) for i, (n, loss) in enumerate(zip(sizes, losses))]
    fits = offset_fits(pd.DataFrame(rows, columns=["seed", "size", "test_loss"]))
    assert len(fits) == 3 and fits["b"].mean() == pytest.approx(0.7, abs=0.05) and fits["c"].mean() == pytest.approx(0.3, abs=0.03)


def test_without_a_floor_the_offset_fit_finds_c_near_zero():
    sizes = np.array([10.0, 20, 40, 80, 160])
    a, b, c = offset_power_law(sizes, 3.0 * sizes**-0.5)
    assert b == pytest.approx(0.5, abs=0.01) and c < 1e-3


def _mlp_records(b_data: float, b_model: float, seeds=(0, 1, 2)) -> list[RunRecord]:
    """Made-up MLP records on the two curves: L = 0.5 + 2 (x / x_min)^-b, each seed wiggled by +-1%."""
    records = []
    points = sorted({(n, 512) for n in (250, 500, 1000, 2000, 4000)} | {(4000, w) for w in (8, 16, 32, 64, 128, 256)})
    for seed in seeds:
        for i, (n, width) in enumerate(points):
            params = 51 * width + 10
            if width == 512:  # the data curve (n = 4000 is also the model curve's widest point)
                loss = 0.5 + 2.0 * (n / 250) ** -b_data
            else:
                loss = 0.5 + 2.0 * (params / (51 * 8 + 10)) ** -b_model
            spec = RunSpec(experiment=NAME, data=DataSpec(name="mnist1d", n_train=n, n_test=1000), model=ModelSpec(width=width), seed=seed)
            final = {"best_test_loss": loss * (1 + 0.01 * (-1) ** (seed + i)), "test_loss": 2 * loss, "n_params": float(params)}
            records.append(RunRecord(spec=spec.model_dump(mode="json"), spec_id=spec.spec_id, status="ok", final=final))
    return records


def test_mlp_exponents_go_to_the_notes_and_numbers_and_do_not_decide_the_verdict():
    passing = experiment.claim(_records(1.0) + _mlp_records(0.4, 0.2))
    assert passing.passed, passing.reason
    notes = [n for n in passing.notes if n.startswith("MLP on MNIST-1D")]
    assert len(notes) == 2 and "training examples n" in notes[0] and "parameters N" in notes[1]
    numbers = passing.numbers
    assert 0 < numbers["mlp_train_size_exponent_low"] <= numbers["mlp_train_size_exponent"] <= numbers["mlp_train_size_exponent_high"]
    assert numbers["mlp_train_size_offset_exponent"] == pytest.approx(0.4, abs=0.1)
    assert numbers["mlp_train_size_offset_loss"] == pytest.approx(0.5, abs=0.1)
    failing = experiment.claim(_records(0.6) + _mlp_records(0.4, 0.2))  # part (a) alone decides
    assert not failing.passed and failing.numbers["train_size_slope"] == pytest.approx(-0.6)
    assert "train_size: fitted slope -0.600" in failing.reason and "vs predicted -1" in failing.reason


def test_figure_has_the_mlp_panels():
    figure = experiment.figures(_records(1.0) + _mlp_records(0.4, 0.2))["scaling"]
    titles = [ax.get_title() for ax in figure.axes]
    assert sum(t.startswith("MLP on MNIST-1D") for t in titles) == 2
