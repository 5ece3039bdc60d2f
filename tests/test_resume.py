"""End-to-end resume tests: `biaslab run` killed with SIGKILL mid-sweep and run again.

Every sweep here is the `tiny` width sweep on the CPU, which is deterministic,
so a resumed sweep must give exactly the numbers of an uninterrupted one. The
killed sweep uses a longer step budget with no early stop, so that there is
time to kill it between its first and its last stored run.

Every `biaslab run` here gets OMP_NUM_THREADS=1: worker processes train with
one torch thread, so the in-process runs must too for their numbers to be
comparable bit for bit (a reduction split over threads may round differently);
it also keeps two sweeps running side by side from fighting over the cores.
The uninterrupted reference sweep runs in the background while the killed one
is started and killed, to keep this module well under a minute.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from biaslab.experiments import CATALOG
from biaslab.report import pages_of
from biaslab.spec import parse_override
from biaslab.store import Store

pytestmark = pytest.mark.slow

SLOW = ("--set", "train.max_steps=2000", "--set", "train.stop_zero_error_evals=null")
N_RUNS = 6
COMPARED = ["run_id", "status", "train_error", "test_error", "steps"]
RUN_TIMEOUT = 240  # seconds for one `biaslab run` of the tiny preset (about 15 s here)
SUMMARY = re.compile(r"(\d+) runs now, (\d+) already in ")


def command(store: Path, *extra: str, executor: str = "inprocess") -> list[str]:
    return [
        sys.executable, "-m", "biaslab.cli", "run", "width-sweep", "--preset", "tiny",
        "--store", str(store), "--executor", executor, *extra,
    ]  # fmt: skip


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def counts(self) -> tuple[int, int]:
        """(runs done now, runs already in the store) from the summary line."""
        match = SUMMARY.search(self.stdout)
        assert match, f"no summary line in the output:\n{self.stdout}\n{self.stderr}"
        return int(match.group(1)), int(match.group(2))


ENV = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def start(store: Path, *extra: str, executor: str = "inprocess", **popen) -> subprocess.Popen:
    store.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(command(store, *extra, executor=executor), cwd=store.parent, env=ENV, text=True, **popen)


def run(store: Path, *extra: str, executor: str = "inprocess") -> Finished:
    started = time.perf_counter()
    process = start(store, *extra, executor=executor, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return finish(process, started)


def finish(process: subprocess.Popen, started: float) -> Finished:
    try:
        stdout, stderr = process.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        pytest.fail(f"`biaslab run` took more than {RUN_TIMEOUT} s:\n{stdout}\n{stderr}")
    return Finished(process.returncode, stdout, stderr, time.perf_counter() - started)


def stored_count(db: Path) -> int:
    """Finished runs in the store, read-only; 0 while the file or its table does not exist yet or is locked."""
    if not db.exists():
        return 0
    try:
        connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.2)
    except sqlite3.Error:
        return 0
    try:
        return connection.execute("SELECT count(*) FROM runs WHERE status IN ('ok', 'diverged')").fetchone()[0]
    except sqlite3.Error:  # no table yet, locked, or mid-creation
        return 0
    finally:
        connection.close()


def expected_ids(*overrides: str) -> set[str]:
    values = dict(parse_override(v) for v in overrides if v != "--set")
    return {s.spec_id for s in CATALOG.get("width-sweep").sweep("tiny").override(values).expand()}


def final_table(store: Path, columns: list[str] | None = COMPARED) -> pd.DataFrame:
    """The store's table sorted by run id: the compared columns, or (None) all but the timing ones."""
    table = Store(store).table()
    table = table[columns] if columns is not None else table.drop(columns=["seconds", "created"])
    return table.sort_values("run_id").reset_index(drop=True)


def assert_same_results(store: Path, reference_store: Path) -> None:
    pd.testing.assert_frame_equal(final_table(store), final_table(reference_store), check_exact=True)
    # with one thread everywhere, every final number (losses, norms, margins) is the same bit for bit too
    pd.testing.assert_frame_equal(final_table(store, None), final_table(reference_store, None), check_exact=True)


def check_complete(store: Path, *overrides: str) -> None:
    """Every run of the sweep is stored once, and every one is ok."""
    connection = sqlite3.connect(store / "runs.sqlite")
    try:
        ids = [row[0] for row in connection.execute("SELECT spec_id FROM runs")]
        statuses = [row[0] for row in connection.execute("SELECT status FROM runs")]
        sweeps = connection.execute("SELECT count(*) FROM sweeps").fetchone()[0]
    finally:
        connection.close()
    assert len(ids) == N_RUNS and len(set(ids)) == N_RUNS, ids
    assert set(ids) == expected_ids(*overrides)
    assert statuses == ["ok"] * N_RUNS, statuses
    assert sweeps == 1  # the same sweep, however often it was started


