"""Running a sweep: expand the grid, skip what the store already has, run the rest, write each record.

Work is cut into jobs: a job is one run, or a population of runs that share an
architecture and differ only in seed, label-noise draw, inputs, learning rate,
momentum, weight decay, betas or init (trained together by
`train.fit_population`). Executors:
- "inprocess": one run after another in this process.
- "processes": one run per job, in a pool of worker processes with one torch
  thread each (measured here: one thread trains these small models as fast
  as two, so processes scale with cores), forked from a server that imported
  torch and biaslab once (`worker_context`).
- "population": every group of compatible runs as one population, in this
  process (the GPU strategy: one process keeps the device busy).
- "auto": on a GPU, "population". On a CPU, populations for plain MLPs at any
  width (the baddbmm path; `pooled_on_cpu`) and for other models up to width 64
  (the vmap path: 1.2-1.3x a loop at width <= 32, even at 128, 0.73x at
  512), and the jobs spread over worker processes when there are
  several jobs and cores and enough work to pay for starting them: at least
  SMALL_SWEEP_FLOPS estimated FLOPs in all (`experiments.work`: every run at
  its full step budget), or SMALL_SWEEP_STEPS steps of runs without an estimate.
Workers only compute; this process alone writes the store, one record at a
time as jobs finish.

Backends: "local" (the executors above) or "ray": the same jobs as Ray tasks
on a cluster (`address="HOST:PORT"`), or on a Ray started here on loopback when
no address is given. Ray retries a task whose worker dies; results come back
to this process, which alone writes the store, so resume works across
backends (a sweep started locally can finish on Ray and the other way round).

Scripts and notebooks: a worker process re-imports the parent's `__main__`
from its file. Where it cannot (a script read from stdin, `python -`), or
where doing so would start the sweep again (a script with no
`if __name__ == "__main__":` guard), or where the experiment is defined in
`__main__` itself (a notebook cell), the workers would die and every run
would be recorded as failed. `run_sweep` checks this before any run starts
and runs the jobs in this process instead, with a `SweepWarning` saying why.

Memory: every job has an estimated peak (`experiments.memory.job_peak_memory`:
a worker's baseline plus what its runs hold, from the spec's sizes, or the
experiment's own `working_memory`). The sweep's budget is BIASLAB_MEMORY_BUDGET
or MEMORY_SHARE of the memory available when it starts. A population larger
than the budget is cut into smaller ones; worker processes start a job only
while the estimates of the jobs running plus its own fit in the budget; a
job larger than the whole budget runs alone, with a one-line SweepWarning.

Resuming: every finished record is committed on its own, so a sweep killed at
any point (even `kill -9`) loses only the runs in flight; running it again
skips every spec_id the store has as ok or diverged and reruns failed ones.

Many writers: this process leases each job's runs in the store just before
the job starts (`Store.claim`; at most one job per worker is leased ahead, so
a second sweep on the same store finds the rest free) and keeps its leases
alive from a background thread. Runs another live sweep holds are skipped;
at the end this sweep waits for them, re-checking the store, and runs those
whose owner died (its heartbeat older than `lease_timeout()`, or a process of
this host that is gone). So two sweeps on one store run each spec once, and a
`kill -9`ed sweep's runs are redone by the other or by the next one.
"""

from __future__ import annotations

import ast
import json
import os
import sys
import threading
import time
import traceback
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from biaslab.claims import Verdict
from biaslab.experiments import can_pool, run_population
from biaslab.experiments.base import failed_record
from biaslab.experiments.memory import gigabytes, job_peak_memory
from biaslab.experiments.work import run_flops
from biaslab.spec import RunSpec, Sweep
from biaslab.store import RunRecord, Store, StoreError, SweepEntry, lease_owner, lease_timeout
from biaslab.train import reporting
from biaslab.train.population import MEMBER_FIELDS, batched_matmul
from biaslab.trackers import SweepInfo, Tracker, Tracking
from biaslab.workers import available_cores, worker_context

Executor = Literal["auto", "inprocess", "processes", "population"]
EXECUTORS: tuple[str, ...] = ("auto", "inprocess", "processes", "population")
OnRecord = Callable[[RunRecord], None]


