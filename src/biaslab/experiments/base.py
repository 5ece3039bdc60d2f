"""What every catalog entry provides, and the catalog itself.

An experiment is a set of presets (functions returning a `Sweep`), a runner
that turns one `RunSpec` into a `RunRecord`, figures drawn from records, and a
claim check that computes a `Verdict` from the records' numbers.
"""

from __future__ import annotations

from collections.abc import Callable

from matplotlib.figure import Figure

from biaslab.claims import Verdict
from biaslab.registry import Registry
from biaslab.spec import RunSpec, SpecError, Sweep
from biaslab.store import RunRecord


class Experiment:
    """Base class of a catalog entry; subclasses fill in the class attributes and methods."""

    name: str = ""
    title: str = ""  # what it shows, in a short line
    reference: str = ""  # the paper it reproduces
    summary: str = ""  # two or three sentences for the report
    presets: dict[str, Callable[[], Sweep]] = {}
    default_preset = "quick"
    trains_populations = False  # True when `run` is the standard supervised run, so specs can share a population

    def sweep(self, preset: str | None = None) -> Sweep:
        """The sweep of a preset; an unknown preset is a SpecError naming the allowed ones."""
        preset = preset or self.default_preset
        if preset not in self.presets:
            raise SpecError(f"preset: {self.name} has no preset {preset!r}; allowed: {', '.join(self.presets)}")
        return self.presets[preset]()

    def run(self, spec: RunSpec) -> RunRecord:
        """Train and measure one run. Never raises for a run that fails: it returns a 'failed' record."""
        raise NotImplementedError

    def figures(self, records: list[RunRecord]) -> dict[str, Figure]:
        """Named figures from the records (finished runs only are drawn)."""
        raise NotImplementedError

    def claim(self, records: list[RunRecord]) -> Verdict:
        """The published finding as a test on the records' numbers."""
        raise NotImplementedError


CATALOG: Registry[Experiment] = Registry("experiment")
