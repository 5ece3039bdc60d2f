"""Property-based tests (hypothesis): any `--set` and any damage to a store file end in an answer, not a traceback.

- `--set KEY=VALUE` with keys from the spec's own fields and made-up ones, and
  values of every JSON kind and plain text: `biaslab run` exits 0 or exits 2
  with one `biaslab: error:` line. Nothing trains: the sweep runner is replaced
  by one that returns at once, so this checks parsing and sweep validation.
- Bytes of a real store file overwritten or cut off: `export` exits 2 with one
  line, or exits 0 having exported or named (a warning line) every record;
  `store check` exits 0, 1 or 2 with one line.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

import biaslab.sweep
from biaslab.cli import main
from biaslab.spec import RunSpec, _models_in
from biaslab.store import RunRecord, Store
from biaslab.sweep import Outcome

NEVER = {"data.download", "data.root"}  # would reach the network or the user's files


def field_paths(models: list[type[BaseModel]], prefix: str = "") -> list[str]:
    paths = []
    for model in models:
        for name, field in model.model_fields.items():
            path = prefix + name
            paths.append(path)
            paths += field_paths(_models_in(field.annotation), path + ".")
    return sorted(set(paths) - NEVER)


KEYS = st.one_of(st.sampled_from(field_paths([RunSpec])), st.sampled_from(field_paths([RunSpec])), st.text(min_size=0, max_size=12), st.sampled_from(["experiment", "train.lr.x", "a..b", " model.width "]))
SCALARS = st.one_of(
    st.integers(0, 64).map(str),  # values a field may well take, so that some overrides pass
    st.floats(0, 1).map(repr),
    st.sampled_from(["true", "false", "null", "NaN", "Infinity", "-Infinity", "", "[]", "{}", "[true]", "[1,true]", "1e999", "-0", "0x10"]),
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=12),
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3).map(lambda items: "[" + ",".join(items) + "]"))


def call(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def assert_answer(rc: int, out: str, err: str, allowed_codes: tuple[int, ...] = (0, 2)) -> None:
    event(f"exit {rc}")  # --hypothesis-show-statistics: both answers are reached
    assert rc in allowed_codes, (rc, out, err)
    assert "Traceback" not in err, err
    if rc == 2:
        assert err.count("\n") == 1 and err.startswith("biaslab: error: "), repr(err)


@pytest.fixture(scope="module")
def scratch():
    with tempfile.TemporaryDirectory() as directory:
        yield Path(directory)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(overrides=st.lists(st.tuples(KEYS, VALUES), min_size=1, max_size=2))
def test_any_set_is_exit_0_or_one_line_and_exit_2(overrides, scratch, monkeypatch) -> None:
    monkeypatch.setattr(biaslab.sweep, "run_sweep", lambda *args, **kwargs: Outcome())
    argv = ["run", "min-norm", "--preset", "tiny", "--no-report", "--store", str(scratch / "s")]
    for key, value in overrides:
        argv += ["--set", f"{key}={value}"]
    assert_answer(*call(argv))


N_RECORDS = 6


class StoreBytes(bytes):
    def __repr__(self) -> str:  # hypothesis prints the arguments of a failing example: not 20 kB of them
        return f"<runs.sqlite of {N_RECORDS} records, {len(self)} bytes>"


@pytest.fixture(scope="module")
def store_bytes(scratch) -> StoreBytes:
    store = Store(scratch / "original")
    for i in range(N_RECORDS):
        store.put(RunRecord(spec={"experiment": "custom", "seed": i}, spec_id=f"{i + 1:016x}", status="ok", curves={"e": [0.5] * 40}, final={"e": i / 10}))
    return StoreBytes(store.db.read_bytes())


@pytest.mark.slow
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_damage_to_a_store_file_is_one_line_or_every_record_accounted_for(data, store_bytes, scratch) -> None:
    damaged = bytearray(store_bytes)
    for _ in range(data.draw(st.integers(1, 8), label="edits")):
        offset = data.draw(st.integers(0, len(damaged) - 1), label="offset")
        damaged[offset : offset + 1] = bytes([data.draw(st.integers(0, 255), label="byte")])
    if data.draw(st.booleans(), label="truncate"):
        damaged = damaged[: data.draw(st.integers(0, len(damaged)), label="length")]
    path = scratch / "damaged"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir()
    (path / "runs.sqlite").write_bytes(bytes(damaged))
    rc, out, err = call(["export", str(scratch / "out.csv"), "--store", str(path)])
    assert_answer(rc, out, err)
    if rc == 0:
        import pandas as pd

        rows = len(pd.read_csv(scratch / "out.csv")) if (scratch / "out.csv").stat().st_size else 0
        skipped = sum(line.startswith("biaslab: warning: ") for line in err.splitlines())
        assert rows + skipped == N_RECORDS, (rows, skipped, err)
    assert_answer(*call(["store", "check", "--store", str(path)]), allowed_codes=(0, 1, 2))