@dataclass(frozen=True)
class Live:
    """A job's progress while it trains, sent after each of its evaluations (from a worker process or this one)."""

    spec_id: str  # the job's first run (a population's first member)
    members: int  # runs in the job: 1, or a population's size
    step: int
    max_steps: int  # the step budget (a run that stops at zero training error ends before it)
    loss: float  # training loss at `step` (a population: the mean over its members still training)
    seconds: float  # since the job started: with `step`, its step rate


OnProgress = Callable[[Live], None]
_progress_queue = None  # in a worker process: where its jobs' Live reports go (set by _init_worker); None elsewhere
Job = list[RunSpec]  # one run, or the members of one population
BACKENDS: tuple[str, ...] = ("local", "ray")
RAY_RETRIES = 3  # Ray re-runs a task whose worker process died this often
RAY_START_TIMEOUT = float(os.environ.get("BIASLAB_RAY_START_TIMEOUT", "120"))  # seconds to keep trying to start or reach Ray


class BackendUnavailable(ValueError):
    """The chosen backend cannot be started or reached; the message says why and what to use instead."""
POOL_RETRIES = 2  # a worker that dies takes its pool down; retry the unfinished jobs this often
CPU_POPULATION_MAX_WIDTH = 64  # models other than plain MLPs pool on a CPU up to this width (see pooled_on_cpu)
SMALL_SWEEP_FLOPS = 80e9  # below this much estimated work in all, auto stays in-process: about 10 s in one process at the
# ~8 GFLOP/s measured for small MLPs (benchmarks/width_sweep.py), where two workers' ~5 s of start-up would save nothing
SMALL_SWEEP_STEPS = 20_000  # the same for runs without an estimate (problems, estimators), in steps (tiny width-sweep: 0.5 s vs 4-5 s with workers)
MAX_MEMBERS = 64  # members per population, to bound memory
MEMORY_SHARE = 0.8  # of the memory available at the start, what the jobs running at once may use (the rest: this
# process's own growth, other programs, and the estimates' error)
MEMORY_BUDGET_ENV = "BIASLAB_MEMORY_BUDGET"  # bytes, or with a K, M, G or T suffix (powers of 1000): overrides the share
Estimate = Callable[[list], int]  # a job -> its estimated peak in bytes


class SweepWarning(UserWarning):
    """The sweep ran differently from what was asked (in this process instead of worker processes), and why."""


@dataclass
class Outcome:
    """What a sweep did: the records of all its runs, in grid order, and how many ran now.

    `ran` counts the runs this process ran; `skipped` the rest: those stored
    before it started and `elsewhere`, those another sweep on the store ran meanwhile.
    """

    records: list[RunRecord] = field(default_factory=list)
    ran: int = 0
    skipped: int = 0
    executor: str = "inprocess"
    elsewhere: int = 0


Claimer = Callable[[Job], Job]  # leases a job's runs; returns the members to run now (maybe none)
LEASE_POLL = 1.0  # seconds between looks at runs another sweep holds, at the end of a sweep


class Leases:
    """This sweep's leases on its runs in one store: taken job by job, kept alive while it runs, released when it ends.

    Use as a context manager: a thread refreshes the heartbeats every
    `timeout / 4` seconds; leaving releases what is still held (runs that
    ended without a record, or an interrupted sweep) so other sweeps need not
    wait for the timeout. `waiting` holds the runs another live sweep had.
    """

    def __init__(self, store: Store, timeout: float | None = None) -> None:
        self.store = store
        self.timeout = lease_timeout() if timeout is None else timeout
        self.owner = lease_owner()
        self.waiting: set[str] = set()
        self._stop = threading.Event()
        self._beater = threading.Thread(target=self._beat, name="biaslab-lease-heartbeat", daemon=True)

    def __enter__(self) -> Leases:
        self._beater.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._beater.join()
        self.store.release(self.owner)

    def _beat(self) -> None:
        while not self._stop.wait(self.timeout / 4):
            try:
                self.store.heartbeat(self.owner)
            except StoreError:  # locked for longer than SQLite's wait: try again at the next beat
                continue

    def take(self, job: Job) -> Job:
        """The members of `job` now leased to this sweep; those another live sweep holds go to `waiting`."""
        claim = self.store.claim([spec.spec_id for spec in job], self.owner, self.timeout)
        self.waiting |= set(claim.held)
        taken = set(claim.taken)
        return [spec for spec in job if spec.spec_id in taken]

    def take_over(self, specs: dict[str, RunSpec]) -> list[RunSpec]:
        """Of the runs in `waiting`, those whose owner died (now leased here); the ones it recorded or that it still holds drop out or stay."""
        claim = self.store.claim(sorted(self.waiting), self.owner, self.timeout, stale_only=True)
        self.waiting = set(claim.held)
        return [specs[spec_id] for spec_id in claim.taken]


