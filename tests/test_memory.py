"""Memory: estimates before a run, admission of jobs by a memory budget, and estimates against measured peaks.

The admission tests use a fake budget and fake estimates (gigabytes that exist
only as numbers) and a fake process pool, so they need no real memory. The
measured tests run small specs in a fresh process each (`measure_peak`) and hold
the estimate of what a run adds to an idle worker to within ESTIMATE_FACTOR of
what it measurably added.
"""

from __future__ import annotations

import warnings
from collections import deque
from concurrent.futures import Future

import pytest

import biaslab.sweep as sweep_module
from biaslab.cli import main
from biaslab.convex import nuclear_norm_memory
from biaslab.experiments import CATALOG
from biaslab.experiments.matrix_factorization import paper as mf_paper
from biaslab.experiments.matrix_factorization import tiny as mf_tiny
from biaslab.experiments.memory import (
    GB,
    PROCESS_BASELINE,
    data_size,
    default_working_memory,
    gigabytes,
    job_peak_memory,
    measure_peak,
    model_size,
    peak_memory,
)
from biaslab.spec import DataSpec, MatrixCompletion, ModelSpec, RunSpec, TrainSpec
from biaslab.sweep import Admission, SweepWarning, memory_budget, memory_note, parse_bytes, plan, run_in_processes, split_to_fit

ESTIMATE_FACTOR = (0.9, 1.6)  # estimated growth / measured growth of a worker running the job (measured 1.06-1.29)


def sized(sizes: dict[str, float]):
    """A fake estimate: jobs are lists of names, each name worth sizes[name] gigabytes."""
    return lambda job: int(sum(sizes[name] for name in job) * GB)


# --- admission under a fake budget ---------------------------------------------------------------------------------


def test_admission_starts_jobs_only_while_their_estimates_fit_the_budget():
    admission = Admission(budget=6 * GB, estimate=sized({"a": 3, "b": 3, "c": 1, "d": 5}))
    pending = deque([["a"], ["b"], ["c"], ["d"]])
    first, second = admission.take(pending), None
    admission.hold("A", first)
    second = admission.take(pending)
    admission.hold("B", second)
    assert (first, second) == (["a"], ["b"])
    assert admission.take(pending) is None  # 3 + 3 used: neither c (1) nor d (5) fits in 6
    admission.release("A")
    assert admission.take(pending) == ["c"]  # first fit: c fits beside b, d (5) would not
    admission.hold("C", ["c"])
    assert admission.take(pending) is None
    admission.release("B")
    admission.release("C")
    assert admission.take(pending) == ["d"] and not pending


def test_a_job_larger_than_the_budget_runs_alone_with_one_warning_line():
    admission = Admission(budget=2 * GB, estimate=sized({"small": 1, "huge": 5}))
    pending = deque([["huge"], ["small"]])
    assert admission.take(pending) == ["small"]  # the huge one waits while anything else can run
    admission.hold("s", ["small"])
    assert admission.take(pending) is None  # not beside a running job
    admission.release("s")
    with pytest.warns(SweepWarning) as caught:
        assert admission.take(pending) == ["huge"]  # alone
    message = str(caught[0].message)
    assert len(caught) == 1 and "\n" not in message and "5 GB" in message and "2 GB" in message and "runs alone" in message


def test_without_a_budget_jobs_start_in_order():
    admission = Admission(budget=None, estimate=sized({"a": 100, "b": 100}))
    pending = deque([["a"], ["b"]])
    admission.hold(1, admission.take(pending))
    assert admission.take(pending) == ["b"]


class _FakePool:
    """Stands in for ProcessPoolExecutor: a job's future is done at once; it counts as running until its result is
    read (which is when run_in_processes releases its memory), so `peak` is the most memory ever held at once."""

    def __init__(self, sizes: dict[str, float], log: dict) -> None:
        self.sizes, self.log = sizes, log

    def __call__(self, *args, **kwargs) -> _FakePool:  # constructed like ProcessPoolExecutor(max_workers=...)
        return self

    def __enter__(self) -> _FakePool:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def submit(self, fn, job) -> Future:
        log, size = self.log, sum(self.sizes[name] for name in job)
        log["held"] += size
        log["peak"] = max(log["peak"], log["held"])
        log["started"].append(job[0])

        class Counted(Future):
            def result(self, timeout=None):
                log["held"] -= size
                return super().result(timeout)

        future = Counted()
        future.set_result([])
        return future


def test_the_process_pool_never_holds_more_than_the_budget_and_runs_every_job_once(monkeypatch):
    sizes = {"a": 3, "b": 3, "c": 1, "d": 5, "e": 2, "f": 4}
    log = {"held": 0.0, "peak": 0.0, "started": []}
    monkeypatch.setattr(sweep_module, "ProcessPoolExecutor", _FakePool(sizes, log))
    run_in_processes([[name] for name in sizes], 4, lambda record: None, admission=Admission(6 * GB, sized(sizes)))
    assert sorted(log["started"]) == sorted(sizes) and log["held"] == 0
    assert 5 <= log["peak"] <= 6  # filled up to the budget, never past it (4 workers would have held 18)


