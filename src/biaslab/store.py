"""The results store: one record per run in an embedded SQLite database.

`Store(path)` keeps `path/runs.sqlite` (WAL mode). Every write is one
transaction, so a crash (even `kill -9`) leaves either the whole record or
none of it; records are keyed by `spec_id`, so writing a run again replaces it
instead of duplicating it. Records are JSON, never pickle. A diverged or
failed run is a record too, with its status and, for failures, the traceback.

This module never imports torch: it stores plain data.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
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
"""


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


class Store:
    """Run records on disk under `path` (created if missing)."""

    def __init__(self, path: str | Path = DEFAULT_PATH) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.db = self.path / "runs.sqlite"
        with self._connect() as connection:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.executescript(_SCHEMA)
            present = {row[1] for row in connection.execute("PRAGMA table_info(runs)")}
            for column, declaration in ADDED_COLUMNS.items():
                if column not in present:
                    connection.execute(f"ALTER TABLE runs ADD COLUMN {column} {declaration}")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        connection = sqlite3.connect(self.db, timeout=30.0)
        connection.execute("PRAGMA synchronous=FULL")
        try:
            with connection:  # one transaction: committed on success, rolled back on error
                yield connection
        finally:
            connection.close()

    def put(self, record: RunRecord) -> None:
        """Write a record atomically, replacing any earlier record of the same spec_id.

        A record's trained weights go first to `weights/SPEC_ID.safetensors`
        (written to a temporary file and renamed), so a stored record never
        points at half a file.
        """
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

    def finished_ids(self) -> set[str]:
        """spec_ids of runs that need not run again (ok or diverged)."""
        with self._connect() as connection:
            marks = ",".join("?" * len(FINISHED))
            return {row[0] for row in connection.execute(f"SELECT spec_id FROM runs WHERE status IN ({marks})", FINISHED)}

    def records(self, experiment: str | None = None) -> list[RunRecord]:
        """All records, or one experiment's, oldest first."""
        query, args = f"SELECT {_SELECTED} FROM runs", ()
        if experiment is not None:
            query, args = query + " WHERE experiment = ?", (experiment,)
        with self._connect() as connection:
            return [_record(row) for row in connection.execute(query + " ORDER BY created, spec_id", args)]

    def get(self, run_id: str) -> RunRecord:
        """The record whose spec_id is or starts with `run_id` (at least 4 characters)."""
        if len(run_id) < 4:
            raise RunNotFound(f"run id {run_id!r}: give at least 4 characters of the id (see `biaslab export` or the report)")
        with self._connect() as connection:
            rows = connection.execute(f"SELECT {_SELECTED} FROM runs WHERE substr(spec_id, 1, ?) = ?", (len(run_id), run_id)).fetchall()
        if not rows:
            raise RunNotFound(f"run id {run_id!r}: no such run in {self.path}")
        if len(rows) > 1:
            raise RunNotFound(f"run id {run_id!r} is ambiguous: {', '.join(r[0] for r in rows)}")
        return _record(rows[0])

    def weights_path(self, spec_id: str) -> Path:
        return self.path / "weights" / f"{spec_id}.safetensors"

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
        """Every sweep ever started in this store, oldest first."""
        with self._connect() as connection:
            rows = connection.execute("SELECT experiment, preset, overrides, spec_ids, created FROM sweeps ORDER BY created, sweep_id").fetchall()
        return [SweepEntry(e, p, json.loads(o), tuple(json.loads(i)), c) for e, p, o, i, c in rows]

    def records_of(self, spec_ids: Iterable[str]) -> list[RunRecord]:
        """The stored records among `spec_ids`, in that order (missing ones are left out)."""
        wanted = list(spec_ids)
        found: dict[str, RunRecord] = {}
        with self._connect() as connection:
            for start in range(0, len(wanted), 500):  # SQLite caps the number of bound parameters
                chunk = wanted[start : start + 500]
                query = f"SELECT {_SELECTED} FROM runs WHERE spec_id IN ({','.join('?' * len(chunk))})"
                found |= {row[0]: _record(row) for row in connection.execute(query, chunk)}
        return [found[i] for i in wanted if i in found]

    def experiments(self) -> list[str]:
        with self._connect() as connection:
            return [row[0] for row in connection.execute("SELECT DISTINCT experiment FROM runs ORDER BY experiment")]

    def table(self, experiment: str | None = None):
        """One row per run: id, status, seconds, the flattened spec ('model.width', ...) and final metrics."""
        return records_table(self.records(experiment))

    def export(self, destination: str | Path, format: str) -> Path:
        """Write `table()` to CSV or Parquet."""
        if format not in ("csv", "parquet"):
            raise ValueError(f"format: {format!r} is not supported; allowed: csv, parquet")
        destination = Path(destination)
        destination.parent.mkdir(parents=True, exist_ok=True)
        frame = self.table()
        if format == "csv":
            frame.to_csv(destination, index=False)
        else:
            frame.to_parquet(destination, index=False)
        return destination


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


_SELECTED = ", ".join(COLUMNS)


def _record(row: tuple) -> RunRecord:
    spec_id, _experiment, status, spec, curves, final, env, seconds, error, created, arrays = row
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
