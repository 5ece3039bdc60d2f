"""The HTML report: one page with, for every sweep in a store, its figures, verdict and run table.

`write_report(store, directory)` writes `index.html` and the figures as PNG and
SVG under `directory/figures/`. Only this module and `store` write files, and
only under the paths they are given.
"""

from __future__ import annotations

import html
import math
from datetime import datetime, timezone
from pathlib import Path

from biaslab.claims import Verdict
from biaslab.experiments import CATALOG
from biaslab.store import RunRecord, Store, SweepEntry, records_table

TABLE_COLUMNS = ("run_id", "status", "seed", "steps", "train_error", "test_error", "seconds")

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
.verdict { padding: 0.6em 1em; border-radius: 6px; margin: 1em 0; }
.PASS { background: #e6f4ea; border-left: 6px solid #1e8e3e; } .FAIL { background: #fce8e6; border-left: 6px solid #d93025; }
.none { background: #f1f3f4; border-left: 6px solid #9aa0a6; }
table { border-collapse: collapse; font-size: 0.85em; } td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th { background: #f5f5f5; } img { max-width: 100%; margin: 0.5em 0; } code { background: #f5f5f5; padding: 0 4px; }
.muted { color: #666; font-size: 0.9em; } th.sortable { cursor: pointer; user-select: none; } th.sortable:hover { background: #e8eaed; }
th[data-order=asc]::after { content: " ▲"; } th[data-order=desc]::after { content: " ▼"; } input.filter { margin: 0.4em 0; padding: 3px 6px; width: 22em; }
"""

# The one script of the page: click a column header to sort the run table (numbers by value), type to filter rows.
# It is a fixed string (no user text in it), needs no network, and `#sort=COLUMN` in the address sorts on load.
_TABLE_SCRIPT = """
function sortTable(table, index, order) {
  const body = table.tBodies[0], rows = Array.from(body.rows);
  const key = r => { const c = r.cells[index]; const v = c.dataset.value; return v === undefined ? c.textContent : parseFloat(v); };
  rows.sort((a, b) => { const x = key(a), y = key(b); const d = (typeof x === 'number' && typeof y === 'number') ? x - y : String(x).localeCompare(String(y)); return order === 'asc' ? d : -d; });
  rows.forEach(r => body.appendChild(r));
  table.querySelectorAll('th').forEach(th => th.removeAttribute('data-order'));
  table.tHead.rows[0].cells[index].dataset.order = order;
}
document.querySelectorAll('table.runs').forEach(table => {
  Array.from(table.tHead.rows[0].cells).forEach((th, index) => th.addEventListener('click', () => sortTable(table, index, th.dataset.order === 'asc' ? 'desc' : 'asc')));
});
document.querySelectorAll('input.filter').forEach(input => input.addEventListener('input', () => {
  const needle = input.value.toLowerCase(), table = document.getElementById(input.dataset.table);
  Array.from(table.tBodies[0].rows).forEach(r => { r.style.display = r.textContent.toLowerCase().includes(needle) ? '' : 'none'; });
}));
const wanted = decodeURIComponent((location.hash.match(/sort=([^&]+)/) || [])[1] || '');
if (wanted) document.querySelectorAll('table.runs').forEach(table => {
  const index = Array.from(table.tHead.rows[0].cells).findIndex(th => th.dataset.column === wanted);
  if (index >= 0) sortTable(table, index, 'asc');
});
"""


def write_report(store: Store, directory: str | Path | None = None) -> Path:
    """Write the report for every sweep in `store` to `directory` (default: STORE/report); return index.html."""
    directory = Path(directory) if directory is not None else store.path / "report"
    (directory / "figures").mkdir(parents=True, exist_ok=True)
    sections = [_section(entry, store.records_of(entry.spec_ids), directory) for entry in store.sweeps()]
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = "\n".join(sections) or "<p>The store has no sweeps yet: run <code>biaslab run EXPERIMENT</code>.</p>"
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>biaslab report</title><style>{_STYLE}</style></head>"
        f"<body><h1>biaslab report</h1><p class='muted'>store {html.escape(str(store.path.resolve()))} &middot; {stamp}</p>{body}"
        f"<script id='biaslab-table-script'>{_TABLE_SCRIPT}</script></body></html>"
    )
    index = directory / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def _section(entry: SweepEntry, records: list[RunRecord], directory: Path) -> str:
    parts = [f"<h2 id='{entry.sweep_id}'>{html.escape(entry.experiment)} <span class='muted'>({html.escape(entry.preset)})</span></h2>"]
    parts.append(f"<p class='muted'><code>biaslab run {html.escape(entry.label)}</code> &middot; {len(records)} of {len(entry.spec_ids)} runs stored</p>")
    experiment = CATALOG.get(entry.experiment) if entry.experiment in CATALOG else None
    if experiment is not None:
        parts.append(f"<p><b>{html.escape(experiment.title)}.</b> {html.escape(experiment.summary)}</p>")
        parts.append(f"<p class='muted'>Reference: {html.escape(experiment.reference)}</p>")
        finished = [r for r in records if r.status == "ok"]
        if finished:
            parts.append(_verdict_html(experiment.verdict(records)))
            figures, error = experiment.drawn_figures(records)
            if error is not None:
                parts.append(f"<div class='verdict FAIL'><b>FAIL</b>: {html.escape(error)}</div>")
            for name, figure in figures.items():
                stem = f"{entry.sweep_id}-{name}"
                figure.savefig(directory / "figures" / f"{stem}.png", dpi=110)
                figure.savefig(directory / "figures" / f"{stem}.svg")
                parts.append(f"<img src='figures/{stem}.png' alt='{html.escape(entry.experiment)}: {html.escape(name)}'>")
        else:
            parts.append("<div class='verdict none'>No successful (ok) runs yet: no figure and no verdict.</div>")
    parts.append(_run_table(entry, records))
    return "\n".join(parts)


def _verdict_html(verdict: Verdict) -> str:
    numbers = "".join(f"<tr><th>{html.escape(k)}</th>{_cell(k, v)}</tr>" for k, v in verdict.numbers.items())
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in verdict.notes)
    return (
        f"<div class='verdict {verdict.label}'><b>{verdict.label}</b>: {html.escape(verdict.claim)}<br>"
        f"<span class='muted'>{html.escape(verdict.reason)}</span>"
        f"<table>{numbers}</table>{f'<ul>{notes}</ul>' if notes else ''}</div>"
    )


def _run_table(entry: SweepEntry, records: list[RunRecord]) -> str:
    """Every run of the sweep: the fields that vary, seed, steps, errors and seconds; sortable by column, filterable."""
    if not records:
        return ""
    table = records_table(records)
    table["population"] = [r.env.get("population", 1) for r in records]
    varied = [c for c in table.columns if "." in c and c.split(".")[0] in ("data", "model", "train") and table[c].nunique() > 1]
    columns = [c for c in ("run_id", "status", *varied, *TABLE_COLUMNS[2:], "population") if c in table.columns]
    head = "".join(f"<th class='sortable' data-column='{html.escape(c)}' title='click to sort'>{html.escape(c)}</th>" for c in columns)
    rows = "".join("<tr>" + "".join(_cell(c, row[c]) for c in columns) + "</tr>" for _, row in table.iterrows())
    shared = any(n > 1 for n in table["population"])
    note = (" <span class='muted'>Runs with population > 1 trained together as one batched computation: their seconds are the "
            "population's wall time split evenly over its members.</span>") if shared else ""  # fmt: skip
    table_id = f"runs-{entry.sweep_id}"
    return (
        f"<details><summary>Run table ({len(records)} runs)</summary>{note}<br>"
        f"<input class='filter' data-table='{table_id}' placeholder='filter runs (any text in the row)'>"
        f"<table class='runs' id='{table_id}'><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></details>"
    )


def _cell(column: str, value) -> str:
    """A table cell for people (steps and counts as integers, seconds to 0.1 s) that sorts by its exact value."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"<td>{html.escape(str(value))}</td>"
    if isinstance(value, float) and math.isnan(value):
        return "<td data-value='NaN'></td>"
    if column in ("steps", "seed", "population") or column.endswith(("width", "depth", "max_steps", "batch_size")):
        text = f"{value:,.0f}"
    elif column == "seconds":
        text = f"{value:.1f}"
    else:
        text = f"{value:.4g}"
    return f"<td data-value='{float(value)!r}'>{text}</td>"