def test_oversized_populations_are_cut_until_each_part_fits():
    estimate = lambda job: int((0.5 + len(job)) * GB)  # noqa: E731  a worker's 0.5 GB plus 1 GB per member
    jobs = split_to_fit([[f"m{i}" for i in range(8)], ["single"]], 3 * GB, estimate)
    assert sorted(len(job) for job in jobs) == [1, 2, 2, 2, 2]  # 8 -> 4 + 4 -> 2 + 2 + 2 + 2 (2.5 GB each)
    assert sorted(m for job in jobs for m in job) == sorted([f"m{i}" for i in range(8)] + ["single"])
    assert split_to_fit([["a", "b"]], None, estimate) == [["a", "b"]]


def test_plan_cuts_a_population_to_the_budget():
    specs = [RunSpec(data=DataSpec(name="teacher"), model=ModelSpec(width=16), seed=s) for s in range(8)]
    jobs, _ = plan(specs, "population", 1)
    assert [len(job) for job in jobs] == [8]
    one_member = job_peak_memory(specs[:1])
    jobs, _ = plan(specs, "population", 1, budget=job_peak_memory(specs[:2]) + 1)
    assert [len(job) for job in jobs] == [2, 2, 2, 2] and job_peak_memory(specs[:2]) > one_member


# --- budget, bytes and the plan line ------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [("4G", 4 * 10**9), ("512M", 512 * 10**6), ("1.5GB", 1_500_000_000), ("123456", 123456), (" 2 g ", 2 * 10**9)])
def test_parse_bytes_reads_amounts_of_memory(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["lots", "", "G", "-1G", "0", "nan", "inf", "1e999"])
def test_parse_bytes_refuses_what_is_not_an_amount_in_one_line(text):
    with pytest.raises(ValueError, match="BIASLAB_MEMORY_BUDGET") as error:
        parse_bytes(text)
    assert "\n" not in str(error.value)


def test_the_budget_is_the_setting_or_a_share_of_the_available_memory(monkeypatch):
    monkeypatch.setenv("BIASLAB_MEMORY_BUDGET", "3G")
    assert memory_budget() == 3 * 10**9
    monkeypatch.delenv("BIASLAB_MEMORY_BUDGET")
    monkeypatch.setattr(sweep_module, "available_memory", lambda: 10 * GB)
    assert memory_budget() == int(10 * GB * sweep_module.MEMORY_SHARE)
    monkeypatch.undo()  # the real one: /proc/meminfo's MemAvailable (or psutil's)
    real = sweep_module.available_memory()
    assert real is None or 0 < real < 2**50


def test_memory_note_states_the_largest_estimate_and_how_many_run_at_once():
    estimate = sized({"a": 1.4, "b": 0.5})
    assert memory_note([["a"], ["b"]], 2, 10 * GB, estimate) == "memory: up to 1.4 GB per run (estimated), 2 at a time within 10 GB"
    assert memory_note([["a"], ["b"]], 4, 2 * GB, estimate).endswith("1 at a time within 2 GB")
    assert "more than the 1 GB this sweep may use: such jobs run alone" in memory_note([["a"]], 2, 1 * GB, estimate)
    assert "per job" in memory_note([["a", "b"]], 1, 10 * GB, estimate)


