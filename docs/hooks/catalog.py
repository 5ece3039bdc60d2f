"""MkDocs hook: one page per catalog experiment, generated at build time from the code and the README.

Each page has the experiment's title, summary, reference and presets (from its class), the module docstring
(the figure, the setup, what was reduced from the paper), its README catalog row (what it shows, time at
`quick`) and its measured-at-`quick` verdict paragraph from the README. Nothing is copied by hand, so the
pages cannot drift from the code or the README.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]


def _catalog():
    sys.path.insert(0, str(ROOT / "src"))
    from biaslab.experiments import CATALOG

    return [(name, CATALOG.get(name)) for name in CATALOG]


def _readme_row(readme: str, name: str) -> list[str]:
    for line in readme.splitlines():
        if line.startswith(f"| `{name}` |"):
            return [cell.strip() for cell in line.strip().strip("|").split(" | ")]
    return []


def _readme_verdict(readme: str, name: str) -> str:
    """The bullet of the README's 'Measured at quick' list that reports this experiment."""
    section = readme.split("Measured at `quick`", 1)[-1].split("\n## ", 1)[0]
    bullets = re.split(r"\n(?=- `)", section)
    for bullet in bullets:
        if re.search(rf"`{re.escape(name)}`( \(|:)", bullet):
            return re.sub(r"\s*\n\s*", " ", bullet.strip().removeprefix("- "))
    return "Not measured at `quick` yet."


def _page(name: str, experiment, readme: str) -> str:
    module = sys.modules[type(experiment).__module__]
    row = _readme_row(readme, name)
    quick_time = row[3] if len(row) > 3 else "not stated"
    docstring = (module.__doc__ or "").strip()
    return "\n".join([
        f"# {name}", "", f"**{experiment.title}.** {experiment.summary}", "",
        f"*Reference:* {experiment.reference}", "",
        f"*Presets:* {', '.join(f'`{p}`' for p in experiment.presets)} (default `{experiment.default_preset}`); time at `quick` on 2 CPU cores: {quick_time}.", "",
        "## Measured at `quick`", "", _readme_verdict(readme, name), "",
        "## The figure, the setup and what was reduced", "", "```text", docstring, "```", "",
        "## Run it", "", "```bash",
        f"biaslab config {name} --preset tiny --fields   # what you can set",
        f"biaslab run {name} --preset tiny               # seconds; drop --preset for quick", "```", "",
    ])  # fmt: skip


def on_config(config, **kwargs):
    """Add the Catalog section to the navigation, one entry per experiment."""
    config["nav"].append({"Catalog": [{name: f"catalog/{name}.md"} for name, _ in _catalog()]})
    return config


def on_files(files, config, **kwargs):
    """Generate the catalog pages."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name, experiment in _catalog():
        files.append(File.generated(config, f"catalog/{name}.md", content=_page(name, experiment, readme)))
    return files
