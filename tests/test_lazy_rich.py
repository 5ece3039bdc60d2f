"""lazy-vs-rich: the empirical NTK against closed forms and a loop of autograd gradients, the linearization, the claim
on made-up records, and bad input."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import spearmanr
from torch import nn
from torch.func import functional_call

from biaslab import models
from biaslab.experiments import CATALOG
from biaslab.experiments.lazy_vs_rich import NAME
from biaslab.probes.core import snapshot
from biaslab.probes.ntk import empirical_ntk, kernel_alignment, linearized_outputs, relative_change
from biaslab.runtime import generator
from biaslab.spec import LazyScaling, ModelSpec, RunSpec, SpecError, with_values
from biaslab.store import RunRecord


def _linear(bias: bool) -> nn.Module:
    model = nn.Linear(5, 3, bias=bias).double()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    return model


def test_ntk_of_a_linear_model_is_the_gram_matrix():
    x = torch.randn(7, 5, dtype=torch.float64)
    for bias in (False, True):
        model = _linear(bias)
        expected = 3 * (x @ x.T + (1.0 if bias else 0.0))  # sum over 3 outputs of <e_c x^T, e_c x'^T> (+ bias: 1)
        assert torch.allclose(empirical_ntk(model, snapshot(model), x), expected, rtol=1e-12)


def test_ntk_of_an_mlp_matches_a_loop_of_autograd_gradients(tiny_mlp, batch):
    x = batch[0][:6]
    params = list(tiny_mlp.parameters())
    rows = []
    for i in range(6):
        per_output = []
        for c in range(3):
            grads = torch.autograd.grad(tiny_mlp(x[i : i + 1])[0, c], params)
            per_output.append(torch.cat([g.flatten() for g in grads]))
        rows.append(torch.stack(per_output))  # (outputs, P)
    J = torch.stack(rows)  # (n, outputs, P)
    expected = torch.einsum("ncp,mcp->nm", J, J)
    assert torch.allclose(empirical_ntk(tiny_mlp, snapshot(tiny_mlp), x), expected, rtol=1e-10)


def test_kernel_alignment_is_one_for_proportional_kernels_and_zero_for_orthogonal_ones():
    K = torch.tensor([[2.0, 1.0], [1.0, 3.0]])
    assert kernel_alignment(K, 5 * K) == pytest.approx(1.0)
    assert kernel_alignment(torch.diag(torch.tensor([1.0, 0.0])), torch.diag(torch.tensor([0.0, 1.0]))) == pytest.approx(0.0)


def test_linearization_is_exact_for_a_linear_model_and_second_order_close_for_a_smooth_mlp(batch):
    x = batch[0]
    g = torch.Generator().manual_seed(2)
    model = _linear(True)
    p0 = snapshot(model)
    p = {k: v + 0.3 * torch.randn(v.shape, generator=g, dtype=v.dtype) for k, v in p0.items()}
    change = functional_call(model, p, (x,)) - functional_call(model, p0, (x,))
    assert torch.allclose(linearized_outputs(model, p0, p, x), change, rtol=1e-12)
    mlp = models.initialize(models.MLP(5, 4, 2, 3, "tanh", bias=True).double(), ModelSpec(activation="tanh"), generator(0, "init"))
    p0 = snapshot(mlp)
    direction = {k: torch.randn(v.shape, generator=g, dtype=v.dtype) for k, v in p0.items()}
    errors = []
    for eps in (1e-2, 1e-3):
        p = {k: v + eps * direction[k] for k, v in p0.items()}
        change = functional_call(mlp, p, (x,)) - functional_call(mlp, p0, (x,))
        errors.append((change - linearized_outputs(mlp, p0, p, x)).norm().item())
    assert 50 < errors[0] / errors[1] < 200  # Taylor remainder O(eps^2): 10x smaller step, ~100x smaller error


def test_linearized_outputs_are_differentiable_in_the_parameters():
    model = _linear(False)
    x = torch.randn(4, 5, dtype=torch.float64)
    p0 = snapshot(model)
    p = {k: v.clone().requires_grad_(True) for k, v in p0.items()}
    linearized_outputs(model, p0, p, x).sum().backward()
    assert torch.allclose(p["weight"].grad, x.sum(dim=0).expand(3, -1))  # d/dW sum_n,c (W x_n)_c = sum_n x_n per row


def test_relative_change():
    p0 = {"a": torch.tensor([3.0, 4.0])}
    assert relative_change({"a": torch.tensor([3.0, 5.0])}, p0) == pytest.approx(0.2)


def _record(alpha: float, weight: float, kernel: float, distance: float, seed: int = 0) -> RunRecord:
    spec = with_values(CATALOG.get(NAME).sweep("tiny").base, {"problem.alpha": alpha, "seed": seed})
    final = {"rel_weight_change": weight, "kernel_change": kernel, "linearization_distance": distance, "test_error": 0.4, "test_error_linearized": 0.45}
    return RunRecord(spec=spec.model_dump(mode="json"), spec_id=spec.spec_id, status="ok", final=final)


claim = CATALOG.get(NAME).claim
ALPHAS = (0.01, 0.1, 1.0, 10.0, 100.0)


def test_claim_passes_when_everything_falls_with_alpha():
    verdict = claim([_record(a, 1.0 / a, 0.5 / (1 + a), 0.5 / (1 + a) ** 0.5) for a in ALPHAS])
    assert verdict.passed, verdict.reason
    assert verdict.numbers["spearman_alpha_vs_kernel_change"] == pytest.approx(-1.0)
    assert verdict.numbers["log_slope_weight_change_large_alpha"] == pytest.approx(-1.0)


def test_claim_fails_when_the_kernel_does_not_settle():
    kernel_changes = [0.3] * (len(ALPHAS) - 1) + [0.4]
    verdict = claim([_record(a, 1.0 / a, k, 0.5 / (1 + a) ** 0.5) for a, k in zip(ALPHAS[:-1], kernel_changes)] + [_record(100.0, 0.01, 0.4, 0.04)])
    rho = spearmanr(ALPHAS, kernel_changes).statistic  # the kernel changes more, not less, at the largest alpha
    assert not verdict.passed and verdict.numbers["spearman_alpha_vs_kernel_change"] == pytest.approx(rho) and rho > -0.9
    assert f"kernel change {rho:+.2f}" in verdict.reason and "(each needs <= -0.9)" in verdict.reason


def test_claim_fails_when_the_net_stays_far_from_its_linearization():
    verdict = claim([_record(a, 1.0 / a, 0.5 / (1 + a), 0.9 / (1 + 0.01 * a)) for a in ALPHAS])
    assert not verdict.passed and verdict.numbers["linearization_distance_at_largest_alpha"] > 0.1


def test_claim_needs_three_alphas():
    verdict = claim([_record(a, 1.0 / a, 0.1, 0.1) for a in (1.0, 10.0)])
    assert not verdict.passed and "needs finished runs at three or more alphas" in verdict.reason


def test_bad_input_names_the_field():
    base = CATALOG.get(NAME).sweep("tiny").base
    with pytest.raises(SpecError, match="alpha.*greater than 0"):
        with_values(base, {"problem.alpha": 0.0})
    with pytest.raises(SpecError, match="kernel_points"):
        with_values(base, {"problem.kernel_points": 1})
    with pytest.raises(SpecError, match="mse"):
        CATALOG.get(NAME).check(with_values(base, {"train.loss": "cross_entropy"}))
    with pytest.raises(SpecError, match="lazy_scaling"):
        CATALOG.get(NAME).check(RunSpec(experiment=NAME))
    assert LazyScaling().alpha == 1.0


def test_the_linearized_model_is_the_same_function_at_every_alpha():
    """alpha J (w - w0) trained on loss / alpha^2: the update of w - w0 scales like 1/alpha, so the trained linearized
    model's outputs do not depend on alpha (an exact identity; float32 rounding only), while the network's do."""
    experiment = CATALOG.get(NAME)
    base = with_values(experiment.sweep("tiny").base, {"train.max_steps": 10, "problem.kernel_points": 4})
    small, large = (experiment.run(with_values(base, {"problem.alpha": a})) for a in (0.5, 50.0))
    assert small.status == large.status == "ok"
    assert small.final["train_loss_linearized"] == pytest.approx(large.final["train_loss_linearized"], rel=1e-4)
    assert small.final["rel_weight_change_linearized"] == pytest.approx(100 * large.final["rel_weight_change_linearized"], rel=1e-3)
    assert small.final["rel_weight_change"] > 50 * large.final["rel_weight_change"]  # the network's weights move like 1/alpha too
    assert small.final["linearization_distance"] > large.final["linearization_distance"]
