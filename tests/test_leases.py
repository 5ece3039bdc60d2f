"""Many writers on one store: leases on runs, taken in one transaction, expiring when their owner stops beating.

The store-level tests pit owners against each other directly (threads, each
with its own SQLite connection, claiming the same runs at once). The sweep
tests run real sweeps: in this process against a lease planted by a
"foreign" owner (another host: only its heartbeat can tell it is gone), and
as two `python` processes on one store, one of them killed with SIGKILL
mid-sweep. Each process logs every record it wrote (`pid spec_id`), so a run
done twice shows up as two lines even though the store keeps one record per
spec_id.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from biaslab.store import RunRecord, Store, lease_owner, lease_timeout

IDS = [f"{i:016x}" for i in range(1, 201)]
FOREIGN = "elsewhere.example:4242:feedbeef"  # an owner on another host: alive as long as it beats


def record(spec_id: str, status: str = "ok", spec: dict | None = None) -> RunRecord:
    return RunRecord(spec=spec or {"experiment": "custom"}, spec_id=spec_id, status=status)


def plant(store: Store, spec_id: str, owner: str, age: float) -> None:
    """A lease on `spec_id` held by `owner`, whose last heartbeat was `age` seconds ago."""
    assert store.claim([spec_id], owner).taken == [spec_id]
    import sqlite3

    with sqlite3.connect(store.db) as connection:
        connection.execute("UPDATE leases SET heartbeat = ? WHERE spec_id = ?", (time.time() - age, spec_id))


# ----------------------------------------------------------------------------- the store's leases


def test_writers_opening_a_new_store_at_once_all_get_it(tmp_path: Path) -> None:
    """Two sweeps started together on a new store: neither may find the half-made database and refuse it as an empty file."""
    for attempt in range(10):
        path, errors, start = tmp_path / f"s{attempt}", [], threading.Barrier(6)

        def open_it() -> None:
            start.wait()
            try:
                Store(path).put(record(IDS[threading.get_ident() % 7]))
            except Exception as error:  # noqa: BLE001 - collected and shown below
                errors.append(error)

        threads = [threading.Thread(target=open_it) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert [p.name for p in path.iterdir() if p.name.startswith(".")] == []  # no temporary files left


def test_a_run_is_leased_to_one_owner_until_its_record_is_written(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    a, b = lease_owner(), lease_owner()
    assert a != b and a.startswith(f"{socket.gethostname()}:{os.getpid()}:")
    assert store.claim(IDS[:2], a).taken == IDS[:2]
    claim = store.claim(IDS[:3], b)
    assert (claim.taken, claim.held, claim.settled) == ([IDS[2]], IDS[:2], [])
    assert store.claim(IDS[:2], a).taken == IDS[:2]  # its own leases: still its own
    store.put(record(IDS[0]))
    store.put(record(IDS[1], status="failed"))
    assert [lease.spec_id for lease in store.leases()] == [IDS[2]]  # a written record releases its lease, whatever its status
    claim = store.claim(IDS[:2], b)
    assert (claim.taken, claim.settled) == ([IDS[1]], [IDS[0]])  # finished: settled; failed: free to run again


def test_a_stale_lease_is_taken_over_and_a_live_one_is_not(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    plant(store, IDS[0], FOREIGN, age=10.0)
    plant(store, IDS[1], FOREIGN, age=1.0)
    me = lease_owner()
    claim = store.claim(IDS[:2], me, timeout=5.0)
    assert (claim.taken, claim.held) == ([IDS[0]], [IDS[1]])
    assert {lease.spec_id: lease.owner for lease in store.leases()} == {IDS[0]: me, IDS[1]: FOREIGN}
    assert store.claim([IDS[1]], me, timeout=0.5).taken == [IDS[1]]  # the same lease, with a shorter timeout


def test_a_lease_of_a_dead_process_on_this_host_is_free_at_once(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    dead = f"{socket.gethostname()}:{int(child.stdout)}:0badc0de"
    plant(store, IDS[0], dead, age=0.0)
    plant(store, IDS[1], f"{socket.gethostname()}:{os.getppid()}:0badc0de", age=0.0)  # a live process
    claim = store.claim(IDS[:2], lease_owner(), timeout=3600.0)
    assert (claim.taken, claim.held) == ([IDS[0]], [IDS[1]])


def test_stale_only_takes_over_dead_owners_and_settles_released_runs(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    plant(store, IDS[0], FOREIGN, age=100.0)
    plant(store, IDS[1], FOREIGN, age=0.0)
    claim = store.claim(IDS[:3], lease_owner(), timeout=5.0, stale_only=True)
    assert (claim.taken, claim.held, claim.settled) == ([IDS[0]], [IDS[1]], [IDS[2]])
    assert IDS[2] not in {lease.spec_id for lease in store.leases()}


def test_owners_claiming_the_same_runs_at_once_each_get_a_disjoint_share(tmp_path: Path) -> None:
    """Eight threads, each with its own connections, claim the same 200 runs in different orders, a few at a time."""
    store = Store(tmp_path / "s")
    taken: dict[str, list[str]] = {}
    start = threading.Barrier(8)

    def grab(seed: int) -> None:
        owner, ids = lease_owner(), IDS[:]
        random.Random(seed).shuffle(ids)
        start.wait()
        got = []
        for i in range(0, len(ids), 7):
            got += Store(tmp_path / "s").claim(ids[i : i + 7], owner).taken
        taken[owner] = got

    threads = [threading.Thread(target=grab, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    counts = Counter(spec_id for got in taken.values() for spec_id in got)
    assert set(counts) == set(IDS) and set(counts.values()) == {1}
    assert sum(bool(got) for got in taken.values()) >= 2  # they did compete
    assert len(store.leases()) == len(IDS)


@pytest.mark.slow
def test_the_heartbeat_keeps_a_lease_past_the_timeout_and_leaving_releases_it(tmp_path: Path) -> None:
    from biaslab.spec import RunSpec
    from biaslab.sweep import Leases

    store = Store(tmp_path / "s")
    spec = RunSpec(seed=3)
    with Leases(store, timeout=0.4) as leases:
        assert leases.take([spec]) == [spec]
        time.sleep(1.2)  # three timeouts: alive only through the heartbeats
        assert store.claim([spec.spec_id], lease_owner(), timeout=0.4).held == [spec.spec_id]
    assert store.leases() == []


@pytest.mark.parametrize("value", ["0", "-5", "soon", "nan"])
def test_a_bad_lease_timeout_names_the_variable(monkeypatch, value: str) -> None:
    monkeypatch.setenv("BIASLAB_LEASE_TIMEOUT", value)
    with pytest.raises(ValueError, match="BIASLAB_LEASE_TIMEOUT"):
        lease_timeout()
    monkeypatch.setenv("BIASLAB_LEASE_TIMEOUT", "2.5")
    assert lease_timeout() == 2.5


# ----------------------------------------------------------------------------- a sweep against another owner's lease


def tiny_sweep():
    from biaslab.experiments import CATALOG

    return CATALOG.get("width-sweep").sweep("tiny")


@pytest.mark.parametrize("executor", ["inprocess", "population", pytest.param("processes", marks=pytest.mark.slow)])
def test_a_sweep_waits_for_a_live_owner_and_redoes_a_run_whose_owner_stopped_beating(tmp_path: Path, monkeypatch, executor: str) -> None:
    """Leases are taken in the process that writes the store, whichever executor runs the jobs."""
    from biaslab.sweep import run_sweep

    monkeypatch.setenv("BIASLAB_LEASE_TIMEOUT", "2")
    store = Store(tmp_path / "s")
    specs = tiny_sweep().expand()
    crashed, recorded = specs[0].spec_id, specs[1]
    started = time.monotonic()
    plant(store, crashed, FOREIGN, age=0.0)  # its owner never beats again: free 2 s from now
    plant(store, recorded.spec_id, "other.example:7:cafe", age=0.0)
    beating = threading.Event()

    def other_sweep() -> None:  # beats, then writes its record (which releases the lease) after 1 s
        for _ in range(4):
            Store(tmp_path / "s").heartbeat("other.example:7:cafe")
            time.sleep(0.25)
        Store(tmp_path / "s").put(record(recorded.spec_id, spec=recorded.model_dump(mode="json")))
        beating.set()

    thread = threading.Thread(target=other_sweep)
    thread.start()
    outcome = run_sweep(tiny_sweep(), store, "tiny", executor=executor, workers=2)
    thread.join()
    assert beating.is_set()
    assert (outcome.ran, outcome.elsewhere, outcome.skipped) == (len(specs) - 1, 1, 1)  # it ran the crashed run, not the recorded one
    assert time.monotonic() - started >= 2.0  # it waited for the lease to expire (planted after `started`)
    assert [r.spec_id for r in outcome.records] == [s.spec_id for s in specs] and store.leases() == []
    assert store.get(crashed).env.get("host") is not None and store.get(recorded.spec_id).env == {}


# ----------------------------------------------------------------------------- two real processes on one store

WRITER = """
import os, sys, time
from biaslab.experiments import CATALOG
from biaslab.spec import parse_override
from biaslab.store import Store
from biaslab.sweep import run_sweep

