"""Trackers: a sweep sent to TensorBoard, W&B (offline) and MLflow (a file store) is read back with each library's
own reader and compared with the store's records; each run is sent once; a missing library is exit 2, one line.

Nothing here reaches the network: W&B runs offline, MLflow writes a directory, and both have their telemetry
and error reporting switched off through their environment variables.
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import struct
import sys
import warnings
import zlib
from pathlib import Path

import pytest

import biaslab
from biaslab import cli
from biaslab.claims import Verdict
from biaslab.store import RunRecord, Store, flatten
from biaslab.sweep import run_sweep
from biaslab.trackers import BaseTracker, SweepEnd, SweepInfo, TrackerError, TrackerWarning, Tracking, run_label

OFFLINE = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_ERROR_REPORTING": "false", "WANDB_DISABLE_CODE": "true",
           "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}  # fmt: skip
LIBRARIES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}


def installed(name: str) -> bool:
    return importlib.util.find_spec(LIBRARIES[name]) is not None


def needs(name: str):
    return pytest.mark.skipif(not installed(name), reason=f"{name} is not installed (pip install 'biaslab[{name}]')")


@pytest.fixture(scope="module")
def offline():
    with pytest.MonkeyPatch.context() as patch:
        for key, value in OFFLINE.items():
            patch.setenv(key, value)
        yield


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, offline):
    """The tiny width sweep (6 runs) run once through `biaslab.run` with every installed tracker, each into its own folder."""
    root = tmp_path_factory.mktemp("tracked")
    places = {"tensorboard": root / "tb", "wandb": root / "wb", "mlflow": root / "mlruns"}
    targets = [f"{name}:{place}" for name, place in places.items() if installed(name)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = biaslab.run("width-sweep", preset="tiny", store=root / "store", trackers=targets)
    assert not [w for w in caught if issubclass(w.category, TrackerWarning)], [str(w.message) for w in caught]
    assert result.ran == 6 and all(r.status == "ok" for r in result.records)
    return {"result": result, "places": places, "store": root / "store", "root": root}


def steps_of(record: RunRecord) -> list[int]:
    return [int(s) for s in record.curves["step"]]


def metrics_of(record: RunRecord) -> dict[str, list[float]]:
    return {name: values for name, values in record.curves.items() if name != "step"}


def same(a: list[float], b: list[float], rel: float = 0.0) -> bool:
    """Equal element by element (NaN equals NaN), to `rel` relative tolerance."""
    return len(a) == len(b) and all((math.isnan(x) and math.isnan(y)) or x == pytest.approx(y, rel=rel, abs=0.0) for x, y in zip(a, b))


@pytest.mark.slow
def test_the_store_records_have_what_the_trackers_are_compared_on(tracked):
    for record in tracked["result"].records:
        assert len(steps_of(record)) > 2 and len(metrics_of(record)) > 5 and record.final


# --- TensorBoard -------------------------------------------------------------------------------------------


def tensorboard_run(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


@needs("tensorboard")
def test_tensorboard_holds_every_run_with_its_curves_params_and_the_verdict(tracked):
    from tensorboard.plugins.hparams import plugin_data_pb2

    records = tracked["result"].records
    folder = tracked["places"]["tensorboard"] / "width-sweep"
    runs = {p.name[-16:]: p for p in folder.iterdir() if not p.name.startswith("_sweep")}
    assert sorted(runs) == sorted(r.spec_id for r in records)
    varying = ("data.label_noise", "model.width")
    for record in records:
        assert runs[record.spec_id].name == f"{run_label(flatten(record.spec), varying).replace(' ', ',')}-{record.spec_id}"
        events = tensorboard_run(runs[record.spec_id])
        for metric, values in metrics_of(record).items():
            scalars = events.Scalars(metric)
            assert [e.step for e in scalars] == steps_of(record), metric
            assert same([e.value for e in scalars], values, rel=1e-6), metric  # TensorBoard keeps float32
        for name, value in record.final.items():
            (last,) = events.Scalars(f"final/{name}")
            assert last.step == steps_of(record)[-1] and last.value == pytest.approx(value, rel=1e-6)
        data = plugin_data_pb2.HParamsPluginData.FromString(events.PluginTagToContent("hparams")["_hparams_/session_start_info"])
        hparams = data.session_start_info.hparams
        for path, value in flatten(record.spec).items():
            if value is None:
                assert path not in hparams
            elif isinstance(value, str):
                assert hparams[path].string_value == value, path
            else:
                assert hparams[path].number_value == pytest.approx(float(value)), path
        text = events.Tensors("biaslab/text_summary")[0].tensor_proto.string_val[0].decode()
        assert f"| biaslab.spec_id | {record.spec_id} |" in text and "| env.torch |" in text
    (sweep,) = [p for p in folder.iterdir() if p.name.startswith("_sweep-tiny-")]
    events = tensorboard_run(sweep)
    verdict = tracked["result"].verdict
    first = events.Scalars("verdict/passed")[0]
    assert (first.step, first.value) == (6, float(verdict.passed))
    text = events.Tensors("verdict/text_summary")[0].tensor_proto.string_val[0].decode()
    assert text.startswith(f"**{verdict.label}**: {verdict.claim}") and "6 finished runs, 0 failed" in text


# --- Weights & Biases (offline) --------------------------------------------------------------------------


def wandb_records(path: Path):
    """The records of a W&B offline run file, read as W&B writes them (a LevelDB-style log of 32 KiB blocks, each
    record chunk with a CRC-32 over its type byte and data) and decoded with W&B's own protobuf messages. wandb
    0.31 has no Python reader of its own (its core is in Go), and its public API is online only."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, position, pending, chunks = 32768, 7, b"", []
    while position + 7 <= len(data):
        left = block - position % block
        if left < 7:  # a block's tail too short for a header is padding
            position += left
            continue
        crc, length, kind = struct.unpack("<IHB", data[position : position + 7])
        chunk = data[position + 7 : position + 7 + length]
        if (crc, length, kind) == (0, 0, 0):
            position += left
            continue
        assert zlib.crc32(chunk, zlib.crc32(bytes([kind]))) == crc, f"bad checksum at {position} in {path}"
        position += 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):  # full, last
            chunks.append(pending)
    for chunk in chunks:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(chunk)
        yield record


