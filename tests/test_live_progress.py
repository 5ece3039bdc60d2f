"""Live progress: every job reports its step, budget and training loss after each evaluation, from this process
and from worker processes, and the reports end where the stored runs ended."""

from __future__ import annotations

import threading

import pytest

from biaslab.experiments import CATALOG
from biaslab.store import Store
from biaslab.sweep import Live, run_sweep

SWEEP = CATALOG.get("width-sweep").sweep("tiny").override({"data.label_noise": 0.0})  # widths 8, 64, 256; one seed


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["inprocess", "processes", "population"])
def test_each_job_reports_every_evaluation_up_to_the_step_its_run_stopped_at(tmp_path, executor):
    reports: list[Live] = []
    lock = threading.Lock()

    def keep(live: Live) -> None:
        with lock:
            reports.append(live)

    outcome = run_sweep(SWEEP, Store(tmp_path), executor=executor, workers=2, on_progress=keep)
    assert outcome.records and all(r.status == "ok" for r in outcome.records)
    jobs = {live.spec_id for live in reports}
    members = {live.spec_id: live.members for live in reports}
    assert jobs <= {r.spec_id for r in outcome.records} and sum(members.values()) == len(outcome.records)
    for spec_id in jobs:
        mine = [live for live in reports if live.spec_id == spec_id]
        steps = [live.step for live in mine]
        assert steps == sorted(steps) and all(live.max_steps == SWEEP.base.train.max_steps for live in mine)
        record = next(r for r in outcome.records if r.spec_id == spec_id)
        assert steps[-1] == record.final["steps"]  # the last report is where the run stopped
        if members[spec_id] == 1:
            assert mine[-1].loss == pytest.approx(record.final["train_loss"])
        assert all(b.seconds >= a.seconds for a, b in zip(mine, mine[1:]))


def test_without_a_listener_nothing_is_reported_and_nothing_changes(tmp_path):
    with_reports = run_sweep(SWEEP, Store(tmp_path / "a"), executor="inprocess", on_progress=lambda live: None)
    without = run_sweep(SWEEP, Store(tmp_path / "b"), executor="inprocess")
    assert [r.final for r in with_reports.records] == [r.final for r in without.records]
