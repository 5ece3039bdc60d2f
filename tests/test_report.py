"""Tests for biaslab.report: the index, the experiment and run pages, their figures, and how a real browser
renders them (the table sorts on a click, the figures load, no console message).

Tiny sweeps of two experiments are run once for the module, in-process, into a store in a temporary directory:
width-sweep as one population (so its runs share a wall time) and min-norm. Every test reads that store (tests
that write a report write it to their own directory).
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from markupsafe import escape
from PIL import Image

from biaslab.cli import main
from biaslab.experiments import CATALOG
from biaslab.plot import mean_band, new_figure
from biaslab.report import BAND_CAPTION, figure_caption, human, pages_of, write_report
from biaslab.store import RunRecord, Store, SweepEntry
from biaslab.sweep import run_sweep

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EXPERIMENT = CATALOG.get("width-sweep")
OTHER = CATALOG.get("min-norm")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no `chromium` on PATH (Debian: apt-get install chromium)")
# matplotlib's default first two line colors, tab:blue and tab:orange: the figures' curves
FIGURE_COLORS = {"tab:blue": (31, 119, 180), "tab:orange": (255, 127, 14)}


class _Page(HTMLParser):
    """The parts of a page these tests look at: images, links, visible text (not style or script), scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str | None]] = []
        self.links: list[str] = []
        self.text: list[str] = []
        self.scripts = 0
        self._hidden = 0

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs))
        if tag == "a":
            self.links.append(str(dict(attrs).get("href")))
        if tag == "script":
            self.scripts += 1
        if tag in ("script", "style"):
            self._hidden += 1

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._hidden -= 1

    def handle_data(self, data):
        if not self._hidden:
            self.text.append(data)

    @property
    def words(self) -> str:
        return " ".join(" ".join(self.text).split())


def distinct_colors(image: Image.Image) -> int:
    pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    return len(np.unique(pixels, axis=0))


def parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    return parser


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def finished_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """The tiny width sweep as one population and the tiny min-norm sweep, run to the end in-process (with one torch
    thread: on a loaded machine, torch's spinning worker threads can make these tiny sweeps dozens of times slower)."""
    import torch

    store = Store(tmp_path_factory.mktemp("report") / "store")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        width = run_sweep(EXPERIMENT.sweep("tiny"), store, preset="tiny", executor="population")
        other = run_sweep(OTHER.sweep("tiny"), store, preset="tiny", executor="inprocess")
    finally:
        torch.set_num_threads(threads)
    assert len(width.records) == 6 and len(other.records) == 2
    assert all(r.status == "ok" for r in width.records + other.records), [(r.status, r.error) for r in width.records + other.records]
    assert all(r.env.get("population", 1) > 1 for r in width.records)  # trained together: their seconds are shares
    return store