if __name__ == "__main__":
    store, log, *sets = sys.argv[1:]
    overrides = dict(parse_override(s) for s in sets)
    sweep = CATALOG.get("width-sweep").sweep("tiny").override(overrides)
    with open(log, "a") as out:
        def mark(record):
            out.write(f"{os.getpid()} {record.spec_id}\\n")
            out.flush()
        outcome = run_sweep(sweep, Store(store), "tiny", overrides, executor="inprocess", on_record=mark)
    print("records", len(outcome.records), "ran", outcome.ran, "elsewhere", outcome.elsewhere)
"""
SETS = ("train.max_steps=1000", "train.stop_zero_error_evals=null", "seed=[0,1]")  # 12 runs of ~0.5 s each, no early stop
N_RUNS = 12
ENV = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "BIASLAB_LEASE_TIMEOUT": "3"}


def start_writer(tmp_path: Path, name: str) -> subprocess.Popen:
    script = tmp_path / "writer.py"
    if not script.exists():
        script.write_text(WRITER)
    command = [sys.executable, str(script), str(tmp_path / "store"), str(tmp_path / f"{name}.log"), *SETS]
    return subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def logged(tmp_path: Path, *names: str) -> Counter:
    lines = [line.split()[1] for name in names if (tmp_path / f"{name}.log").exists() for line in (tmp_path / f"{name}.log").read_text().splitlines()]
    return Counter(lines)


def assert_every_run_stored_once(tmp_path: Path, runs: Counter) -> None:
    store = Store(tmp_path / "store", readonly=True)
    records = store.records()
    from biaslab.spec import parse_override

    want = {spec.spec_id for spec in tiny_sweep().override(dict(parse_override(s) for s in SETS)).expand()}
    assert len(want) == N_RUNS and {r.spec_id for r in records} == want and all(r.status == "ok" for r in records)
    assert set(runs) == want
    assert set(runs.values()) == {1}, [spec_id for spec_id, n in runs.items() if n > 1]  # no run done twice
    assert store.leases() == []


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_two_processes_on_one_store_run_each_spec_once(tmp_path: Path) -> None:
    a, b = start_writer(tmp_path, "a"), start_writer(tmp_path, "b")
    outs = [p.communicate(timeout=100) for p in (a, b)]
    assert a.returncode == b.returncode == 0, outs
    runs = logged(tmp_path, "a", "b")
    assert_every_run_stored_once(tmp_path, runs)
    per_process = [len(logged(tmp_path, name)) for name in ("a", "b")]
    print(f"runs per process: {per_process}; records: {N_RUNS}")  # shown by pytest -rP
    assert min(per_process) >= 1 and sum(per_process) == N_RUNS, per_process  # they overlapped and shared the work
    for out, _ in outs:  # each waited for the other's runs and returned the whole sweep
        assert f"records {N_RUNS} " in out


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_process_killed_mid_sweep_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    a, b = start_writer(tmp_path, "a"), start_writer(tmp_path, "b")
    try:
        deadline = time.monotonic() + 60
        while not logged(tmp_path, "a") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert a.poll() is None and logged(tmp_path, "a"), "process a finished or stored nothing before the kill was due"
        os.killpg(a.pid, signal.SIGKILL)
        a.wait()
        killed_after = sum(logged(tmp_path, "a").values())
        out, err = b.communicate(timeout=100)
    finally:
        for p in (a, b):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    assert b.returncode == 0, err
    print(f"a stored {killed_after} runs before SIGKILL; b: {out.strip()}")  # shown by pytest -rP
    assert 1 <= killed_after < N_RUNS
    assert sum(logged(tmp_path, "a").values()) == killed_after  # a wrote nothing after its death
    assert_every_run_stored_once(tmp_path, logged(tmp_path, "a", "b"))
    assert f"records {N_RUNS} " in out and f"ran {N_RUNS - killed_after} " in out  # b redid a's run in flight, nothing else of a's
