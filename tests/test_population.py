"""A population trains each member exactly as `fit` would train it alone (float64, tight tolerance)."""

from __future__ import annotations

import copy

import pytest
import torch

from biaslab import data as datasets
from biaslab import models
from biaslab.runtime import generator
from biaslab.spec import DataSpec, ModelSpec, RunSpec, TrainSpec
from biaslab.sweep import group_populations, plan, population_key
from biaslab.train import fit
from biaslab.train.population import fit_population

MEMBERS = 3


def _members(train: dict, noise_step: float = 0.1, width: int = 12):
    specs = [TrainSpec(**(train | {"lr": train.get("lr", 0.05) * (1 + 0.5 * m)})) for m in range(MEMBERS)]
    data = [
        datasets.load(DataSpec(name="teacher", n_train=120, n_test=60, dim=6, n_classes=3, label_noise=noise_step * m), dtype=torch.float64)
        for m in range(MEMBERS)
    ]
    nets = [models.build(ModelSpec(width=width), data[0].in_shape, 3, generator(m, "init"), dtype=torch.float64) for m in range(MEMBERS)]
    return specs, data, nets


def _compare(specs, data, nets):
    alone = [copy.deepcopy(n) for n in nets]
    loop = [fit(alone[m], data[m], specs[m], generator(m, "batches")) for m in range(MEMBERS)]
    together = fit_population(nets, data, specs, [generator(m, "batches") for m in range(MEMBERS)])
    for a, b in zip(alone, nets):
        for p, q in zip(a.parameters(), b.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-8, atol=1e-10, equal_nan=True)
    for f, g in zip(loop, together):
        assert (f.status, f.stopped, f.steps) == (g.status, g.stopped, g.steps)
        assert len(f.history) == len(g.history)
        for r, s in zip(f.history, g.history):
            assert r.keys() == s.keys()
            for key in r:
                assert r[key] == pytest.approx(s[key], rel=1e-8, abs=1e-10, nan_ok=True), key
    return loop


@pytest.mark.parametrize(
    "train",
    [
        dict(optimizer="sgd", momentum=0.9, batch_size=40, max_steps=60, eval_every=15),
        dict(optimizer="sgd", momentum=0.9, nesterov=True, weight_decay=1e-3, batch_size=40, max_steps=60, eval_every=15),
        dict(optimizer="adam", lr=0.01, weight_decay=1e-3, batch_size=40, max_steps=60, eval_every=15),
        dict(optimizer="adamw", lr=0.01, weight_decay=0.1, betas=(0.8, 0.95), batch_size=40, max_steps=60, eval_every=15),
        dict(optimizer="gd", momentum=0.5, batch_size=None, loss="mse", max_steps=40, eval_every=10),
        dict(optimizer="sgd", batch_size=50, schedule="step", lr_decay=0.5, decay_every=7, max_steps=45, eval_every=9),
    ],
    ids=["sgd-momentum", "nesterov-wd", "adam", "adamw", "gd-mse", "step-schedule"],
)
def test_population_equals_a_loop_of_single_runs(train):
    _compare(*_members(train))


def test_members_stop_on_their_own_and_the_rest_go_on():
    train = dict(optimizer="sgd", lr=0.2, momentum=0.9, batch_size=40, max_steps=1500, eval_every=25, stop_zero_error_evals=2)
    loop = _compare(*_members(train, noise_step=0.2, width=64))
    assert {f.stopped for f in loop} == {"zero_error"} and len({f.steps for f in loop}) > 1


def test_one_member_diverging_leaves_the_others_alone():
    specs, data, nets = _members(dict(optimizer="sgd", batch_size=40, max_steps=60, eval_every=15))
    specs[1] = specs[1].model_copy(update={"lr": 1e8})
    loop = _compare(specs, data, nets)
    assert [f.status for f in loop] == ["ok", "diverged", "ok"]


def test_members_with_different_inputs():
    specs, data, nets = _members(dict(optimizer="sgd", batch_size=40, max_steps=30, eval_every=10))
    data[2] = datasets.load(DataSpec(name="teacher", n_train=120, n_test=60, dim=6, n_classes=3, inputs="gaussian"), dtype=torch.float64)
    _compare(specs, data, nets)