def _no_claim(job: Job) -> Job:
    return job


def default_workers() -> int:
    """One worker per core available to this process."""
    return available_cores()


def population_key(spec: RunSpec) -> str:
    """Specs with the same key can train as one population: they differ only in MEMBER_FIELDS."""
    data = spec.model_dump(mode="json")
    for path in MEMBER_FIELDS:
        *parents, leaf = path.split(".")
        node = data
        for part in parents:
            node = node[part]
        node.pop(leaf)
    return json.dumps(data, sort_keys=True)


def group_populations(specs: Sequence[RunSpec], poolable: Callable[[RunSpec], bool]) -> list[Job]:
    """Jobs: poolable specs grouped by population key (at most MAX_MEMBERS each), the rest one per job."""
    groups: dict[str, Job] = {}
    singles: list[Job] = []
    for spec in specs:
        if poolable(spec) and can_pool(spec):
            groups.setdefault(population_key(spec), []).append(spec)
        else:
            singles.append([spec])
    populations = [g[i : i + MAX_MEMBERS] for g in groups.values() for i in range(0, len(g), MAX_MEMBERS)]
    return populations + singles  # populations first: they are the longest jobs


def pooled_on_cpu(spec: RunSpec) -> bool:
    """Whether `auto` trains this run in a population on a CPU: plain MLPs at any width (the baddbmm path: the
    quick width sweep took 44 s against 49-54 s with only widths <= 64 pooled, measured side by side), other
    models only up to CPU_POPULATION_MAX_WIDTH (their vmap path lost to a loop of single runs above it)."""
    return batched_matmul(spec.model) or spec.model.width <= CPU_POPULATION_MAX_WIDTH


def plan(specs: Sequence[RunSpec], executor: str, workers: int, budget: int | None = None, estimate: Estimate = job_peak_memory) -> tuple[list[Job], bool]:
    """The jobs, and whether they go to worker processes; populations are cut to fit `budget` bytes (None: no limit)."""
    on_cpu = all(s.device == "cpu" for s in specs)
    if executor == "inprocess":
        return [[s] for s in specs], False
    if executor == "processes":
        return longest_first([[s] for s in specs]), True
    if executor == "population" or not on_cpu:
        return split_to_fit(group_populations(specs, lambda s: True), budget, estimate), False
    jobs = split_to_fit(group_populations(specs, pooled_on_cpu), budget, estimate)
    use_processes = workers > 1 and len(jobs) > 1 and not is_small(specs)
    return (longest_first(jobs) if use_processes else jobs), use_processes


def longest_first(jobs: list[Job]) -> list[Job]:
    """The jobs by estimated work, largest first (`experiments.work.run_flops`), so that the last to start are short
    and the workers finish together; unchanged where a run has no estimate. Only the order in which jobs start
    changes: each run's numbers do not depend on it."""
    work = [[run_flops(spec) for spec in job] for job in jobs]
    if any(flops is None for job in work for flops in job):
        return jobs
    return [jobs[i] for i in sorted(range(len(jobs)), key=lambda i: -sum(work[i]))]


def sweep_work(specs: Sequence[RunSpec]) -> tuple[float, int]:
    """(estimated FLOPs of the runs that have an estimate, at their full step budgets; steps of those that do not)."""
    flops, steps = 0.0, 0
    for spec in specs:
        estimate = run_flops(spec)
        if estimate is None:
            steps += spec.train.max_steps
        else:
            flops += estimate
    return flops, steps


def is_small(specs: Sequence[RunSpec]) -> bool:
    """Whether worker processes would cost more to start than they save: too little work, weighed by estimated
    FLOPs (`experiments.work`), or by steps for runs without an estimate."""
    flops, steps = sweep_work(specs)
    return flops < SMALL_SWEEP_FLOPS and steps < SMALL_SWEEP_STEPS


