"""Mode connectivity: barriers on known paths, Bezier endpoints, permutation invariance and exact recovery by weight
matching, refusal of unsupported architectures, and the claim check on made-up records."""

from __future__ import annotations

import functools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from biaslab import models
from biaslab.experiments import CATALOG
from biaslab.experiments.mode_connectivity import NAME, PATHS, connectivity_claim
from biaslab.probes import connectivity, landscape
from biaslab.runtime import generator
from biaslab.spec import DataSpec, ModelSpec, RunSpec, SpecError
from biaslab.store import RunRecord


def _data(n: int = 200, d: int = 10, k: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    return x, (x[:, :k] + 0.3 * torch.randn(n, k, generator=g, dtype=torch.float64)).argmax(dim=1)


@functools.lru_cache(maxsize=None)
def _trained_mlp(seed: int, width: int = 16, depth: int = 2, steps: int = 200) -> nn.Module:
    """A small MLP fitted by full-batch gradient descent on `_data` (so its hidden units are distinct and structured).

    Cached: tests only read these modules (every probe swaps parameters in with functional_call)."""
    model = models.build(ModelSpec(kind="mlp", width=width, depth=depth), (10,), 3, generator(seed, "init"), dtype=torch.float64)
    x, y = _data()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model


def _random_perms(graph: connectivity.PermutationGraph, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randperm(size, generator=g) for size in graph.sizes]


# ---------------------------------------------------------------- barriers and curves


def test_barrier_of_paths_with_known_values():
    assert connectivity.barrier([1.0, 3.0, 2.0]) == pytest.approx(1.5)  # 3 - (1 + 2) / 2
    assert connectivity.barrier([0.2, 0.9, 0.4, 0.2]) == pytest.approx(0.7)
    assert connectivity.barrier([2.0, 1.0, 2.0]) == pytest.approx(0.0)  # max at the ends
    assert connectivity.barrier([1.0, 0.5, 3.0]) == pytest.approx(1.0)  # max at an end above the mean of the ends
    with pytest.raises(ValueError, match="two ends"):
        connectivity.barrier([1.0])


def test_bezier_curve_passes_through_its_endpoints_and_weights_the_bend_at_the_middle():
    a, b = _trained_mlp(0), _trained_mlp(1)
    start, end = landscape.parameters(a), landscape.parameters(b)
    bend = {name: torch.full_like(t, 0.7) for name, t in start.items()}
    for name in start:
        assert torch.equal(connectivity.bezier_point(start, bend, end, 0.0)[name], start[name])
        assert torch.equal(connectivity.bezier_point(start, bend, end, 1.0)[name], end[name])
        middle = 0.25 * start[name] + 0.5 * bend[name] + 0.25 * end[name]
        assert torch.allclose(connectivity.bezier_point(start, bend, end, 0.5)[name], middle)
    x, y = _data()
    path = connectivity.bezier_path(a, F.cross_entropy, x, y, start, bend, end, [0.0, 0.5, 1.0])
    assert path.loss[0] == pytest.approx(landscape.loss_and_error(a, F.cross_entropy, x, y, start)[0])
    assert path.loss[-1] == pytest.approx(landscape.loss_and_error(a, F.cross_entropy, x, y, end)[0])


def test_bezier_with_the_midpoint_as_bend_is_the_straight_line():
    a, b = _trained_mlp(0), _trained_mlp(1)
    start, end = landscape.parameters(a), landscape.parameters(b)
    midpoint = {name: 0.5 * (start[name] + end[name]) for name in start}
    x, y = _data()
    ts = [0.0, 0.3, 0.5, 0.8, 1.0]
    curve = connectivity.bezier_path(a, F.cross_entropy, x, y, start, midpoint, end, ts)
    straight = landscape.line(a, F.cross_entropy, x, y, start, end, ts)
    assert curve.loss == pytest.approx(straight.loss, rel=1e-10)


def test_trained_bend_lowers_the_barrier_and_leaves_the_module_alone():
    a, b = _trained_mlp(0), _trained_mlp(1)
    start, end = landscape.parameters(a), landscape.parameters(b)
    x, y = _data()
    ts = torch.linspace(0, 1, 11).tolist()
    straight = connectivity.barrier(landscape.line(a, F.cross_entropy, x, y, start, end, ts).loss)
    bend, fitted = connectivity.train_bend(a, F.cross_entropy, x, y, start, end, torch.Generator().manual_seed(0), epochs=30, batch_size=50, lr=0.05)
    curved = connectivity.barrier(connectivity.bezier_path(a, F.cross_entropy, x, y, start, bend, end, ts).loss)
    assert fitted.steps == 30 * 4 and math.isfinite(fitted.final_loss)
    assert straight > 0.05 and curved < 0.5 * straight
    assert all(torch.equal(p, start[n]) for n, p in landscape.parameters(a).items())  # the module's weights untouched


# ---------------------------------------------------------------- permutations


@pytest.mark.parametrize(
    "spec, in_shape",
    [
        (ModelSpec(kind="mlp", width=12, depth=3), (10,)),
        (ModelSpec(kind="cnn", width=6, depth=3, kernel_size=5), (2, 20)),  # 1-D channels, read-out of flattened channels
        (ModelSpec(kind="cnn", width=5, depth=2, kernel_size=3), (3, 8, 8)),
    ],
)
def test_a_permuted_network_computes_the_same_function(spec, in_shape):
    model = models.build(spec, in_shape, 4, generator(0, "init"), dtype=torch.float64)
    params = landscape.parameters(model)
    graph = connectivity.permutation_graph(model)
    permuted = connectivity.permute(params, _random_perms(graph, 3), graph)
    x = torch.randn(9, *in_shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert any(not torch.equal(permuted[n], params[n]) for n in params)  # the parameters did move
    assert torch.allclose(functional_call(model, permuted, (x,)), functional_call(model, params, (x,)), atol=1e-12)


def test_weight_matching_recovers_a_known_permutation_of_a_trained_mlp_exactly():
    model = _trained_mlp(0, width=16, depth=3)
    params = landscape.parameters(model)
    graph = connectivity.permutation_graph(model)
    assert graph.sizes == (16, 16, 16)
    perms = _random_perms(graph, 7)
    shuffled = connectivity.permute(params, perms, graph)
    matching = connectivity.weight_matching(model, params, shuffled, torch.Generator().manual_seed(0))
    for found, applied in zip(matching.perms, perms):
        assert torch.equal(found, torch.argsort(applied))  # found undoes applied: applied[found] = identity
    assert all(torch.equal(matching.aligned[n], params[n]) for n in params)
    x, y = _data()
    path = landscape.line(model, F.cross_entropy, x, y, params, matching.aligned, [0.0, 0.25, 0.5, 0.75, 1.0])
    assert connectivity.barrier(path.loss) == pytest.approx(0.0, abs=1e-12)
    unaligned = landscape.line(model, F.cross_entropy, x, y, params, shuffled, [0.0, 0.25, 0.5, 0.75, 1.0])
    assert connectivity.barrier(unaligned.loss) > 0.01  # without matching, the same network permuted is a barrier away


def test_weight_matching_recovers_a_known_permutation_of_cnn_channels():
    model = models.build(ModelSpec(kind="cnn", width=8, depth=3, kernel_size=5), (1, 40), 10, generator(0, "init"), dtype=torch.float64)
    params = landscape.parameters(model)
    graph = connectivity.permutation_graph(model)
    perms = _random_perms(graph, 11)
    matching = connectivity.weight_matching(model, params, connectivity.permute(params, perms, graph), torch.Generator().manual_seed(0))
    assert all(torch.equal(found, torch.argsort(applied)) for found, applied in zip(matching.perms, perms))
    assert all(torch.equal(matching.aligned[n], params[n]) for n in params)


def test_weight_matching_of_two_independent_networks_raises_their_similarity_and_keeps_the_function():
    a, b = _trained_mlp(0), _trained_mlp(1)
    pa, pb = landscape.parameters(a), landscape.parameters(b)
    matching = connectivity.weight_matching(a, pa, pb, torch.Generator().manual_seed(0))

    def inner(p):  # sum of <A, B> over all tensors: what weight matching maximizes
        return sum(float((pa[n] * p[n]).sum()) for n in pa)

    assert inner(matching.aligned) > inner(pb)
    x, _ = _data()
    assert torch.allclose(functional_call(a, matching.aligned, (x,)), functional_call(a, pb, (x,)), atol=1e-10)


def test_unsupported_architectures_are_refused_with_the_supported_ones_named():
    token = models.build(ModelSpec(kind="token_mlp", width=8, embed_dim=4), (2,), 7, generator(0, "init"))
    for model in (token, nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))):
        with pytest.raises(ValueError, match="MLP.*CNN"):
            connectivity.permutation_graph(model)
    normalized = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="batch norm"):
        connectivity.permutation_graph(normalized)


