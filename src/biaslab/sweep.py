"""Running a sweep: expand the grid, skip what the store already has, run the rest, write each record.

Work is cut into jobs: a job is one run, or a population of runs that share an
architecture and differ only in seed, label-noise draw, inputs, learning rate,
momentum, weight decay, betas or init (trained together by
`train.fit_population`). Executors:
- "inprocess": one run after another in this process.
- "processes": one run per job, in a pool of spawned worker processes with one
  torch thread each (measured here: one thread trains these small models as
  fast as two, so processes scale with cores).
- "population": every group of compatible runs as one population, in this
  process (the GPU strategy: one process keeps the device busy).
- "auto": on a GPU, "population". On a CPU, populations only for narrow models
  (width <= 64: measured 1.2-1.3x faster than a loop at width <= 32, even at
  128, 0.73x at 512), and the jobs spread over worker processes when there are
  several jobs and cores and at least SMALL_SWEEP_STEPS steps in all.
Workers only compute; this process alone writes the store, one record at a
time as jobs finish.

Backends: "local" (the executors above) or "ray": the same jobs as Ray tasks
on a cluster (`address="HOST:PORT"`), or on a Ray started here on loopback when
no address is given. Ray retries a task whose worker dies; results come back
to this process, which alone writes the store, so resume works across
backends (a sweep started locally can finish on Ray and the other way round).

Scripts and notebooks: a spawned worker re-imports the parent's `__main__`
from its file. Where it cannot (a script read from stdin, `python -`), or
where doing so would start the sweep again (a script with no
`if __name__ == "__main__":` guard), or where the experiment is defined in
`__main__` itself (a notebook cell), the workers would die and every run
would be recorded as failed. `run_sweep` checks this before any run starts
and runs the jobs in this process instead, with a `SweepWarning` saying why.

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
import multiprocessing
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
from biaslab.spec import RunSpec, Sweep
from biaslab.store import RunRecord, Store, StoreError, SweepEntry, lease_owner, lease_timeout
from biaslab.train.population import MEMBER_FIELDS
from biaslab.trackers import SweepInfo, Tracker, Tracking

Executor = Literal["auto", "inprocess", "processes", "population"]
EXECUTORS: tuple[str, ...] = ("auto", "inprocess", "processes", "population")
OnRecord = Callable[[RunRecord], None]
Job = list[RunSpec]  # one run, or the members of one population
BACKENDS: tuple[str, ...] = ("local", "ray")
RAY_RETRIES = 3  # Ray re-runs a task whose worker process died this often
RAY_START_TIMEOUT = float(os.environ.get("BIASLAB_RAY_START_TIMEOUT", "120"))  # seconds to keep trying to start or reach Ray


class BackendUnavailable(ValueError):
    """The chosen backend cannot be started or reached; the message says why and what to use instead."""
POOL_RETRIES = 2  # a worker that dies takes its pool down; retry the unfinished jobs this often
CPU_POPULATION_MAX_WIDTH = 64
SMALL_SWEEP_STEPS = 20_000  # below this many steps in all, auto stays in-process (tiny width-sweep: 0.5 s vs 4-5 s with workers)
MAX_MEMBERS = 64  # members per population, to bound memory


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
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


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


def plan(specs: Sequence[RunSpec], executor: str, workers: int) -> tuple[list[Job], bool]:
    """The jobs, and whether they go to worker processes."""
    on_cpu = all(s.device == "cpu" for s in specs)
    if executor == "inprocess":
        return [[s] for s in specs], False
    if executor == "processes":
        return [[s] for s in specs], True
    if executor == "population" or not on_cpu:
        return group_populations(specs, lambda s: True), False
    jobs = group_populations(specs, lambda s: s.model.width <= CPU_POPULATION_MAX_WIDTH)
    small = sum(s.train.max_steps for s in specs) < SMALL_SWEEP_STEPS  # workers would cost more to start than they save
    return jobs, workers > 1 and len(jobs) > 1 and not small


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
) -> Outcome:
    """Run every spec of `sweep` that the store lacks and return all of the sweep's records.

    `trackers` (see `biaslab.trackers`) get each run as its record is stored, then the sweep's other finished
    runs they lack and its verdict.
    """
    if trackers:
        specs = sweep.expand()
        entry = SweepEntry(sweep.base.experiment, preset, dict(overrides or {}), tuple(s.spec_id for s in specs))
        with Tracking(trackers, SweepInfo.of(entry, (s.model_dump(mode="json") for s in specs))) as tracking:
            outcome = run_sweep(sweep, store, preset, overrides, executor, workers, tracking.chain(on_record), backend, address)
            tracking.end(outcome.records, sweep_verdict(sweep.base.experiment, outcome.records))
        return outcome
    if executor not in EXECUTORS:
        raise ValueError(f"executor: {executor!r} is not one of {', '.join(EXECUTORS)}")
    if backend not in BACKENDS:
        raise ValueError(f"backend: {backend!r} is not one of {', '.join(BACKENDS)}")
    specs = sweep.expand()
    store.put_sweep(SweepEntry(sweep.base.experiment, preset, dict(overrides or {}), tuple(s.spec_id for s in specs)))
    done = store.finished_ids()
    todo = list({s.spec_id: s for s in specs if s.spec_id not in done}.values())  # identical specs run once
    workers = workers or default_workers()
    jobs, use_processes = plan(todo, executor, workers)
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
            run_in_processes(jobs, min(workers, len(jobs)), save, claim)
        else:
            run_here(jobs, save, claim)

    with Leases(store) as leases:
        execute(jobs, leases.take)
        by_id = {spec.spec_id: spec for spec in todo}
        while leases.waiting:  # runs another sweep held: wait until it records them, or take them over if it died
            time.sleep(min(LEASE_POLL, leases.timeout / 4))
            if orphans := leases.take_over(by_id):
                more, _ = plan(orphans, executor, workers)
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


def run_here(jobs: list[Job], save: Callable[[RunRecord], None], claim: Claimer = _no_claim) -> None:
    """Run jobs one after another in this process, with one torch thread as in workers (so every executor gives the same numbers).

    Each job is claimed just before it starts; only the members claimed run.
    """
    with one_torch_thread():
        for job in jobs:
            if mine := claim(job):
                for record in run_population(mine):
                    save(record)


def spawn_problem(jobs: Sequence[Job] = ()) -> str | None:
    """Why spawned worker processes could not run these jobs from this program, or None if they can.

    A spawned worker imports the parent's `__main__` from its file (as
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
    """Fail fast, before any run, on a device that is not here or a dataset read from files that is missing."""
    from biaslab.data import SOURCES
    from biaslab.runtime import resolve_device

    from biaslab.experiments import CATALOG

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


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def run_in_processes(jobs: list[Job], workers: int, save: Callable[[RunRecord], None], claim: Claimer = _no_claim) -> None:
    """Run jobs in a pool of spawned workers; this process writes every record as it arrives.

    Jobs are claimed and submitted one per free worker, not all at once, so
    a second sweep on the store finds the jobs not yet started free to take.
    """
    pending = deque(jobs)
    for _attempt in range(POOL_RETRIES + 1):
        context = multiprocessing.get_context("spawn")
        broken: list[Job] = []
        with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker) as pool:
            running: dict[Future, Job] = {}
            _submit(pool, pending, running, workers, claim)
            while running:
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    job = running.pop(future)
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
                    _submit(pool, pending, running, workers, claim)
        if not broken:
            return
        pending = deque(broken + list(pending))  # broken jobs are still leased here: claiming them again keeps them
    for job in pending:  # the pool kept dying: record these runs as failed, do not stop the caller
        for spec in claim(job):
            save(failed_record(spec, f"the worker process died {POOL_RETRIES + 1} times (BrokenProcessPool)"))


def _submit(pool: ProcessPoolExecutor, pending: deque[Job], running: dict[Future, Job], slots: int, claim: Claimer) -> None:
    """Claim and submit pending jobs until `slots` run (a job another sweep fully holds is dropped here)."""
    while pending and len(running) < slots:
        if mine := claim(pending.popleft()):
            running[pool.submit(run_population, mine)] = mine


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
