"""A population trains each member exactly as `fit` would train it alone (float64, tight tolerance), on either
path (baddbmm for plain MLPs, vmap for any architecture)."""

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
from biaslab.train.population import _fit, _Layout, _member_batches, choose_path, fit_population

MEMBERS = 3
PATHS = ("baddbmm", "vmap")


def _members(train: dict, noise_step: float = 0.1, width: int = 12, **model):
    specs = [TrainSpec(**(train | {"lr": train.get("lr", 0.05) * (1 + 0.5 * m)})) for m in range(MEMBERS)]
    data = [
        datasets.load(DataSpec(name="teacher", n_train=120, n_test=60, dim=6, n_classes=3, label_noise=noise_step * m), dtype=torch.float64)
        for m in range(MEMBERS)
    ]
    nets = [models.build(ModelSpec(width=width, **model), data[0].in_shape, 3, generator(m, "init"), dtype=torch.float64) for m in range(MEMBERS)]
    return specs, data, nets


def _norm_hook(model: torch.nn.Module, step: int) -> dict[str, float]:
    """An on_eval hook that reads the member's weights as they are at `step`."""
    return {"norm": float(sum(p.detach().square().sum() for p in model.parameters())), "hook_step": float(step)}


def _population(specs, data, nets, path: str | None = None, hooks: bool = True):
    """fit_population (path None: the chooser's path) or the named path, each member with an on_eval hook."""
    generators, on_evals = [generator(m, "batches") for m in range(len(nets))], [_norm_hook if hooks else None] * len(nets)
    if path is None:
        return fit_population(nets, data, specs, generators, on_evals)
    return _fit(nets, data, specs, generators, on_evals, path)


def _compare(specs, data, nets, path: str | None = None):
    alone = [copy.deepcopy(n) for n in nets]
    loop = [fit(alone[m], data[m], specs[m], generator(m, "batches"), _norm_hook) for m in range(MEMBERS)]
    together = _population(specs, data, nets, path)
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


@pytest.mark.slow
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
@pytest.mark.parametrize("path", PATHS)
def test_population_equals_a_loop_of_single_runs(train, path):
    _compare(*_members(train), path)


@pytest.mark.parametrize("path", PATHS)
def test_members_stop_on_their_own_and_the_rest_go_on(path):
    train = dict(optimizer="sgd", lr=0.2, momentum=0.9, batch_size=40, max_steps=1500, eval_every=25, stop_zero_error_evals=2)
    loop = _compare(*_members(train, noise_step=0.2, width=64), path)
    assert {f.stopped for f in loop} == {"zero_error"} and len({f.steps for f in loop}) > 1


@pytest.mark.parametrize("path", PATHS)
def test_stopped_members_are_no_longer_computed(path, monkeypatch):
    """The gradients are computed for the live members only: the member-steps computed are the members' own steps
    (a member with its own inputs too), and the numbers still equal the loop's."""
    from biaslab.train import population

    computed = []
    make = population._baddbmm_path if path == "baddbmm" else population._vmap_path

    def counting(*args):
        inner = make(*args)
        return inner._replace(grads=lambda p, x, x_dim, y: computed.append(y.shape[0]) or inner.grads(p, x, x_dim, y))

    monkeypatch.setattr(population, "_baddbmm_path" if path == "baddbmm" else "_vmap_path", counting)
    train = dict(optimizer="sgd", lr=0.2, momentum=0.9, batch_size=40, max_steps=1500, eval_every=25, stop_zero_error_evals=2)
    specs, data, nets = _members(train, noise_step=0.2, width=64)
    data[1] = datasets.load(DataSpec(name="teacher", n_train=120, n_test=60, dim=6, n_classes=3, label_noise=0.2, inputs="gaussian"), dtype=torch.float64)
    loop = _compare(specs, data, nets, path)
    steps = sorted(f.steps for f in loop)
    assert steps[0] < steps[-1] and sum(computed) == sum(steps) and len(computed) == steps[-1]


