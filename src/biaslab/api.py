"""The Python entry points a researcher uses from a script or a notebook: the catalog, running an experiment, the card.

    import biaslab
    biaslab.catalog()                                    # every experiment, one line each (a table in a notebook)
    result = biaslab.run("width-sweep", preset="tiny", overrides={"train.lr": 0.1})
    result.verdict, result.figures, result.records   # the claim check, matplotlib figures, one record per run
    result                                               # in a notebook: verdict and figures inline

`run` does what `biaslab run` does (same sweep, same store, same resume), without the progress bar and the
report; `biaslab.probe` is the report card of your own model (see `biaslab.card`).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from biaslab.catalog import INDEX
from biaslab.claims import Verdict
from biaslab.store import DEFAULT_PATH, RunRecord, Store
from biaslab.trackers import SweepInfo, Tracker, Tracking, resolve_trackers, tracker_key


@dataclass(frozen=True)
class Entry:
    """One catalog experiment: its name, what it shows, the paper, its presets."""

    name: str
    title: str
    reference: str
    presets: tuple[str, ...]


class Catalog(list):
    """The catalog as a list of `Entry`, shown as a table in a notebook."""

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td><code>{html.escape(e.name)}</code></td><td>{html.escape(e.title)}</td><td>{html.escape(e.reference)}</td>"
            f"<td>{', '.join(e.presets)}</td></tr>" for e in self
        )  # fmt: skip
        return f"<table><tr><th>experiment</th><th>what it shows</th><th>reference</th><th>presets</th></tr>{rows}</table>"


def catalog() -> Catalog:
    """Every experiment in the catalog (from plain data: importing no experiment)."""
    return Catalog(Entry(name, title, reference, presets) for name, (title, reference, presets) in INDEX.items())


@dataclass
class ExperimentResult:
    """What `run` returns: the sweep's records, the claim check's verdict and the figures, and what ran now."""

    experiment: str
    preset: str
    records: list[RunRecord]
    verdict: Verdict
    figures: dict[str, Figure] = field(default_factory=dict)
    ran: int = 0
    skipped: int = 0
    executor: str = ""

    def _repr_html_(self) -> str:
        images = "".join(f"<p><b>{html.escape(name)}</b><br><img src='data:image/png;base64,{_png(figure)}'></p>" for name, figure in self.figures.items())
        failed = sum(r.status == "failed" for r in self.records)
        head = (f"<h3>{html.escape(self.experiment)} ({html.escape(self.preset)})</h3><p>{len(self.records)} runs: {self.ran} now, "
                f"{self.skipped} from the store, {failed} failed [{html.escape(self.executor)}]</p>")  # fmt: skip
        return head + self.verdict._repr_html_() + images


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight", dpi=90)
    return base64.b64encode(buffer.getvalue()).decode()


def run(
    name: str,
    preset: str | None = None,
    overrides: dict[str, Any] | None = None,
    store: str | Path | Store = DEFAULT_PATH,
    executor: str = "auto",
    workers: int | None = None,
    trackers: Sequence[Tracker | str] = (),
) -> ExperimentResult:
    """Run an experiment's sweep (preset default: the experiment's own, usually 'quick') into `store`, resuming
    what is there; return its records, verdict and figures. Bad names or fields raise `SpecError` naming them.

    `trackers` also sends the runs to TensorBoard, W&B (offline) or MLflow: `"tensorboard"`, `"wandb"`,
    `"mlflow"` (each into a folder of the store), `"NAME:DIR"`, or tracker objects (`biaslab.trackers`); a
    missing library raises `TrackerUnavailable` naming the extra to install, before any run.
    """
    from biaslab.experiments import CATALOG
    from biaslab.registry import UnknownName
    from biaslab.spec import SpecError
    from biaslab.sweep import preflight, run_sweep

    try:
        experiment = CATALOG.get(name)
    except UnknownName as error:
        raise SpecError(str(error)) from None
    preset = preset or experiment.default_preset
    overrides = dict(overrides or {})
    sweep = experiment.sweep(preset).override(overrides)
    preflight(sweep)
    sinks = resolve_trackers(trackers, store.path if isinstance(store, Store) else Path(store))  # before the store is made
    store = store if isinstance(store, Store) else Store(store)
    outcome = run_sweep(sweep, store, preset, overrides, executor, workers, trackers=sinks)
    finished = [r for r in outcome.records if r.status == "ok"]
    verdict = experiment.verdict(outcome.records) if finished else Verdict(experiment.title, False, {}, "no run finished")
    figures = experiment.drawn_figures(outcome.records)[0] if finished else {}  # a figure that raises is left out; the report says why
    return ExperimentResult(experiment.name, preset, outcome.records, verdict, figures, outcome.ran, outcome.skipped, outcome.executor)


@dataclass
class Tracked:
    """What `track` did: per tracker, the runs sent now and those it already held; the sweeps gone through."""

    sent: dict[str, int]
    held: dict[str, int]
    sweeps: int


def track(
    trackers: Sequence[Tracker | str],
    store: str | Path | Store = DEFAULT_PATH,
    experiment: str | None = None,
    again: bool = False,
) -> Tracked:
    """Send a store's runs to trackers, sweep by sweep, with each sweep's verdict: what `run(..., trackers=...)`
    would have sent. Runs a tracker already holds are not sent again unless `again`. Reads the store only."""
    from biaslab.sweep import sweep_verdict

    resolved = resolve_trackers(trackers, store.path if isinstance(store, Store) else Path(store))
    store = store if isinstance(store, Store) else Store(store, readonly=True)
    entries = [e for e in store.sweeps() if experiment is None or e.experiment == experiment]
    sent = {tracker_key(t): 0 for t in resolved}
    held = {tracker_key(t): 0 for t in resolved}
    for entry in entries:
        records = store.records_of(dict.fromkeys(entry.spec_ids))
        with Tracking(resolved, SweepInfo.of(entry, (r.spec for r in records)), again=again) as tracking:
            tracking.end(records, sweep_verdict(entry.experiment, records))
        for name in sent:
            sent[name] += tracking.sent[name]
            held[name] += tracking.held[name]
    return Tracked(sent, held, len(entries))
