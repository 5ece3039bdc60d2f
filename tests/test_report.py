"""Tests for biaslab.report: the HTML page, its figures, and how a real browser renders it.

The tiny width sweep is run once for the module, in-process, into a store in a
temporary directory; every test reads that store (tests that write a report
write it to their own directory).
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from biaslab.cli import main
from biaslab.experiments import CATALOG
from biaslab.report import write_report
from biaslab.store import RunRecord, Store, SweepEntry
from biaslab.sweep import run_sweep

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EXPERIMENT = CATALOG.get("width-sweep")
CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no `chromium` on PATH (Debian: apt-get install chromium)")
# matplotlib's default first two line colors, tab:blue and tab:orange: the figures' curves
FIGURE_COLORS = {"tab:blue": (31, 119, 180), "tab:orange": (255, 127, 14)}


class _Page(HTMLParser):
    """The parts of a page these tests look at: images, visible text (not style or script), script elements."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str | None]] = []
        self.text: list[str] = []
        self.scripts = 0
        self._hidden = 0

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs))
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


def distinct_colors(image: Image.Image) -> int:
    pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    return len(np.unique(pixels, axis=0))


def parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    return parser


@pytest.fixture(scope="module")
def finished_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """The tiny width sweep, run to the end in-process (with one torch thread: on a loaded machine, torch's
    spinning worker threads can make this tiny sweep dozens of times slower)."""
    import torch

    store = Store(tmp_path_factory.mktemp("report") / "store")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        outcome = run_sweep(EXPERIMENT.sweep("tiny"), store, preset="tiny", executor="inprocess")
    finally:
        torch.set_num_threads(threads)
    assert len(outcome.records) == 6
    assert all(r.status == "ok" for r in outcome.records), [(r.status, r.error) for r in outcome.records]
    return store