def split_to_fit(jobs: list[Job], budget: int | None, estimate: Estimate = job_peak_memory) -> list[Job]:
    """The jobs with every population whose estimate exceeds `budget` cut in halves until each part fits or is one run
    (members train alike in a smaller population, so only memory and speed change)."""
    if budget is None:
        return jobs
    fitted: list[Job] = []
    for job in jobs:
        if len(job) > 1 and estimate(job) > budget:
            half = len(job) // 2
            fitted += split_to_fit([job[:half], job[half:]], budget, estimate)
        else:
            fitted.append(job)
    return fitted


def available_memory() -> int | None:
    """Bytes the system can give new processes without swapping (Linux's MemAvailable, else psutil's); None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the file counts kB of 1024 bytes
    except (OSError, ValueError, IndexError):
        pass  # not Linux, or a format we do not know: ask psutil
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


BYTE_SUFFIXES = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def parse_bytes(text: str, what: str = MEMORY_BUDGET_ENV) -> int:
    """'2G', '512M', '1.5G', '123456' -> bytes; ValueError naming `what` and the accepted forms otherwise."""
    value = text.strip().upper().removesuffix("B")
    suffix = value[-1:] if value[-1:] in BYTE_SUFFIXES else ""
    number = value[: len(value) - len(suffix)]
    try:
        amount = float(number) * BYTE_SUFFIXES[suffix]
    except ValueError:
        amount = -1.0
    if not number or not amount > 0 or amount == float("inf"):
        raise ValueError(f"{what}: {text!r} is not an amount of memory; give bytes, or a number with K, M, G or T (e.g. 4G)")
    return int(amount)


def memory_budget() -> int | None:
    """Bytes the jobs of a sweep may use at once: BIASLAB_MEMORY_BUDGET if set, else MEMORY_SHARE of the memory
    available now; None when neither is known (then nothing is held back)."""
    if setting := os.environ.get(MEMORY_BUDGET_ENV):
        return parse_bytes(setting)
    available = available_memory()
    return None if available is None else int(available * MEMORY_SHARE)


class Admission:
    """Which pending job may start now, so that the jobs running at once fit in `budget` bytes by their estimates.

    First fit in queue order: a job starts when its estimated peak fits beside
    those of the jobs running (a large job waits while smaller ones behind it
    start). A job larger than the whole budget starts only when nothing else
    runs, with a one-line SweepWarning. With no budget every job fits.
    """

    def __init__(self, budget: int | None, estimate: Estimate = job_peak_memory) -> None:
        self.budget = budget
        self.estimate = estimate
        self.held: dict[object, int] = {}  # running job's key -> its estimate
        self._sizes: dict[int, tuple[Job, int]] = {}  # by id, with the job itself kept alive so that its id stays its own

    def size(self, job: Job) -> int:
        """The job's estimated peak in bytes (computed once per job)."""
        if id(job) not in self._sizes:
            self._sizes[id(job)] = (job, self.estimate(job))
        return self._sizes[id(job)][1]

    def take(self, pending: deque[Job]) -> Job | None:
        """Remove from `pending` and return the first job that fits now, or the first of all when nothing runs;
        None when the running jobs leave no room for any (or nothing is pending)."""
        if self.budget is None or not pending:
            return pending.popleft() if pending else None
        in_use = sum(self.held.values())
        for i, job in enumerate(pending):
            if in_use + self.size(job) <= self.budget:
                del pending[i]
                return job
        if self.held:
            return None
        job = pending.popleft()
        warn_oversized(self.size(job), self.budget)
        return job

    def hold(self, key: object, job: Job) -> None:
        """`job` started under `key`: its estimate counts until `release(key)`."""
        self.held[key] = self.size(job)

    def release(self, key: object) -> None:
        self.held.pop(key, None)


