"""The documentation site builds with warnings as errors, with a page for every catalog experiment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mkdocs")
pytest.importorskip("mkdocstrings")

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_docs_build_strictly_with_a_page_per_experiment(tmp_path):
    from biaslab.experiments import CATALOG

    env = os.environ | {"NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    for name in CATALOG:
        page = (tmp_path / "site" / "catalog" / name / "index.html").read_text(encoding="utf-8")
        assert "Reference:</em>" in page and f"<h1 id=\"{name}\">{name}" in page
        assert "Measured at" in page
    api = (tmp_path / "site" / "api" / "index.html").read_text(encoding="utf-8")
    assert "biaslab.api.run" in api and "biaslab.card.probe" in api
    assert not (tmp_path / "site" / "hooks").exists()
