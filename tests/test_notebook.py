"""The example notebook runs top to bottom in a real Jupyter kernel, and shows verdicts, figures and the card inline."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"


@pytest.mark.slow
def test_the_example_notebook_executes_and_renders_results(tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    html_outputs = [o["data"]["text/html"] for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", []) if "text/html" in o.get("data", {})]
    assert any("<b style='color:#2e7d32'>PASS</b>" in h for h in html_outputs)  # the min-norm verdict, inline
    assert any("Generalization report card" in h and "data:image/png;base64," in h for h in html_outputs)  # the card with its figures
    assert any("min-norm" in h and "<table>" in h for h in html_outputs)  # the catalog table
    assert (tmp_path / "biaslab-runs" / "runs.sqlite").exists()