def warn_oversized(size: int, budget: int | None) -> None:
    """One SweepWarning line when a job's estimate is larger than the whole budget (it runs alone)."""
    if budget is not None and size > budget:
        warnings.warn(
            f"run_sweep: a job estimated at {gigabytes(size)} exceeds the {gigabytes(budget)} of memory this sweep may use; "
            f"it runs alone (the budget: {MEMORY_BUDGET_ENV}, or {MEMORY_SHARE:.0%} of the memory available)",
            SweepWarning,
            stacklevel=3,
        )


def memory_note(jobs: Sequence[Job], parallel: int, budget: int | None, estimate: Estimate = job_peak_memory) -> str:
    """The plan's memory clause: the largest job's estimate and how many such jobs run at once within the budget."""
    if not jobs:
        return "memory: nothing to run"
    largest = max(estimate(job) for job in jobs)
    unit = "per run" if all(len(job) == 1 for job in jobs) else "per job"
    text = f"memory: up to {gigabytes(largest)} {unit} (estimated)"
    if budget is None:
        return f"{text}; nothing held back (no budget: the free memory is unknown, or the backend is Ray)"
    if largest > budget:
        return f"{text}, more than the {gigabytes(budget)} this sweep may use: such jobs run alone"
    return f"{text}, {min(parallel, budget // largest)} at a time within {gigabytes(budget)}"


def run_sweep(
    sweep: Sweep,
    store: Store,
    preset: str = "custom",
    overrides: dict | None = None,
    executor: Executor = "auto",
    workers: int | None = None,
    on_record: OnRecord | None = None,
    backend: str = "local",
    address: str | None = None,
    trackers: Sequence[Tracker] = (),
    budget: int | None = None,
    estimate: Estimate = job_peak_memory,
    listed: bool = True,
    on_progress: OnProgress | None = None,
) -> Outcome:
    """Run every spec of `sweep` that the store lacks and return all of the sweep's records.

    `trackers` (see `biaslab.trackers`) get each run as its record is stored, then the sweep's other finished
    runs they lack and its verdict. `budget`: bytes the jobs running at once may use by their estimates (None:
    `memory_budget()`); `estimate`: a job's estimated peak in bytes. `listed` False stores the runs without a sweep
    entry: no report page and no verdict (the atlas's learning-rate pilots, which no claim judges). `on_progress`
    gets a `Live` report after each evaluation of every job, while it trains (local executors; not on Ray).
    """
    if trackers:
        specs = sweep.expand()
        entry = SweepEntry(sweep.base.experiment, preset, dict(overrides or {}), tuple(s.spec_id for s in specs))
        with Tracking(trackers, SweepInfo.of(entry, (s.model_dump(mode="json") for s in specs))) as tracking:
            outcome = run_sweep(sweep, store, preset, overrides, executor, workers, tracking.chain(on_record), backend, address,
                                budget=budget, estimate=estimate, listed=listed, on_progress=on_progress)  # fmt: skip
            tracking.end(outcome.records, sweep_verdict(sweep.base.experiment, outcome.records))
        return outcome
    if executor not in EXECUTORS:
        raise ValueError(f"executor: {executor!r} is not one of {', '.join(EXECUTORS)}")
    if backend not in BACKENDS:
        raise ValueError(f"backend: {backend!r} is not one of {', '.join(BACKENDS)}")
    specs = sweep.expand()
    if listed:
        store.put_sweep(SweepEntry(sweep.base.experiment, preset, dict(overrides or {}), tuple(s.spec_id for s in specs)))
    done = store.finished_ids()
    todo = list({s.spec_id: s for s in specs if s.spec_id not in done}.values())  # identical specs run once
    workers = workers or default_workers()
    budget = memory_budget() if budget is None else budget
    jobs, use_processes = plan(todo, executor, workers, budget, estimate)
    ran = 0

    def save(record: RunRecord) -> None:
        nonlocal ran
        store.put(record)  # releases the run's lease in the same transaction
        ran += 1
        if on_record is not None:
            on_record(record)

    if backend == "local" and use_processes and jobs and (problem := spawn_problem(jobs)) is not None:
        warnings.warn(f"run_sweep: worker processes cannot start here ({problem}); running the {len(jobs)} jobs in this process instead", SweepWarning, stacklevel=2)
        use_processes = False
    n_jobs = len(jobs)

    def execute(jobs: list[Job], claim: Claimer) -> None:
        if backend == "ray" and jobs:
            run_on_ray(jobs, save, address, claim)
        elif use_processes:
            run_in_processes(jobs, min(workers, len(jobs)), save, claim, Admission(budget, estimate), on_progress)
        else:
            run_here(jobs, save, claim, Admission(budget, estimate), on_progress)

    with Leases(store) as leases:
        execute(jobs, leases.take)
        by_id = {spec.spec_id: spec for spec in todo}
        while leases.waiting:  # runs another sweep held: wait until it records them, or take them over if it died
            time.sleep(min(LEASE_POLL, leases.timeout / 4))
            if orphans := leases.take_over(by_id):
                more, _ = plan(orphans, executor, workers, budget, estimate)
                n_jobs += len(more)
                execute(more, _no_claim)  # already leased here
    populations = sum(len(job) > 1 for job in jobs)
    where = "ray" if backend == "ray" else f"processes x{min(workers, len(jobs))}" if use_processes else "in-process"
    how = f"{where}, {n_jobs} jobs, {populations} populations"
    records = store.records_of(s.spec_id for s in specs)
    return Outcome(records=records, ran=ran, skipped=len(specs) - ran, executor=how, elsewhere=len(todo) - ran)


