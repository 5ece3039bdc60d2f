"""Every benchmark script at least compiles: they run only by hand (never timed in tests), so a typo would otherwise wait."""

from __future__ import annotations

import py_compile
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_the_benchmark_compiles(script: Path) -> None:
    py_compile.compile(str(script), doraise=True)
