"""Sweeps on a real local Ray head (bound to loopback): completion, a killed worker, resume across backends."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")

from biaslab.experiments import CATALOG  # noqa: E402
from biaslab.store import Store  # noqa: E402
from biaslab.sweep import run_sweep  # noqa: E402

pytestmark = pytest.mark.slow
COLUMNS = ["run_id", "status", "train_error", "test_error", "steps"]


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    yield
    ray.shutdown()


def _sweep(**overrides):
    return CATALOG.get("width-sweep").sweep("tiny").override(overrides)


def _table(store: Store):
    return store.table().sort_values("run_id")[COLUMNS].reset_index(drop=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The slow tiny sweep run in-process: what every backend must reproduce."""
    store = Store(tmp_path_factory.mktemp("reference"))
    run_sweep(_sweep(**SLOW), store, executor="inprocess")
    return _table(store)


SLOW = {"train.max_steps": 1500, "train.stop_zero_error_evals": None}  # every run trains its full budget


def test_a_sweep_completes_on_ray(local_ray, reference, tmp_path):
    store = Store(tmp_path)
    outcome = run_sweep(_sweep(**SLOW), store, backend="ray", executor="inprocess")
    assert outcome.executor.startswith("ray") and outcome.ran == 6
    assert _table(store).equals(reference)


def _ray_job_processes() -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if "ray::biaslab_job" in " ".join(process.info["cmdline"] or []):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def test_a_killed_worker_is_retried_and_nothing_is_lost_or_duplicated(local_ray, reference, tmp_path):
    store = Store(tmp_path)
    result: dict = {}
    sweep = threading.Thread(target=lambda: result.update(outcome=run_sweep(_sweep(**SLOW), store, backend="ray", executor="inprocess")))
    sweep.start()
    killed = None
    deadline = time.monotonic() + 60
    while killed is None and time.monotonic() < deadline and sweep.is_alive():
        busy = _ray_job_processes()
        if busy:
            killed = busy[0].pid
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    sweep.join(timeout=240)
    assert killed is not None, "no Ray worker was seen running a biaslab job"
    assert not sweep.is_alive()
    table = _table(store)
    assert len(table) == 6 and table["run_id"].is_unique
    assert table.equals(reference)  # the retried job gives the same numbers


def test_resume_across_backends(local_ray, reference, tmp_path):
    store = Store(tmp_path)
    first = run_sweep(_sweep(**SLOW, **{"model.width": 8}), store, executor="inprocess")
    assert first.ran == 2
    rest = run_sweep(_sweep(**SLOW), store, backend="ray")
    assert (rest.ran, rest.skipped) == (4, 2)
    assert _table(store).equals(reference)


def test_ray_backend_without_ray_is_a_clear_error(monkeypatch, tmp_path):
    import builtins

    real_import = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(ImportError()) if name == "ray" else real_import(name, *a, **k))
    with pytest.raises(ValueError, match="biaslab\\[ray\\]"):
        run_sweep(_sweep(), Store(tmp_path), backend="ray")


class _RayThatNeverStarts:
    """Stands in for the ray module on a machine too busy for its head to come up."""

    def __init__(self):
        self.calls = 0

    def init(self, **options):
        self.calls += 1
        raise Exception("The current node timed out during startup.")

    def shutdown(self):
        pass


def test_a_ray_head_that_does_not_start_is_one_clear_error():
    from biaslab.sweep import BackendUnavailable, _start_ray

    fake = _RayThatNeverStarts()
    with pytest.raises(BackendUnavailable, match=r"could not start a local Ray head in 1 attempt\(s\) within 0 s \(The current node timed out"):
        _start_ray(fake, None, timeout=0.0)
    assert fake.calls == 1


def test_the_cli_says_so_in_one_line_and_exits_2(monkeypatch, tmp_path, capsys):
    from biaslab import sweep
    from biaslab.cli import main

    def never(ray_module, address, timeout=None):
        raise sweep.BackendUnavailable("backend ray: could not start a local Ray head in 2 attempt(s) within 120 s (x); use --backend local")

    monkeypatch.setattr(sweep, "_start_ray", never)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    assert main(["run", "min-norm", "--preset", "tiny", "--backend", "ray", "--store", str(tmp_path), "--no-report"]) == 2
    err = capsys.readouterr().err  # the progress bar's first line, then the error: no traceback
    assert err.splitlines()[-1].startswith("biaslab: error: backend ray:") and "use --backend local" in err and "Traceback" not in err