def sweep_verdict(experiment: str, records: list[RunRecord]) -> Verdict | None:
    """The catalog experiment's verdict on `records`; None when no run finished or the experiment is not in the catalog."""
    from biaslab.experiments import CATALOG

    if experiment not in CATALOG or not any(r.status == "ok" for r in records):
        return None
    return CATALOG.get(experiment).verdict(records)


def run_here(
    jobs: list[Job], save: Callable[[RunRecord], None], claim: Claimer = _no_claim, admission: Admission | None = None, on_progress: OnProgress | None = None
) -> None:
    """Run jobs one after another in this process, with one torch thread as in workers (so every executor gives the same numbers).

    Each job is claimed just before it starts; only the members claimed run.
    A job whose estimate exceeds the admission's budget gets its one-line warning.
    """
    admission = admission or Admission(None)
    with one_torch_thread():
        for job in jobs:
            if admission.budget is not None:
                warn_oversized(admission.size(job), admission.budget)
            if mine := claim(job):
                for record in run_reporting(mine, on_progress):
                    save(record)


def run_reporting(job: Job, on_progress: OnProgress | None) -> list[RunRecord]:
    """`run_population(job)`, sending a Live report to `on_progress` after each of its evaluations."""
    if on_progress is None:
        return run_population(job)
    started = time.perf_counter()

    def reporter(step: int, max_steps: int, loss: float) -> None:
        on_progress(Live(job[0].spec_id, len(job), step, max_steps, float(loss), time.perf_counter() - started))

    with reporting(reporter):
        return run_population(job)


def _run_job(job: Job) -> list[RunRecord]:
    """A worker's job: its Live reports go to the queue the pool gave the worker (none without one)."""
    queue = _progress_queue
    return run_reporting(job, queue.put if queue is not None else None)


def spawn_problem(jobs: Sequence[Job] = ()) -> str | None:
    """Why worker processes could not run these jobs from this program, or None if they can.

    A worker (spawned, or forked from the fork server) imports the parent's `__main__` from its file (as
    `__mp_main__`) before it runs anything, and finds experiments by name in
    its own catalog. It fails when that file does not exist (`python -`
    reads it from stdin: `__file__` is '<stdin>'), when importing it starts
    the sweep again (the call is at top level, not under
    `if __name__ == "__main__":`), or when an experiment is defined in
    `__main__`. An interactive session or notebook has no `__file__`: its
    `__main__` is not imported, so only the last case applies there.
    """
    from biaslab.experiments import CATALOG

    main = sys.modules.get("__main__")
    names = {spec.experiment for job in jobs for spec in job}
    for name in sorted(names):
        if name in CATALOG and type(CATALOG.get(name)).__module__ in ("__main__", "__mp_main__"):
            return f"experiment {name!r} is defined in __main__, which worker processes do not import"
    path = getattr(main, "__file__", None)
    if main is None or path is None:
        return None
    if not os.path.isfile(path):
        return f"the main module {path!r} is not a file that worker processes can import"
    line = _main_line(main)
    if line is not None and not _guarded(Path(path), line):
        return f"{path} line {line} starts the sweep when imported; put it under `if __name__ == \"__main__\":`"
    return None


