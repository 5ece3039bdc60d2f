"""Running a sweep: expand the grid, skip what the store already has, run the rest, write each record.

Executors:
- "inprocess": one run after another in this process.
- "processes": a pool of worker processes (spawned, one torch thread each:
  measured here, one thread trains these small models as fast as two, so
  processes scale with cores). Workers only compute; this process alone writes
  the store, one record at a time as runs finish.
- "auto": processes when there is more than one run to do and more than one
  core on a CPU device; in-process otherwise (a GPU is shared better by one process).

Resuming: every finished record is committed on its own, so a sweep killed at
any point (even `kill -9`) loses only the runs in flight; running it again
skips every spec_id the store has as ok or diverged and reruns failed ones.
"""

from __future__ import annotations

import multiprocessing
import os
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Literal

from biaslab.experiments import run_spec
from biaslab.spec import RunSpec, Sweep
from biaslab.store import RunRecord, Store, SweepEntry

Executor = Literal["auto", "inprocess", "processes"]
EXECUTORS: tuple[str, ...] = ("auto", "inprocess", "processes")
OnRecord = Callable[[RunRecord], None]
POOL_RETRIES = 2  # a worker that dies takes its pool down; retry the unfinished runs this often


@dataclass
class Outcome:
    """What a sweep did: the records of all its runs, in grid order, and how many ran now."""

    records: list[RunRecord] = field(default_factory=list)
    ran: int = 0
    skipped: int = 0
    executor: str = "inprocess"


def default_workers() -> int:
    """One worker per core available to this process."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def choose_executor(specs: Sequence[RunSpec], workers: int) -> str:
    """Processes for several CPU runs on several cores; in-process otherwise."""
    on_cpu = all(s.device == "cpu" for s in specs)
    return "processes" if on_cpu and len(specs) > 1 and workers > 1 else "inprocess"


def run_sweep(
    sweep: Sweep,
    store: Store,
    preset: str = "custom",
    overrides: dict | None = None,
    executor: Executor = "auto",
    workers: int | None = None,
    on_record: OnRecord | None = None,
) -> Outcome:
    """Run every spec of `sweep` that the store lacks and return all of the sweep's records."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor: {executor!r} is not one of {', '.join(EXECUTORS)}")
    specs = sweep.expand()
    store.put_sweep(SweepEntry(sweep.base.experiment, preset, dict(overrides or {}), tuple(s.spec_id for s in specs)))
    done = store.finished_ids()
    todo = list({s.spec_id: s for s in specs if s.spec_id not in done}.values())  # identical specs run once
    workers = workers or default_workers()
    chosen = choose_executor(todo, workers) if executor == "auto" else executor

    def save(record: RunRecord) -> None:
        store.put(record)
        if on_record is not None:
            on_record(record)

    if chosen == "processes" and todo:
        run_in_processes(todo, min(workers, len(todo)), save)
    else:
        for spec in todo:
            save(run_spec(spec))
    records = store.records_of(s.spec_id for s in specs)
    return Outcome(records=records, ran=len(todo), skipped=len(specs) - len(todo), executor=chosen)


FILE_DATASETS = ("mnist", "cifar10")  # read from disk: check they are there before a sweep starts


def preflight(sweep: Sweep) -> None:
    """Fail fast, before any run, on a device that is not here or a dataset read from files that is missing."""
    from biaslab.data import SOURCES
    from biaslab.runtime import resolve_device

    checked = set()
    for device in {spec.device for spec in sweep.expand()}:
        resolve_device(device)
    for spec in sweep.expand():
        key = (spec.data.name, spec.data.root, spec.data.download)
        if spec.data.name in FILE_DATASETS and key not in checked:
            SOURCES.get(spec.data.name)(spec.data)
            checked.add(key)


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def run_in_processes(specs: list[RunSpec], workers: int, save: Callable[[RunRecord], None]) -> None:
    """Run specs in a pool of spawned workers; this process writes every record as it arrives."""
    pending = list(specs)
    for attempt in range(POOL_RETRIES + 1):
        context = multiprocessing.get_context("spawn")
        broken: list[RunSpec] = []
        with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker) as pool:
            futures: dict[Future, RunSpec] = {pool.submit(run_spec, spec): spec for spec in pending}
            for future in as_completed(futures):
                spec = futures[future]
                try:
                    save(future.result())
                except BrokenProcessPool:
                    broken.append(spec)
                except Exception:  # the runner returns failures as records; this is a bug or an unpicklable result
                    save(_failed(spec, traceback.format_exc()))
        if not broken:
            return
        pending = broken
    for spec in pending:  # the pool kept dying: record these runs as failed, do not stop the caller
        save(_failed(spec, f"the worker process died {POOL_RETRIES + 1} times (BrokenProcessPool)"))


def _failed(spec: RunSpec, error: str) -> RunRecord:
    return RunRecord(spec=spec.model_dump(mode="json"), spec_id=spec.spec_id, status="failed", error=error)
