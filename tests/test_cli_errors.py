"""The `biaslab` command on bad input: exit code 2 and ONE stderr line that names the bad thing.

Everything calls `biaslab.cli.main` in-process, except one test that runs the
installed console script. No test here trains anything: an autouse fixture
replaces the sweep runner with one that fails the test if a run would start.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import biaslab.sweep
from biaslab.cli import main
from biaslab.spec import RunSpec
from biaslab.store import RunRecord, Store


class RunsStarted(Exception):
    """Raised by the stub runner: a command that should have been refused got as far as running."""


@pytest.fixture(autouse=True)
def no_runs(monkeypatch) -> list:
    calls: list = []

    def refuse(*args, **kwargs):
        calls.append((args, kwargs))
        raise RunsStarted("a sweep started; the command should have stopped at its input")

    monkeypatch.setattr(biaslab.sweep, "run_sweep", refuse)
    return calls


def cli(capsys, *argv: str | Path) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def assert_bad_input(rc: int, out: str, err: str, *needles: str) -> str:
    """Exit 2, nothing on stdout, exactly one 'biaslab: error:' line on stderr that contains every needle."""
    assert rc == 2, (rc, out, err)
    assert out == ""
    assert "Traceback" not in err
    assert err.endswith("\n") and err.count("\n") == 1, repr(err)
    line = err.rstrip("\n")
    assert line.startswith("biaslab: error: "), line
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line


def allowed(line: str) -> list[str]:
    assert "allowed:" in line, line
    return [name.strip() for name in line.split("allowed:", 1)[1].split(",")]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """An existing store with three records: ids abcd0001..., abcd0002..., and a real spec_id."""
    path = tmp_path / "store"
    s = Store(path)
    for spec_id in ("abcd000000000001", "abcd000000000002"):
        s.put(RunRecord(spec={"experiment": "custom"}, spec_id=spec_id, status="failed", error="boom"))
    spec = RunSpec(seed=9)
    s.put(RunRecord(spec=spec.model_dump(mode="json"), spec_id=spec.spec_id, status="ok", curves={"train_error": [0.5, 0.0]}))
    return path


# ----------------------------------------------------------------------------- list


def test_list_prints_the_catalog(capsys) -> None:
    rc, out, err = cli(capsys, "list")
    assert rc == 0
    assert "width-sweep" in out
    assert err == ""
    rc, out, err = cli(capsys, "list", "--long")
    assert rc == 0 and "tiny, quick, paper" in out


# ----------------------------------------------------------------------------- run: bad experiment, preset, options


def test_unknown_experiment(capsys, tmp_path) -> None:
    line = assert_bad_input(*cli(capsys, "run", "nope", "--store", tmp_path / "s"), "'nope'")
    assert "width-sweep" in allowed(line)
    assert not (tmp_path / "s").exists()


def test_unknown_preset_lists_the_presets(capsys, tmp_path) -> None:
    line = assert_bad_input(*cli(capsys, "run", "width-sweep", "--preset", "huge", "--store", tmp_path / "s"), "preset", "'huge'")
    assert allowed(line) == ["tiny", "quick", "paper"]
    assert not (tmp_path / "s").exists()


def test_bad_executor_lists_the_executors(capsys, tmp_path) -> None:
    line = assert_bad_input(*cli(capsys, "run", "width-sweep", "--preset", "tiny", "--executor", "gpu", "--store", tmp_path / "s"), "--executor", "'gpu'")
    for name in ("auto", "inprocess", "processes"):
        assert name in line


@pytest.mark.parametrize("workers", ["0", "-3"])
def test_workers_below_one(capsys, tmp_path, workers) -> None:
    assert_bad_input(*cli(capsys, "run", "width-sweep", "--preset", "tiny", "--workers", workers, "--store", tmp_path / "s"), "--workers", workers)


def test_workers_not_an_integer(capsys, tmp_path) -> None:
    assert_bad_input(*cli(capsys, "run", "width-sweep", "--preset", "tiny", "--workers", "abc", "--store", tmp_path / "s"), "--workers", "'abc'")


def test_no_command(capsys) -> None:
    assert_bad_input(*cli(capsys), "command")


def test_unknown_command_lists_the_commands(capsys) -> None:
    line = assert_bad_input(*cli(capsys, "bogus"), "'bogus'")
    for name in ("list", "run", "report", "export", "show"):
        assert f"'{name}'" in line


# ----------------------------------------------------------------------------- run: bad --set


def run_with(capsys, tmp_path, *overrides: str) -> tuple[int, str, str]:
    args = ["run", "width-sweep", "--preset", "tiny", "--store", tmp_path / "s"]
    for item in overrides:
        args += ["--set", item]
    return cli(capsys, *args)


def test_unknown_key_lists_the_allowed_keys(capsys, tmp_path) -> None:
    line = assert_bad_input(*run_with(capsys, tmp_path, "train.lrr=1"), "train.lrr")
    assert "lr" in allowed(line) and "max_steps" in allowed(line)
    assert not (tmp_path / "s").exists()


def test_unknown_top_level_key(capsys, tmp_path) -> None:
    line = assert_bad_input(*run_with(capsys, tmp_path, "trian.lr=1"), "trian")
    assert {"data", "model", "train", "seed"} <= set(allowed(line))


def test_wrong_type(capsys, tmp_path) -> None:
    assert_bad_input(*run_with(capsys, tmp_path, "train.max_steps=abc"), "train.max_steps", "'abc'")


@pytest.mark.parametrize("item, field, value", [("train.lr=-1", "train.lr", "-1"), ("data.label_noise=1.5", "data.label_noise", "1.5")])
def test_value_out_of_range(capsys, tmp_path, item, field, value) -> None:
    assert_bad_input(*run_with(capsys, tmp_path, item), field, value)


def test_literal_lists_the_choices(capsys, tmp_path) -> None:
    assert_bad_input(*run_with(capsys, tmp_path, "train.optimizer=sgdd"), "train.optimizer", "'sgdd'", "'sgd'", "'adam'")


def test_gd_with_a_batch_size(capsys, tmp_path) -> None:
    assert_bad_input(*run_with(capsys, tmp_path, "train.optimizer=gd"), "gd", "batch_size")


def test_path_into_a_plain_field(capsys, tmp_path) -> None:
    assert_bad_input(*run_with(capsys, tmp_path, "train.lr.x=1"), "train.lr")


def test_bad_value_on_a_grid_axis(capsys, tmp_path) -> None:
    assert_bad_input(*run_with(capsys, tmp_path, "model.width=[8,-1]"), "model.width")


@pytest.mark.parametrize("item", ["trainlr", "=5"])
def test_malformed_override(capsys, tmp_path, item) -> None:
    assert_bad_input(*run_with(capsys, tmp_path, item), repr(item), "KEY=VALUE")


def test_the_first_bad_override_is_reported_and_nothing_runs(capsys, tmp_path, no_runs) -> None:
    assert_bad_input(*run_with(capsys, tmp_path, "train.lr=0.1", "model.depth=0"), "model.depth")
    assert no_runs == []


# ----------------------------------------------------------------------------- run: data files


def test_paper_preset_without_data_root(capsys, tmp_path, no_runs) -> None:
    store = tmp_path / "s"
    assert_bad_input(*cli(capsys, "run", "width-sweep", "--preset", "paper", "--store", store), "data.root")
    assert no_runs == []
    assert not (store / "runs.sqlite").exists()


def test_paper_preset_with_an_empty_data_root(capsys, tmp_path, no_runs) -> None:
    store, root = tmp_path / "s", tmp_path / "data"
    root.mkdir()
    line = assert_bad_input(*cli(capsys, "run", "width-sweep", "--preset", "paper", "--store", store, "--set", f"data.root={root}"), "missing")
    assert str(root) in line
    assert no_runs == []
    assert not (store / "runs.sqlite").exists()


# ----------------------------------------------------------------------------- show, report, export


def test_show_a_run_that_exists(capsys, store) -> None:
    spec_id = RunSpec(seed=9).spec_id
    rc, out, err = cli(capsys, "show", spec_id[:6], "--store", store)
    assert rc == 0 and err == ""
    assert spec_id in out and "status ok" in out


def test_show_an_unknown_run_id(capsys, store) -> None:
    assert_bad_input(*cli(capsys, "show", "ffff0000", "--store", store), "'ffff0000'", "no such run")


def test_show_a_too_short_id(capsys, store) -> None:
    assert_bad_input(*cli(capsys, "show", "abc", "--store", store), "'abc'", "4 characters")


def test_show_an_ambiguous_id_lists_the_candidates(capsys, store) -> None:
    assert_bad_input(*cli(capsys, "show", "abcd", "--store", store), "ambiguous", "abcd000000000001", "abcd000000000002")


@pytest.mark.parametrize(
    "command",
    [["report"], ["export", "{tmp}/out.csv"], ["show", "abcd1234"]],
    ids=["report", "export", "show"],
)
@pytest.mark.parametrize("kind", ["missing", "empty-dir", "file"])
def test_commands_on_a_path_that_is_not_a_store(capsys, tmp_path, command, kind) -> None:
    path = tmp_path / "not-a-store"
    if kind == "empty-dir":
        path.mkdir()
    elif kind == "file":
        path.write_text("hello")
    argv = [a.format(tmp=tmp_path) for a in command] + ["--store", str(path)]
    assert_bad_input(*cli(capsys, *argv), "--store", str(path))
    if kind == "missing":
        assert not path.exists()  # refusing must not create a store
    elif kind == "empty-dir":
        assert list(path.iterdir()) == []
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize("how", ["suffix", "flag"])
def test_export_format_xlsx_lists_the_formats(capsys, store, tmp_path, how) -> None:
    args = ["export", tmp_path / "out.xlsx"] if how == "suffix" else ["export", tmp_path / "out.csv", "--format", "xlsx"]
    line = assert_bad_input(*cli(capsys, *args, "--store", store), "--format", "'xlsx'")
    assert allowed(line) == ["csv", "parquet"]
    assert not (tmp_path / "out.xlsx").exists() and not (tmp_path / "out.csv").exists()


def test_export_curves_and_drop_constant_from_the_command_line(capsys, store, tmp_path) -> None:
    import pandas as pd

    rc, out, err = cli(capsys, "export", tmp_path / "runs.parquet", "--curves", tmp_path / "curves.csv", "--drop-constant", "--store", store)
    assert rc == 0 and err == "" and out.split() == [str(tmp_path / "runs.parquet"), str(tmp_path / "curves.csv")]
    curves = pd.read_csv(tmp_path / "curves.csv", dtype={"run_id": str})
    assert curves.to_dict("list") == {"run_id": [RunSpec(seed=9).spec_id] * 2, "metric": ["train_error"] * 2, "step": [0.0, 1.0], "value": [0.5, 0.0]}
    runs = pd.read_parquet(tmp_path / "runs.parquet")
    assert "status" in runs.columns and "experiment" not in runs.columns and "seconds" not in runs.columns  # all three runs: experiment custom, 0 s


@pytest.mark.parametrize("kind", ["directory", "format", "under-a-file", "same-file"])
def test_export_curves_to_a_bad_destination(capsys, store, tmp_path, kind) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "notes.txt").write_text("keep me")
    curves, needles = {
        "directory": (tmp_path / "out", (str(tmp_path / "out"), "is a directory")),
        "format": (tmp_path / "curves.xlsx", ("--format", "'xlsx'", str(tmp_path / "curves.xlsx"))),
        "under-a-file": (tmp_path / "notes.txt" / "curves.csv", ("export", "cannot write", str(tmp_path / "notes.txt" / "curves.csv"))),
        "same-file": (tmp_path / "runs.csv", ("--curves", "their own file")),
    }[kind]
    assert_bad_input(*cli(capsys, "export", tmp_path / "runs.csv", "--curves", curves, "--store", store), *needles)
    assert list((tmp_path / "out").iterdir()) == [] and (tmp_path / "notes.txt").read_text() == "keep me"
    if kind != "under-a-file":  # checked before anything is written; a write that fails is found only by writing
        assert not (tmp_path / "runs.csv").exists()


# ----------------------------------------------------------------------------- the real console script


@pytest.mark.slow
def test_console_script_exits_2_with_one_line_and_no_traceback(tmp_path) -> None:
    script = shutil.which("biaslab") or str(Path(sys.executable).parent / "biaslab")
    store = tmp_path / "s"
    result = subprocess.run(
        [script, "run", "width-sweep", "--preset", "huge", "--store", str(store)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2, result
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.endswith("\n"), repr(result.stderr)
    assert result.stderr.startswith("biaslab: error: ")
    assert "'huge'" in result.stderr and "tiny, quick, paper" in result.stderr
    assert not store.exists()


# ----------------------------------------------------------------------------- bugs found by these tests, now fixed


@pytest.mark.parametrize("item", ["model.width=[]", "seed=[]"])
def test_empty_list_for_a_grid_axis(capsys, tmp_path, item) -> None:
    assert_bad_input(*run_with(capsys, tmp_path, item), item.split("=")[0])


def test_infinite_learning_rate(capsys, tmp_path) -> None:
    assert_bad_input(*run_with(capsys, tmp_path, "train.lr=Infinity"), "train.lr")


def test_unknown_device(capsys, tmp_path) -> None:
    assert_bad_input(*run_with(capsys, tmp_path, "device=gpu"), "device", "'gpu'")


def test_show_does_not_treat_the_id_as_a_pattern(capsys, tmp_path) -> None:
    path = tmp_path / "store"
    spec = RunSpec(seed=4)
    Store(path).put(RunRecord(spec=spec.model_dump(mode="json"), spec_id=spec.spec_id, status="ok"))
    assert_bad_input(*cli(capsys, "show", "%%%%", "--store", path), "'%%%%'")


def test_a_number_like_directory_name_for_data_root(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "2024").mkdir()
    # with the root accepted, the paper preset stops at its missing files: still exit 2, no runs
    assert_bad_input(*cli(capsys, "run", "width-sweep", "--preset", "paper", "--store", tmp_path / "s", "--set", "data.root=2024"), "missing")


# ----------------------------------------------------------------------------- paths: --store, export and report destinations


def test_run_with_a_store_that_is_a_file(capsys, tmp_path, no_runs) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("keep me")
    assert_bad_input(*cli(capsys, "run", "width-sweep", "--preset", "tiny", "--store", path), str(path), "is a file")
    assert no_runs == [] and path.read_text() == "keep me"


def test_run_with_a_store_under_a_file(capsys, tmp_path, no_runs) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    path = tmp_path / "notes.txt" / "store"
    assert_bad_input(*cli(capsys, "run", "width-sweep", "--preset", "tiny", "--store", path), str(path), "cannot create the directory")
    assert no_runs == []


def test_run_with_a_store_that_is_not_writable(capsys, tmp_path, no_runs, monkeypatch) -> None:
    import biaslab.store

    path = tmp_path / "s"
    path.mkdir()
    monkeypatch.setattr(biaslab.store.os, "access", lambda p, mode: Path(p) != path)  # as a read-only directory answers
    assert_bad_input(*cli(capsys, "run", "width-sweep", "--preset", "tiny", "--store", path), str(path), "not writable")
    assert no_runs == [] and list(path.iterdir()) == []


@pytest.mark.parametrize("format_flag", [[], ["--format", "csv"]], ids=["no-format", "format"])
def test_export_to_a_directory(capsys, store, tmp_path, format_flag) -> None:
    (tmp_path / "out").mkdir()
    assert_bad_input(*cli(capsys, "export", tmp_path / "out", *format_flag, "--store", store), str(tmp_path / "out"), "is a directory")
    assert list((tmp_path / "out").iterdir()) == []


def test_export_under_a_file(capsys, store, tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    target = tmp_path / "notes.txt" / "runs.csv"
    assert_bad_input(*cli(capsys, "export", target, "--store", store), "export", "cannot write")
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_report_out_is_a_file(capsys, store, tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    assert_bad_input(*cli(capsys, "report", "--store", store, "--out", tmp_path / "notes.txt"), "--out", str(tmp_path / "notes.txt"))
    assert (tmp_path / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("run_id", ["../../outside/evil", "ABCD0000", "abcd/../x"])
def test_show_refuses_an_id_that_is_not_hex(capsys, store, run_id) -> None:
    assert_bad_input(*cli(capsys, "show", run_id, "--store", store), repr(run_id), "hex digits")


def test_a_crafted_id_in_the_store_never_becomes_a_path(capsys, store, tmp_path) -> None:
    import sqlite3

    connection = sqlite3.connect(store / "runs.sqlite")
    connection.execute("UPDATE runs SET spec_id = 'abce/../../../outside' WHERE spec_id = 'abcd000000000001'")
    connection.commit()
    connection.close()
    assert_bad_input(*cli(capsys, "show", "abce", "--store", store), "'abce/../../../outside'", "damaged")
    assert not (tmp_path / "outside").exists()


# ----------------------------------------------------------------------------- strict overrides: booleans, empty preset, experiment


@pytest.mark.parametrize(
    "item, field",
    [("train.lr=true", "train.lr"), ("train.batch_size=false", "train.batch_size"), ("model.width=[8,true]", "model.width"), ("seed=true", "seed")],
)
def test_a_boolean_is_not_a_number(capsys, tmp_path, item, field, no_runs) -> None:
    assert_bad_input(*run_with(capsys, tmp_path, item), field, "boolean")
    assert no_runs == []


@pytest.mark.parametrize("item", ["save_weights=1", "data.standardize=0.0"])
def test_a_number_is_not_a_boolean(capsys, tmp_path, item) -> None:
    line = assert_bad_input(*run_with(capsys, tmp_path, item), item.split("=")[0])
    assert allowed(line) == ["true", "false"]


def test_booleans_and_numbers_still_go_where_they_belong() -> None:
    from biaslab.spec import parse_override

    assert parse_override("data.standardize=false") == ("data.standardize", False)
    assert parse_override("train.lr=1") == ("train.lr", 1)
    assert parse_override("train.batch_size=null") == ("train.batch_size", None)
    assert parse_override("model.width=[8,16]") == ("model.width", [8, 16])


@pytest.mark.parametrize("preset", ["", " "])
def test_an_empty_preset_is_not_the_default_preset(capsys, tmp_path, preset, no_runs) -> None:
    line = assert_bad_input(*cli(capsys, "run", "width-sweep", "--preset", preset, "--store", tmp_path / "s"), "--preset")
    assert allowed(line) == ["tiny", "quick", "paper"]
    assert no_runs == [] and not (tmp_path / "s").exists()


def test_the_experiment_is_not_settable_with_set(capsys, tmp_path, no_runs) -> None:
    assert_bad_input(*run_with(capsys, tmp_path, "experiment=min-norm"), "experiment", "not settable")
    assert no_runs == []


# ----------------------------------------------------------------------------- found by tests/test_fuzz.py


def test_a_section_set_to_a_value_then_a_field_inside_it(capsys, tmp_path) -> None:
    assert_bad_input(*run_with(capsys, tmp_path, "train=0", "train.augment=0"), "train.augment", "section")


def test_a_newline_in_a_key_stays_on_one_line(capsys, tmp_path) -> None:
    assert_bad_input(*run_with(capsys, tmp_path, "0\n0=0"), "0\\n0")