def _main_line(main: object) -> int | None:
    """The line of `__main__`'s top-level code that is running now (the call that led here), if any."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals is vars(main):
            return frame.f_lineno
        frame = frame.f_back
    return None


def _guarded(path: Path, line: int) -> bool:
    """Whether `line` of the Python file `path` is inside an `if __name__ == "__main__":` block (True if unreadable)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return True  # cannot tell: let the workers try, as before
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_main_test(node.test):
            if any(child.lineno <= line <= (child.end_lineno or child.lineno) for child in node.body):
                return True
    return False


def _is_main_test(test: ast.expr) -> bool:
    """`__name__ == "__main__"` (either way round)."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s.id for s in sides if isinstance(s, ast.Name)]
    texts = [s.value for s in sides if isinstance(s, ast.Constant)]
    return names == ["__name__"] and texts == ["__main__"]


FILE_DATASETS = ("mnist", "cifar10")  # read from disk: check they are there before a sweep starts


def preflight(sweep: Sweep) -> None:
    """Fail fast, before any run, on a device that is not here, a dataset read from files that is missing, or a
    memory budget (BIASLAB_MEMORY_BUDGET) that is not an amount."""
    from biaslab.data import SOURCES
    from biaslab.runtime import resolve_device

    from biaslab.experiments import CATALOG

    memory_budget()
    checked = set()
    specs = sweep.expand()
    for device in {spec.device for spec in specs}:
        resolve_device(device)
    for spec in specs:
        if spec.experiment in CATALOG:
            CATALOG.get(spec.experiment).check(spec)
    for spec in specs:
        key = (spec.data.name, spec.data.root, spec.data.download)
        if spec.data.name in FILE_DATASETS and key not in checked:
            SOURCES.get(spec.data.name)(spec.data)
            checked.add(key)


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Train with one intra-op thread (as workers do: measured as fast for these models), then restore."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _init_worker(progress_queue=None, environment: dict[str, str] | None = None) -> None:
    """One torch thread, the queue for Live reports, and the parent's environment as it is now: a worker forked
    from the fork server would otherwise see the environment of the moment the server started."""
    import torch

    global _progress_queue
    _progress_queue = progress_queue
    if environment is not None:
        os.environ.clear()
        os.environ.update(environment)
    torch.set_num_threads(1)


def run_in_processes(
    jobs: list[Job], workers: int, save: Callable[[RunRecord], None], claim: Claimer = _no_claim, admission: Admission | None = None,
    on_progress: OnProgress | None = None,
) -> None:
    """Run jobs in a pool of worker processes (`worker_context`); this process writes every record as it arrives.

    Jobs are claimed and submitted one per free worker, not all at once, so
    a second sweep on the store finds the jobs not yet started free to take;
    a free worker waits while the admission's memory budget has no room. With `on_progress`, the workers send each
    job's Live reports through a queue that a thread of this process passes on.
    """
    context = worker_context()
    queue = context.Queue() if on_progress is not None else None
    with _forwarding(queue, on_progress):
        _run_pools(jobs, workers, save, claim, admission or Admission(None), context, queue)


@contextmanager
def _forwarding(queue, on_progress: OnProgress | None) -> Iterator[None]:
    """While the block runs, a thread hands every Live report in `queue` to `on_progress` (nothing without a queue)."""
    if queue is None or on_progress is None:
        yield
        return
    done = threading.Event()

    def forward() -> None:
        while not (done.is_set() and queue.empty()):
            try:
                on_progress(queue.get(timeout=0.2))
            except Exception:  # queue.Empty, or a display that failed: progress must never stop a sweep
                continue

    thread = threading.Thread(target=forward, name="biaslab-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=2.0)
        queue.close()


def _run_pools(jobs: list[Job], workers: int, save: Callable[[RunRecord], None], claim: Claimer, admission: Admission, context, queue) -> None:
    """The pools of `run_in_processes`: a pool that breaks is replaced, at most POOL_RETRIES times."""
    pending = deque(jobs)
    for _attempt in range(POOL_RETRIES + 1):
        broken: list[Job] = []
        with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker, initargs=(queue, dict(os.environ))) as pool:
            running: dict[Future, Job] = {}
            _submit(pool, pending, running, workers, claim, admission)
            while running:
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    job = running.pop(future)
                    admission.release(future)
                    try:
                        records = future.result()
                    except BrokenProcessPool:
                        broken.append(job)
                        continue
                    except Exception:  # runners return failures as records; this is a bug or an unpicklable result
                        records = [failed_record(spec, traceback.format_exc()) for spec in job]
                    for record in records:
                        save(record)
                if not broken:  # a broken pool takes no more work: the rest waits for the next pool
                    _submit(pool, pending, running, workers, claim, admission)
        if not broken:
            return
        pending = deque(broken + list(pending))  # broken jobs are still leased here: claiming them again keeps them
    for job in pending:  # the pool kept dying: record these runs as failed, do not stop the caller
        for spec in claim(job):
            save(failed_record(spec, f"the worker process died {POOL_RETRIES + 1} times (BrokenProcessPool)"))


def _submit(pool: ProcessPoolExecutor, pending: deque[Job], running: dict[Future, Job], slots: int, claim: Claimer, admission: Admission) -> None:
    """Claim and submit pending jobs until `slots` run or the next fits no more in memory (a job another sweep fully
    holds is dropped here)."""
    while len(running) < slots and (job := admission.take(pending)) is not None:
        if mine := claim(job):
            future = pool.submit(_run_job, mine)
            running[future] = mine
            admission.hold(future, job)


def biaslab_job(job: Job) -> list[RunRecord]:
    """A Ray task: one job with one torch thread (Ray gives it one CPU). Its process title is ray::biaslab_job."""
    _init_worker()
    return run_population(job)


def _start_ray(ray, address: str | None, timeout: float | None = None) -> None:
    """ray.init, tried again until `timeout` (BIASLAB_RAY_START_TIMEOUT, default 120 s) when a busy machine makes
    the head miss Ray's own 30 s start-up wait; then one line saying what failed and what to use instead."""
    timeout = RAY_START_TIMEOUT if timeout is None else timeout
    options = {"include_dashboard": False, "log_to_driver": False}
    deadline, attempts = time.monotonic() + timeout, 0
    while True:
        attempts += 1
        try:
            ray.init(address=address, **options) if address else ray.init(_node_ip_address="127.0.0.1", **options)
            return
        except Exception as error:  # Ray raises bare Exception, ConnectionError, RuntimeError... on a failed start
            ray.shutdown()
            if time.monotonic() >= deadline:
                where = f"reach the Ray cluster at {address}" if address else "start a local Ray head"
                first = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
                raise BackendUnavailable(
                    f"backend ray: could not {where} in {attempts} attempt(s) within {timeout:.0f} s ({first}); "
                    "use --backend local, or raise BIASLAB_RAY_START_TIMEOUT"
                ) from None


