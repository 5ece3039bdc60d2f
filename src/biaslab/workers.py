"""Where sweep workers come from, without importing torch: so that `biaslab run` can start the fork server first
thing, and the server's imports of torch and biaslab run beside the CLI's own instead of after them.

`worker_context()` gives the multiprocessing context for a sweep's worker pool (`biaslab.sweep.run_in_processes`):
a fork server that imported WORKER_PRELOAD once, so a worker starts in about 0.02 s instead of 3 s of imports
(measured with 2 workers), or spawn where the platform has no fork server (Windows). `start_worker_server()` starts
that server now rather than when the first pool opens.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import multiprocessing.forkserver
import os

WORKER_PRELOAD = ("biaslab.sweep", "biaslab.experiments")  # what the fork server imports once for every worker


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform has one)."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def worker_context() -> multiprocessing.context.BaseContext:
    """The fork server's context, its preload set (it takes effect when this process first starts the server), or
    spawn where there is no fork server. Either way a worker imports the parent's `__main__` from its file, as
    `biaslab.sweep.spawn_problem` says."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(WORKER_PRELOAD))
    return context


def start_worker_server() -> bool:
    """Start the fork server now, when this process may need worker processes (two cores or more, a fork server on
    this platform); True if it was started or already ran. It keeps running until this process exits; the workers
    it forks take the parent's environment as it is when their pool opens (`biaslab.sweep._init_worker`)."""
    if available_cores() < 2 or "forkserver" not in multiprocessing.get_all_start_methods():
        return False
    worker_context()
    multiprocessing.forkserver.ensure_running()
    return True
