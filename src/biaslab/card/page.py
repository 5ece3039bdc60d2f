"""The card as a page a person reads: what was measured, a headline, then every section described.

Order: title and what was measured (model, weights hash, data in words, example
subsets), warnings in a box when the numbers may not describe the model's own
data, the headline numbers with their meaning and direction, then each section
as a table (measure, value ± standard error, unit, which way is flatter or
simpler, what it is), per-layer measures in their own table, bound ingredients
folded away, the section's figure beside it, notes, and the full source folded at
the end. Every value goes through `measures.format_value`, so flags read yes/no
and inf/nan say what they mean.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

from biaslab.card.measures import describe, format_value, headline, is_ingredient, is_per_layer
from biaslab.card.result import Card

TITLES = {
    "fit": ("Fit", "errors and losses on the training and test data"),
    "norms": ("Norms", "how large the weights are"),
    "margins": ("Margins", "how confidently the training examples are classified"),
    "curvature": ("Curvature", "the Hessian of the training loss at these weights"),
    "sharpness": ("Sharpness", "how much the training loss rises when the weights are perturbed"),
    "spectra": ("Spectra", "the singular values of each weight matrix"),
    "calibration": ("Calibration", "whether predicted confidence matches accuracy"),
    "bounds": ("Bounds", "guaranteed upper limits on the test error, with their ingredients"),
}
INVARIANT = "_rescaling_invariant"  # the flag a sharpness measure carries; shown in its measure's row
SECTION_FIGURES = {"margins": ["margins"], "curvature": ["hessian_density"], "spectra": ["layer_spectra"], "calibration": ["reliability"]}

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.4; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
table { border-collapse: collapse; font-size: 0.88em; margin: 0.5em 0 1em; } td, th { border: 1px solid #ddd; padding: 3px 8px; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; } th { background: #f5f5f5; text-align: left; }
.muted, .key { color: #666; font-size: 0.88em; } .key { font-family: ui-monospace, monospace; font-size: 0.8em; }
.warning { background: #fff3f3; border: 2px solid #c62828; padding: 0.6em 1em; margin: 1em 0; border-radius: 4px; }
.headline { display: grid; grid-template-columns: repeat(auto-fill, minmax(240px, 1fr)); gap: 0.6em; margin: 0.8em 0; }
.tile { border: 1px solid #ddd; border-radius: 6px; padding: 0.5em 0.8em; background: #fafafa; }
.tile .v { font-size: 1.25em; font-weight: 600; font-variant-numeric: tabular-nums; } .tile .m { font-size: 0.82em; color: #444; }
.tile .b { font-size: 0.78em; color: #2e7d32; } dl { display: grid; grid-template-columns: max-content auto; gap: 0.3em 1em; } dt { font-weight: 600; }
img { max-width: 560px; width: 100%; display: block; margin: 0.5em 0; } details { margin: 0.5em 0; } pre { font-size: 0.8em; overflow-x: auto; background: #f7f7f7; padding: 0.6em; }
"""


def card_html(card: Card, inline_figures: bool = False) -> str:
    """The whole page; figures as files under figures/ or, with `inline_figures`, embedded as PNG."""
    parts = [f"<h1>Generalization report card</h1><p class='muted'>{html.escape(_one_line_source(card))}</p>"]
    parts += [f"<div class='warning'><b>Warning.</b> {html.escape(w)}</div>" for w in card.warnings]
    parts.append(_what_was_measured(card))
    tiles = headline(card.sections)
    if tiles:
        parts.append("<h2>Headline</h2><div class='headline'>" + "".join(
            f"<div class='tile'><div>{html.escape(t.label)}</div><div class='v'>{html.escape(t.value)}</div>"
            f"<div class='m'>{html.escape(t.meaning)}</div><div class='b'>{html.escape(t.better)}</div></div>" for t in tiles
        ) + "</div>")  # fmt: skip
    for name, row in card.sections.items():
        parts.append(_section_html(card, name, row, inline_figures))
    failed = [n for n in card.notes if ": failed (" in n]
    if failed:
        parts.append("<h2>Sections that failed</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in failed) + "</ul>")
    others = [n for n in card.notes if n not in failed]
    if others:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in others) + "</ul>")
    parts.append(_details("Probe settings", f"<pre>{html.escape(json.dumps(card.options, indent=2))}</pre>"))
    parts.append(_details("Full source (spec of the run, model and data files)", f"<pre>{html.escape(json.dumps(card.source, indent=2, sort_keys=True))}</pre>"))
    body = "".join(parts)
    return f"<!doctype html><html><head><meta charset='utf-8'><title>biaslab card</title><style>{_STYLE}</style></head><body>{body}</body></html>"


def _one_line_source(card: Card) -> str:
    s = card.source
    if "run" in s:
        return f"stored run {s['run']} of experiment {s.get('experiment', '?')}"
    model = s.get("model") or s.get("exported") or "a model given in Python"
    weights = f", weights {s['weights']}" if s.get("weights") else ""
    return f"{model}{weights}"