def test_the_experiment_refuses_model_kinds_it_cannot_align():
    spec = RunSpec(experiment=NAME, data=DataSpec(name="modular", modulus=7), model=ModelSpec(kind="token_mlp"))
    with pytest.raises(SpecError, match="model.kind.*'mlp', 'cnn'"):
        CATALOG.get(NAME).check(spec)
    CATALOG.get(NAME).check(RunSpec(experiment=NAME))  # an MLP passes


# ---------------------------------------------------------------- claim on made-up records


def _record(width: int, seed: int, barriers: dict[str, float]) -> RunRecord:
    spec = RunSpec(experiment=NAME, seed=seed, model=ModelSpec(kind="mlp", width=width, depth=2))
    final = {"train_error": 0.0, "train_error_b": 0.0, "test_error": 0.3}
    for path in PATHS:
        final |= {f"barrier_loss.{path}": barriers[path] + 0.01 * seed, f"barrier_test_error.{path}": barriers[path] / 10}
    return RunRecord(spec=spec.model_dump(mode="json"), spec_id=spec.spec_id, status="ok", final=final)


def _records(linear, bezier, matched, spawned=0.05, widths=(16, 64, 256)) -> list[RunRecord]:
    return [
        _record(w, s, {"linear": linear[i], "bezier": bezier[i], "matched": matched[i], "spawned": spawned})
        for i, w in enumerate(widths)
        for s in (0, 1)
    ]


