"""The results store: one record per run in an embedded SQLite database.

`Store(path)` keeps `path/runs.sqlite` (WAL mode). Every write is one
transaction, so a crash (even `kill -9`) leaves either the whole record or
none of it; records are keyed by `spec_id`, so writing a run again replaces it
instead of duplicating it. Records are JSON, never pickle. A diverged or
failed run is a record too, with its status and, for failures, the traceback.

Reliability (what a damaged or foreign file gets):
- A store is created only where no `runs.sqlite` exists. A file that is not a
  biaslab store (empty, not SQLite, no `runs` table) or that fails SQLite's
  `PRAGMA quick_check` is refused with a `StoreError` (one line, naming the
  file), never initialized over.
- `Store(path, readonly=True)` opens with SQLite's `mode=ro` (and
  `immutable=1` where even that cannot open, as on a read-only file system),
  so commands that only read work on archived and shared stores and never
  write to them.
- A record that cannot be decoded is skipped by readers with a `StoreWarning`
  naming it; it never hides the others. `get` of that record is a StoreError.
  A resumed sweep runs it again, which replaces it.
- When the sweeps table is missing or empty while runs exist, `sweeps()`
  gives one recovered sweep per experiment (written back when writable).
- `check_store` lists damage; `repair_store` copies every readable record,
  sweep and weights file into a new store.
- Spec ids are checked (16 lowercase hex digits) before they become paths,
  and every path the store writes is checked to lie inside it.

Many writers: sweeps in several processes of one machine may
write one store. A run is leased before it runs: `claim` takes a row of the
`leases` table (spec_id, owner `host:pid:token`, heartbeat time) in one
`BEGIN IMMEDIATE` transaction, only where the run is not finished and no live
lease of another owner exists. The owner refreshes its heartbeats while it
runs (`heartbeat`); a lease whose heartbeat is older than the timeout
(`lease_timeout()`: BIASLAB_LEASE_TIMEOUT seconds, default 120), or whose
owner is a process of this host that no longer exists, is stale and may be
taken over. `put` releases the record's lease in the transaction that writes
it, so a run is never both unleased and unrecorded while its owner lives.

This module never imports torch: it stores plain data.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import secrets
import shutil
import socket
import sqlite3
import time
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from functools import cached_property
from typing import Any

import numpy as np

from biaslab.spec import RunSpec

DEFAULT_PATH = Path("biaslab-runs")
STATUSES = ("ok", "diverged", "failed")
COLUMNS = ("spec_id", "experiment", "status", "spec", "curves", "final", "env", "seconds", "error", "created", "arrays")
ADDED_COLUMNS = {"arrays": "TEXT NOT NULL DEFAULT '{}'"}  # columns newer than the first schema: added to older stores on open
FINISHED = ("ok", "diverged")  # a resumed sweep skips these; failed runs are tried again
SPEC_ID_LENGTH = 16  # hex digits of the SHA-256 of a spec's canonical JSON (spec.RunSpec.spec_id)
_SPEC_ID = re.compile(f"[0-9a-f]{{{SPEC_ID_LENGTH}}}")
_RUN_ID_PREFIX = re.compile(f"[0-9a-f]{{4,{SPEC_ID_LENGTH}}}")
_SQLITE_HEADER = b"SQLite format 3\x00"
_DEFAULTS = {"arrays": "'{}'"}  # what a read-only store without an added column reads for it
_JSON_COLUMNS = ("spec", "curves", "final", "env", "arrays")
RECOVERED = "recovered"  # the preset name of a sweep rebuilt from the runs
_DAMAGE = (sqlite3.DatabaseError, UnicodeDecodeError)  # what reading a damaged file raises (SQLite's message itself can be bad UTF-8)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    spec_id TEXT PRIMARY KEY,
    experiment TEXT NOT NULL,
    status TEXT NOT NULL,
    spec TEXT NOT NULL,
    curves TEXT NOT NULL,
    final TEXT NOT NULL,
    env TEXT NOT NULL,
    seconds REAL NOT NULL,
    error TEXT,
    created TEXT NOT NULL,
    arrays TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS runs_experiment ON runs (experiment);
CREATE TABLE IF NOT EXISTS sweeps (
    sweep_id TEXT PRIMARY KEY,
    experiment TEXT NOT NULL,
    preset TEXT NOT NULL,
    overrides TEXT NOT NULL,
    spec_ids TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (
    spec_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    heartbeat REAL NOT NULL,
    taken REAL NOT NULL
);
"""
DEFAULT_LEASE_TIMEOUT = 120.0  # seconds without a heartbeat after which a lease is stale (owners beat every timeout / 4)


def lease_timeout() -> float:
    """Seconds after which a lease without a heartbeat is stale: BIASLAB_LEASE_TIMEOUT, default 120; ValueError if not a positive number."""
    text = os.environ.get("BIASLAB_LEASE_TIMEOUT", str(DEFAULT_LEASE_TIMEOUT))
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"BIASLAB_LEASE_TIMEOUT: {text!r} is not a positive number of seconds")
    return value