@pytest.fixture(scope="module")
def report(finished_store: Store, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """index.html of the finished store, written once for the module."""
    return write_report(finished_store, tmp_path_factory.mktemp("report-out") / "site")


# ----------------------------------------------------------------------------- the page


def test_index_names_the_experiment_verdict_and_reference(report: Path, finished_store: Store) -> None:
    assert report.name == "index.html" and report.is_file()
    page = report.read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    text = " ".join(parse(page).text)
    assert "width-sweep" in text and "(tiny)" in text
    assert EXPERIMENT.title in text
    assert EXPERIMENT.reference in text  # as text...
    assert html.escape(EXPERIMENT.reference) in page  # ...escaped in the source ('&' in "Tomioka & Srebro")
    verdict = EXPERIMENT.claim(finished_store.records())
    assert f"<div class='verdict {verdict.label}'><b>{verdict.label}</b>" in page
    assert ("PASS" in text) or ("FAIL" in text)
    assert html.escape(verdict.claim) in page
    assert "biaslab run width-sweep --preset tiny" in text
    assert "6 of 6 runs stored" in text
    assert "Run table (6 runs)" in text
    for record in finished_store.records():
        assert record.spec_id in text
    assert str(finished_store.path.resolve()) in text


def test_images_are_valid_png_with_svg_beside_them(report: Path) -> None:
    images = parse(report.read_text(encoding="utf-8")).images
    assert len(images) == 2, images
    assert sorted(str(i["alt"]) for i in images) == ["width-sweep: errors", "width-sweep: norms"]
    for image in images:
        source = str(image["src"])
        assert not Path(source).is_absolute() and source.startswith("figures/")  # the page can be moved as a directory
        png = report.parent / source
        assert png.suffix == ".png" and png.is_file()
        data = png.read_bytes()
        assert data.startswith(PNG_MAGIC), source
        with Image.open(png) as opened:
            opened.verify()
        with Image.open(png) as opened:
            width, height = opened.size
            assert width > 300 and height > 200
            assert distinct_colors(opened) > 50  # drawn, not a blank canvas
        svg = png.with_suffix(".svg")
        assert svg.is_file() and svg.stat().st_size > 1000, svg
        root = ET.parse(svg).getroot()
        assert root.tag.endswith("svg"), root.tag
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert sorted(p.name for p in (report.parent / "figures").iterdir()) == sorted(
        f"{Path(str(i['src'])).stem}{ext}" for i in images for ext in (".png", ".svg")
    )


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
    assert len(parse(again.read_text(encoding="utf-8")).images) == 2


def _tiny_spec(index: int = 0) -> dict:
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
    page = write_report(store, tmp_path / "site").read_text(encoding="utf-8")
    text = " ".join(parse(page).text)
    assert "no verdict" in text
    assert "PASS" not in text and "FAIL" not in text
    assert "<img" not in page
    assert "1 of 6 runs stored" in text
    assert spec.spec_id in text and "failed" in text
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
    page = write_report(store, tmp_path / "site").read_text(encoding="utf-8")
    assert "no verdict" in page and "<img" not in page
    assert "2 of 6 runs stored" in page and page.count("<td>diverged</td>") == 2


def test_empty_store_and_unknown_experiment(tmp_path: Path) -> None:
    empty = Store(tmp_path / "empty")
    assert "no sweeps yet" in write_report(empty).read_text(encoding="utf-8")

    store = Store(tmp_path / "store")
    spec = _tiny_spec().model_copy(update={"experiment": "not-in-catalog"})
    store.put_sweep(SweepEntry("not-in-catalog", "custom", {}, (spec.spec_id,)))
    store.put(RunRecord(spec=spec.model_dump(mode="json"), spec_id=spec.spec_id, status="ok", final={"train_error": 0.0, "test_error": 0.5}))
    page = write_report(store).read_text(encoding="utf-8")
    assert "not-in-catalog" in page and spec.spec_id in page
    assert "<img" not in page


def test_user_text_in_the_page_is_escaped(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    hostile = "<script>alert('x')</script>"
    spec = _tiny_spec()
    store.put_sweep(SweepEntry("width-sweep", hostile, {"data.root": hostile}, (spec.spec_id,)))
    store.put(RunRecord(spec=spec.model_dump(mode="json"), spec_id=spec.spec_id, status="failed", error=hostile))
    page = write_report(store).read_text(encoding="utf-8")
    parsed = parse(page)
    assert parsed.scripts == 1 and page.count("<script") == 1 and "<script id='biaslab-table-script'>" in page  # only the table's own
    assert "<script>" not in page and html.escape(hostile) in page
    assert hostile in " ".join(parsed.text)


# ----------------------------------------------------------------------------- the command


def test_cli_report_prints_the_path(finished_store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["report", "--store", str(finished_store.path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == str(out / "index.html")
    assert Path(printed).is_file()
    assert len(parse(Path(printed).read_text(encoding="utf-8")).images) == 2


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


# ----------------------------------------------------------------------------- in a real browser


def chromium(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Headless Chromium with a throwaway profile; --no-sandbox because tests may run as root (CI containers)."""
    assert CHROMIUM is not None
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--user-data-dir={cwd / 'profile'}", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@needs_chromium
def test_chromium_dom_has_the_images(report: Path, tmp_path: Path) -> None:
    dom = chromium("--virtual-time-budget=5000", "--dump-dom", report.as_uri(), cwd=tmp_path).stdout
    rendered = parse(dom)
    assert rendered.images, dom[:2000]
    assert [i["src"] for i in rendered.images] == [i["src"] for i in parse(report.read_text(encoding="utf-8")).images]
    assert "biaslab report" in " ".join(rendered.text)


_PROBE = """<!doctype html><html><body><pre id="result">not loaded</pre>
<iframe id="report" src="{src}" width="1200" height="2000"></iframe>
<script>
document.getElementById('report').addEventListener('load', function () {{
  var out = document.getElementById('result');
  try {{
    var images = this.contentDocument.images, lines = ['images ' + images.length];
    for (var i = 0; i < images.length; i++) {{
      var im = images[i];
      lines.push(im.getAttribute('src') + ' ' + (im.complete ? 'complete' : 'incomplete') + ' ' + im.naturalWidth + ' ' + im.naturalHeight);
    }}
    out.textContent = lines.join('\\n');
  }} catch (error) {{ out.textContent = 'error ' + error; }}
}});
</script></body></html>"""


@needs_chromium
def test_chromium_loads_and_decodes_every_image(report: Path, tmp_path: Path) -> None:
    """Did the browser really load each figure? A probe page in tmp_path frames the report; once the frame's
    `load` event has fired (which waits for its images), a script writes each <img>'s `complete`, `naturalWidth`
    and `naturalHeight` into the probe page, which --dump-dom prints. A missing or undecodable file has
    naturalWidth 0. --allow-file-access-from-files lets the probe read the file:// frame's document."""
    probe = tmp_path / "probe.html"
    probe.write_text(_PROBE.format(src=report.as_uri()), encoding="utf-8")
    dom = chromium("--allow-file-access-from-files", "--virtual-time-budget=10000", "--dump-dom", probe.as_uri(), cwd=tmp_path).stdout
    start = dom.index('id="result">') + len('id="result">')
    lines = html.unescape(dom[start : dom.index("</pre>", start)]).splitlines()
    sources = [str(i["src"]) for i in parse(report.read_text(encoding="utf-8")).images]
    assert lines[0] == f"images {len(sources)}", lines
    for source, line in zip(sources, lines[1:]):
        src, state, width, height = line.split()
        assert src == source and state == "complete", line
        with Image.open(report.parent / source) as png:
            assert (int(width), int(height)) == png.size, line  # decoded at the file's own size


def _figure_pixels(screenshot: Path) -> dict[str, int]:
    """How many pixels are close to each of the figures' line colors."""
    with Image.open(screenshot) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    return {name: int((np.abs(pixels - np.array(rgb)).max(axis=2) < 40).sum()) for name, rgb in FIGURE_COLORS.items()}


@needs_chromium
def test_chromium_screenshot_shows_the_figures(report: Path, tmp_path: Path) -> None:
    """The rendered page, as pixels, shows the figures: a 1200x2000 screenshot has hundreds of pixels in
    matplotlib's blue and orange (the train/test curves; the page's own CSS has neither color), while the same
    page with its figures deleted has next to none. The control shows the check is about the images."""
    flags = ["--hide-scrollbars", "--run-all-compositor-stages-before-draw", "--virtual-time-budget=5000", "--window-size=1200,2000"]
    shot = tmp_path / "report.png"
    chromium(*flags, f"--screenshot={shot}", report.as_uri(), cwd=tmp_path)
    assert shot.read_bytes().startswith(PNG_MAGIC)
    with Image.open(shot) as image:
        assert image.size == (1200, 2000)
        assert distinct_colors(image) > 500  # text and figures, not a blank page
    with_figures = _figure_pixels(shot)

    bare = shutil.copytree(report.parent, tmp_path / "bare")
    shutil.rmtree(bare / "figures")
    control = tmp_path / "bare.png"
    chromium(*flags, f"--screenshot={control}", (bare / "index.html").as_uri(), cwd=tmp_path)
    without_figures = _figure_pixels(control)

    for name in FIGURE_COLORS:
        assert with_figures[name] > 500, (with_figures, without_figures)
        assert without_figures[name] < 50, (with_figures, without_figures)


@needs_chromium
def test_the_run_table_sorts_in_a_real_browser(report: Path, tmp_path: Path) -> None:
    """`#sort=test_error` runs the page's own sorting code in Chromium: the rows come back in test-error order."""
    dom = chromium("--virtual-time-budget=5000", "--dump-dom", report.as_uri() + "#sort=test_error", cwd=tmp_path).stdout
    table = dom[dom.index("<table class=\"runs\""):]
    table = table[: table.index("</table>")]
    header = re.findall(r"data-column=\"([^\"]+)\"", table)
    column = header.index("test_error")
    rows = re.findall(r"<tr>(.*?)</tr>", table[table.index("<tbody>"):], flags=re.S)
    values = [float(re.findall(r"data-value=\"([^\"]+)\"|<td>", row)[column] or "nan") for row in rows]
    assert len(values) > 2 and values == sorted(values) and 'data-order="asc"' in table
