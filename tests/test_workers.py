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