def test_biaslab_run_prints_the_memory_plan_and_refuses_a_bad_budget(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(sweep_module, "run_sweep", lambda *a, **k: (_ for _ in ()).throw(AssertionError("no run expected")))
    monkeypatch.setenv("BIASLAB_MEMORY_BUDGET", "nothing")
    assert main(["run", "matrix-factorization", "--preset", "tiny", "--store", str(tmp_path / "s"), "--no-report"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "BIASLAB_MEMORY_BUDGET" in err[0]
    monkeypatch.setenv("BIASLAB_MEMORY_BUDGET", "0.1G")
    with pytest.raises(AssertionError, match="no run expected"):
        main(["run", "matrix-factorization", "--preset", "tiny", "--store", str(tmp_path / "s"), "--no-report"])
    plan_line = capsys.readouterr().err.splitlines()[0]
    assert "memory: up to 0.5" in plan_line and "more than the 0.1 GB this sweep may use: such jobs run alone" in plan_line


def test_an_in_process_sweep_warns_once_about_a_run_larger_than_the_budget(tmp_path):
    from biaslab.store import Store
    from biaslab.sweep import run_sweep

    sweep = mf_tiny().model_copy(update={"also": ()}).override({"model.depth": 2, "model.init_scale": 0.1})  # one run: the main grid only
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outcome = run_sweep(sweep, Store(tmp_path / "s"), executor="inprocess", budget=1)
    lines = [str(w.message) for w in caught if issubclass(w.category, SweepWarning)]
    assert outcome.ran == 1 and [r.status for r in outcome.records] == ["ok"]
    assert len(lines) == 1 and "runs alone" in lines[0]


# --- the estimates themselves --------------------------------------------------------------------------------------


def test_model_size_counts_parameters_and_activations_exactly_for_an_mlp():
    parameters, activations = model_size(ModelSpec(width=7, depth=2), (1, 40), 10)
    assert parameters == 40 * 7 + 7 + 7 * 7 + 7 + 7 * 10 + 10
    assert activations == 7 + 7 + 7 + 7 + 10  # each hidden Linear and its ReLU, then the read-out


def test_data_size_matches_what_the_datasets_load():
    from biaslab.data import load

    for spec in (DataSpec(name="mnist1d", n_train=50, n_test=20), DataSpec(name="digits"), DataSpec(name="teacher", dim=7), DataSpec(name="modular", modulus=11, operation="div"), DataSpec(name="chebyshev")):
        data, size = load(spec), data_size(spec)
        assert (data.in_shape, len(data.x_train), len(data.x_test)) == (size.in_shape, size.n_train, size.n_test), spec.name


def test_the_estimate_grows_with_the_sizes_that_cost_memory():
    base = RunSpec(data=DataSpec(name="teacher", n_train=1000), model=ModelSpec(width=64))
    for change in ({"data": DataSpec(name="teacher", n_train=100_000)}, {"model": ModelSpec(width=4096)}, {"dtype": "float64"},
                   {"train": TrainSpec(batch_size=None)}, {"train": TrainSpec(optimizer="adam")}):  # fmt: skip
        assert default_working_memory(base.model_copy(update=change)) > default_working_memory(base), change
    assert default_working_memory(base, in_population=True) >= default_working_memory(base)


@pytest.mark.slow
def test_every_catalog_spec_has_an_estimate():
    for name in CATALOG:
        for preset in CATALOG.get(name).presets:
            for spec in CATALOG.get(name).sweep(preset).expand()[:3]:
                assert PROCESS_BASELINE < peak_memory(spec) < 100 * GB, (name, preset)


def test_experiments_with_hessian_probes_count_them():
    for name in ("edge-of-stability", "generalization-measures", "loss-landscape", "batch-size-sharpness"):
        spec = CATALOG.get(name).sweep("quick").expand()[-1]
        assert CATALOG.get(name).working_memory(spec) > default_working_memory(spec), name


def test_matrix_factorization_estimates_its_reference_solver():
    spec = max(mf_paper().expand(), key=lambda s: (s.problem.n, s.model.depth))
    assert (spec.problem.n, spec.model.depth) == (100, 4)
    assert nuclear_norm_memory((100, 100)) < 0.1 * GB < 20 * GB < nuclear_norm_memory((100, 100), "CLARABEL")  # why SCS is used there
    assert peak_memory(spec) < 2 * GB and peak_memory(spec) - PROCESS_BASELINE > nuclear_norm_memory((100, 100))
    assert gigabytes(peak_memory(spec)).endswith(" GB")


# --- estimates against measured peaks (a fresh process each) -------------------------------------------------------

MF_CLARABEL = mf_tiny().base.model_copy(update={"problem": MatrixCompletion(n=30, rank=2, observed=270), "train": TrainSpec(optimizer="gd", lr=0.5, batch_size=None, max_steps=50)})
TEACHER = RunSpec(data=DataSpec(name="teacher", dim=400, n_train=30000, n_test=10000), model=ModelSpec(width=512, depth=2), train=TrainSpec(batch_size=1000, max_steps=20, eval_every=10))
HESSIAN = CATALOG.get("generalization-measures").sweep("quick").expand()[0].model_copy(update={
    "data": DataSpec(name="mnist1d", n_train=20000, n_test=1000, standardize=False), "model": ModelSpec(width=256, depth=2),
    "train": TrainSpec(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=32, max_steps=20, eval_every=10)})  # fmt: skip
POPULATION = [RunSpec(data=DataSpec(name="teacher", dim=100, n_train=20000, n_test=2000), model=ModelSpec(width=256, depth=2), train=TrainSpec(batch_size=500, max_steps=20, eval_every=10), seed=s) for s in range(8)]


@pytest.mark.slow
@pytest.mark.parametrize("job", [[MF_CLARABEL], [TEACHER], POPULATION, [HESSIAN]], ids=["mf-30x30-clarabel", "teacher-mlp-40k", "population-8", "hessian-20k"])
def test_the_estimate_is_within_its_factor_of_the_measured_peak(job):
    estimated_growth = job_peak_memory(job) - PROCESS_BASELINE
    measured = measure_peak(job, timeout=240)
    assert set(measured.statuses) == {"ok"}, measured.errors
    assert measured.growth > 100e6  # the job itself, not the imports, decides the peak here
    low, high = ESTIMATE_FACTOR
    assert low * measured.growth <= estimated_growth <= high * measured.growth, (estimated_growth / 1e6, measured.growth / 1e6)


@pytest.mark.slow
def test_measure_peak_sees_the_child_alone_not_a_large_parent():
    import numpy as np

    ballast = np.ones(100_000_000)  # 0.8 GB resident here: a child's ru_maxrss would start from it (kept across exec)
    measured = measure_peak(mf_tiny().expand()[:1], timeout=120)
    assert ballast[-1] == 1.0 and measured.statuses == ["ok"]
    assert measured.baseline < measured.peak < 0.75 * GB  # the child's own high-water mark (about 0.55 GB)