def run_on_ray(jobs: list[Job], save: Callable[[RunRecord], None], address: str | None = None, claim: Claimer = _no_claim) -> None:
    """Run jobs as Ray tasks; write each record here as its task finishes. Starts (and stops) a local Ray if none is up.

    Jobs are claimed and submitted one per CPU of the cluster at a time, so a
    second sweep on the store finds the jobs not yet started free to take.
    """
    try:
        import ray
    except ImportError:
        raise BackendUnavailable("backend: ray is not installed; install the extra: pip install 'biaslab[ray]', or use --backend local") from None
    started_here = not ray.is_initialized()
    if started_here:
        _start_ray(ray, address)
    try:
        task = ray.remote(num_cpus=1, max_retries=RAY_RETRIES)(biaslab_job)
        slots = max(1, int(ray.cluster_resources().get("CPU", 1)))
        queue, pending = deque(jobs), {}
        while queue or pending:
            while queue and len(pending) < slots:
                if mine := claim(queue.popleft()):
                    pending[task.remote(mine)] = mine
            if not pending:
                break
            ready, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(ready[0])
            try:
                records = ray.get(ready[0])
            except ray.exceptions.RayError:  # retries exhausted or the task raised: record, go on
                records = [failed_record(spec, traceback.format_exc()) for spec in job]
            for record in records:
                save(record)
    finally:
        if started_here:
            ray.shutdown()
