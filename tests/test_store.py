"""Tests for biaslab.store: the SQLite results store, fast and without training.

Every record here is built by hand; nothing imports torch or trains a model.
"""

from __future__ import annotations

import json
import math
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import biaslab.store as store_module
from biaslab.store import FINISHED, STATUSES, RunNotFound, RunRecord, Store, SweepEntry, curves_from_rows, flatten

JSON_COLUMNS = ("spec", "curves", "final", "env")


def make_spec(width: int = 64, noise: float = 0.0, seed: int = 0, experiment: str = "width-sweep") -> dict:
    return {
        "experiment": experiment,
        "data": {"name": "mnist1d", "n_train": 400, "n_test": 200, "label_noise": noise, "standardize": False},
        "model": {"kind": "mlp", "width": width, "depth": 1},
        "train": {"optimizer": "sgd", "lr": 0.05, "betas": [0.9, 0.999], "batch_size": None},
        "probes": ["norms", "margin"],
        "seed": seed,
        "device": "cpu",
    }


def make_record(spec_id: str = "a1b2c3d4e5f60718", status: str = "ok", width: int = 64, **changes) -> RunRecord:
    fields = dict(
        spec=make_spec(width=width),
        spec_id=spec_id,
        status=status,
        curves={"step": [0.0, 40.0, 80.0], "train_error": [0.9, 0.25, 0.0], "train_loss": [2.3, math.nan, 0.01]},
        final={"train_error": 0.0, "test_error": 0.3125, "steps": 80.0, "margin_q10": math.nan},
        env={"torch": "2.3.0", "device": "cpu", "host": "box", "nested": {"git": "abc123", "dirty": False}},
        seconds=1.25,
        error=None,
        created="2024-01-02T03:04:05+00:00",
    )
    fields.update(changes)
    return RunRecord(**fields)