def test_claim_passes_when_the_barrier_is_clear_both_methods_halve_it_and_matching_improves_with_width():
    verdict = connectivity_claim(_records(linear=[1.0, 1.5, 2.0], bezier=[0.1, 0.1, 0.05], matched=[0.45, 0.3, 0.1]))
    assert verdict.passed, verdict.reason
    assert verdict.numbers["spearman_width_vs_matched_barrier"] == pytest.approx(-1.0)
    assert verdict.numbers["barrier_loss.linear.H16"] == pytest.approx(1.005)  # seed mean of 1.0 and 1.01
    assert any("Spearman(width, matched barrier) among them = -1" in note for note in verdict.notes)  # all endpoints fitted


def test_claim_fails_when_the_naive_barrier_is_not_clear():
    verdict = connectivity_claim(_records(linear=[0.05, 0.08, 0.09], bezier=[0.0, 0.0, 0.0], matched=[0.02, 0.01, 0.0]))
    assert not verdict.passed and verdict.numbers["naive_claim_passed"] == 0.0


def test_claim_fails_when_the_bezier_curve_does_not_halve_the_barrier_at_some_width():
    verdict = connectivity_claim(_records(linear=[1.0, 1.5, 2.0], bezier=[0.1, 0.9, 0.05], matched=[0.45, 0.3, 0.1]))
    assert not verdict.passed and verdict.numbers["bezier_claim_passed"] == 0.0 and verdict.numbers["matching_claim_passed"] == 1.0


def test_claim_fails_when_the_matched_barrier_grows_with_width():
    verdict = connectivity_claim(_records(linear=[1.0, 1.5, 2.0], bezier=[0.1, 0.1, 0.05], matched=[0.1, 0.3, 0.45]))
    assert not verdict.passed and verdict.numbers["width_claim_passed"] == 0.0 and verdict.numbers["matching_claim_passed"] == 1.0


def test_claim_fails_with_fewer_than_three_widths_and_with_no_runs():
    verdict = connectivity_claim(_records(linear=[1.0, 2.0], bezier=[0.1, 0.1], matched=[0.3, 0.1], widths=(16, 256)))
    assert not verdict.passed and verdict.numbers["width_claim_passed"] == 0.0
    empty = connectivity_claim([])
    assert not empty.passed and empty.numbers == {"n_runs": 0.0} and empty.reason == "no finished runs to judge"