@pytest.fixture(scope="module")
def reference_started(tmp_path_factory: pytest.TempPathFactory):
    """The slow sweep, uninterrupted, into a fresh store: started here, in the background."""
    store = tmp_path_factory.mktemp("reference") / "S2"
    started = time.perf_counter()
    process = start(store, *SLOW, "--no-report", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    yield store, process, started
    if process.poll() is None:  # a test failed before waiting for it
        process.kill()
        process.communicate()


@pytest.fixture(scope="module")
def reference(reference_started) -> tuple[Path, Finished]:
    """The uninterrupted slow sweep, finished: its store and how its command ended."""
    store, process, started = reference_started
    finished = finish(process, started)
    assert finished.returncode == 0, finished.stderr
    assert finished.counts == (N_RUNS, 0)
    check_complete(store, *SLOW)
    return store, finished


@dataclass
class Killed:
    store: Path  # the store as the killed sweep left it: copy it before writing to it
    stored: int  # finished runs in it after the kill


@pytest.fixture(scope="module")
def killed(tmp_path_factory: pytest.TempPathFactory, reference_started) -> Killed:
    """The slow sweep started in-process and killed with SIGKILL once 1 to 5 of its 6 runs are stored."""
    store = tmp_path_factory.mktemp("killed") / "S1"
    db = store / "runs.sqlite"
    process = start(store, *SLOW, "--no-report", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        count = 0
        while time.monotonic() < deadline and process.poll() is None:
            count = stored_count(db)
            if count >= 1:
                break
            time.sleep(0.02)
        assert process.poll() is None, f"the sweep ended (exit {process.returncode}) before it could be killed"
        assert 1 <= count < N_RUNS, f"{count} runs stored when the kill was due"
        os.killpg(process.pid, signal.SIGKILL)  # start_new_session: the group id is the pid
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
    stored = stored_count(db)
    assert 1 <= stored < N_RUNS, f"{stored} runs stored after the kill"
    return Killed(store, stored)


def copy_store(source: Path, destination: Path) -> Path:
    """The whole directory: the database with its -wal and -shm files, as the killed process left them."""
    shutil.copytree(source, destination)
    return destination


def test_killed_sweep_resumes_to_the_uninterrupted_result(killed: Killed, reference, tmp_path: Path) -> None:
    reference_store, _ = reference
    store = copy_store(killed.store, tmp_path / "S1")
    records = Store(store).records()
    assert len(records) == killed.stored and all(r.status == "ok" for r in records)  # whole records only, no torn rows
    assert {r.spec_id for r in records} <= expected_ids(*SLOW)

    resumed = run(store, *SLOW, "--no-report")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.counts == (N_RUNS - killed.stored, killed.stored), resumed.stdout  # it said some were already in
    assert f"{killed.stored} already in" in resumed.stdout
    check_complete(store, *SLOW)
    assert_same_results(store, reference_store)
    # the runs stored before the kill were kept as they were, not run again
    kept = {r.spec_id: r for r in records}
    for record in Store(store).records_of(kept):
        assert (record.created, record.seconds, record.final) == (kept[record.spec_id].created, kept[record.spec_id].seconds, kept[record.spec_id].final)


def test_sweep_started_in_process_finishes_with_processes(killed: Killed, reference, tmp_path: Path) -> None:
    reference_store, _ = reference
    store = copy_store(killed.store, tmp_path / "S3")
    resumed = run(store, *SLOW, "--no-report", "--workers", "2", executor="processes")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.counts == (N_RUNS - killed.stored, killed.stored), resumed.stdout
    assert "[processes" in resumed.stdout
    check_complete(store, *SLOW)
    assert_same_results(store, reference_store)


def test_rerunning_a_finished_sweep_runs_nothing(reference, tmp_path: Path) -> None:
    reference_store, first = reference
    store = copy_store(reference_store, tmp_path / "S2-again")
    before = {r.spec_id: (r.created, r.seconds) for r in Store(store).records()}
    again = run(store, *SLOW, "--no-report")
    assert again.returncode == 0, again.stderr
    assert again.counts == (0, N_RUNS)
    assert f"0 runs now, {N_RUNS} already in" in again.stdout
    assert {r.spec_id: (r.created, r.seconds) for r in Store(store).records()} == before  # nothing was rewritten
    check_complete(store, *SLOW)
    # fast: the command's own start-up only, well under the first run's time
    assert again.seconds < first.seconds, (again.seconds, first.seconds)
    assert again.seconds < 60


def _statuses(store: Path) -> list[str]:
    return [r.status for r in Store(store).records()]


def test_a_sweep_where_every_run_diverges_completes(tmp_path: Path) -> None:
    """lr=1e6: every run's loss is non-finite at the first evaluation; the sweep still ends with exit 0 and a report."""
    store = tmp_path / "S"
    finished = run(store, "--set", "train.lr=1e6")
    assert finished.returncode == 0, finished.stderr
    assert f"{N_RUNS} diverged, 0 failed" in finished.stdout
    assert _statuses(store) == ["diverged"] * N_RUNS
    assert "Traceback" not in finished.stderr
    report = store / "report" / "index.html"
    assert f"report: {store / 'report' / 'index.html'}" in finished.stdout
    page = "".join(p.read_text(encoding="utf-8") for p in [report, *pages_of(report.parent)])  # index and sweep page
    assert "no verdict" in page and "<img" not in page
    for record in Store(store).records():  # the diverged run's curves are kept, NaN loss included
        assert record.curves["train_loss"] and record.final["steps"] > 0
        assert record.env["stopped"] == "diverged"
    # diverged runs are finished: running the sweep again does nothing
    again = run(store, "--set", "train.lr=1e6", "--no-report")
    assert again.returncode == 0 and again.counts == (0, N_RUNS)


def test_a_sweep_with_some_diverged_runs_still_gets_a_verdict(tmp_path: Path) -> None:
    """lr=3: the narrow networks train, the wide ones diverge (measured: width 8 ok, 64 and 256 diverged)."""
    store = tmp_path / "S"
    finished = run(store, "--set", "train.lr=3")
    assert finished.returncode == 0, finished.stderr
    statuses = _statuses(store)
    assert "diverged" in statuses and "ok" in statuses, statuses
    assert "failed" not in statuses
    assert f"{statuses.count('diverged')} diverged, 0 failed" in finished.stdout
    assert re.search(r"^(PASS|FAIL): ", finished.stdout, re.MULTILINE), finished.stdout  # the verdict was computed
    (page,) = [p.read_text(encoding="utf-8") for p in pages_of(store / "report")]  # the sweep's page
    assert re.search(r"<b>(PASS|FAIL)</b>", page)
    assert "<img" in page
