"""The work estimate `auto` weighs: FLOPs from the spec, checked against hand counts and a counted training step."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from biaslab import data as datasets
from biaslab import models
from biaslab.experiments.work import run_flops
from biaslab.runtime import generator
from biaslab.spec import DataSpec, ModelSpec, RunSpec, TrainSpec
from biaslab.sweep import SMALL_SWEEP_STEPS, plan
from biaslab.train import evaluation_steps

DATA = DataSpec(name="mnist1d", n_train=400, n_test=200)


def _spec(width: int, steps: int, batch: int | None = 100, optimizer: str = "sgd") -> RunSpec:
    optimizer = "gd" if batch is None and optimizer == "sgd" else optimizer
    return RunSpec(experiment="width-sweep", data=DATA, model=ModelSpec(width=width), train=TrainSpec(optimizer=optimizer, batch_size=batch, max_steps=steps, eval_every=steps))


def test_an_mlps_estimate_is_three_forward_passes_per_batch_example_and_step_plus_evaluations():
    spec = _spec(64, steps=50)
    forward = 2 * (40 * 64 + 64 * 10)  # two matmuls: 40 -> 64 -> 10, 2 FLOPs per multiply-add
    evaluations = len(evaluation_steps(spec.train)) * forward * (400 + 200)
    assert run_flops(spec) == 3 * forward * 100 * 50 + evaluations
    assert run_flops(_spec(64, steps=50, optimizer="sam")) == 2 * 3 * forward * 100 * 50 + evaluations  # SAM: two gradients a step


def test_the_estimate_agrees_with_a_counted_training_step_of_the_built_model():
    spec = RunSpec(experiment="width-sweep", data=DATA, model=ModelSpec(kind="cnn", width=16, depth=2), train=TrainSpec(max_steps=1, eval_every=1))
    dataset = datasets.load(spec.data)
    model = models.build(spec.model, dataset.x_train.shape[1:], 10, generator(0, "init"))
    x, y = dataset.x_train[:100], dataset.y_train[:100]
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.cross_entropy(model(x), y).backward()
    step = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(dataset.x_train), model(dataset.x_test)
    estimate = run_flops(spec)
    assert abs(estimate - (step + counter.get_total_flops())) <= 0.1 * estimate  # backward of the first layer's input is skipped


def test_auto_sends_few_heavy_full_batch_steps_to_workers_and_many_tiny_ones_not():
    heavy = [_spec(width, steps=2000, batch=None) for width in (1024, 1000)]  # 4000 steps: below the step rule, but ~2 TFLOP
    assert sum(s.train.max_steps for s in heavy) < SMALL_SWEEP_STEPS
    jobs, processes = plan(heavy, "auto", workers=2)
    assert len(jobs) == 2 and processes  # two widths: two jobs (runs of one width would be one population)
    light = [_spec(width, steps=12_000, batch=10) for width in (8, 12)]  # 24k steps: above the step rule, but ~0.05 GFLOP
    assert sum(s.train.max_steps for s in light) >= SMALL_SWEEP_STEPS
    jobs, processes = plan(light, "auto", workers=2)
    assert len(jobs) == 2 and not processes


def test_runs_without_an_estimate_are_weighed_by_their_steps():
    from biaslab.experiments import CATALOG

    specs = CATALOG.get("min-norm").sweep("quick").expand()
    assert all(run_flops(s) is None for s in specs)
    assert plan(specs, "auto", workers=2)[1] == (sum(s.train.max_steps for s in specs) >= SMALL_SWEEP_STEPS)


def test_workers_start_the_largest_jobs_first_and_keep_the_grid_order_without_estimates():
    widths = (8, 512, 64, 1024)
    specs = [_spec(width, steps=2000, batch=None).model_copy(update={"seed": seed}) for width in widths for seed in (0, 1)]
    jobs, processes = plan(specs, "auto", workers=2)
    assert processes and [job[0].model.width for job in jobs] == [1024, 512, 64, 8]  # one population per width
    assert [job[0].model.width for job in plan(specs, "inprocess", workers=2)[0][::2]] == list(widths)  # in one process: grid order
    assert [job[0].model.width for job in plan(specs, "processes", workers=2)[0][::2]] == [1024, 512, 64, 8]  # single runs
    from biaslab.sweep import longest_first

    unknown = [[RunSpec(experiment="min-norm", problem={"kind": "least_squares"}, dtype="float64")], *jobs[::-1]]
    assert longest_first(unknown) == unknown  # one run without an estimate: the order is left as it was
