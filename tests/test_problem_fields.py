"""Problem settings that are spec fields: problem.seed (the problem draw, apart from the run's seed), the
two-parameter model's constants (implicit-gradient-regularization), the paths mode-connectivity measures, and the
unit of max-margin's train.lr. Each field changes what it says, leaves the rest alone, or is refused."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from biaslab.data.problems import least_squares, polynomial_data, separable, sparse_regression, tabular
from biaslab.experiments import CATALOG
from biaslab.experiments.implicit_gradient_regularization import TinyRegression
from biaslab.experiments.implicit_regularizer import regression
from biaslab.experiments.max_margin import descend
from biaslab.experiments.min_norm import run as min_norm_run
from biaslab.experiments.mode_connectivity import connectivity_claim
from biaslab.probes import connectivity
from biaslab.spec import (
    BackwardError,
    ImplicitRegularizer,
    LeastSquares,
    Polynomial,
    RunSpec,
    Separable,
    SparseRegression,
    SpecError,
    Tabular,
    TrainSpec,
    with_values,
)
from biaslab.store import RunRecord

# ---------------------------------------------------------------- problem.seed: one seed, one job


def _arrays(instance) -> list[np.ndarray]:
    """The arrays of a drawn instance (a dataclass or a tuple of arrays), for equality checks."""
    values = instance if isinstance(instance, tuple) else vars(instance).values()
    return [np.asarray(v) for v in values if v is not None]


def _same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(_arrays(a), _arrays(b), strict=True))


DRAWS = {
    "sparse_regression": (sparse_regression, SparseRegression(n=6, d=12, sparsity=2)),
    "separable": (separable, Separable(n_points=10)),
    "tabular": (tabular, Tabular(n_train=20, n_test=10, uninformative=2, rotation="random", target="smooth")),
    "polynomial": (polynomial_data, Polynomial(n=8)),
    "implicit_regularizer": (regression, ImplicitRegularizer(n=10, d=4)),
}


@pytest.mark.parametrize("kind", sorted(DRAWS))
def test_problem_seed_fixes_the_instance_and_none_lets_the_runs_seed_draw_it(kind):
    draw, problem = DRAWS[kind]
    fixed = problem.model_copy(update={"seed": 11})
    assert _same(draw(fixed, 0), draw(fixed, 1))  # one instance whatever the run's seed
    assert not _same(draw(fixed, 0), draw(problem.model_copy(update={"seed": 12}), 0))
    assert _same(draw(problem, 11), draw(fixed, 0))  # None: the run's seed is the problem draw
    assert not _same(draw(problem, 0), draw(problem, 1))


def test_least_squares_draws_the_system_from_problem_seed_and_w0_from_the_runs_seed():
    fixed = LeastSquares(n=4, d=9, init_norm=1.0, seed=3)
    a, b = least_squares(fixed, 0), least_squares(fixed, 1)
    assert np.array_equal(a.A, b.A) and np.array_equal(a.w_star, b.w_star)
    assert not np.allclose(a.w0, b.w0) and np.linalg.norm(a.w0) == pytest.approx(1.0)
    legacy = least_squares(LeastSquares(n=4, d=9, init_norm=1.0), 3)  # None: one stream draws A, w* and then w0
    rng = np.random.default_rng(3)
    A = rng.standard_normal((4, 9))
    rng.standard_normal(9)
    direction = rng.standard_normal(9)
    assert np.array_equal(legacy.A, A) and np.allclose(legacy.w0, direction / np.linalg.norm(direction))


def test_min_norm_runs_with_one_problem_seed_share_the_min_norm_solution_and_reach_different_interpolants():
    train = TrainSpec(optimizer="gd", lr=1.0, batch_size=None, max_steps=2000, eval_every=50, stop_loss=1e-26)
    specs = [RunSpec(experiment="min-norm", problem=LeastSquares(n=4, d=9, init_norm=1.0, seed=3), train=train, dtype="float64", seed=s) for s in (0, 1)]
    first, second = (min_norm_run(s).final for s in specs)
    assert first["min_norm"] == second["min_norm"]  # ||A^+ b||: the same system
    assert first["nearest_norm"] != pytest.approx(second["nearest_norm"], rel=1e-6)  # two starts, two interpolants
    assert first["dist_to_nearest"] < 1e-8 and second["dist_to_nearest"] < 1e-8


def test_the_igr_mlp_takes_its_points_from_problem_seed_and_its_start_from_the_runs_seed():
    problem = BackwardError(model="mlp", seed=4)
    a, b = TinyRegression(problem, 0), TinyRegression(problem, 1)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and not torch.equal(a.theta0, b.theta0)
    legacy, explicit = TinyRegression(BackwardError(model="mlp"), 4), TinyRegression(problem, 4)
    assert torch.equal(legacy.x, explicit.x) and torch.equal(legacy.theta0, explicit.theta0)


def test_problem_seed_on_the_two_parameter_model_is_refused():
    with pytest.raises(ValueError, match="problem.seed: the two-parameter model draws nothing at random"):
        BackwardError(seed=1)


# ---------------------------------------------------------------- implicit-gradient-regularization's constants


def _igr(problem: dict, h: float = 0.1):
    base = CATALOG.get("implicit-gradient-regularization").sweep("tiny").base
    return CATALOG.get("implicit-gradient-regularization").run(with_values(base, {"problem": problem, "train.lr": h}))


def test_the_two_parameter_constants_are_the_spec_fields():
    """One GD step from (a0, b0) on (y - a b x)^2 / 2 is computable by hand: a1 = a0 + h (y - a0 b0 x) b0 x."""
    h, a0, b0, x, y = 0.1, 1.5, 0.5, 2.0, 0.5
    record = _igr({"kind": "backward_error", "horizon": 0.1, "substeps": 2, "a0": a0, "b0": b0, "x": x, "y": y}, h)
    residual = y - a0 * b0 * x
    a1, b1 = a0 + h * residual * b0 * x, b0 + h * residual * a0 * x
    assert record.final["loss_start"] == pytest.approx(0.5 * residual**2, rel=1e-12)
    assert record.final["loss_end"] == pytest.approx(0.5 * (y - a1 * b1 * x) ** 2, rel=1e-12)
    default = _igr({"kind": "backward_error", "horizon": 0.1, "substeps": 2}, h)
    assert default.final["loss_start"] == pytest.approx(0.5 * (1.0 - 2.0 * 0.2 * 1.0) ** 2, rel=1e-12)  # x = y = 1 from (2, 0.2)


@pytest.mark.parametrize("name", ["x", "y", "a0", "b0"])
def test_two_parameter_constants_are_refused_on_the_mlp(name):
    with pytest.raises(ValueError, match=f"problem.{name}: read by problem.model 'two_parameter' only"):
        BackwardError(model="mlp", **{name: 3.0})


# ---------------------------------------------------------------- max-margin: the unit of train.lr


def _data() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.standard_normal((12, 2)) + np.array([2.0, 0.5])  # Z = y * X, separable


@pytest.mark.parametrize("optimizer", ["gd", "adam"])
def test_lr_unit_decides_what_train_lr_means_for_every_optimizer(optimizer):
    Z = _data()
    sigma2 = np.linalg.norm(Z, 2) ** 2

    def final_w(lr: float, unit: str | None) -> np.ndarray:
        seen = {}
        descend(Z, TrainSpec(optimizer=optimizer, lr=lr, batch_size=None, max_steps=30, eval_every=30), lambda w: seen.update(w=w.copy()) or {}, unit)
        return seen["w"]

    relative, absolute = final_w(0.5, "inverse_sigma_max_squared"), final_w(0.5 / sigma2, "absolute")
    np.testing.assert_allclose(relative, absolute, rtol=1e-12)
    by_optimizer = final_w(0.5, None)  # the presets' rule: GD relative, Adam absolute
    np.testing.assert_allclose(by_optimizer, relative if optimizer == "gd" else final_w(0.5, "absolute"), rtol=1e-12)
    assert not np.allclose(final_w(0.5, "absolute"), relative)


def test_max_margin_runs_honour_lr_unit_and_presets_keep_theirs():
    base = CATALOG.get("max-margin").sweep("tiny").expand()[0]
    assert base.problem.lr_unit is None and base.train.optimizer == "gd"
    short = with_values(base, {"train.max_steps": 50, "train.eval_spacing": "linear", "train.eval_every": 50})
    default = CATALOG.get("max-margin").run(short)
    relative = CATALOG.get("max-margin").run(with_values(short, {"problem.lr_unit": "inverse_sigma_max_squared"}))
    absolute = CATALOG.get("max-margin").run(with_values(short, {"problem.lr_unit": "absolute"}))
    assert default.final["norm"] == relative.final["norm"] != absolute.final["norm"]


# ---------------------------------------------------------------- mode-connectivity: which paths


def _connectivity_spec(**paths):
    base = CATALOG.get("mode-connectivity").sweep("tiny").base
    spec = with_values(base, {"model.width": 8, "data.n_train": 200, "data.n_test": 100, "train.max_steps": 20, "train.eval_every": 20})
    return with_values(spec, {"problem": {"kind": "connection_paths", **paths}}) if paths else spec


def test_leaving_out_paths_skips_their_work_and_leaves_the_measured_ones_unchanged(monkeypatch):
    experiment = CATALOG.get("mode-connectivity")
    every = experiment.run(_connectivity_spec())

    def no_bend(*args, **kwargs):
        raise AssertionError("the Bezier bend was trained although problem.paths leaves 'bezier' out")

    monkeypatch.setattr(connectivity, "train_bend", no_bend)
    some = experiment.run(_connectivity_spec(paths=["matched", "linear"]))
    assert every.status == some.status == "ok", some.error
    assert {k.split(".")[1] for k in some.final if k.startswith("barrier_")} == {"linear", "matched"}
    assert "train_error_spawned" not in some.final and "train_error_spawned" in every.final  # C was not trained
    for key in ("barrier_loss.linear", "barrier_test_error.linear", "barrier_loss.matched", "train_error_b"):
        assert some.final[key] == every.final[key]


def test_connection_paths_are_kept_in_one_order_and_must_be_distinct():
    a, b = RunSpec(problem={"kind": "connection_paths", "paths": ["matched", "linear"]}), RunSpec(problem={"kind": "connection_paths", "paths": ["linear", "matched"]})
    assert a.spec_id == b.spec_id and a.problem.paths == ("linear", "matched")
    with pytest.raises(ValueError, match="problem.paths: one or more distinct paths of linear, bezier, matched, spawned"):
        RunSpec(problem={"kind": "connection_paths", "paths": ["linear", "linear"]})
    with pytest.raises(SpecError, match="problem.kind: mode-connectivity supports None, 'connection_paths' only"):
        CATALOG.get("mode-connectivity").check(RunSpec(experiment="mode-connectivity", problem={"kind": "least_squares"}))


def _record(width: int, seed: int, barriers: dict[str, float]) -> RunRecord:
    spec = RunSpec(experiment="mode-connectivity", seed=seed, model={"kind": "mlp", "width": width, "depth": 2},
                   problem={"kind": "connection_paths", "paths": list(barriers)})  # fmt: skip
    final = {"train_error": 0.0, "train_error_b": 0.0, "test_error": 0.3}
    for path, value in barriers.items():
        final |= {f"barrier_loss.{path}": value + 0.01 * seed, f"barrier_test_error.{path}": value / 10}
    return RunRecord(spec=spec.model_dump(mode="json"), spec_id=spec.spec_id, status="ok", final=final)


def test_the_claim_judges_the_measured_paths_and_fails_the_parts_that_were_not_measured():
    barriers = {16: (1.0, 0.45), 64: (1.5, 0.3), 256: (2.0, 0.1)}
    records = [_record(w, s, {"linear": lin, "matched": m}) for w, (lin, m) in barriers.items() for s in (0, 1)]
    verdict = connectivity_claim(records)
    assert not verdict.passed
    assert "(2) Bezier not measured (problem.paths)" in verdict.reason and verdict.numbers["bezier_claim_passed"] == 0.0
    assert verdict.numbers["naive_claim_passed"] == verdict.numbers["matching_claim_passed"] == verdict.numbers["width_claim_passed"] == 1.0
    assert "barrier_loss.bezier.H16" not in verdict.numbers and verdict.numbers["barrier_loss.matched.H256"] == pytest.approx(0.105)
    assert not any("spawned" in note for note in verdict.notes)
    assert math.isfinite(verdict.numbers["spearman_width_vs_matched_barrier"])