def lease_owner() -> str:
    """A new owner name for leases: `host:pid:token` (the token tells apart two sweeps of one process)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _owner_gone(owner: str) -> bool:
    """Whether `owner` names a process of this host that no longer exists (its leases need not wait for the timeout)."""
    parts = owner.rsplit(":", 2)  # host names may hold ':' (IPv6): the pid and token are the last two fields
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except OSError:  # it exists but belongs to someone else (EPERM)
        return False
    return False


@dataclass(frozen=True)
class Lease:
    """A run being run: who holds it and when it last said it was alive (unix seconds)."""

    spec_id: str
    owner: str
    heartbeat: float
    taken: float


@dataclass
class Claim:
    """What `Store.claim` did with each asked spec_id: taken (now ours), held (by another live owner), settled (nothing left to do)."""

    taken: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)
    settled: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SweepEntry:
    """A sweep as the user asked for it: experiment, preset, overrides, and the runs it is made of."""

    experiment: str
    preset: str
    overrides: dict[str, Any]
    spec_ids: tuple[str, ...]
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    @property
    def sweep_id(self) -> str:
        key = json.dumps([self.experiment, self.preset, self.overrides], sort_keys=True)
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        sets = " ".join(f"--set {k}={json.dumps(v)}" for k, v in sorted(self.overrides.items()))
        return f"{self.experiment} --preset {self.preset}" + (f" {sets}" if sets else "")


@dataclass
class RunRecord:
    """One run: its resolved spec, how it ended, its curves and final metrics, and provenance."""

    spec: dict[str, Any]
    spec_id: str
    status: str
    curves: dict[str, list[float]] = field(default_factory=dict)  # metric -> values at each evaluation
    final: dict[str, float] = field(default_factory=dict)
    env: dict[str, Any] = field(default_factory=dict)  # versions, git commit, device, host
    seconds: float = 0.0
    error: str | None = None  # the traceback of a failed run
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    arrays: dict[str, list[float]] = field(default_factory=dict)  # named vectors a figure needs (final coefficients, spectra)
    weights: dict[str, np.ndarray] | None = field(default=None, repr=False, compare=False)  # trained state_dict, kept as a file

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status: {self.status!r} is not one of {', '.join(STATUSES)}")

    @property
    def experiment(self) -> str:
        return str(self.spec.get("experiment", "custom"))

    @cached_property
    def run_spec(self) -> RunSpec:
        """The record's spec as the validated, typed RunSpec (a spec that no longer validates raises SpecError)."""
        return RunSpec.model_validate(self.spec)


def curves_from_rows(rows: Iterable[dict[str, float]]) -> dict[str, list[float]]:
    """History rows -> one list per metric (NaN where a row lacks the metric)."""
    rows = list(rows)
    names = list(dict.fromkeys(name for row in rows for name in row))
    return {name: [row.get(name, math.nan) for row in rows] for name in names}


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists and tuples become JSON strings so they fit one cell."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat |= flatten(value, f"{name}.")
        elif isinstance(value, (list, tuple)):
            flat[name] = json.dumps(value)
        else:
            flat[name] = value
    return flat


