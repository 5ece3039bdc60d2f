"""A damaged, foreign or read-only store: refused with one line, read without writing, or salvaged.

Records are built by hand (no training, no torch). Damage is done to the
files directly, as a crash, a bad disk or a careless hand would do it. The
command is called in-process through `biaslab.cli.main`, as in
test_cli_errors.py; one test runs it on a real read-only file system.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import biaslab
from biaslab.cli import main
from biaslab.store import RECOVERED, RunRecord, Store, StoreError, StoreWarning, check_store, repair_store


def record(index: int, status: str = "ok", experiment: str = "custom", curve_length: int = 3) -> RunRecord:
    spec_id = f"{index:016x}"
    return RunRecord(
        spec={"experiment": experiment, "seed": index},
        spec_id=spec_id,
        status=status,
        curves={"train_error": [0.5 + 0.001 * i for i in range(curve_length)]},
        final={"test_error": index / 1000},
        created=f"2026-01-01T00:00:{index % 60:02d}+00:00",
    )


def filled(path: Path, n: int = 3, **options) -> Store:
    store = Store(path)
    for i in range(1, n + 1):
        store.put(record(i, **options))
    return store


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def break_json(store: Store, spec_id: str, column: str = "curves") -> None:
    """Write bad JSON into one column of one record, bypassing the Store."""
    connection = sqlite3.connect(store.db)
    connection.execute(f"UPDATE runs SET {column} = '{{\"train_error\": [0.5, ' WHERE spec_id = ?", (spec_id,))
    connection.commit()
    connection.close()


def cli(capsys, *argv: str | Path) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def assert_one_error_line(rc: int, out: str, err: str, *needles: str) -> str:
    assert rc == 2, (rc, out, err)
    assert out == "" and "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("biaslab: error: "), repr(err)
    for needle in needles:
        assert needle in err, (needle, err)
    return err


# ----------------------------------------------------------------------------- not a store: refused, never initialized over


def test_an_empty_runs_file_is_refused_not_taken_as_a_new_store(tmp_path: Path, capsys) -> None:
    (tmp_path / "runs.sqlite").write_bytes(b"")
    with pytest.raises(StoreError, match="empty file"):
        Store(tmp_path)
    for command in (["export", tmp_path / "o.csv"], ["report"], ["run", "min-norm", "--preset", "tiny"]):
        assert_one_error_line(*cli(capsys, *command, "--store", tmp_path), str(tmp_path / "runs.sqlite"), "empty file")
    assert (tmp_path / "runs.sqlite").stat().st_size == 0
    assert not (tmp_path / "o.csv").exists()


def test_a_file_that_is_not_sqlite_is_refused_and_left_alone(tmp_path: Path, capsys) -> None:
    (tmp_path / "runs.sqlite").write_bytes(b"name,score\nada,3\n" * 100)
    before = digest(tmp_path / "runs.sqlite")
    with pytest.raises(StoreError, match="not an SQLite database"):
        Store(tmp_path)
    assert_one_error_line(*cli(capsys, "show", "abcd", "--store", tmp_path), "not an SQLite database")
    assert digest(tmp_path / "runs.sqlite") == before


def test_a_database_without_the_runs_table_is_refused_and_left_alone(tmp_path: Path) -> None:
    connection = sqlite3.connect(tmp_path / "runs.sqlite")
    connection.execute("CREATE TABLE invoices (n INTEGER)")
    connection.execute("INSERT INTO invoices VALUES (7)")
    connection.commit()
    connection.close()
    for readonly in (False, True):
        with pytest.raises(StoreError, match="no runs table"):
            Store(tmp_path, readonly=readonly)
    connection = sqlite3.connect(tmp_path / "runs.sqlite")
    assert connection.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall() == [("invoices",)]


def test_a_truncated_store_is_refused_with_the_repair_hint(tmp_path: Path, capsys) -> None:
    store = filled(tmp_path / "s", n=60, curve_length=200)
    data = store.db.read_bytes()
    store.db.write_bytes(data[: len(data) // 2])
    with pytest.raises(StoreError, match="damaged.*biaslab store repair"):
        Store(store.path, readonly=True)
    assert_one_error_line(*cli(capsys, "export", tmp_path / "o.csv", "--store", store.path), "damaged", "store repair")


# ----------------------------------------------------------------------------- one bad record never hides the rest


def test_a_record_with_bad_json_is_skipped_with_a_warning_and_the_rest_are_read(tmp_path: Path) -> None:
    store = filled(tmp_path, n=3)
    break_json(store, record(2).spec_id)
    with pytest.warns(StoreWarning, match=record(2).spec_id):
        assert [r.spec_id for r in store.records()] == [record(1).spec_id, record(3).spec_id]
    with pytest.warns(StoreWarning):
        assert [r.spec_id for r in store.records_of([record(3).spec_id, record(2).spec_id])] == [record(3).spec_id]
    with pytest.raises(StoreError, match="damaged"):
        store.get(record(2).spec_id)
    assert store.get(record(1).spec_id).final == record(1).final
    assert store.finished_ids() == {record(1).spec_id, record(3).spec_id}  # a resumed sweep runs it again ...
    store.put(record(2))  # ... and its new record replaces the damaged one
    assert len(store.records()) == 3


def test_export_and_show_go_on_past_a_damaged_record_with_one_warning_line(tmp_path: Path, capsys) -> None:
    store = filled(tmp_path / "s", n=3)
    break_json(store, record(2).spec_id, column="spec")
    rc, out, err = cli(capsys, "export", tmp_path / "o.csv", "--store", store.path)
    assert rc == 0, err
    assert err.count("\n") == 1 and err.startswith("biaslab: warning: ") and record(2).spec_id in err
    assert sorted(pd.read_csv(tmp_path / "o.csv")["run_id"]) == [int(record(1).spec_id), int(record(3).spec_id)]
    rc, out, err = cli(capsys, "show", record(3).spec_id, "--store", store.path)
    assert rc == 0 and err == "" and record(3).spec_id in out
    assert_one_error_line(*cli(capsys, "show", record(2).spec_id, "--store", store.path), record(2).spec_id, "damaged")


def test_a_cell_that_is_not_utf8_is_one_skipped_record_not_a_failed_query(tmp_path: Path) -> None:
    store = filled(tmp_path, n=3)
    connection = sqlite3.connect(store.db)
    connection.execute("UPDATE runs SET created = CAST(X'80ff' AS TEXT) WHERE spec_id = ?", (record(2).spec_id,))
    connection.commit()
    connection.close()
    with pytest.warns(StoreWarning, match="created: not UTF-8"):
        assert [r.spec_id for r in store.records()] == [record(1).spec_id, record(3).spec_id]
    assert check_store(tmp_path).statuses == {"ok": 2}


def test_a_row_with_a_malformed_id_is_skipped(tmp_path: Path) -> None:
    store = filled(tmp_path, n=1)
    connection = sqlite3.connect(store.db)
    connection.execute("UPDATE runs SET spec_id = '../../outside/evil'")
    connection.commit()
    connection.close()
    with pytest.warns(StoreWarning, match="outside/evil"):
        assert store.records() == []


# ----------------------------------------------------------------------------- the sweeps table


@pytest.mark.parametrize("damage", ["DROP TABLE sweeps", "DELETE FROM sweeps"])
def test_lost_sweeps_are_rebuilt_from_the_runs(tmp_path: Path, capsys, damage: str) -> None:
    store = filled(tmp_path / "s", n=2, experiment="my-experiment")
    store.put(record(3, experiment="custom"))
    connection = sqlite3.connect(store.db)
    connection.execute(damage)
    connection.commit()
    connection.close()
    entries = Store(store.path, readonly=True).sweeps()  # read-only: rebuilt in memory
    assert {(e.experiment, e.preset, e.spec_ids) for e in entries} == {
        ("my-experiment", RECOVERED, (record(1).spec_id, record(2).spec_id)),
        ("custom", RECOVERED, (record(3).spec_id,)),
    }
    rc, out, err = cli(capsys, "report", "--store", store.path, "--out", tmp_path / "r")
    assert rc == 0, err
    page = "".join(p.read_text(encoding="utf-8") for p in (tmp_path / "r").glob("*.html"))  # the index and the sweeps' pages
    assert "no sweeps yet" not in page and record(3).spec_id in page
    Store(store.path)  # writable: the rebuilt sweeps are written back
    connection = sqlite3.connect(store.db)
    assert connection.execute("SELECT count(*) FROM sweeps").fetchone() == (2,)


# ----------------------------------------------------------------------------- read-only


def test_reading_commands_never_write_to_the_store(tmp_path: Path, capsys) -> None:
    store = filled(tmp_path / "s", n=3)
    before = digest(store.db)
    for command in (["show", record(1).spec_id], ["export", tmp_path / "o.csv"], ["report", "--out", tmp_path / "r"], ["store", "check"]):
        rc, out, err = cli(capsys, *command, "--store", store.path)
        assert rc == 0, (command, err)
    assert digest(store.db) == before
    assert not (store.path / "report").exists()


def test_a_read_only_store_refuses_writes(tmp_path: Path) -> None:
    filled(tmp_path, n=1)
    readonly = Store(tmp_path, readonly=True)
    with pytest.raises(StoreError, match="readonly") as refused:
        readonly.put(record(9))
    assert "damaged" not in str(refused.value)  # a refused write is not damage: no repair hint
    assert [r.spec_id for r in readonly.records()] == [record(1).spec_id]


def test_read_only_open_of_a_missing_store_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no runs.sqlite"):
        Store(tmp_path / "nope", readonly=True)
    assert not (tmp_path / "nope").exists()


def test_an_old_store_reads_read_only_without_being_migrated(tmp_path: Path) -> None:
    connection = sqlite3.connect(tmp_path / "runs.sqlite")
    connection.execute(
        "CREATE TABLE runs (spec_id TEXT PRIMARY KEY, experiment TEXT NOT NULL, status TEXT NOT NULL, spec TEXT NOT NULL,"
        " curves TEXT NOT NULL, final TEXT NOT NULL, env TEXT NOT NULL, seconds REAL NOT NULL, error TEXT, created TEXT NOT NULL)"
    )
    connection.execute("INSERT INTO runs VALUES (?, 'custom', 'ok', '{}', '{}', '{\"e\": 1.0}', '{}', 1.0, NULL, '2026')", (record(1).spec_id,))
    connection.commit()
    connection.close()
    got = Store(tmp_path, readonly=True).get(record(1).spec_id)
    assert got.arrays == {} and got.final == {"e": 1.0}
    connection = sqlite3.connect(tmp_path / "runs.sqlite")
    assert "arrays" not in {row[1] for row in connection.execute("PRAGMA table_info(runs)")}


def _read_only_mount_works() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount --bind -o ro / /mnt && mount -o remount,ro,bind /mnt"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _read_only_mount_works(), reason="needs unshare and mount (a private read-only bind mount)")
def test_report_and_export_on_a_read_only_file_system(tmp_path: Path) -> None:
    store = filled(tmp_path / "s", n=3)
    (tmp_path / "out").mkdir()
    s, out = str(store.path), str(tmp_path / "out")
    code = (
        "import json; from biaslab.cli import main\n"
        "print(json.dumps([\n"
        f"    main(['export', '{out}/o.csv', '--store', '{s}']),\n"
        f"    main(['report', '--store', '{s}', '--out', '{out}/r']),\n"
        f"    main(['report', '--store', '{s}']),\n"  # STORE/report cannot be written
        f"    main(['export', '{s}/o.csv', '--store', '{s}']),\n"  # nor can STORE/o.csv
        f"    main(['run', 'min-norm', '--preset', 'tiny', '--store', '{s}']),\n"  # nor the store itself
        "]))\n"
    )
    script = f"mount --bind -o ro {store.path} {store.path} && mount -o remount,ro,bind {store.path} && {sys.executable} -c \"$CODE\""
    source = str(Path(biaslab.__file__).resolve().parents[1])  # this biaslab, not another install
    env = {**os.environ, "CODE": code, "PYTHONPATH": os.pathsep.join([source, os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [0, 0, 2, 2, 2], result.stdout
    errors = result.stderr.splitlines()
    assert "Traceback" not in result.stderr and len(errors) == 3, result.stderr
    assert "--out" in errors[0] and "cannot write" in errors[1] and "not writable" in errors[2], errors
    assert len(pd.read_csv(tmp_path / "out" / "o.csv")) == 3
    assert (tmp_path / "out" / "r" / "index.html").is_file()


# ----------------------------------------------------------------------------- check and repair


def test_check_of_a_sound_store(tmp_path: Path, capsys) -> None:
    filled(tmp_path, n=2)
    Store(tmp_path).put(record(3, status="failed"))
    health = check_store(tmp_path)
    assert health.problems == [] and health.statuses == {"ok": 2, "failed": 1}
    rc, out, err = cli(capsys, "store", "check", "--store", tmp_path)
    assert rc == 0 and "3 readable records" in out and err == ""


def test_check_lists_a_damaged_record_and_exits_1(tmp_path: Path, capsys) -> None:
    store = filled(tmp_path, n=3)
    break_json(store, record(2).spec_id)
    rc, out, err = cli(capsys, "store", "check", "--store", tmp_path)
    assert rc == 1, err
    assert "2 readable records" in out and record(2).spec_id in out and "store repair" in out


def test_check_of_something_that_is_not_a_store(tmp_path: Path, capsys) -> None:
    (tmp_path / "runs.sqlite").write_bytes(b"\x00" * 4096)
    assert_one_error_line(*cli(capsys, "store", "check", "--store", tmp_path), "not an SQLite database")


def test_repair_copies_every_readable_record_sweep_and_weights_file(tmp_path: Path, capsys) -> None:
    store = filled(tmp_path / "s", n=4)
    weights = {"w": np.arange(3, dtype=np.float32)}
    store.put(RunRecord(spec={"experiment": "custom"}, spec_id=record(5).spec_id, status="ok", weights=weights))
    break_json(store, record(2).spec_id, column="final")
    rc, out, err = cli(capsys, "store", "repair", "--store", store.path, "--out", tmp_path / "new")
    assert rc == 0, err
    assert "4 records" in out and "1 weights files" in out and f"lost: run '{record(2).spec_id}'" in out
    new = Store(tmp_path / "new")
    assert {r.spec_id for r in new.records()} == {record(i).spec_id for i in (1, 3, 4, 5)}
    assert new.get(record(3).spec_id) == store.get(record(3).spec_id)
    assert np.array_equal(new.weights(record(5).spec_id)["w"], weights["w"])
    assert check_store(tmp_path / "new").problems == []


def test_repair_refuses_to_write_over_a_store(tmp_path: Path, capsys) -> None:
    filled(tmp_path / "a", n=1)
    filled(tmp_path / "b", n=2)
    assert_one_error_line(*cli(capsys, "store", "repair", "--store", tmp_path / "a", "--out", tmp_path / "b"), "already holds a store")
    assert len(Store(tmp_path / "b").records()) == 2


def test_repair_salvages_the_rows_around_a_garbled_page(tmp_path: Path) -> None:
    store = filled(tmp_path / "s", n=120, curve_length=60)
    originals = {r.spec_id: r for r in store.records()}
    data = bytearray(store.db.read_bytes())
    page = 4096
    assert len(data) > 8 * page
    middle = (len(data) // page // 2) * page
    data[middle : middle + page] = bytes(range(256)) * (page // 256)
    store.db.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="damaged"):
        Store(store.path, readonly=True)
    salvage = repair_store(store.path, tmp_path / "new")
    got = Store(tmp_path / "new").records()
    assert salvage.records == len(got) and salvage.lost
    assert len(got) >= len(originals) * 3 // 4  # one page of 4 KiB holds a few of these records
    for r in got:
        assert r == originals[r.spec_id]