def wandb_run(folder: Path) -> dict:
    """An offline run's header (id, name, group...), config, history rows and final summary."""
    run: dict = {"config": {}, "history": [], "summary": {}}
    for record in wandb_records(next(folder.glob("run-*.wandb"))):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            header = record.run
            run |= {"id": header.run_id, "name": header.display_name, "group": header.run_group, "project": header.project,
                    "job_type": header.job_type, "tags": list(header.tags)}  # fmt: skip
            run["config"] |= {item.key: json.loads(item.value_json) for item in header.config.update}
        elif kind == "config":
            run["config"] |= {item.key: json.loads(item.value_json) for item in record.config.update}
        elif kind == "history":
            run["history"].append({_key(item): json.loads(item.value_json) for item in record.history.item})
        elif kind == "summary":
            run["summary"] |= {_key(item): json.loads(item.value_json) for item in record.summary.update}
    return run


def _key(item) -> str:
    """A history or summary item's name: W&B writes it as `key` or as the parts of `nested_key`."""
    return item.key or "/".join(item.nested_key)


@needs("wandb")
def test_wandb_offline_runs_hold_every_run_with_its_config_history_and_the_verdict(tracked):
    records = tracked["result"].records
    runs = [wandb_run(p) for p in sorted((tracked["places"]["wandb"] / "wandb").glob("offline-run-*"))]
    by_id = {run["id"]: run for run in runs if run["job_type"] == "run"}
    assert sorted(by_id) == sorted(r.spec_id for r in records)
    for record in records:
        run = by_id[record.spec_id]
        assert (run["project"], run["group"]) == ("width-sweep", "width-sweep --preset tiny")
        assert run["name"] == f"label_noise={record.spec['data']['label_noise']} width={record.spec['model']['width']}"
        assert run["tags"] == ["width-sweep", "tiny", "ok"]
        config = {k: v for k, v in run["config"].items() if k != "_wandb"}
        assert {k: v for k, v in config.items() if not k.startswith(("biaslab.", "env."))} == flatten(record.spec)
        assert config["biaslab.spec_id"] == record.spec_id and config["env.git_commit"] == str(record.env["git_commit"])
        history = run["history"]
        assert [row["step"] for row in history] == steps_of(record)
        for metric, values in metrics_of(record).items():
            assert same([row[metric] for row in history], values), metric  # JSON keeps every digit of a float
        for name, value in record.final.items():
            assert run["summary"][f"final/{name}"] == value
        assert run["summary"]["status"] == "ok"
    verdicts = [run for run in runs if run["job_type"] == "verdict"]
    verdict = tracked["result"].verdict
    assert verdicts and verdicts[0]["summary"]["verdict"] == verdict.label and verdicts[0]["summary"]["claim"] == verdict.claim
    assert verdicts[0]["summary"]["verdict/passed"] == float(verdict.passed) and verdicts[0]["group"] == "width-sweep --preset tiny"