def test_the_flat_buffer_holds_every_parameter_once_and_its_views_share_it():
    params = {"a.weight": torch.randn(3, 4, 5), "a.bias": torch.randn(3, 5), "b": torch.randn(3, 2, 1, 2)}
    layout = _Layout.of(params)
    flat = layout.flatten(params)  # (members, 20 + 5 + 4)
    views = layout.views(flat)
    assert flat.shape == (3, 29) and all(torch.equal(views[name], params[name]) for name in params)
    flat.add_(1.0)
    assert all(torch.equal(views[name], params[name] + 1.0) for name in params)  # views, not copies


@pytest.mark.parametrize("shared_inputs", [True, False], ids=["shared-inputs", "own-inputs"])
@pytest.mark.parametrize(
    "model",
    [dict(), dict(activation="tanh", depth=2), dict(activation="gelu", depth=2), dict(bias=False), dict(readout_bias=False)],
    ids=["relu", "tanh-deep", "gelu-deep", "no-bias", "no-readout-bias"],
)
def test_gradients_by_hand_are_autograds_bit_for_bit(model, shared_inputs):
    """float32, where any difference in the operations would show in the last bits."""
    from torch.func import stack_module_state

    from biaslab.train import cross_entropy
    from biaslab.train.population import _baddbmm_path

    nets = [models.build(ModelSpec(width=32, **model), (6,), 4, generator(m, "init")) for m in range(MEMBERS)]
    by_hand = _baddbmm_path(nets[0], cross_entropy)
    by_autograd = _baddbmm_path(nets[0], cross_entropy, by_hand=False)
    params = by_hand.own({name: t.detach() for name, t in stack_module_state(nets)[0].items()})
    torch.manual_seed(0)
    x, x_dim = (torch.randn(50, 6), None) if shared_inputs else (torch.randn(MEMBERS, 50, 6), 0)
    y = torch.randint(0, 4, (MEMBERS, 50))
    hand, auto = by_hand.grads(params, x, x_dim, y), by_autograd.grads(params, x, x_dim, y)
    assert hand.keys() == auto.keys() and all(torch.equal(hand[name], auto[name]) for name in hand)


def test_member_batches_are_each_members_own_rows():
    idx = torch.randint(0, 7, (3, 4))  # (members, batch)
    shared, own = torch.randn(7, 2, 3), torch.randn(3, 7, 2, 3)
    assert torch.equal(_member_batches(shared, None, idx), shared[idx])
    assert torch.equal(_member_batches(own, 0, idx), own[torch.arange(3)[:, None], idx])


@pytest.mark.parametrize("path", PATHS)
def test_one_member_diverging_leaves_the_others_alone(path):
    specs, data, nets = _members(dict(optimizer="sgd", batch_size=40, max_steps=60, eval_every=15))
    specs[1] = specs[1].model_copy(update={"lr": 1e8})
    loop = _compare(specs, data, nets, path)
    assert [f.status for f in loop] == ["ok", "diverged", "ok"]


@pytest.mark.parametrize("batch_size", [40, None], ids=["minibatch", "full-batch"])
@pytest.mark.parametrize("path", PATHS)
def test_members_with_different_inputs(path, batch_size):
    specs, data, nets = _members(dict(optimizer="sgd", momentum=0.9, batch_size=batch_size, max_steps=30, eval_every=10))
    data[2] = datasets.load(DataSpec(name="teacher", n_train=120, n_test=60, dim=6, n_classes=3, inputs="gaussian"), dtype=torch.float64)
    _compare(specs, data, nets, path)


@pytest.mark.parametrize(
    "model",
    [dict(activation="tanh", depth=2), dict(activation="gelu"), dict(bias=False), dict(readout_bias=False, init="torch")],
    ids=["tanh-deep", "gelu", "no-bias", "no-readout-bias"],
)
def test_baddbmm_reproduces_every_mlp_variant_it_takes(model):
    specs, data, nets = _members(dict(optimizer="adamw", lr=0.01, weight_decay=0.05, batch_size=40, max_steps=30, eval_every=10), **model)
    assert choose_path(nets)[0] == "baddbmm"
    _compare(specs, data, nets)