def test_incompatible_members_are_rejected_with_the_field_named():
    specs, data, nets = _members(dict(optimizer="sgd", batch_size=40, max_steps=30, eval_every=10))
    specs[1] = specs[1].model_copy(update={"batch_size": 20})
    with pytest.raises(ValueError, match="train.batch_size"):
        fit_population(nets, data, specs, [generator(m, "batches") for m in range(MEMBERS)])


def test_batchnorm_and_dropout_are_refused():
    specs, data, _ = _members(dict(optimizer="sgd", batch_size=40, max_steps=5, eval_every=5))
    with_bn = [torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 3)).double() for _ in range(MEMBERS)]
    with pytest.raises(ValueError, match="buffers"):
        fit_population(with_bn, data, specs, [generator(m, "batches") for m in range(MEMBERS)])
    with_dropout = [torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.Dropout(0.5), torch.nn.Linear(4, 3)).double() for _ in range(MEMBERS)]
    with pytest.raises(ValueError, match="dropout"):
        fit_population(with_dropout, data, specs, [generator(m, "batches") for m in range(MEMBERS)])


def _spec(width: int, seed: int = 0, noise: float = 0.0, lr: float = 0.05, experiment: str = "width-sweep", steps: int = 5000) -> RunSpec:
    return RunSpec(experiment=experiment, seed=seed, model=ModelSpec(width=width), data=DataSpec(label_noise=noise), train=TrainSpec(lr=lr, max_steps=steps))


def test_population_key_ignores_only_member_fields():
    assert population_key(_spec(8, seed=0, noise=0.0, lr=0.1)) == population_key(_spec(8, seed=3, noise=0.15, lr=0.01))
    assert population_key(_spec(8)) != population_key(_spec(16))


def test_auto_plan_on_cpu_pools_narrow_models_and_uses_processes():
    specs = [_spec(w, seed=s) for w in (8, 32, 256) for s in (0, 1)]
    jobs, processes = plan(specs, "auto", workers=2)
    assert sorted(len(j) for j in jobs) == [1, 1, 2, 2] and processes
    jobs, processes = plan(specs, "inprocess", workers=2)
    assert all(len(j) == 1 for j in jobs) and not processes
    jobs, processes = plan(specs, "population", workers=2)
    assert sorted(len(j) for j in jobs) == [2, 2, 2] and not processes


def test_auto_keeps_a_small_sweep_in_process():
    specs = [_spec(w, seed=s, steps=400) for w in (8, 256) for s in (0, 1)]
    _, processes = plan(specs, "auto", workers=2)
    assert not processes


def test_only_population_capable_experiments_are_grouped():
    specs = [_spec(8, seed=s, experiment="custom") for s in (0, 1)]
    assert [len(j) for j in group_populations(specs, lambda s: True)] == [2]


@pytest.mark.parametrize("change", [{"train": {"l1": 1e-4}}, {"train": {"augment": "random_crop"}}, {"model": {"dropout": 0.5}}])
def test_one_rule_decides_pooling_and_fit_population_refuses_what_it_excludes(change):
    """poolable(spec) excludes l1, augmentation and dropout; the sweep runs such specs alone, and fit_population
    refuses them with the reason `refusal` gives (before l1 was grouped, raised, and fell back)."""
    from biaslab.experiments import can_pool
    from biaslab.train.population import poolable, refusal

    (section, values), = change.items()
    specs = [_spec(8, seed=s) for s in (0, 1)]
    odd = [s.model_copy(update={section: getattr(s, section).model_copy(update=values)}) for s in specs]
    assert all(poolable(s) and can_pool(s) for s in specs) and not any(poolable(s) or can_pool(s) for s in odd)
    assert sorted(len(job) for job in group_populations(specs + odd, lambda s: True)) == [1, 1, 2]
    data = datasets.load(DataSpec(name="teacher", n_train=40, n_test=20, dim=6, n_classes=3), dtype=torch.float64)
    nets = [models.build(odd[m].model, data.in_shape, 3, generator(m, "init"), dtype=torch.float64) for m in range(2)]
    reason = refusal(odd[0].train, odd[0].model.dropout)
    with pytest.raises(ValueError) as raised:
        fit_population(nets, [data, data], [s.train for s in odd], [generator(m, "batches") for m in range(2)])
    assert str(raised.value) == reason