# --- MLflow (a local file store) ----------------------------------------------------------------------------


def mlflow_client(place: Path):
    import os

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks for this to read a file store
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=place.absolute().as_uri())


@needs("mlflow")
def test_mlflow_file_store_holds_every_run_under_its_sweep_with_params_metrics_and_the_verdict(tracked, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = mlflow_client(tracked["places"]["mlflow"])
    experiment = client.get_experiment_by_name("width-sweep")
    runs = client.search_runs([experiment.experiment_id])
    children = {run.data.tags["biaslab.spec_id"]: run for run in runs if run.data.tags.get("biaslab.kind") == "run"}
    (parent,) = [run for run in runs if run.data.tags.get("biaslab.kind") == "sweep"]
    records = tracked["result"].records
    assert sorted(children) == sorted(r.spec_id for r in records)
    for record in records:
        run = children[record.spec_id]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id and run.info.status == "FINISHED"
        assert run.data.params == {k: str(v) for k, v in flatten(record.spec).items()}
        assert run.data.tags["biaslab.status"] == "ok" and run.data.tags["env.torch"] == record.env["torch"]
        assert run.info.end_time - run.info.start_time == pytest.approx(record.seconds * 1000, abs=2)
        for metric, values in metrics_of(record).items():
            history = sorted(client.get_metric_history(run.info.run_id, metric), key=lambda m: m.step)
            assert [m.step for m in history] == steps_of(record), metric
            assert same([m.value for m in history], values), metric
        for name, value in record.final.items():
            assert run.data.metrics[f"final/{name}"] == value
    verdict = tracked["result"].verdict
    assert parent.info.status == "FINISHED" and parent.info.run_name == "width-sweep --preset tiny"
    assert parent.data.tags["biaslab.verdict"] == verdict.label and parent.data.tags["biaslab.claim"] == verdict.claim
    assert parent.data.metrics["verdict/passed"] == float(verdict.passed)
    assert parent.data.tags["mlflow.note.content"].startswith(f"**{verdict.label}**")


# --- once each: resume, `biaslab track`, a store without trackers --------------------------------------------


def count_runs(places: dict[str, Path]) -> dict[str, int]:
    """Runs (not verdicts) each installed tracker of `places` holds, read from its files."""
    counts = {}
    if installed("tensorboard") and "tensorboard" in places:
        counts["tensorboard"] = sum(not p.name.startswith("_sweep") for p in (places["tensorboard"] / "width-sweep").iterdir())
    if installed("wandb") and "wandb" in places:
        counts["wandb"] = sum(wandb_run(p)["job_type"] == "run" for p in (places["wandb"] / "wandb").glob("offline-run-*"))
    if installed("mlflow") and "mlflow" in places:
        client = mlflow_client(places["mlflow"])
        experiment = client.get_experiment_by_name("width-sweep")
        counts["mlflow"] = len(client.search_runs([experiment.experiment_id], "tags.`biaslab.kind` = 'run'"))
    return counts


def targets(places: dict[str, Path]) -> list[str]:
    return [f"{name}:{place}" for name, place in places.items() if installed(name)]


def test_a_resumed_sweep_and_biaslab_track_send_no_run_twice(tracked, capsys):
    if not any(installed(n) for n in LIBRARIES):
        pytest.skip("no tracker library installed")
    places = tracked["places"]
    before = count_runs(places)
    assert set(before.values()) == {6}
    again = biaslab.run("width-sweep", preset="tiny", store=tracked["store"], trackers=targets(places))
    assert again.ran == 0 and count_runs(places) == before
    assert cli.main(["track", *targets(places), "--store", str(tracked["store"])]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(before) and all(": 0 runs sent, 6 already there, from 1 sweep;" in line for line in lines), lines
    assert count_runs(places) == before
    assert set(count_verdicts(places).values()) == {1}  # the same sweep, the same number of finished runs: one verdict


def count_verdicts(places: dict[str, Path]) -> dict[str, int]:
    """Verdicts each installed tracker holds for the sweep: event files, W&B runs, points of MLflow's verdict metric."""
    counts = {}
    if installed("tensorboard"):
        (sweep,) = (places["tensorboard"] / "width-sweep").glob("_sweep-*")
        counts["tensorboard"] = len(list(sweep.glob("events.out.tfevents.*")))
    if installed("wandb"):
        counts["wandb"] = sum(wandb_run(p)["job_type"] == "verdict" for p in (places["wandb"] / "wandb").glob("offline-run-*"))
    if installed("mlflow"):
        client = mlflow_client(places["mlflow"])
        experiment = client.get_experiment_by_name("width-sweep")
        (parent,) = client.search_runs([experiment.experiment_id], "tags.`biaslab.kind` = 'sweep'")
        counts["mlflow"] = len(client.get_metric_history(parent.info.run_id, "verdict/passed"))
    return counts


@pytest.mark.slow
def test_biaslab_track_sends_a_store_written_without_trackers(tracked, tmp_path, offline, capsys):
    if not any(installed(n) for n in LIBRARIES):
        pytest.skip("no tracker library installed")
    store = tmp_path / "store"
    store.mkdir()
    shutil.copy(tracked["store"] / "runs.sqlite", store / "runs.sqlite")
    places = {"tensorboard": tmp_path / "tb", "wandb": tmp_path / "wb", "mlflow": tmp_path / "mlruns"}
    assert cli.main(["track", *targets(places), "--store", str(store)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert all(": 6 runs sent, 0 already there, from 1 sweep;" in line and "(view: " in line for line in lines), lines
    assert set(count_runs(places).values()) == {6}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tensorboard", "wandb", "mlflow"])
def test_a_run_that_fails_half_written_is_not_held_and_is_sent_later(name, tracked, tmp_path, offline, monkeypatch):
    if not installed(name):
        pytest.skip(f"{name} is not installed")
    import biaslab.trackers as trackers

    target = [f"{name}:{tmp_path / name}"]

    def full_disk(record):
        raise OSError("No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(trackers, "final_metrics", full_disk)  # every sink writes the final metrics after some of the run
        with pytest.warns(TrackerWarning, match="No space left on device"):
            first = biaslab.track(target, tracked["store"])
    assert list(first.sent.values()) == [0] and list(first.held.values()) == [0]
    later = biaslab.track(target, tracked["store"])
    assert list(later.sent.values()) == [6] and list(later.held.values()) == [0]
    assert count_runs({name: tmp_path / name})[name] == 6
    assert not list(tmp_path.rglob("*.partial"))


# --- the sweep's side: order, once each, failures, executors ------------------------------------------------


class Recorder(BaseTracker):
    """A tracker of one's own that remembers what it was given (and, like a sink, what it holds)."""

    name = "recorder"

    def __init__(self, fail_on_run: bool = False) -> None:
        super().__init__()
        self.calls: list[tuple] = []
        self.holds: set[str] = set()
        self.fail_on_run = fail_on_run

    def on_sweep_start(self, sweep: SweepInfo) -> None:
        super().on_sweep_start(sweep)
        self.calls.append(("start", sweep.experiment, sweep.preset, sweep.n_runs))

    def logged(self, spec_id: str) -> bool:
        return spec_id in self.holds

    def on_run(self, record: RunRecord) -> None:
        if self.fail_on_run:
            raise OSError("No space left on device")
        self.holds.add(record.spec_id)
        self.calls.append(("run", record.spec_id, record.status))

    def on_sweep_end(self, end: SweepEnd) -> None:
        self.calls.append(("end", end.verdict.label if end.verdict else None, end.finished, end.failed))

    def close(self) -> None:
        self.calls.append(("close",))


def record(spec_id: str, status: str = "ok", width: int = 8) -> RunRecord:
    return RunRecord({"experiment": "x", "model": {"width": width}}, spec_id, status, {"step": [0.0, 5.0], "loss": [1.0, math.nan]}, {"loss": 0.5})


def test_tracking_sends_each_finished_run_once_and_never_a_failed_one():
    records = [record("a" * 16), record("b" * 16, "diverged", 16), record("c" * 16, "failed", 32)]
    info = SweepInfo("x", "tiny", {}, tuple(r.spec_id for r in records), ("model.width",))
    tracker = Recorder()
    verdict = Verdict("claim", True, {"n": 1.0})
    with Tracking([tracker], info) as tracking:
        tracking.on_run(records[0])
        tracking.on_run(records[0])  # the same record twice (two callbacks): sent once
        tracking.end(records, verdict)
    assert tracker.calls == [("start", "x", "tiny", 3), ("run", "a" * 16, "ok"), ("run", "b" * 16, "diverged"), ("end", "PASS", 2, 1), ("close",)]
    assert info.run_name(records[1]) == "width=16"
    with Tracking([tracker], info) as tracking:  # a later sweep over the same runs: the tracker holds them
        tracking.end(records, verdict)
    assert (tracking.sent, tracking.held) == ({"recorder": 0}, {"recorder": 2})
    with Tracking([tracker], info, again=True) as tracking:
        tracking.end(records, verdict)
    assert tracking.sent == {"recorder": 2}


def test_a_tracker_that_raises_is_dropped_with_one_warning_and_the_others_go_on():
    records = [record("a" * 16), record("b" * 16)]
    info = SweepInfo("x", "tiny", {}, tuple(r.spec_id for r in records))
    broken, fine = Recorder(fail_on_run=True), Recorder()
    with pytest.warns(TrackerWarning, match=r"tracker recorder: run a{16} failed \(OSError: No space left on device\)") as caught:
        with Tracking([broken, fine], info) as tracking:
            tracking.end(records, None)
    assert len([w for w in caught if issubclass(w.category, TrackerWarning)]) == 1
    assert [c[0] for c in broken.calls] == ["start", "close"]
    assert [c[0] for c in fine.calls] == ["start", "run", "run", "end", "close"]


def test_runs_already_stored_reach_the_tracker_at_the_sweep_end(tracked, tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    shutil.copy(tracked["store"] / "runs.sqlite", store / "runs.sqlite")
    tracker = Recorder()
    result = biaslab.run("width-sweep", preset="tiny", store=store, trackers=[tracker])
    assert result.ran == 0
    assert tracker.calls[0] == ("start", "width-sweep", "tiny", 6)
    assert sorted(c[1] for c in tracker.calls if c[0] == "run") == sorted(r.spec_id for r in result.records)
    assert tracker.calls[-2:] == [("end", result.verdict.label, 6, 0), ("close",)]


@pytest.mark.slow
def test_worker_processes_feed_the_trackers_from_this_process(tmp_path):
    from biaslab.experiments import CATALOG

    sweep = CATALOG.get("width-sweep").sweep("tiny").override({"model.width": [8, 16], "data.label_noise": 0.0})
    tracker = Recorder()
    outcome = run_sweep(sweep, Store(tmp_path / "store"), "tiny", executor="processes", workers=1, trackers=[tracker])
    assert outcome.ran == 2 and "processes" in outcome.executor
    sent = [c[1] for c in tracker.calls if c[0] == "run"]
    assert sorted(sent) == sorted(r.spec_id for r in outcome.records) and len(sent) == 2
    assert tracker.calls[0] == ("start", "width-sweep", "tiny", 2) and tracker.calls[-1] == ("close",)


# --- bad input: one line, exit 2, nothing run ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["tensorboard", "wandb", "mlflow"])
def test_a_missing_library_is_exit_2_with_one_line_naming_the_extra(name, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, LIBRARIES[name], None)  # importing it now raises ImportError, as when not installed
    store = tmp_path / "store"
    assert cli.main(["run", "width-sweep", "--preset", "tiny", "--store", str(store), "--track", name, "--no-report"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("biaslab: error: --track: tracker ") and f"pip install 'biaslab[{name}]'" in err
    assert not store.exists()  # refused before anything was made


@pytest.mark.parametrize(
    ("target", "message"),
    [("nope", "'nope' is not a tracker; allowed: tensorboard[:DIR], wandb[:DIR], mlflow[:DIR or URI]"),
     ("tensorboard:", "'tensorboard:': give a place after the colon")],
)  # fmt: skip
def test_a_bad_track_target_is_exit_2_with_one_line(target, message, tmp_path, capsys):
    assert cli.main(["run", "width-sweep", "--preset", "tiny", "--store", str(tmp_path / "s"), "--track", target]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


@needs("tensorboard")
def test_a_place_that_cannot_be_written_is_exit_2_with_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert cli.main(["run", "width-sweep", "--preset", "tiny", "--store", str(tmp_path / "s"), "--track", f"tensorboard:{blocker}/tb"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"tracker tensorboard: cannot write to {blocker}/tb" in err


def test_the_python_api_refuses_what_is_not_a_tracker(tmp_path):
    with pytest.raises(TrackerError, match="is not a tracker"):
        biaslab.run("width-sweep", preset="tiny", store=tmp_path / "s", trackers=[42])
    with pytest.raises(TrackerError, match="'tb' is not a tracker"):
        biaslab.track(["tb"], tmp_path / "s")