@pytest.mark.parametrize(
    "train",
    [
        dict(optimizer="sgd", momentum=0.9, weight_decay=1e-3, batch_size=40, max_steps=40, eval_every=10),
        dict(optimizer="adam", lr=0.01, batch_size=None, max_steps=30, eval_every=10),
    ],
    ids=["sgd-minibatch", "adam-full-batch"],
)
def test_the_two_paths_agree(train):
    specs, data, nets = _members(train, width=16, depth=2)
    copies = [copy.deepcopy(n) for n in nets]
    by_vmap, by_bmm = _population(specs, data, nets, "vmap"), _population(specs, data, copies, "baddbmm")
    for a, b in zip(nets, copies):
        for p, q in zip(a.parameters(), b.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-12)
    for f, g in zip(by_vmap, by_bmm):
        assert (f.status, f.stopped, f.steps, len(f.history)) == (g.status, g.stopped, g.steps, len(g.history))
        for r, s in zip(f.history, g.history):
            assert r == pytest.approx(s, rel=1e-9, abs=1e-12)


def test_the_same_seeds_give_the_same_numbers():
    train = dict(optimizer="sgd", momentum=0.9, batch_size=40, max_steps=20, eval_every=10)
    first, second = _members(train), _members(train)
    runs = [_population(*members) for members in (first, second)]
    assert [f.history for f in runs[0]] == [f.history for f in runs[1]]
    for a, b in zip(first[2], second[2]):
        assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("model", [dict(), dict(activation="tanh", depth=3), dict(activation="gelu", bias=False), dict(dropout=0.1), dict(kind="cnn")])
def test_the_spec_rule_names_the_path_the_chooser_takes(model):
    from biaslab.train.population import batched_matmul

    spec = ModelSpec(width=8, **model)
    nets = [models.build(spec, (1, 12), 3, generator(m, "init")) for m in range(2)]
    assert batched_matmul(spec) == (choose_path(nets)[0] == "baddbmm")


def test_the_chooser_takes_baddbmm_for_plain_mlps_only():
    data = datasets.load(DataSpec(name="teacher", n_train=20, n_test=10, dim=6, n_classes=3), dtype=torch.float64)

    def built(**fields) -> list[torch.nn.Module]:
        return [models.build(ModelSpec(**fields), data.in_shape, 3, generator(m, "init"), dtype=torch.float64) for m in range(2)]

    assert choose_path(built(width=8))[0] == "baddbmm"
    assert choose_path(built(width=8, activation="tanh", bias=False))[0] == "baddbmm"
    seq = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 3))
    cnn = [models.build(ModelSpec(kind="cnn", width=4, depth=2), (1, 12), 3, generator(m, "init")) for m in range(2)]
    mixed = built(width=8) + built(width=8, activation="tanh")[:1]
    for others in (cnn, [seq, copy.deepcopy(seq)], mixed):
        path, reason = choose_path(others)
        assert path == "vmap" and reason


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


def test_auto_plan_on_cpu_pools_mlps_at_any_width_other_models_narrow_and_uses_processes():
    specs = [_spec(w, seed=s) for w in (8, 32, 256) for s in (0, 1)]
    cnns = [spec.model_copy(update={"model": ModelSpec(kind="cnn", width=w)}) for w in (8, 256) for spec in specs[:2]]
    jobs, processes = plan(specs + cnns, "auto", workers=2)
    assert sorted(len(j) for j in jobs) == [1, 1, 2, 2, 2, 2] and processes
    assert {j[0].model.kind for j in jobs if len(j) == 1} == {"cnn"} and {j[0].model.width for j in jobs if len(j) == 1} == {256}
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