def _what_was_measured(card: Card) -> str:
    facts = card.subject
    rows = [("Model", f"{_one_line_source(card)}; {facts.get('model_type', '?')} with {facts.get('parameters', 0):,} parameters; "
             f"weights sha256 {facts.get('weights_sha256', '?')}; loss {facts.get('loss', '?')}; device {facts.get('device', '?')}")]  # fmt: skip
    rows.append(("Data", card.data_note or "not stated"))
    n, subset = facts.get("n_train"), facts.get("subset")
    if n is not None:
        scope = f"curvature and sharpness on a random subset of {subset:,} of the {n:,} training examples; every other section on all of them"
        rows.append(("Examples", scope if subset < n else f"every section on all {n:,} training examples"))
    expected = facts.get("expected_train_error")
    if expected is not None:
        rows.append(("Stated training error", f"{expected:.4f} (checked against the measured one; a mismatch is a warning above)"))
    if card.skipped:
        rows.append(("Not measured", ", ".join(card.skipped) + " (left out by --sections / --skip)"))
    if card.plan:
        rows.append(("Time budget", _plan_text(card.plan)))
    rows.append(("Time", ", ".join(f"{k} {v:.1f} s" for k, v in card.seconds.items()) + f"; total {sum(card.seconds.values()):.1f} s"))
    listing = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in rows)
    layers = facts.get("layers", [])
    table = "<table><tr><th>layer</th><th>type</th><th>parameters</th><th>weight shape</th></tr>" + "".join(
        f"<tr><td>{html.escape(r['layer'])}</td><td>{html.escape(r['type'])}</td><td class='num'>{r['parameters']:,}</td>"
        f"<td>{html.escape(str(r['shape']))}</td></tr>" for r in layers
    ) + "</table>"  # fmt: skip
    return f"<h2>What was measured</h2><dl>{listing}</dl>" + _details(f"Layers ({len(layers)})", table)


def _plan_text(plan: dict[str, Any]) -> str:
    budget = plan.get("budget_seconds")
    predicted = sum(plan.get("estimate", {}).values())
    text = f"estimated {predicted:.0f} s before running"
    if budget is not None:
        text += f" for a budget of {budget:.0f} s" + ("" if plan.get("fits", True) else " (does not fit even at the smallest settings)")
    return text


def _section_html(card: Card, name: str, row: dict[str, float], inline: bool) -> str:
    title, intro = TITLES.get(name, (name, ""))
    seconds = card.seconds.get(name, 0.0)
    main = [k for k in row if not k.endswith(("_se", INVARIANT)) and not is_per_layer(k) and not is_ingredient(k)]
    parts = [f"<h2>{html.escape(title)}</h2><p class='muted'>{html.escape(intro)} ({seconds:.1f} s)</p>", _measure_table(name, row, main)]
    per_layer = [k for k in row if is_per_layer(k)]
    if per_layer:
        parts.append(_per_layer_table(row, per_layer))
    ingredients = [k for k in row if is_ingredient(k)]
    if ingredients:
        parts.append(_details("Bound ingredients", _measure_table(name, row, ingredients)))
    for figure in SECTION_FIGURES.get(name, []):
        if figure in card.figures:
            parts.append(_image(card, figure, inline))
    return "".join(parts)


def _measure_table(section: str, row: dict[str, float], keys: list[str]) -> str:
    lines = ["<table><tr><th>measure</th><th>value</th><th>unit</th><th>direction</th><th>what it is</th></tr>"]
    for key in keys:
        info = describe(key, section)
        value = format_value(key, row[key], section)
        se = row.get(f"{key}_se")
        if se is not None:
            value += f" ± {float(se):.2g}"
        better = info.better
        if f"{key}{INVARIANT}" in row:  # folded into the measure's own row instead of a row of its own
            better += "; rescaling-invariant" if row[f"{key}{INVARIANT}"] >= 0.5 else "; NOT invariant to ReLU rescaling"
        lines.append(
            f"<tr><td>{html.escape(info.label)}<br><span class='key'>{html.escape(key)}</span></td><td class='num'>{html.escape(value)}</td>"
            f"<td>{html.escape(info.unit)}</td><td>{html.escape(better)}</td><td>{html.escape(info.meaning)}</td></tr>"
        )
    return "".join(lines) + "</table>"


def _per_layer_table(row: dict[str, float], keys: list[str]) -> str:
    """Rows: layers; columns: the per-layer measures."""
    measures = list(dict.fromkeys(k.partition(".")[0] for k in keys))
    layers = list(dict.fromkeys(k.partition(".")[2] for k in keys))
    head = "".join(f"<th>{html.escape(describe(f'{m}.x').label.removesuffix(' of x'))}</th>" for m in measures)
    body = "".join(
        f"<tr><td>{html.escape(layer)}</td>" + "".join(
            f"<td class='num'>{html.escape(format_value(f'{m}.{layer}', row[f'{m}.{layer}'])) if f'{m}.{layer}' in row else ''}</td>" for m in measures
        ) + "</tr>" for layer in layers
    )  # fmt: skip
    return f"<p class='muted'>Per layer:</p><table><tr><th>layer</th>{head}</tr>{body}</table>"


def _image(card: Card, name: str, inline: bool) -> str:
    if inline:
        buffer = io.BytesIO()
        card.figures[name].savefig(buffer, format="png", bbox_inches="tight", dpi=100)
        source = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    else:
        source = f"figures/{name}.svg"
    return f"<img src='{source}' alt='{html.escape(name)}'>"


def _details(summary: str, content: str) -> str:
    return f"<details><summary>{html.escape(summary)}</summary>{content}</details>"


def write_card(card: Card, directory: str | Path, page_name: str = "card.html") -> Path:
    """Write card.json, the page and the figures (SVG and PNG) under `directory`; return the page's path."""
    directory = Path(directory)
    (directory / "figures").mkdir(parents=True, exist_ok=True)
    (directory / "card.json").write_text(json.dumps(card.to_json(), indent=2, sort_keys=True), encoding="utf-8")
    for name, figure in card.figures.items():
        for suffix in ("svg", "png"):
            figure.savefig(directory / "figures" / f"{name}.{suffix}", bbox_inches="tight", dpi=110)
    page = directory / page_name
    page.write_text(card_html(card), encoding="utf-8")
    return page
