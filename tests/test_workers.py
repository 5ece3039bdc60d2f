"""Worker processes: forked from a server that imported biaslab once, yet they see the parent's environment now."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import pytest

from biaslab.sweep import _init_worker, worker_context

MARK = "BIASLAB_TEST_WORKER_MARK"


def _in_a_worker(environment: dict[str, str] | None) -> str | None:
    with ProcessPoolExecutor(1, mp_context=worker_context(), initializer=_init_worker, initargs=(None, environment)) as pool:
        return pool.submit(os.getenv, MARK).result()


@pytest.mark.skipif("forkserver" not in multiprocessing.get_all_start_methods(), reason="no fork server here")
def test_a_worker_sees_the_environment_of_its_pool_not_of_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MARK, raising=False)
    assert _in_a_worker(None) is None  # the fork server is running from here on, started without MARK
    monkeypatch.setenv(MARK, "set after the server started")
    assert _in_a_worker(None) is None  # what a forked worker sees by itself: the server's environment
    assert _in_a_worker(dict(os.environ)) == "set after the server started"  # what run_in_processes passes


def test_workers_come_from_a_server_that_preloads_biaslab() -> None:
    context = worker_context()
    assert context.get_start_method() in ("forkserver", "spawn")
    if context.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        assert "biaslab.sweep" in forkserver._forkserver._preload_modules


SERVER_PROBE = """
import os, sys, time, psutil
if len(sys.argv) > 1:
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
from biaslab.workers import start_worker_server
started = start_worker_server()

def server_runs():
    for child in psutil.Process().children():
        try:
            if "forkserver" in " ".join(child.cmdline()):
                return True
        except psutil.Error:  # gone, or not yet readable
            pass
    return False

deadline = time.monotonic() + (20 if started else 2)  # a loaded machine may take a while to exec the server
while not server_runs() and time.monotonic() < deadline:
    time.sleep(0.05)
print(started, server_runs(), "torch" in sys.modules)
"""


@pytest.mark.skipif("forkserver" not in multiprocessing.get_all_start_methods() or len(os.sched_getaffinity(0)) < 2, reason="needs a fork server and 2 cores")
def test_the_cli_can_start_the_fork_server_before_importing_torch_and_not_on_one_core() -> None:
    import subprocess
    import sys

    def probe(*args: str) -> str:
        return subprocess.run([sys.executable, "-c", SERVER_PROBE, *args], capture_output=True, text=True, check=True, timeout=120).stdout.strip()

    assert probe() == "True True False"  # a server process runs, and this process has not imported torch
    assert probe("one-core") == "False False False"