class RunNotFound(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


class StoreError(Exception):
    """A store that cannot be opened, read or written as asked: the message is one line naming the file."""


class _Undecodable(bytes):
    """A text cell whose bytes are not UTF-8 (a damaged record): kept as bytes so the row can be named and skipped."""


def _text(value: bytes) -> str | _Undecodable:
    """sqlite3 text_factory: UTF-8 text, or an _Undecodable marker instead of a UnicodeDecodeError that would end the whole query."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return _Undecodable(value)


class StoreWarning(UserWarning):
    """A damaged record or sweep that readers skipped; the rest of the store is read as usual."""


def check_spec_id(spec_id: object) -> str:
    """`spec_id` if it is 16 lowercase hex digits (what `RunSpec.spec_id` gives), else ValueError: ids become file names."""
    if not isinstance(spec_id, str) or not _SPEC_ID.fullmatch(spec_id):
        raise ValueError(f"spec_id: {spec_id!r} is not {SPEC_ID_LENGTH} lowercase hex digits")
    return spec_id


class Store:
    """Run records on disk under `path`.

    Writable (the default): the directory and `runs.sqlite` are created if no
    `runs.sqlite` is there yet; an existing one must be a sound biaslab store.
    `readonly=True`: the store must exist; nothing is ever written to it.
    """

    def __init__(self, path: str | Path = DEFAULT_PATH, readonly: bool = False) -> None:
        self.path = Path(path)
        self.db = self.path / "runs.sqlite"
        self.readonly = readonly
        self._uri: str | None = None
        self._present: set[str] = set()  # the columns of the runs table
        if readonly:
            self._open_readonly()
        else:
            self._open_writable()
        self._selected = self._select_list()

    def _open_readonly(self) -> None:
        if not self.db.exists():
            raise StoreError(f"store {self.path}: no biaslab store here (no runs.sqlite)")
        _check_header(self.db)
        self._uri = _readonly_uri(self.db, self.path)
        with self._connect() as connection:
            _check_sound(connection, self.db, self.path)

    def _open_writable(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise StoreError(f"store {self.path}: is a file, not a directory; give a directory for the store")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreError(f"store {self.path}: cannot create the directory ({error.strerror}: {error.filename})") from None
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise StoreError(f"store {self.path}: the directory is not writable (commands that only read, like report, export and show, work on it)")
        fresh = not self.db.exists()
        if fresh:
            self._create()
        _check_header(self.db)
        with self._connect() as connection:
            _check_sound(connection, self.db, self.path)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.executescript(_SCHEMA)
            present = _columns(connection)
            for column, declaration in ADDED_COLUMNS.items():
                if column not in present:
                    connection.execute(f"ALTER TABLE runs ADD COLUMN {column} {declaration}")
        if not fresh:
            self._rebuild_sweeps()

    def _create(self) -> None:
        """Make a new store's database under a temporary name, then link it into place.

        Another process opening the store at the same moment then finds no
        `runs.sqlite` or a whole one, never the empty file SQLite starts
        with (which `_check_header` rightly refuses). If it made one first,
        its store is kept and this one dropped.
        """
        temporary = self.path / f".runs.sqlite.{os.getpid()}.{secrets.token_hex(4)}.new"
        try:
            connection = sqlite3.connect(temporary)
            try:
                connection.execute("PRAGMA journal_mode=WAL")  # kept in the file's header
                connection.executescript(_SCHEMA)
            finally:
                connection.close()  # the last connection folds the WAL back into the file
            try:
                os.link(temporary, self.db)  # fails if a store appeared meanwhile: that one wins
            except FileExistsError:
                pass
        except (OSError, sqlite3.Error) as error:
            raise StoreError(f"store {self.db}: cannot create ({error})") from None
        finally:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{temporary}{suffix}").unlink(missing_ok=True)

    def _select_list(self) -> str:
        """The columns to read, with the default of a column an older (read-only) store lacks."""
        with self._connect() as connection:
            self._present = _columns(connection)
        return ", ".join(c if c in self._present else f"{_DEFAULTS[c]} AS {c}" for c in COLUMNS)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            if self._uri is not None:
                connection = sqlite3.connect(self._uri, uri=True, timeout=30.0)
            else:
                connection = sqlite3.connect(self.db, timeout=30.0)
                connection.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as error:
            raise StoreError(f"store {self.db}: cannot open ({error})") from None
        connection.text_factory = _text
        try:
            with connection:  # one transaction: committed on success, rolled back on error
                yield connection
        except _DAMAGE as error:
            raise StoreError(_damaged(self.db, self.path, error)) from None
        finally:
            connection.close()

    def put(self, record: RunRecord) -> None:
        """Write a record atomically, replacing any earlier record of the same spec_id.

        A record's trained weights go first to `weights/SPEC_ID.safetensors`
        (written to a temporary file and renamed), so a stored record never
        points at half a file. The spec_id must be 16 lowercase hex digits
        (ValueError otherwise): it names files, so it is checked before use.
        """
        check_spec_id(record.spec_id)
        if record.weights:
            self._put_weights(record.spec_id, record.weights)
        with self._connect() as connection:
            connection.execute(
                f"INSERT OR REPLACE INTO runs ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                (
                    record.spec_id,
                    record.experiment,
                    record.status,
                    _dumps(record.spec, sort_keys=True),
                    _dumps(record.curves),
                    _dumps(record.final),
                    _dumps(record.env, sort_keys=True),
                    record.seconds,
                    record.error,
                    record.created,
                    _dumps(record.arrays),
                ),
            )
            connection.execute("DELETE FROM leases WHERE spec_id = ?", (record.spec_id,))  # the run is over: its lease goes with the write

    @contextmanager
    def _immediate(self) -> Iterator[sqlite3.Connection]:
        """One transaction that holds the database's write lock from its first statement (BEGIN IMMEDIATE),
        so what it reads cannot change before it writes: two claims of one run cannot both see it free."""
        with self._connect() as connection:
            connection.execute("BEGIN IMMEDIATE")
            yield connection

    def claim(self, spec_ids: Iterable[str], owner: str, timeout: float | None = None, stale_only: bool = False) -> Claim:
        """Lease for `owner` every run of `spec_ids` that is free, in one transaction; say what happened to each.

        A run is settled when it is finished (ok or diverged); held when
        another owner's lease on it is live; otherwise taken: a new lease, a
        lease `owner` already had, or a stale one (heartbeat older than
        `timeout` seconds, default `lease_timeout()`, or an owner process of
        this host that is gone) taken over. With `stale_only`, a run with no
        lease is settled instead of taken: a sweep that saw a run held uses
        this to take over only from a dead owner, since a lease that vanished
        was released by a written record.
        """
        wanted = list(dict.fromkeys(spec_ids))
        timeout = lease_timeout() if timeout is None else timeout
        claim = Claim()
        with self._immediate() as connection:
            now = time.time()
            finished = self._finished_among(connection, wanted)
            leases = {lease.spec_id: lease for lease in self._leases_among(connection, wanted)}
            for spec_id in wanted:
                lease = leases.get(spec_id)
                if spec_id in finished or (lease is None and stale_only):
                    claim.settled.append(spec_id)
                elif lease is not None and lease.owner != owner and now - lease.heartbeat <= timeout and not _owner_gone(lease.owner):
                    claim.held.append(spec_id)
                else:
                    connection.execute("INSERT OR REPLACE INTO leases VALUES (?, ?, ?, ?)", (check_spec_id(spec_id), owner, now, now))
                    claim.taken.append(spec_id)
        return claim

    def heartbeat(self, owner: str) -> int:
        """Mark every lease of `owner` alive now; the number of leases it still holds (one taken over is no longer its own)."""
        with self._connect() as connection:
            return connection.execute("UPDATE leases SET heartbeat = ? WHERE owner = ?", (time.time(), owner)).rowcount

    def release(self, owner: str) -> int:
        """Drop every lease `owner` still holds (its runs ended without a record, or it stops): others may run them now."""
        with self._connect() as connection:
            return connection.execute("DELETE FROM leases WHERE owner = ?", (owner,)).rowcount

    def leases(self) -> list[Lease]:
        """Every lease in the store, live or stale, by spec_id."""
        with self._connect() as connection:
            if "leases" not in _tables(connection):  # a read-only store from before leases
                return []
            return [Lease(*row) for row in connection.execute("SELECT spec_id, owner, heartbeat, taken FROM leases ORDER BY spec_id")]

    def _leases_among(self, connection: sqlite3.Connection, spec_ids: list[str]) -> list[Lease]:
        return [Lease(*row) for row in _chunked(connection, "SELECT spec_id, owner, heartbeat, taken FROM leases WHERE spec_id IN ({})", spec_ids)]

    def _finished_among(self, connection: sqlite3.Connection, spec_ids: list[str]) -> set[str]:
        """Those of `spec_ids` with a finished record whose JSON SQLite can read (as `finished_ids`)."""
        marks = ",".join("?" * len(FINISHED))
        valid = " AND ".join(f"json_valid({c})" for c in _JSON_COLUMNS if c in self._present)
        query = f"SELECT spec_id FROM runs WHERE status IN ({marks}) AND {valid} AND spec_id IN ({{}})"
        try:
            return {row[0] for row in _chunked(connection, query, spec_ids, FINISHED)}
        except sqlite3.OperationalError:  # an SQLite without JSON functions
            return {spec_id for spec_id in self.finished_ids() if spec_id in set(spec_ids)}

    def finished_ids(self) -> set[str]:
        """spec_ids of runs that need not run again (ok or diverged); a damaged record is run again, which replaces it."""
        marks = ",".join("?" * len(FINISHED))
        valid = " AND ".join(f"json_valid({c})" for c in _JSON_COLUMNS if c in self._present)
        with self._connect() as connection:
            try:  # SQLite checks the JSON: measured 5 ms instead of 1.2 s for 2000 runs of 2500 curve points
                rows = connection.execute(f"SELECT spec_id FROM runs WHERE status IN ({marks}) AND {valid}", FINISHED).fetchall()
                return {spec_id for (spec_id,) in rows if isinstance(spec_id, str) and _SPEC_ID.fullmatch(spec_id)}
            except sqlite3.OperationalError:  # an SQLite without JSON functions: decode here
                rows = connection.execute(f"SELECT {self._selected} FROM runs WHERE status IN ({marks})", FINISHED).fetchall()
        return {row[0] for row in rows if isinstance(_decode(row), RunRecord)}

    def _decoded(self, rows: Iterable[tuple]) -> Iterator[RunRecord]:
        """The records of `rows`; a row that does not decode is skipped with a StoreWarning naming it."""
        for row in rows:
            decoded = _decode(row)
            if isinstance(decoded, RunRecord):
                yield decoded
            else:
                reason = decoded
                warnings.warn(f"store {self.db}: skipped the damaged record {_shown(row[0])} ({reason}); see `biaslab store check`", StoreWarning, stacklevel=3)

    def records(self, experiment: str | None = None) -> list[RunRecord]:
        """All records, or one experiment's, oldest first."""
        query, args = f"SELECT {self._selected} FROM runs", ()
        if experiment is not None:
            query, args = query + " WHERE experiment = ?", (experiment,)
        with self._connect() as connection:
            rows = connection.execute(query + " ORDER BY created, spec_id", args).fetchall()
        return list(self._decoded(rows))

    def get(self, run_id: str) -> RunRecord:
        """The record whose spec_id is or starts with `run_id` (at least 4 characters)."""
        if len(run_id) < 4:
            raise RunNotFound(f"run id {run_id!r}: give at least 4 characters of the id (see `biaslab export` or the report)")
        if not _RUN_ID_PREFIX.fullmatch(run_id):
            raise RunNotFound(f"run id {run_id!r}: no such run in {self.path}; a run id is 4 to {SPEC_ID_LENGTH} lowercase hex digits")
        with self._connect() as connection:
            rows = connection.execute(f"SELECT {self._selected} FROM runs WHERE substr(spec_id, 1, ?) = ?", (len(run_id), run_id)).fetchall()
        if not rows:
            raise RunNotFound(f"run id {run_id!r}: no such run in {self.path}")
        if len(rows) > 1:
            raise RunNotFound(f"run id {run_id!r} is ambiguous: {', '.join(str(r[0]) for r in rows)}")
        decoded = _decode(rows[0])
        if not isinstance(decoded, RunRecord):
            raise StoreError(f"run {_shown(rows[0][0])} in {self.db} is damaged ({decoded}); salvage the rest with `biaslab store repair`")
        return decoded

    def weights_path(self, spec_id: str) -> Path:
        """STORE/weights/SPEC_ID.safetensors, for a well-formed spec_id only (ValueError otherwise)."""
        return self.inside(Path("weights") / f"{check_spec_id(spec_id)}.safetensors")

    def inside(self, relative: str | Path) -> Path:
        """`path / relative`, checked to lie inside the store even after symbolic links are followed (ValueError otherwise)."""
        root = self.path.resolve()
        target = (root / relative).resolve()
        if not target.is_relative_to(root):
            raise ValueError(f"{relative}: leads outside the store {self.path}")
        return self.path / relative

    def _put_weights(self, spec_id: str, weights: dict[str, np.ndarray]) -> None:
        from safetensors.numpy import save_file  # safetensors: tensors without pickle

        path = self.weights_path(spec_id)
        path.parent.mkdir(exist_ok=True)
        partial = path.with_suffix(".partial")
        save_file({name: np.ascontiguousarray(array) for name, array in weights.items()}, str(partial))
        os.replace(partial, path)

    def weights(self, run_id: str) -> dict[str, np.ndarray]:
        """The trained weights of a run (as numpy arrays), if its spec asked to keep them (`save_weights=true`)."""
        record = self.get(run_id)
        path = self.weights_path(record.spec_id)
        if not path.exists():
            raise RunNotFound(f"run {record.spec_id}: no stored weights; run it with --set save_weights=true to keep them")
        from safetensors.numpy import load_file

        return load_file(str(path))

    def put_sweep(self, sweep: SweepEntry) -> None:
        """Remember a sweep (replacing an earlier one with the same experiment, preset and overrides)."""
        with self._connect() as connection:
            connection.execute(
                "INSERT OR REPLACE INTO sweeps VALUES (?, ?, ?, ?, ?, ?)",
                (sweep.sweep_id, sweep.experiment, sweep.preset, json.dumps(sweep.overrides, sort_keys=True), json.dumps(sweep.spec_ids), sweep.created),
            )

    def sweeps(self) -> list[SweepEntry]:
        """Every sweep ever started in this store, oldest first; rebuilt from the runs if none is recorded."""
        with self._connect() as connection:
            if "sweeps" not in _tables(connection):
                rows = []
            else:
                rows = connection.execute("SELECT experiment, preset, overrides, spec_ids, created FROM sweeps ORDER BY created, sweep_id").fetchall()
        entries = []
        for row in rows:
            try:
                entries.append(_sweep(row))
            except (ValueError, TypeError) as error:
                warnings.warn(f"store {self.db}: skipped a damaged sweep of {_shown(row[0])} ({error}); see `biaslab store check`", StoreWarning, stacklevel=2)
        return entries or ([] if rows else self._recovered_sweeps())

    def _recovered_sweeps(self) -> list[SweepEntry]:
        """One sweep per experiment holding all its runs (preset 'recovered'): what is left when the sweeps table is lost."""
        with self._connect() as connection:
            rows = connection.execute("SELECT experiment, spec_id, created FROM runs ORDER BY created, spec_id").fetchall()
        by_experiment: dict[str, list[str]] = {}
        first: dict[str, str] = {}
        for experiment, spec_id, created in rows:
            by_experiment.setdefault(str(experiment), []).append(spec_id)
            first.setdefault(str(experiment), str(created))
        return [SweepEntry(e, RECOVERED, {}, tuple(ids), first[e]) for e, ids in by_experiment.items()]

    def _rebuild_sweeps(self) -> None:
        """Write the recovered sweeps back when the sweeps table is empty while runs exist."""
        with self._connect() as connection:
            empty = connection.execute("SELECT count(*) FROM sweeps").fetchone()[0] == 0
        if empty:
            for entry in self._recovered_sweeps():
                self.put_sweep(entry)

    def records_of(self, spec_ids: Iterable[str]) -> list[RunRecord]:
        """The stored records among `spec_ids`, in that order (missing ones are left out)."""
        wanted = list(spec_ids)
        found: dict[str, RunRecord] = {}
        with self._connect() as connection:
            for start in range(0, len(wanted), 500):  # SQLite caps the number of bound parameters
                chunk = wanted[start : start + 500]
                query = f"SELECT {self._selected} FROM runs WHERE spec_id IN ({','.join('?' * len(chunk))})"
                found |= {record.spec_id: record for record in self._decoded(connection.execute(query, chunk).fetchall())}
        return [found[i] for i in wanted if i in found]

    def experiments(self) -> list[str]:
        with self._connect() as connection:
            return [row[0] for row in connection.execute("SELECT DISTINCT experiment FROM runs ORDER BY experiment")]

    def table(self, experiment: str | None = None):
        """One row per run: id, status, seconds, the flattened spec ('model.width', ...) and final metrics."""
        return records_table(self.records(experiment))

    def curves_table(self, experiment: str | None = None):
        """Every run's curves in long format, one row per (run, metric, evaluation): see `curves_table`."""
        return curves_table(self.records(experiment))

    def export(self, destination: str | Path, format: str, drop_constant: bool = False) -> Path:
        """Write `table()` to CSV or Parquet; with `drop_constant`, without the columns that are the same in every run."""
        frame = self.table()
        return write_table(drop_constant_columns(frame) if drop_constant else frame, destination, format)

    def export_curves(self, destination: str | Path, format: str) -> Path:
        """Write `curves_table()` (run_id, metric, step, value) to CSV or Parquet."""
        return write_table(self.curves_table(), destination, format)


EXPORT_FORMATS = ("csv", "parquet")
CURVE_COLUMNS = ("run_id", "metric", "step", "value")  # the long format of curves_table
KEPT_COLUMNS = ("run_id",)  # never dropped as constant: it joins the runs table to the curves


def unwritable_directory(path: Path) -> str | None:
    """Create the directory `path` if missing; None when it is a writable directory, else why not in a few words
    ('Permission denied: /x', 'not writable'), for the caller's one-line error."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        return f"{error.strerror}: {error.filename}"
    return None if os.access(path, os.W_OK | os.X_OK) else "not writable"


def write_table(frame, destination: str | Path, format: str) -> Path:
    """Write a DataFrame (no index) to `destination` as CSV or Parquet, creating its directory; ValueError for another format."""
    if format not in EXPORT_FORMATS:
        raise ValueError(f"format: {format!r} is not supported; allowed: {', '.join(EXPORT_FORMATS)}")
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    if format == "csv":
        frame.to_csv(destination, index=False)
    else:
        frame.to_parquet(destination, index=False)
    return destination


def drop_constant_columns(frame):
    """`frame` without the columns whose value is the same in every row (NaN counts as a value), except KEPT_COLUMNS.

    In one sweep most spec fields never change (58 of 83 columns in a width
    sweep); they say nothing about how the runs differ. A frame without rows
    keeps all its columns: nothing is known to be constant there.
    """
    if frame.empty:
        return frame
    constant = [c for c in frame.columns if c not in KEPT_COLUMNS and frame[c].astype(str).nunique(dropna=False) <= 1]
    return frame.drop(columns=constant)


def curves_table(records: Iterable[RunRecord]):
    """A pandas DataFrame of the records' curves in long format, one row per run, metric and evaluation.

    Columns: run_id (the record's spec_id), metric (a curve's name, e.g.
    'train_loss'), step (the training step of that evaluation, from the run's
    own 'step' curve; the evaluation's index 0, 1, ... for a run without one)
    and value (float; NaN where the metric was not measured). The 'step'
    curve itself is not a metric row. Long format is what pandas, seaborn and
    R join and plot without reshaping, and it holds runs with different
    metrics and numbers of evaluations in one table.
    """
    import pandas as pd

    parts = [_curve_rows(r) for r in records]
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame({"run_id": pd.Series(dtype=str), "metric": pd.Series(dtype=str), "step": pd.Series(dtype=float), "value": pd.Series(dtype=float)})
    return pd.concat(parts, ignore_index=True)


def _curve_rows(record: RunRecord):
    """One record's curves as long rows (see `curves_table`)."""
    import pandas as pd

    steps = record.curves.get("step")
    frames = []
    for metric, values in record.curves.items():
        if metric == "step":
            continue
        n = len(values)
        step = [float(steps[i]) if i < len(steps) else math.nan for i in range(n)] if steps is not None else [float(i) for i in range(n)]
        frames.append(pd.DataFrame({"run_id": record.spec_id, "metric": metric, "step": step, "value": np.asarray(values, dtype=float)}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(CURVE_COLUMNS))


def _chunked(connection: sqlite3.Connection, query: str, keys: list[str], leading: tuple = ()) -> list[tuple]:
    """Rows of `query` (whose `{}` is filled with `?` marks for `keys`) over `keys` in chunks: SQLite caps bound parameters."""
    rows: list[tuple] = []
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        rows += connection.execute(query.format(",".join("?" * len(chunk))), (*leading, *chunk)).fetchall()
    return rows


def records_table(records: Iterable[RunRecord]):
    """A pandas DataFrame, one row per record: run_id, experiment, status, seconds, created,
    the flattened spec ('model.width', 'data.label_noise', ...) and the final metrics."""
    import pandas as pd

    rows = [
        {"run_id": r.spec_id, "experiment": r.experiment, "status": r.status, "seconds": r.seconds, "created": r.created}
        | flatten(r.spec)
        | r.final
        for r in records
    ]
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=["run_id", "experiment", "status", "seconds", "created"])


def finished_table(records: Iterable[RunRecord]):
    """`records_table` of the finished runs only (status 'ok'): what a claim or a figure reads."""
    return records_table(r for r in records if r.status == "ok")


_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _strict(value: Any) -> Any:
    """Non-finite floats as the strings 'NaN', 'Infinity', '-Infinity', so the stored JSON is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def _numbers(value: Any) -> Any:
    """The inverse of `_strict` for metric containers (curves, final): the marker strings back to floats."""
    if isinstance(value, str):
        return _NON_FINITE.get(value, value)
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    return value


def _dumps(value: Any, **options: Any) -> str:
    return json.dumps(_strict(value), allow_nan=False, **options)


def _record(row: tuple) -> RunRecord:
    spec_id, _experiment, status, spec, curves, final, env, seconds, error, created, arrays = row
    bad = [name for name, value in zip(COLUMNS, row) if isinstance(value, _Undecodable)]
    if bad:
        raise ValueError(f"{', '.join(bad)}: not UTF-8 text")
    check_spec_id(spec_id)
    return RunRecord(
        spec=json.loads(spec),
        spec_id=spec_id,
        status=status,
        curves=_numbers(json.loads(curves)),
        final=_numbers(json.loads(final)),
        env=json.loads(env),
        seconds=seconds,
        error=error,
        created=created,
        arrays=_numbers(json.loads(arrays)),
    )


def _decode(row: tuple) -> RunRecord | str:
    """The record of a row, or why it cannot be one (a damaged row: bad JSON, a malformed id, a wrong type)."""
    try:
        return _record(row)
    except json.JSONDecodeError as error:
        return f"a column is not JSON: {error}"
    except (ValueError, TypeError, AttributeError) as error:
        return str(error).splitlines()[0] if str(error) else type(error).__name__


def _sweep(row: tuple) -> SweepEntry:
    """A sweeps row as a SweepEntry (ValueError or TypeError if a column does not decode)."""
    experiment, preset, overrides, spec_ids, created = row
    overrides, spec_ids = json.loads(overrides), json.loads(spec_ids)
    if not isinstance(overrides, dict) or not isinstance(spec_ids, list):
        raise TypeError("overrides or spec_ids have the wrong JSON type")
    return SweepEntry(str(experiment), str(preset), overrides, tuple(str(i) for i in spec_ids), str(created))


def _shown(value: object) -> str:
    """A stored value quoted for a message, cut short: a damaged id can be anything."""
    text = repr(value.decode("utf-8", "replace") if isinstance(value, bytes) else value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_header(db: Path) -> None:
    """StoreError unless `db` is a file that starts like an SQLite database: never initialize over something else."""
    if not db.is_file():
        raise StoreError(f"store {db}: is not a file; a biaslab store keeps its runs in a file runs.sqlite")
    try:
        with open(db, "rb") as file:
            header = file.read(len(_SQLITE_HEADER))
    except OSError as error:
        raise StoreError(f"store {db}: cannot read ({error.strerror})") from None
    if not header:
        raise StoreError(f"store {db}: is an empty file, not a biaslab store; move it away to start a new store there")
    if header != _SQLITE_HEADER:
        raise StoreError(f"store {db}: is not an SQLite database, so not a biaslab store")


def _check_sound(connection: sqlite3.Connection, db: Path, path: Path) -> None:
    """SQLite's quick_check passes and the file has a runs table with biaslab's columns; else StoreError."""
    problems = [row[0] for row in connection.execute("PRAGMA quick_check")]
    if problems != ["ok"]:
        raise StoreError(_damaged(db, path, f"quick_check: {problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")))
    if "runs" not in _tables(connection):
        raise StoreError(f"store {db}: has no runs table, so it is not a biaslab store")
    _check_columns(connection, db)


def _check_columns(connection: sqlite3.Connection, db: Path) -> None:
    missing = [c for c in COLUMNS if c not in _columns(connection) and c not in ADDED_COLUMNS]
    if missing:
        raise StoreError(f"store {db}: its runs table lacks the columns {', '.join(missing)}, so it is not a biaslab store")


def _tables(connection: sqlite3.Connection) -> set[str]:
    return {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _columns(connection: sqlite3.Connection) -> set[str]:
    return {row[1] for row in connection.execute("PRAGMA table_info(runs)")}


def _damaged(db: Path, path: Path, error: object) -> str:
    """The one-line message for a failed SQLite call: damage (with the repair hint), or what SQLite said (locked, read-only)."""
    if isinstance(error, sqlite3.OperationalError):  # not damage: locked, read-only, no space, cannot open
        return f"store {db}: {error}"
    return f"store {db} is damaged ({str(error).splitlines()[0] if str(error) else error!r}); salvage its readable records with `biaslab store repair --store {path} --out NEW`"


# ----------------------------------------------------------------------------- check and repair


@dataclass
class StoreHealth:
    """What `check_store` found: counts of readable records by status, and one line per problem."""

    path: Path
    statuses: dict[str, int] = field(default_factory=dict)
    sweeps: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def records(self) -> int:
        return sum(self.statuses.values())


@dataclass
class Salvage:
    """What `repair_store` copied into the new store, and the rows it could not read."""

    destination: Path
    records: int = 0
    sweeps: int = 0
    weights: int = 0
    lost: list[str] = field(default_factory=list)  # a line per row that could not be read or decoded


def _raw_readonly(db: Path) -> sqlite3.Connection:
    """A read-only connection that does not check anything (for check and repair, which look at damage themselves)."""
    _check_header(db)
    connection = sqlite3.connect(_readonly_uri(db, db.parent), uri=True)
    connection.text_factory = _text
    return connection


def _readonly_uri(db: Path, path: Path) -> str:
    """The URI that opens `db` read-only: mode=ro, or with immutable=1 where mode=ro cannot open
    (a WAL database on a read-only file system has no -shm file to share); StoreError if neither reads."""
    uri = db.resolve().as_uri()
    failure: sqlite3.Error | None = None
    for options in ("mode=ro", "mode=ro&immutable=1"):
        connection = sqlite3.connect(f"{uri}?{options}", uri=True)
        try:
            connection.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            return f"{uri}?{options}"
        except sqlite3.OperationalError as error:  # cannot open (no -shm, locked): try the next way
            failure = error
        except _DAMAGE as error:  # the schema itself is damaged
            raise StoreError(_damaged(db, path, error)) from None
        finally:
            connection.close()
    raise StoreError(f"store {db}: cannot open read-only ({failure})")


def check_store(path: str | Path) -> StoreHealth:
    """Read every record and sweep of the store at `path` without writing to it; list what is damaged.

    A file that is not an SQLite database at all is a StoreError; damage
    inside one (integrity_check, rows that do not read or decode) is listed.
    """
    path = Path(path)
    db = path / "runs.sqlite"
    if not db.exists():
        raise StoreError(f"store {path}: no biaslab store here (no runs.sqlite)")
    health = StoreHealth(path)
    connection = _raw_readonly(db)
    try:
        try:
            problems = [row[0] for row in connection.execute("PRAGMA integrity_check")]
        except _DAMAGE as error:
            problems = [str(error)]
        health.problems += [f"integrity_check: {p}" for p in problems if p != "ok"]
        try:
            tables = _tables(connection)
            if "runs" not in tables:
                raise StoreError(f"store {db}: has no runs table, so it is not a biaslab store")
            _check_columns(connection, db)
        except _DAMAGE as error:
            raise StoreError(_damaged(db, path, error)) from None
        for decoded in _salvaged_rows(connection, health.problems):
            health.statuses[decoded.status] = health.statuses.get(decoded.status, 0) + 1
        sweeps = _salvaged_sweeps(connection, health.problems) if "sweeps" in tables else []
        health.sweeps = len(sweeps)
        if "sweeps" not in tables:
            health.problems.append("the sweeps table is missing (readers rebuild it from the runs)")
    finally:
        connection.close()
    return health


def repair_store(path: str | Path, destination: str | Path) -> Salvage:
    """Copy every readable record, sweep and weights file of the store at `path` into a new store at `destination`.

    The damaged store is only read. `destination` must not hold a store yet.
    Rows are read one at a time (by rowid, then through the primary-key
    index), so one damaged page or one undecodable record loses only the rows
    on it; each lost row is listed.
    """
    path, destination = Path(path), Path(destination)
    db = path / "runs.sqlite"
    if not db.exists():
        raise StoreError(f"store {path}: no biaslab store here (no runs.sqlite)")
    if (destination / "runs.sqlite").exists() or (destination.exists() and destination.resolve() == path.resolve()):
        raise StoreError(f"--out {destination}: already holds a store; give a new directory for the repaired store")
    connection = _raw_readonly(db)
    salvage = Salvage(destination)
    try:
        try:
            _check_columns(connection, db)
        except _DAMAGE as error:
            raise StoreError(_damaged(db, path, error)) from None
        records = list(_salvaged_rows(connection, salvage.lost))
        try:
            sweeps = _salvaged_sweeps(connection, salvage.lost) if "sweeps" in _tables(connection) else []
        except _DAMAGE as error:
            salvage.lost.append(f"sweeps table: {error}")
            sweeps = []
    finally:
        connection.close()
    target = Store(destination)
    for record in records:
        target.put(record)
        source = path / "weights" / f"{record.spec_id}.safetensors"
        if source.is_file():
            copy = target.weights_path(record.spec_id)
            copy.parent.mkdir(exist_ok=True)
            shutil.copyfile(source, copy)
            salvage.weights += 1
    for entry in sweeps:
        target.put_sweep(entry)
    if not sweeps:
        target._rebuild_sweeps()
    salvage.records, salvage.sweeps = len(records), len(target.sweeps())
    return salvage


_SALVAGE_LIMIT = 1_000_000  # rowids tried one by one past a damaged page


def _salvaged_rows(connection: sqlite3.Connection, lost: list[str]) -> Iterator[RunRecord]:
    """Every run record that can be read and decoded, each once; a line in `lost` for each that cannot."""
    present = _columns(connection)
    selected = ", ".join(c if c in present else f"{_DEFAULTS[c]} AS {c}" for c in COLUMNS)
    rowids: list[int] = []
    try:
        for (rowid,) in connection.execute("SELECT rowid FROM runs"):
            rowids.append(rowid)
    except _DAMAGE as error:
        lost.append(f"runs table scan stopped after {len(rowids)} rows: {error}")
        rowids += _rowids_past_damage(connection, rowids)
    seen: set[str] = set()
    for rowid in rowids:
        yield from _one_row(connection, f"SELECT {selected} FROM runs WHERE rowid = ?", rowid, f"row {rowid}", seen, lost)
    try:  # ids the primary-key index still lists, for rows the table scan could not reach
        indexed = [row[0] for row in connection.execute("SELECT spec_id FROM runs ORDER BY spec_id")]
    except _DAMAGE:
        indexed = []
    for spec_id in indexed:
        if spec_id not in seen:
            yield from _one_row(connection, f"SELECT {selected} FROM runs WHERE spec_id = ?", spec_id, f"run {_shown(spec_id)}", seen, lost)


def _rowids_past_damage(connection: sqlite3.Connection, known: list[int]) -> list[int]:
    """Rowids after a damaged page, found by asking for each one in turn up to the largest rowid."""
    try:
        largest = connection.execute("SELECT max(rowid) FROM runs").fetchone()[0] or 0
    except _DAMAGE:
        return []
    start = (max(known) if known else 0) + 1
    found = []
    for rowid in range(start, min(largest, start + _SALVAGE_LIMIT) + 1):
        try:
            if connection.execute("SELECT 1 FROM runs WHERE rowid = ?", (rowid,)).fetchone():
                found.append(rowid)
        except _DAMAGE:
            continue
    return found


def _one_row(connection: sqlite3.Connection, query: str, key: object, name: str, seen: set[str], lost: list[str]) -> Iterator[RunRecord]:
    try:
        row = connection.execute(query, (key,)).fetchone()
    except _DAMAGE as error:
        lost.append(f"{name}: unreadable ({error})")
        return
    if row is None:
        return
    decoded = _decode(row)
    if not isinstance(decoded, RunRecord):
        if isinstance(row[0], str):
            seen.add(row[0])
        lost.append(f"run {_shown(row[0])}: {decoded}")
        return
    if decoded.spec_id not in seen:
        seen.add(decoded.spec_id)
        yield decoded


def _salvaged_sweeps(connection: sqlite3.Connection, lost: list[str]) -> list[SweepEntry]:
    entries = []
    try:
        rows = connection.execute("SELECT experiment, preset, overrides, spec_ids, created FROM sweeps ORDER BY created, sweep_id").fetchall()
    except _DAMAGE as error:
        lost.append(f"sweeps table: unreadable ({error})")
        return []
    for row in rows:
        try:
            entries.append(_sweep(row))
        except (ValueError, TypeError) as error:
            lost.append(f"a sweep of {_shown(row[0])}: {error}")
    return entries