def same_floats(a, b) -> bool:
    """Equal, with NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def assert_records_equal(got: RunRecord, want: RunRecord) -> None:
    assert got.spec == want.spec
    assert got.spec_id == want.spec_id
    assert got.status == want.status
    assert got.env == want.env
    assert got.seconds == want.seconds
    assert got.error == want.error
    assert got.created == want.created
    assert got.experiment == want.experiment
    assert set(got.curves) == set(want.curves)
    for name, values in want.curves.items():
        assert len(got.curves[name]) == len(values), name
        assert all(same_floats(g, w) for g, w in zip(got.curves[name], values)), (name, got.curves[name], values)
    assert set(got.final) == set(want.final)
    for name, value in want.final.items():
        assert same_floats(got.final[name], value), (name, got.final[name], value)


def raw_rows(store: Store) -> list[tuple]:
    """The runs table read straight from the sqlite file, bypassing the Store."""
    connection = sqlite3.connect(f"file:{store.db}?mode=ro", uri=True)
    try:
        return connection.execute("SELECT * FROM runs").fetchall()
    finally:
        connection.close()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


# ----------------------------------------------------------------------------- round trips


def test_store_creates_its_directory_and_database(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "store"
    store = Store(path)
    assert store.db == path / "runs.sqlite"
    assert store.db.is_file()
    assert store.records() == []
    assert store.finished_ids() == set()
    assert store.experiments() == []
    assert store.sweeps() == []


def test_put_get_round_trips_every_field(store: Store) -> None:
    record = make_record(error=None)
    store.put(record)
    assert_records_equal(store.get(record.spec_id), record)
    # and through a second Store object on the same path (nothing cached in memory)
    assert_records_equal(Store(store.path).get(record.spec_id), record)
    [listed] = store.records()
    assert_records_equal(listed, record)


def test_round_trip_of_a_failed_record_keeps_the_traceback(store: Store) -> None:
    traceback_text = 'Traceback (most recent call last):\n  File "x.py", line 1\nRuntimeError: boom \u2013 \u00e9\n'
    record = make_record(spec_id="ffff000011112222", status="failed", curves={}, final={}, error=traceback_text)
    store.put(record)
    got = store.get("ffff0000")
    assert_records_equal(got, record)
    assert got.error == traceback_text


def test_curves_with_nan_and_infinities_survive(store: Store) -> None:
    curves = {"train_loss": [2.0, math.nan, math.inf, -math.inf], "test_loss": [1.0, 2.0, 3.0, 4.0]}
    store.put(make_record(status="diverged", curves=curves, final={"train_loss": math.nan}))
    got = store.get("a1b2c3d4e5f60718")
    assert got.curves["test_loss"] == [1.0, 2.0, 3.0, 4.0]
    first, nan, pos, neg = got.curves["train_loss"]
    assert first == 2.0 and math.isnan(nan) and pos == math.inf and neg == -math.inf
    assert math.isnan(got.final["train_loss"])


def test_curves_from_rows_fills_missing_metrics_with_nan() -> None:
    curves = curves_from_rows([{"step": 0.0, "loss": 1.0}, {"step": 1.0, "loss": 0.5, "margin": 0.1}])
    assert list(curves) == ["step", "loss", "margin"]
    assert curves["loss"] == [1.0, 0.5]
    assert math.isnan(curves["margin"][0]) and curves["margin"][1] == 0.1


def test_get_by_unique_prefix(store: Store) -> None:
    store.put(make_record(spec_id="abcd111122223333"))
    store.put(make_record(spec_id="abce444455556666", width=8))
    assert store.get("abcd").spec_id == "abcd111122223333"
    assert store.get("abce4444").spec["model"]["width"] == 8
    assert store.get("abcd111122223333").spec_id == "abcd111122223333"  # the full id works too


def test_get_ambiguous_prefix_raises_and_names_the_candidates(store: Store) -> None:
    store.put(make_record(spec_id="abcd111122223333"))
    store.put(make_record(spec_id="abcd444455556666"))
    with pytest.raises(RunNotFound) as caught:
        store.get("abcd")
    message = str(caught.value)
    assert "ambiguous" in message
    assert "abcd111122223333" in message and "abcd444455556666" in message
    assert isinstance(caught.value, KeyError)  # RunNotFound is a KeyError...
    assert not message.startswith("'")  # ...whose message is not quoted like a KeyError's


def test_get_unknown_id_raises_with_the_id_and_the_store(store: Store) -> None:
    store.put(make_record(spec_id="abcd111122223333"))
    with pytest.raises(RunNotFound) as caught:
        store.get("beef0000")
    message = str(caught.value)
    assert "'beef0000'" in message and "no such run" in message and str(store.path) in message


def test_get_too_short_prefix_raises(store: Store) -> None:
    store.put(make_record(spec_id="abcd111122223333"))
    with pytest.raises(RunNotFound, match="at least 4 characters"):
        store.get("abc")


def test_get_treats_the_id_literally_not_as_a_like_pattern(store: Store) -> None:
    """'%' and '_' are not wildcards, and case matters: the id is a prefix, not a LIKE pattern."""
    store.put(make_record(spec_id="abcd111122223333"))
    for pattern in ("%%%%", "____", "ab%d", "a_cd", "ABCD"):
        with pytest.raises(RunNotFound):
            store.get(pattern)


def test_put_of_the_same_spec_id_replaces_it(store: Store) -> None:
    store.put(make_record(status="failed", curves={}, final={}, error="boom"))
    store.put(make_record(status="ok", seconds=9.5))
    rows = raw_rows(store)
    assert len(rows) == 1
    got = store.get("a1b2c3d4e5f60718")
    assert got.status == "ok" and got.seconds == 9.5 and got.error is None
    assert len(store.records()) == 1


def test_finished_ids_are_ok_and_diverged_not_failed(store: Store) -> None:
    assert FINISHED == ("ok", "diverged")
    store.put(make_record(spec_id="0000aaaa00000001", status="ok"))
    store.put(make_record(spec_id="0000aaaa00000002", status="diverged"))
    store.put(make_record(spec_id="0000aaaa00000003", status="failed", error="boom"))
    assert store.finished_ids() == {"0000aaaa00000001", "0000aaaa00000002"}
    # a failed run that is rerun and succeeds becomes finished
    store.put(make_record(spec_id="0000aaaa00000003", status="ok"))
    assert store.finished_ids() == {"0000aaaa00000001", "0000aaaa00000002", "0000aaaa00000003"}


@pytest.mark.parametrize("status", ["OK", "done", "", "crashed", None])
def test_run_record_with_a_bad_status_raises(status) -> None:
    with pytest.raises(ValueError, match="status") as caught:
        make_record(status=status)
    for allowed in STATUSES:
        assert allowed in str(caught.value)


def test_records_filter_by_experiment_and_records_of_keeps_order(store: Store) -> None:
    store.put(make_record(spec_id="1111000000000000", created="2024-01-01T00:00:00+00:00"))
    store.put(make_record(spec_id="2222000000000000", created="2024-01-02T00:00:00+00:00"))
    other = make_record(spec_id="3333000000000000", created="2024-01-03T00:00:00+00:00")
    other.spec = make_spec(experiment="other")
    store.put(other)
    assert [r.spec_id for r in store.records()] == ["1111000000000000", "2222000000000000", "3333000000000000"]
    assert [r.spec_id for r in store.records("width-sweep")] == ["1111000000000000", "2222000000000000"]
    assert [r.spec_id for r in store.records("other")] == ["3333000000000000"]
    assert store.experiments() == ["other", "width-sweep"]
    wanted = ["3333000000000000", "missing000000000", "1111000000000000"]
    assert [r.spec_id for r in store.records_of(wanted)] == ["3333000000000000", "1111000000000000"]


def test_records_of_more_ids_than_sqlite_binds(store: Store) -> None:
    ids = [f"{i:016x}" for i in range(1200)]
    for spec_id in ids[::100]:
        store.put(make_record(spec_id=spec_id))
    assert [r.spec_id for r in store.records_of(reversed(ids))] == list(reversed(ids[::100]))


def test_sweeps_round_trip_and_replace(store: Store) -> None:
    entry = SweepEntry("width-sweep", "tiny", {"train.lr": 0.1, "model.width": [8, 16]}, ("a" * 16, "b" * 16), "2024-01-01T00:00:00+00:00")
    store.put_sweep(entry)
    store.put_sweep(SweepEntry("width-sweep", "tiny", {"train.lr": 0.1, "model.width": [8, 16]}, ("c" * 16,), "2024-01-02T00:00:00+00:00"))
    [got] = store.sweeps()
    assert got.sweep_id == entry.sweep_id
    assert got.overrides == {"train.lr": 0.1, "model.width": [8, 16]}
    assert got.spec_ids == ("c" * 16,)
    assert got.label == 'width-sweep --preset tiny --set model.width=[8, 16] --set train.lr=0.1'
    store.put_sweep(SweepEntry("width-sweep", "quick", {}, ("d" * 16,), "2024-01-03T00:00:00+00:00"))
    assert [s.preset for s in store.sweeps()] == ["tiny", "quick"]
    assert SweepEntry("width-sweep", "quick", {}, ()).label == "width-sweep --preset quick"


# ----------------------------------------------------------------------------- table and export


def test_flatten_nested_and_lists() -> None:
    assert flatten({"a": {"b": 1, "c": {"d": "x"}}, "e": [1, 2], "f": (3,)}) == {"a.b": 1, "a.c.d": "x", "e": "[1, 2]", "f": "[3]"}


def test_table_flattens_spec_fields_and_final_metrics(store: Store) -> None:
    store.put(make_record(spec_id="1111000000000000", width=8, created="2024-01-01T00:00:00+00:00"))
    store.put(make_record(spec_id="2222000000000000", width=256, status="diverged", created="2024-01-02T00:00:00+00:00"))
    table = store.table()
    assert list(table["run_id"]) == ["1111000000000000", "2222000000000000"]
    assert list(table["status"]) == ["ok", "diverged"]
    assert list(table["experiment"]) == ["width-sweep", "width-sweep"]
    assert list(table["model.width"]) == [8, 256]
    assert list(table["data.label_noise"]) == [0.0, 0.0]
    assert list(table["train.lr"]) == [0.05, 0.05]
    assert table["train.betas"].iloc[0] == "[0.9, 0.999]"
    assert table["probes"].iloc[0] == '["norms", "margin"]'
    assert list(table["test_error"]) == [0.3125, 0.3125]
    assert list(table["steps"]) == [80.0, 80.0]
    assert table["margin_q10"].isna().all()
    for column in ("seconds", "created", "seed", "train_error"):
        assert column in table.columns
    assert "model" not in table.columns and "data" not in table.columns  # no nested dict cells
    assert len(store.table("nothing-here")) == 0


@pytest.fixture
def filled(store: Store) -> Store:
    store.put(make_record(spec_id="1111000000000000", width=8, created="2024-01-01T00:00:00+00:00"))
    store.put(make_record(spec_id="2222000000000000", width=64, status="diverged", created="2024-01-02T00:00:00+00:00"))
    store.put(make_record(spec_id="3333000000000000", width=256, status="failed", curves={}, final={}, error="boom", created="2024-01-03T00:00:00+00:00"))
    return store


def test_export_csv_has_the_table_rows(filled: Store, tmp_path: Path) -> None:
    path = filled.export(tmp_path / "out" / "runs.csv", "csv")
    assert path == tmp_path / "out" / "runs.csv" and path.is_file()
    read = pd.read_csv(path, dtype={"run_id": str})
    table = filled.table()
    assert list(read.columns) == list(table.columns)
    assert len(read) == 3
    assert list(read["run_id"]) == list(table["run_id"])
    assert list(read["status"]) == ["ok", "diverged", "failed"]
    assert list(read["model.width"]) == [8, 64, 256]
    assert read["test_error"].iloc[0] == 0.3125 and math.isnan(read["test_error"].iloc[2])


def test_export_parquet_has_the_table_rows(filled: Store, tmp_path: Path) -> None:
    path = filled.export(tmp_path / "runs.parquet", "parquet")
    read = pd.read_parquet(path)
    table = filled.table()
    assert list(read.columns) == list(table.columns)
    pd.testing.assert_frame_equal(read.reset_index(drop=True), table, check_dtype=False)


def test_export_of_an_empty_store_is_readable(store: Store, tmp_path: Path) -> None:
    read = pd.read_csv(store.export(tmp_path / "empty.csv", "csv"))
    assert len(read) == 0
    assert {"run_id", "experiment", "status", "seconds", "created"} <= set(read.columns)


def test_export_of_an_empty_store_to_parquet_works(store: Store, tmp_path: Path) -> None:
    assert len(pd.read_parquet(store.export(tmp_path / "empty.parquet", "parquet"))) == 0


@pytest.mark.parametrize("fmt", ["xlsx", "json", "CSV", ""])
def test_export_unknown_format_names_the_allowed_ones(filled: Store, tmp_path: Path, fmt: str) -> None:
    with pytest.raises(ValueError) as caught:
        filled.export(tmp_path / f"runs.{fmt or 'x'}", fmt)
    message = str(caught.value)
    assert repr(fmt) in message and "csv" in message and "parquet" in message
    assert not (tmp_path / f"runs.{fmt or 'x'}").exists()


def test_curves_table_round_trips_every_value_of_every_curve(filled: Store, tmp_path: Path) -> None:
    """Long rows rebuilt into curves equal the records' curves (NaN as NaN), with steps from each run's 'step' curve."""
    filled.put(make_record(spec_id="4444000000000000", curves={"loss": [1.0, 0.5], "margin": [0.1, 0.2, 0.3]}))  # no 'step' curve
    for fmt in ("csv", "parquet"):
        path = filled.export_curves(tmp_path / f"curves.{fmt}", fmt)
        read = pd.read_csv(path, dtype={"run_id": str}) if fmt == "csv" else pd.read_parquet(path)
        assert list(read.columns) == ["run_id", "metric", "step", "value"]
        for record in filled.records():
            mine = read[read["run_id"] == record.spec_id]
            metrics = [m for m in record.curves if m != "step"]
            assert sorted(mine["metric"].unique()) == sorted(metrics)
            for metric in metrics:
                rows = mine[mine["metric"] == metric]
                assert len(rows) == len(record.curves[metric])
                assert all(same_floats(float(a), float(b)) for a, b in zip(rows["value"], record.curves[metric]))
                want_steps = record.curves.get("step", list(range(len(record.curves[metric]))))
                assert list(rows["step"]) == [float(s) for s in want_steps]
        assert len(read) == 2 * 2 * 3 + 2 + 3  # two runs with two 3-point metrics, the failed run none, the last 2 + 3


def test_curves_table_of_an_empty_store_has_the_columns(store: Store, tmp_path: Path) -> None:
    assert list(store.curves_table().columns) == ["run_id", "metric", "step", "value"]
    assert len(pd.read_parquet(store.export_curves(tmp_path / "c.parquet", "parquet"))) == 0


def test_drop_constant_removes_exactly_the_constant_columns(filled: Store, tmp_path: Path) -> None:
    table = filled.table()
    constant = {c for c in table.columns if c != "run_id" and len({repr(v) for v in table[c]}) == 1}
    assert {"train.lr", "experiment"} <= constant and "model.width" not in constant  # the fixture varies width only
    for fmt in ("csv", "parquet"):
        path = filled.export(tmp_path / f"runs.{fmt}", fmt, drop_constant=True)
        read = pd.read_csv(path, dtype={"run_id": str}) if fmt == "csv" else pd.read_parquet(path)
        assert list(read.columns) == [c for c in table.columns if c not in constant]
        assert {"run_id", "status", "model.width", "test_error"} <= set(read.columns)  # what differs between the runs stays
    assert list(filled.export(tmp_path / "all.csv", "csv").open().readline().rstrip().split(",")) == list(table.columns)  # the default keeps all


def test_drop_constant_keeps_the_run_id_of_a_single_run(store: Store) -> None:
    from biaslab.store import drop_constant_columns

    store.put(make_record())
    assert list(drop_constant_columns(store.table()).columns) == ["run_id"]
    assert list(drop_constant_columns(pd.DataFrame(columns=["run_id", "a"])).columns) == ["run_id", "a"]  # no rows: nothing is known constant


# ----------------------------------------------------------------------------- the file on disk


def test_database_is_in_wal_mode(store: Store) -> None:
    store.put(make_record())
    connection = sqlite3.connect(store.db)
    try:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        connection.close()


def test_stored_columns_are_json_text_not_pickle(store: Store) -> None:
    store.put(make_record(curves={"step": [0.0, 1.0], "train_error": [0.5, 0.0]}, final={"test_error": 0.25}))
    [row] = raw_rows(store)
    columns = dict(zip(("spec_id", "experiment", "status", "spec", "curves", "final", "env", "seconds", "error", "created"), row))
    for name in JSON_COLUMNS:
        value = columns[name]
        assert isinstance(value, str), f"{name} is stored as {type(value).__name__}, not text"
        assert not value.startswith("\x80"), f"{name} looks like a pickle"
        json.loads(value)
    assert json.loads(columns["spec"])["model"]["width"] == 64
    assert json.loads(columns["curves"]) == {"step": [0.0, 1.0], "train_error": [0.5, 0.0]}
    assert columns["experiment"] == "width-sweep" and columns["status"] == "ok"
    # and SQLite itself agrees they are JSON, and never stores a BLOB anywhere
    connection = sqlite3.connect(store.db)
    try:
        checks = connection.execute("SELECT json_valid(spec), json_valid(curves), json_valid(final), json_valid(env) FROM runs").fetchone()
        assert checks == (1, 1, 1, 1)
        assert connection.execute("SELECT count(*) FROM runs WHERE " + " OR ".join(f"typeof({c}) = 'blob'" for c in JSON_COLUMNS)).fetchone()[0] == 0
        sweeps = connection.execute("SELECT typeof(overrides), typeof(spec_ids) FROM sweeps").fetchall()
        assert all(kinds == ("text", "text") for kinds in sweeps)
    finally:
        connection.close()


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON (RFC 8259)")


def test_stored_json_is_strict_even_with_nan_curves(store: Store) -> None:
    store.put(make_record(status="diverged", curves={"train_loss": [2.0, math.nan, math.inf]}, final={"train_loss": math.nan}))
    [row] = raw_rows(store)
    for value in (row[3], row[4], row[5], row[6]):
        json.loads(value, parse_constant=_reject_constant)
    assert math.isnan(store.get("a1b2c3d4e5f60718").curves["train_loss"][1])  # and NaN still round-trips


def test_a_put_that_fails_while_encoding_leaves_the_previous_record(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    before = make_record(seconds=1.0)
    store.put(before)
    calls = {"n": 0}
    real_dumps = json.dumps

    def dumps(value, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # spec and curves are encoded; the final metrics blow up
            raise RuntimeError("disk on fire")
        return real_dumps(value, *args, **kwargs)

    monkeypatch.setattr(store_module.json, "dumps", dumps)
    with pytest.raises(RuntimeError, match="disk on fire"):
        store.put(make_record(status="diverged", seconds=2.0, curves={"step": [1.0]}))
    monkeypatch.undo()
    rows = raw_rows(store)
    assert len(rows) == 1
    assert_records_equal(store.get(before.spec_id), before)


class _FailAfterInsert(sqlite3.Connection):
    """A connection whose INSERT goes through and then the next step raises: a crash mid-transaction."""

    def execute(self, sql, *args):  # type: ignore[override]
        cursor = super().execute(sql, *args)
        if sql.lstrip().upper().startswith(("INSERT", "REPLACE", "UPDATE")):
            assert self.in_transaction  # the row is written but not committed
            raise OSError("crash after the INSERT, before COMMIT")
        return cursor


def test_a_put_interrupted_after_the_insert_is_rolled_back(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    before = make_record(seconds=1.0)
    store.put(before)
    real_connect = sqlite3.connect
    monkeypatch.setattr(store_module.sqlite3, "connect", lambda *a, **k: real_connect(*a, factory=_FailAfterInsert, **k))
    with pytest.raises(OSError, match="before COMMIT"):
        store.put(make_record(status="failed", seconds=2.0, curves={}, final={}, error="new"))
    with pytest.raises(OSError, match="before COMMIT"):
        store.put(make_record(spec_id="9999888877776666"))  # a new id is not half-written either
    monkeypatch.undo()
    rows = raw_rows(store)
    assert [r[0] for r in rows] == [before.spec_id]
    assert_records_equal(store.get(before.spec_id), before)
    store.put(make_record(spec_id="9999888877776666"))  # and the store still works afterwards
    assert {r.spec_id for r in store.records()} == {before.spec_id, "9999888877776666"}


# ----------------------------------------------------------------------------- no torch


@pytest.mark.parametrize("module", ["biaslab.store", "biaslab.spec"])
def test_module_does_not_import_torch(module: str) -> None:
    code = f"import sys, {module}; assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_store_use_does_not_import_torch(tmp_path: Path) -> None:
    """Not just the import: writing, reading and exporting records never pulls torch in either."""
    code = (
        "import sys, math\n"
        "from biaslab.store import Store, RunRecord\n"
        f"s = Store({str(tmp_path / 's')!r})\n"
        "s.put(RunRecord(spec={'experiment': 'x', 'model': {'width': 3}}, spec_id='abcdabcdabcdabcd', status='ok', final={'e': 0.5}))\n"
        "assert s.get('abcd').final == {'e': 0.5}\n"
        f"s.export({str(tmp_path / 'o.csv')!r}, 'csv')\n"
        "assert 'torch' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_a_store_from_before_the_arrays_column_opens_and_reads(tmp_path):
    import sqlite3

    db = sqlite3.connect(tmp_path / "runs.sqlite")
    db.execute(
        "CREATE TABLE runs (spec_id TEXT PRIMARY KEY, experiment TEXT NOT NULL, status TEXT NOT NULL, spec TEXT NOT NULL,"
        " curves TEXT NOT NULL, final TEXT NOT NULL, env TEXT NOT NULL, seconds REAL NOT NULL, error TEXT, created TEXT NOT NULL)"
    )
    db.execute("INSERT INTO runs VALUES ('abcd123400000000', 'custom', 'ok', '{}', '{}', '{\"test_error\": 0.5}', '{}', 1.0, NULL, '2026-01-01')")
    db.commit()
    db.close()
    store = Store(tmp_path)
    record = store.get("abcd")
    assert record.final == {"test_error": 0.5} and record.arrays == {}
    store.put(RunRecord(spec={}, spec_id="ef56789000000000", status="ok", arrays={"w": [1.0, 2.0]}))
    assert store.get("ef56").arrays == {"w": [1.0, 2.0]}


def test_weights_are_kept_as_safetensors_and_read_back(tmp_path):
    import numpy as np

    store = Store(tmp_path)
    weights = {"layers.0.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "layers.0.bias": np.ones(2, dtype=np.float32)}
    store.put(RunRecord(spec={"experiment": "custom"}, spec_id="feed000000000001", status="ok", weights=weights))
    back = store.weights("feed")
    assert set(back) == set(weights) and all(np.array_equal(back[k], weights[k]) for k in weights)
    assert not list((tmp_path / "weights").glob("*.partial"))
    store.put(RunRecord(spec={"experiment": "custom"}, spec_id="feed000000000002", status="ok"))
    with pytest.raises(RunNotFound, match="no stored weights; run it with --set save_weights=true"):
        store.weights("feed000000000002")


# ----------------------------------------------------------------------------- ids become paths: checked first


@pytest.mark.parametrize("spec_id", ["../../outside/evil", "ABCDEF0123456789", "abcd", "a1b2c3d4e5f60718/x", "a1b2c3d4e5f6071g"])
def test_ids_that_are_not_16_hex_digits_never_become_paths(store: Store, tmp_path: Path, spec_id: str) -> None:
    import numpy as np

    with pytest.raises(ValueError, match="16 lowercase hex digits"):
        store.weights_path(spec_id)
    with pytest.raises(ValueError, match="16 lowercase hex digits"):
        store.put(RunRecord(spec={}, spec_id=spec_id, status="ok", weights={"w": np.zeros(2, dtype=np.float32)}))
    assert raw_rows(store) == []
    assert not (store.path / "weights").exists() and not (tmp_path / "outside").exists()


def test_a_weights_directory_that_links_outside_the_store_is_refused(store: Store, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (store.path / "weights").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="outside the store"):
        store.weights_path("a1b2c3d4e5f60718")
    assert list((tmp_path / "elsewhere").iterdir()) == []
