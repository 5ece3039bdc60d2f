"""Many writers on one store: leases on runs, taken in one transaction, expiring when their owner stops beating.

The store-level tests pit owners against each other directly (threads, each
with its own SQLite connection, claiming the same runs at once).
"""

from __future__ import annotations

import os
import random
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


@pytest.mark.parametrize("value", ["0", "-5", "soon", "nan"])
def test_a_bad_lease_timeout_names_the_variable(monkeypatch, value: str) -> None:
    monkeypatch.setenv("BIASLAB_LEASE_TIMEOUT", value)
    with pytest.raises(ValueError, match="BIASLAB_LEASE_TIMEOUT"):
        lease_timeout()
    monkeypatch.setenv("BIASLAB_LEASE_TIMEOUT", "2.5")
    assert lease_timeout() == 2.5
