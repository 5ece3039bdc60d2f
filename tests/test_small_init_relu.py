"""small-init-relu against the closed-form minimum-variation-norm interpolator of orthogonal data, and its seeds.

The closed form (Boursier, Pillaud-Vivien & Flammarion 2022's setting). Let x_1..x_n be orthonormal, y_i = +-1,
P = {i : y_i = +1}, N = {i : y_i = -1}, and f(x) = sum_j a_j relu(<w_j, x>) an interpolator (f(x_i) = y_i) with
variation norm V = sum_j |a_j| ||w_j||.

Lower bound. For i in P, 1 = f(x_i) <= sum_{j: a_j > 0} a_j relu(<w_j, x_i>). Summing over P and using
sum_{i in P} relu(<w, x_i>) <= sum_{i in P} |<w, x_i>| <= sqrt(|P|) (sum_{i in P} <w, x_i>^2)^(1/2) <= sqrt(|P|) ||w||
(Cauchy-Schwarz, then Bessel's inequality for the orthonormal x_i) gives |P| <= sqrt(|P|) sum_{a_j > 0} a_j ||w_j||,
so the positive neurons carry at least sqrt(|P|); likewise, from -1 = f(x_i) for i in N, the negative neurons carry
at least sqrt(|N|): V >= sqrt(|P|) + sqrt(|N|).

Attained, and only by one function. With s_P = sum_{i in P} x_i and s_N = sum_{i in N} x_i (norms sqrt(|P|), sqrt(|N|)),
f*(x) = relu(<s_P, x>) - relu(<s_N, x>) interpolates (<s_P, x_i> = 1 on P and 0 on N) with V = sqrt(|P|) + sqrt(|N|).
Equality in every step above forces each positive neuron to have <w_j, x_i> equal and nonnegative over P, zero over N
and w_j in span(x_P), i.e. w_j parallel to s_P (and negative ones to s_N), so on span(x_1..x_n) every minimizer is f*.

GD from a small balanced init approaches it when, for each sign, some neuron starts active on all of that sign's
inputs: an input inactive for a neuron at the start stays inactive (orthogonal inputs: the gradient of w_j has no
component along it), and the neurons active on the most inputs of their sign grow fastest, the more so the smaller
the init. With n = 4 and width 64 such neurons exist with probability about 1 - 2 (7/8)^64 > 0.999.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from biaslab.data.problems import orthogonal_inputs
from biaslab.experiments import CATALOG
from biaslab.experiments.small_init_relu import NAME, run, train_network
from biaslab.spec import ModelSpec, OrthogonalInputs, RunSpec, SpecError, TrainSpec

PROBLEM = OrthogonalInputs(n=4, d=8, seed=0)


def _spec(init_scale: float, problem: OrthogonalInputs = PROBLEM, seed: int = 0, steps: int = 2000) -> RunSpec:
    train = TrainSpec(optimizer="gd", lr=0.5, batch_size=None, max_steps=steps, eval_every=steps)
    return RunSpec(experiment=NAME, problem=problem, model=ModelSpec(width=64, init_scale=init_scale), train=train, dtype="float64", seed=seed)


def _closed_form(X: np.ndarray, y: np.ndarray):
    """f*(z) = relu(<s_P, z>) - relu(<s_N, z>) and its variation norm sqrt(|P|) + sqrt(|N|)."""
    s_pos, s_neg = X[y > 0].sum(axis=0), X[y < 0].sum(axis=0)
    return (lambda Z: np.maximum(Z @ s_pos, 0.0) - np.maximum(Z @ s_neg, 0.0)), float(np.linalg.norm(s_pos) + np.linalg.norm(s_neg))


@pytest.fixture(scope="module")
def trained():
    """init scale -> (variation norm / minimum, max |f - f*| / max |f*| over Gaussian test points, final loss)."""
    data = orthogonal_inputs(PROBLEM, 0)
    target, minimum = _closed_form(data.X, data.y)
    Z = np.random.default_rng(1).standard_normal((200, PROBLEM.d))  # off the data, in all of R^d
    out = {}
    for scale in (1e-2, 1e-4, 1e-6):
        fit, W, a, _ = train_network(_spec(scale))
        f = (torch.relu(torch.as_tensor(Z) @ W.T) @ a).numpy()
        out[scale] = ((a.abs() * W.norm(dim=1)).sum().item() / minimum, float(np.abs(f - target(Z)).max() / np.abs(target(Z)).max()), fit.final["loss"])
    return out


def test_the_closed_form_interpolates_with_the_minimum_the_runner_reports():
    data = orthogonal_inputs(PROBLEM, 0)
    assert np.allclose(data.X @ data.X.T, np.eye(PROBLEM.n), atol=1e-12) and data.y.tolist() == [1.0, 1.0, -1.0, -1.0]
    target, minimum = _closed_form(data.X, data.y)
    assert np.allclose(target(data.X), data.y, atol=1e-12)
    assert minimum == pytest.approx(2 * np.sqrt(2))
    assert run(_spec(1e-2, steps=10)).final["min_variation_norm"] == pytest.approx(minimum, rel=1e-12)


def test_gd_from_a_vanishing_init_approaches_the_minimum_norm_interpolator(trained):
    ratios = [trained[s][0] for s in (1e-2, 1e-4, 1e-6)]
    distances = [trained[s][1] for s in (1e-2, 1e-4, 1e-6)]
    assert all(trained[s][2] < 1e-20 for s in trained)  # every run interpolates
    assert all(r >= 1 - 1e-9 for r in ratios)  # no interpolator is below the bound
    assert ratios[0] > ratios[1] > ratios[2] and ratios[2] - 1 < 1e-3
    assert distances[0] > distances[1] > distances[2] and distances[2] < 1e-3


def test_problem_seed_fixes_the_inputs_while_seed_varies_the_init():
    fixed = PROBLEM.model_copy(update={"seed": 7})
    assert np.array_equal(orthogonal_inputs(fixed, 0).X, orthogonal_inputs(fixed, 1).X)
    first, second = (train_network(_spec(0.1, fixed, seed=s, steps=1)) for s in (0, 1))
    assert not torch.equal(first[1], second[1])
    free = PROBLEM.model_copy(update={"seed": None})
    assert not np.array_equal(orthogonal_inputs(free, 0).X, orthogonal_inputs(free, 1).X)  # the run's seed draws them


def test_a_spec_without_a_problem_runs_the_default_orthogonal_inputs():
    train = TrainSpec(optimizer="gd", lr=0.2, batch_size=None, max_steps=5, eval_every=5)
    bare = RunSpec(experiment=NAME, model=ModelSpec(width=8, init_scale=0.1), train=train, dtype="float64", seed=2)
    explicit = bare.model_copy(update={"problem": OrthogonalInputs(seed=2)})
    assert run(bare).history == run(explicit).history
    with pytest.raises(SpecError, match="problem.kind: small-init-relu supports None, 'orthogonal_inputs' only"):
        CATALOG.get(NAME).check(RunSpec(experiment=NAME, problem={"kind": "least_squares"}, train=train))
    with pytest.raises(ValueError, match="problem.d: n = 20 orthonormal inputs need d >= n"):
        OrthogonalInputs(n=20, d=10)