@pytest.fixture(scope="module")
def report(finished_store: Store, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """index.html of the finished store, written once for the module."""
    return write_report(finished_store, tmp_path_factory.mktemp("report-out") / "site")


def sweep_page(index: Path, experiment: str) -> Path:
    """The page the index links for `experiment`."""
    (page,) = [p for p in pages_of(index.parent) if p.name.startswith(f"{experiment}-")]
    assert page.name in parse(read(index)).links
    return page


# ----------------------------------------------------------------------------- numbers for people


@pytest.mark.parametrize(
    ("name", "value", "text"),
    [
        ("steps", 12000.0, "12,000"), ("steps", 12000, "12,000"), ("model.width", 256.0, "256"), ("seed", 0, "0"),
        ("test_error", 0.123456, "12.3%"), ("train_error", 0.0, "0%"), ("test_error_at_widest", 0.68, "68%"),
        ("test_accuracy", 0.99991, "100%"), ("test_error", 0.0004, "0.04%"),
        ("max_test_accuracy", 0.0302, "3.02%"), ("final_test_accuracy", 0.5, "50%"), ("min_train_error", 0.0, "0%"),
        ("spearman_width_vs_test_error", 1.0, "1"), ("error_ratio", 1.5, "1.5"),  # not fractions
        ("seconds", 3.14159, "3.1"), ("seconds", 12345.67, "12,345.7"),
        ("train.lr", 0.05, "0.05"), ("train.lr", 1e-4, "1×10⁻⁴"), ("loss", 8.2e-31, "8.2×10⁻³¹"), ("loss", 2.3456, "2.35"),
        ("slope", -0.012345, "-0.0123"), ("norm", 123456.7, "123,457"), ("norm", 1234.5, "1,234"),
        ("test_error", float("nan"), "–"), ("loss", float("inf"), "∞"), ("x", None, ""), ("flag", True, "yes"),
        ("data.name", "mnist1d", "mnist1d"),
    ],
)  # fmt: skip
def test_numbers_are_written_for_people(name, value, text) -> None:
    assert human(name, value) == text


def test_the_caption_explains_a_band_exactly_when_the_figure_has_one() -> None:
    frame = pd.DataFrame({"width": [8, 8, 16, 16], "test_error": [0.3, 0.5, 0.2, 0.4]})
    fig, (ax,) = new_figure()
    means = mean_band(ax, frame, "width", "test_error", label="test")
    assert list(means) == [0.4, 0.30000000000000004]
    assert figure_caption(fig) == [BAND_CAPTION] and "minimum to the maximum" in BAND_CAPTION and "mean" in BAND_CAPTION
    fig, (ax,) = new_figure()
    mean_band(ax, frame.drop_duplicates("width"), "width", "test_error")  # one run per x: no band drawn
    assert figure_caption(fig) == []


# ----------------------------------------------------------------------------- the index


@pytest.mark.slow
def test_the_index_lists_every_sweep_with_its_verdict_and_a_link(report: Path, finished_store: Store) -> None:
    assert report.name == "index.html" and report.is_file()
    page = read(report)
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    parsed = parse(page)
    text = parsed.words
    assert "2 sweeps in the store" in text
    for experiment in (EXPERIMENT, OTHER):
        records = finished_store.records(experiment.name)
        verdict = experiment.claim(records)
        target = sweep_page(report, experiment.name)
        assert f'<a href="{target.name}">{experiment.name}</a>' in page
        row = page[page.index(f'<a href="{target.name}">') :]
        row = row[: row.index("</tr>")]
        assert f'<span class="label {verdict.label}">{verdict.label}</span>' in row
        reason = re.sub(r"^(PASS|FAIL):\s*", "", verdict.reason)
        assert " ".join(reason.split())[:60] in parse(row).words  # the reason, on one line
        assert f"{len(records)} of {len(records)}" in row
    assert str(finished_store.path.resolve()) in text
    assert parsed.images == []  # figures live on the experiments' pages


def test_the_index_cuts_a_long_reason_to_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from biaslab.claims import Verdict

    store = Store(tmp_path / "store")
    spec = OTHER.sweep("tiny").expand()[0]
    store.put_sweep(SweepEntry("min-norm", "tiny", {}, (spec.spec_id,)))
    store.put(RunRecord(spec=spec.model_dump(mode="json"), spec_id=spec.spec_id, status="ok", final={"dist_to_nearest": 0.0}))
    long = "FAIL: " + "; ".join(f"part {i} of the check failed by a margin\nof {i}" for i in range(40))
    monkeypatch.setattr(OTHER, "claim", lambda records: Verdict("a claim", False, {}, long))
    monkeypatch.setattr(OTHER, "figures", lambda records: {})
    page = read(write_report(store, tmp_path / "site"))
    cell = re.search(r"<td title=\"([^\"]*)\">([^<]*)</td>", page)
    assert cell is not None
    assert "\n" not in cell.group(2) and len(cell.group(2)) <= 145 and cell.group(2).endswith("…")
    assert html.unescape(cell.group(1)) == long  # the whole reason in the tooltip


# ----------------------------------------------------------------------------- an experiment's page


def test_the_experiment_page_names_title_reference_verdict_and_runs(report: Path, finished_store: Store) -> None:
    page = read(sweep_page(report, "width-sweep"))
    text = parse(page).words
    assert "width-sweep" in text and "(tiny)" in text
    assert EXPERIMENT.title in text and EXPERIMENT.summary.split()[0] in text
    assert EXPERIMENT.reference in text  # as text...
    assert escape(EXPERIMENT.reference) in page  # ...escaped in the source ('&' in "Tomioka & Srebro")
    records = finished_store.records("width-sweep")
    verdict = EXPERIMENT.claim(records)
    assert f'<div class="verdict {verdict.label}"><b>{verdict.label}</b>' in page
    assert escape(verdict.claim) in page
    for name, value in verdict.numbers.items():  # every number, written for people, its exact value in a tooltip
        assert f'<dt>{escape(name)}</dt><dd class="num" title="{value}">{escape(human(name, value))}</dd>' in page
    assert "biaslab run width-sweep --preset tiny" in text
    assert "6 of 6 runs stored" in text
    for record in records:
        assert f'<a href="runs/{record.spec_id}.html">{record.spec_id}</a>' in page
    assert parse(page).links[0] == "index.html"  # back to the index


def test_the_run_table_says_shared_settings_once_and_formats_numbers(report: Path, finished_store: Store) -> None:
    page = read(sweep_page(report, "width-sweep"))
    table = page[page.index('<table class="runs sortable"') :]
    table = table[: table.index("</table>")]
    header = re.findall(r'data-column="([^"]+)"', table)
    assert header[:2] == ["run_id", "status"]
    assert {"model.width", "data.label_noise", "steps", "train_error", "test_error", "seconds", "population"} <= set(header)
    assert "train.lr" not in header and "data.name" not in header  # the same in every run...
    shared = page[page.index('<p class="shared">') :]
    shared = shared[: shared.index("</p>")]
    assert "<code>train.lr</code> = 0.05" in shared and "<code>data.name</code> = mnist1d" in shared  # ...said once
    assert "<code>model.width</code>" not in shared
    rows = re.findall(r"<tr>(.*?)</tr>", table[table.index("<tbody>") :], flags=re.S)
    assert len(rows) == 6
    errors = [re.findall(r"<td[^>]*>([^<]*)</td>", row)[header.index("test_error") - 1] for row in rows]  # run_id's cell holds a link
    assert all(re.fullmatch(r"\d+(\.\d+)?%", e) for e in errors), errors
    assert not any("e+" in cell for cell in re.findall(r">([^<]*)</td>", table))  # no 1.2e+04 for people


def test_shared_settings_leave_out_the_fields_no_run_reads(report: Path) -> None:
    def shared_line(name: str) -> str:
        page = read(sweep_page(report, name))
        shared = page[page.index('<p class="shared">') :]
        return shared[: shared.index("</p>")]

    width = shared_line("width-sweep")  # momentum SGD on a dataset: its data and train fields, not Adam's betas
    assert "<code>train.momentum</code>" in width and "<code>data.n_train</code>" in width
    assert "<code>train.betas</code>" not in width and "<code>data.modulus</code>" not in width
    assert "<code>problem." not in width
    solved = shared_line("min-norm")  # a least-squares problem: no dataset field is read
    assert "<code>problem.kind</code>" in solved and "<code>data." not in solved and "<code>model." not in solved


def test_population_seconds_are_said_to_be_shares(report: Path, finished_store: Store) -> None:
    page = read(sweep_page(report, "width-sweep"))
    text = parse(page).words
    assert "no run has a time of its own" in text and "divided evenly among its members" in text
    record = finished_store.records("width-sweep")[0]
    population = record.env["population"]
    assert f"1/{population} of the population&#39;s wall time" in page
    assert f"{human('seconds', record.seconds)} ÷" in page
    other = read(sweep_page(report, "min-norm"))
    assert "÷" not in other and "no run has a time of its own" not in other  # runs alone: their own seconds


@pytest.mark.slow
def test_figures_are_valid_png_with_svg_and_a_caption(report: Path) -> None:
    page = sweep_page(report, "width-sweep")
    source = read(page)
    images = parse(source).images
    assert sorted(str(i["alt"]) for i in images) == ["width-sweep: errors", "width-sweep: norms"]
    for image in images:
        src = str(image["src"])
        assert not Path(src).is_absolute() and src.startswith("figures/")  # the report can be moved as a directory
        png = page.parent / src
        assert png.suffix == ".png" and png.read_bytes().startswith(PNG_MAGIC)
        with Image.open(png) as opened:
            opened.verify()
        with Image.open(png) as opened:
            width, height = opened.size
            assert width > 300 and height > 200
            assert distinct_colors(opened) > 50  # drawn, not a blank canvas
        svg = png.with_suffix(".svg")
        assert svg.is_file() and ET.parse(svg).getroot().tag == "{http://www.w3.org/2000/svg}svg"
        figure = source[source.index(f'<img src="{src}"') :]
        assert re.search(r"<figcaption><b>\w+</b> \(<a href=\"figures/[^\"]+\.svg\">SVG</a>\)\.", figure[: figure.index("</figure>")])
    assert {p.name for p in (report.parent / "figures").glob("*.png")} >= {Path(str(i["src"])).name for i in images}


def test_each_run_page_shows_its_curves_final_metrics_and_spec(report: Path, finished_store: Store) -> None:
    for record in finished_store.records():
        page = report.parent / "runs" / f"{record.spec_id}.html"
        source = read(page)
        parsed = parse(source)
        assert record.spec_id in parsed.words and record.status in parsed.words
        assert parsed.links[0] == "../index.html" and any(link.startswith("../") and "#runs" in link for link in parsed.links)
        plotted = [n for n in record.curves if n != "step"]
        assert source.count("<svg ") == len(plotted) > 0
        assert source.count("<polyline ") >= len(plotted)
        for name in plotted:
            assert f'id="curve-{name}"' in source
        for name in record.final:
            assert f"<td>{name}</td>" in source
        assert "model.width" in source or "problem.kind" in source


@pytest.mark.slow
def test_report_defaults_to_the_store_directory_and_can_be_rewritten(finished_store: Store, tmp_path: Path) -> None:
    store = Store(tmp_path / "copy")
    for entry in finished_store.sweeps():
        store.put_sweep(entry)
    for record in finished_store.records():
        store.put(record)
    first = write_report(store)
    assert first == store.path / "report" / "index.html" and first.is_file()
    again = write_report(store)  # writing again over an existing report is fine
    assert again == first
    assert len(list(pages_of(first.parent))) == 2
    assert len(parse(read(sweep_page(first, "width-sweep"))).images) == 2


def _tiny_spec(index: int = 0):
    return EXPERIMENT.sweep("tiny").expand()[index]


def test_store_with_only_a_failed_run_says_there_is_no_verdict(tmp_path: Path) -> None:
    spec = _tiny_spec()
    store = Store(tmp_path / "store")
    store.put_sweep(SweepEntry("width-sweep", "tiny", {}, tuple(s.spec_id for s in EXPERIMENT.sweep("tiny").expand())))
    store.put(
        RunRecord(
            spec=spec.model_dump(mode="json"),
            spec_id=spec.spec_id,
            status="failed",
            error="Traceback (most recent call last):\nRuntimeError: out of <memory>\n",
        )
    )
    index = write_report(store, tmp_path / "site")
    assert "no verdict" in parse(read(index)).words
    page = read(sweep_page(index, "width-sweep"))
    text = parse(page).words
    assert "no verdict" in text
    assert "PASS" not in text and "FAIL" not in text
    assert "<img" not in page
    assert "1 of 6 runs stored" in text and "1 failed" in text
    assert spec.spec_id in text and 'class="status-failed"' in page  # the failed run is in the table, marked
    assert 'title="RuntimeError: out of &lt;memory&gt;"' in page  # its error on hover
    run = read(tmp_path / "site" / "runs" / f"{spec.spec_id}.html")
    assert "RuntimeError: out of &lt;memory&gt;" in run and "Traceback (most recent call last)" in run
    assert list((tmp_path / "site" / "figures").iterdir()) == []


def test_store_with_only_diverged_runs_has_no_verdict_either(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    specs = EXPERIMENT.sweep("tiny").expand()
    store.put_sweep(SweepEntry("width-sweep", "tiny", {"train.lr": 1e6}, tuple(s.spec_id for s in specs)))
    for spec in specs[:2]:
        nan = float("nan")
        store.put(
            RunRecord(
                spec=spec.model_dump(mode="json"), spec_id=spec.spec_id, status="diverged",
                curves={"train_loss": [2.3, nan]}, final={"train_error": 0.9, "test_error": 0.9, "train_loss": nan, "steps": 40.0},
            )
        )  # fmt: skip
    index = write_report(store, tmp_path / "site")
    page = read(sweep_page(index, "width-sweep"))
    assert "no verdict" in page and "<img" not in page
    assert "2 of 6 runs stored" in page and page.count('class="status-diverged">diverged</td>') == 2
    run = read(tmp_path / "site" / "runs" / f"{specs[0].spec_id}.html")
    assert "<polyline" in run  # the finite part of a diverged curve is drawn


def test_empty_store_and_unknown_experiment(tmp_path: Path) -> None:
    empty = Store(tmp_path / "empty")
    assert "no sweeps yet" in read(write_report(empty))

    store = Store(tmp_path / "store")
    spec = _tiny_spec().model_copy(update={"experiment": "not-in-catalog"})
    store.put_sweep(SweepEntry("not-in-catalog", "custom", {}, (spec.spec_id,)))
    store.put(RunRecord(spec=spec.model_dump(mode="json"), spec_id=spec.spec_id, status="ok", final={"train_error": 0.0, "test_error": 0.5}))
    index = write_report(store)
    assert "not in the catalog" in read(index)
    page = read(sweep_page(index, "not-in-catalog"))
    assert "not-in-catalog" in page and spec.spec_id in page
    assert "<img" not in page


def test_user_text_in_the_pages_is_escaped(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    hostile = "<script>alert('x')</script>"
    spec = _tiny_spec()
    store.put_sweep(SweepEntry("width-sweep", hostile, {"data.root": hostile}, (spec.spec_id,)))
    store.put(RunRecord(spec=spec.model_dump(mode="json"), spec_id=spec.spec_id, status="failed", error=hostile, env={"host": hostile}))
    index = write_report(store)
    pages = [index, *pages_of(index.parent), *(index.parent / "runs").glob("*.html")]
    assert len(pages) == 3
    for path in pages:
        page = read(path)
        parsed = parse(page)
        assert parsed.scripts == 1 and page.count("<script") == 1 and '<script id="biaslab-table-script">' in page  # only our own
        assert "<script>" not in page
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+", p.name) for p in pages)  # the preset never reaches a file name
    sweep = read(pages[1])
    assert escape(hostile) in sweep and hostile in parse(sweep).words


# ----------------------------------------------------------------------------- the command


@pytest.mark.slow
def test_cli_report_prints_the_path(finished_store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["report", "--store", str(finished_store.path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == str(out / "index.html")
    assert Path(printed).is_file()
    assert len(parse(read(sweep_page(Path(printed), "width-sweep"))).images) == 2


@pytest.mark.slow
def test_cli_report_default_location(finished_store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = shutil.copytree(finished_store.path, tmp_path / "store")
    assert main(["report", "--store", str(store)]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == str(store / "report" / "index.html") and Path(printed).is_file()


def test_cli_report_on_a_missing_store_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nothing"
    assert main(["report", "--store", str(missing)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no biaslab store" in captured.err and str(missing) in captured.err
    assert len(captured.err.strip().splitlines()) == 1
    assert not missing.exists()  # not created by asking for its report


def test_the_templates_ship_with_the_package() -> None:
    """The pages are rendered from package data: pyproject.toml names the template files for the wheel."""
    import biaslab

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    templates = Path(biaslab.__file__).parent / "templates" / "report"
    names = {p.name for p in templates.iterdir()}
    assert {"base.html", "index.html", "sweep.html", "run.html", "macros.html", "report.css", "table.js"} <= names
    config = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["biaslab"]
    assert all(any(Path("templates/report", name).match(p) for p in patterns) for name in names)
    assert any(d.startswith("jinja2") for d in config["project"]["dependencies"])


# ----------------------------------------------------------------------------- in a real browser


def chromium(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Headless Chromium with a throwaway profile; --no-sandbox because tests may run as root (CI containers);
    the page's console messages go to stderr (lines with CONSOLE)."""
    assert CHROMIUM is not None
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--user-data-dir={cwd / 'profile'}",
               "--enable-logging=stderr", "--v=0", *args]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def console(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


@pytest.mark.slow
@needs_chromium
def test_chromium_logs_nothing_on_any_page(report: Path, tmp_path: Path) -> None:
    """Every page loads without a console message: no script error, no missing image or file. The control page
    shows that a script error would be seen."""
    control = tmp_path / "control.html"
    control.write_text("<!doctype html><script>notAFunction();</script>", encoding="utf-8")
    messages = console(chromium("--virtual-time-budget=3000", "--dump-dom", control.as_uri(), cwd=tmp_path))
    assert any("Uncaught ReferenceError" in m for m in messages), messages
    pages = [report, *pages_of(report.parent), next((report.parent / "runs").glob("*.html"))]
    for page in pages:
        result = chromium("--virtual-time-budget=3000", "--dump-dom", page.as_uri() + "#sort=seconds", cwd=tmp_path)
        assert console(result) == [], (page.name, console(result))
        assert "</table>" in result.stdout


_PROBE = """<!doctype html><html><body><pre id="result">not loaded</pre>
<iframe id="report" src="{src}" width="1300" height="2000"></iframe>
<script>
document.getElementById('report').addEventListener('load', function () {{
  var out = document.getElementById('result'), doc = this.contentDocument;
  try {{
    {body}
  }} catch (error) {{ out.textContent = 'error ' + error; }}
}});
</script></body></html>"""

_IMAGES = """var images = doc.images, lines = ['images ' + images.length];
    for (var i = 0; i < images.length; i++) {
      var im = images[i];
      lines.push(im.getAttribute('src') + ' ' + (im.complete ? 'complete' : 'incomplete') + ' ' + im.naturalWidth + ' ' + im.naturalHeight);
    }
    out.textContent = lines.join('\\n');"""

# click the test_error header twice, then type into the filter: the rows' order and visibility after each
_CLICKS = """var table = doc.querySelector('table.runs'), heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
    var index = heads.findIndex(function (th) { return th.getAttribute('data-column') === 'test_error'; });
    var state = function () { return Array.prototype.map.call(table.tBodies[0].rows, function (r) {
      return [r.cells[0].textContent, parseFloat(r.cells[index].getAttribute('data-value')), !r.classList.contains('hidden')]; }); };
    var result = {before: state()};
    heads[index].click(); result.asc = state(); result.order1 = heads[index].getAttribute('data-order');
    heads[index].click(); result.desc = state(); result.order2 = heads[index].getAttribute('data-order');
    var filter = doc.querySelector('input.filter'), wanted = result.before[0][0];
    filter.value = wanted; filter.dispatchEvent(new Event('input'));
    result.filtered = state(); result.count = doc.getElementById('runs-count').textContent;
    out.textContent = JSON.stringify(result);"""


def probe(page: Path, body: str, tmp_path: Path) -> str:
    """Frame `page` in a probe page whose script, once the frame has loaded (images included), runs `body` on the
    frame's document and writes what it finds into the probe page, which --dump-dom prints.
    --allow-file-access-from-files lets the probe read the file:// frame's document."""
    path = tmp_path / "probe.html"
    path.write_text(_PROBE.format(src=page.as_uri(), body=body), encoding="utf-8")
    result = chromium("--allow-file-access-from-files", "--virtual-time-budget=10000", "--dump-dom", path.as_uri(), cwd=tmp_path)
    assert console(result) == [], console(result)
    dom = result.stdout
    start = dom.index('id="result">') + len('id="result">')
    return html.unescape(dom[start : dom.index("</pre>", start)])


@needs_chromium
def test_chromium_sorts_the_run_table_on_a_click_and_filters_it(report: Path, tmp_path: Path) -> None:
    found = probe(sweep_page(report, "width-sweep"), _CLICKS, tmp_path)
    result = json.loads(found)
    errors = [row[1] for row in result["before"]]
    assert len(errors) == 6 and len(set(errors)) > 1  # the table starts in the sweep's order...
    assert [row[1] for row in result["asc"]] == sorted(errors) and result["order1"] == "asc"  # ...a click sorts it
    assert [row[1] for row in result["desc"]] == sorted(errors, reverse=True) and result["order2"] == "desc"  # ...again reverses
    assert [r[0] for r in result["desc"]] != [r[0] for r in result["asc"]]  # the rows really moved
    assert sorted(r[0] for r in result["asc"]) == sorted(r[0] for r in result["before"])  # the same runs, reordered
    assert [r[0] for r in result["filtered"] if r[2]] == [result["before"][0][0]] and result["count"] == "showing 1 of 6"


@needs_chromium
def test_the_run_table_sorts_from_the_address(report: Path, tmp_path: Path) -> None:
    """`#sort=test_error` runs the page's own sorting code in Chromium: the rows come back in test-error order."""
    page = sweep_page(report, "width-sweep")
    dom = chromium("--virtual-time-budget=5000", "--dump-dom", page.as_uri() + "#sort=test_error", cwd=tmp_path).stdout
    table = dom[dom.index('<table class="runs sortable"') :]
    table = table[: table.index("</table>")]
    header = re.findall(r'data-column="([^"]+)"', table)
    column = header.index("test_error")
    rows = re.findall(r"<tr>(.*?)</tr>", table[table.index("<tbody>") :], flags=re.S)
    cells = [re.findall(r"<td[^>]*>", row) for row in rows]
    values = [float(re.search(r'data-value="([^"]+)"', tags[column]).group(1)) for tags in cells]
    assert len(values) > 2 and values == sorted(values) and 'data-order="asc"' in table


@needs_chromium
def test_chromium_loads_and_decodes_every_image(report: Path, tmp_path: Path) -> None:
    """Did the browser really load each figure? A missing or undecodable file has naturalWidth 0."""
    page = sweep_page(report, "width-sweep")
    lines = probe(page, _IMAGES, tmp_path).splitlines()
    sources = [str(i["src"]) for i in parse(read(page)).images]
    assert lines[0] == f"images {len(sources)}", lines
    for source, line in zip(sources, lines[1:]):
        src, state, width, height = line.split()
        assert src == source and state == "complete", line
        with Image.open(page.parent / source) as png:
            assert (int(width), int(height)) == png.size, line  # decoded at the file's own size


def _figure_pixels(screenshot: Path) -> dict[str, int]:
    """How many pixels are close to each of the figures' line colors."""
    with Image.open(screenshot) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    return {name: int((np.abs(pixels - np.array(rgb)).max(axis=2) < 40).sum()) for name, rgb in FIGURE_COLORS.items()}


@pytest.mark.slow
@needs_chromium
def test_chromium_screenshot_shows_the_figures(report: Path, tmp_path: Path) -> None:
    """The rendered page, as pixels, shows the figures: a 1200x2000 screenshot has hundreds of pixels in
    matplotlib's blue and orange (the train/test curves; the page's own CSS has neither color), while the same
    page with its figures deleted has next to none. The control shows the check is about the images."""
    flags = ["--hide-scrollbars", "--run-all-compositor-stages-before-draw", "--virtual-time-budget=5000", "--window-size=1200,2000"]
    page = sweep_page(report, "width-sweep")
    shot = tmp_path / "report.png"
    chromium(*flags, f"--screenshot={shot}", page.as_uri(), cwd=tmp_path)
    assert shot.read_bytes().startswith(PNG_MAGIC)
    with Image.open(shot) as image:
        assert image.size == (1200, 2000)
        assert distinct_colors(image) > 500  # text and figures, not a blank page
    with_figures = _figure_pixels(shot)

    bare = shutil.copytree(report.parent, tmp_path / "bare")
    shutil.rmtree(bare / "figures")
    control = tmp_path / "bare.png"
    chromium(*flags, f"--screenshot={control}", (bare / page.name).as_uri(), cwd=tmp_path)
    without_figures = _figure_pixels(control)

    for name in FIGURE_COLORS:
        assert with_figures[name] > 500, (with_figures, without_figures)
        assert without_figures[name] < 50, (with_figures, without_figures)


def test_a_probe_setting_shared_by_every_run_is_listed() -> None:
    from biaslab.experiments.base import covers

    spec = EXPERIMENT.sweep("tiny").expand()[0]
    spec = spec.model_copy(update={"probes": ("effective_dim",), "probe_options": spec.probe_options.model_copy(update={"n_eff_z": 0.5})})
    EXPERIMENT.check(spec)  # accepted: the run reads it...
    assert covers(EXPERIMENT.all_reads(spec), "probe_options.n_eff_z")  # ...so the shared settings line shows it
