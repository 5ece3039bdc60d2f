"""The `Card`: sections of named measures with standard errors, what was measured, and how to read it.

A card is a mapping of section names to `{measure: value}` rows (`card["curvature"]["hessian_top"]`),
with `card.estimate(section, key)` giving (value, standard error) where the probe
estimated one. `to_json()` is the machine-readable form; `to_html(path)` writes
the page (figures as files beside it); in a notebook `_repr_html_` shows the page
inline with its figures embedded.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure


@dataclass(eq=False)
class Card(Mapping):
    source: dict[str, Any]
    sections: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    figures: dict[str, Figure] = field(default_factory=dict)
    arrays: dict[str, list[float]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # shown first: the card may not describe the model's own data
    data_note: str = ""  # in words: which data and split the numbers are about
    subject: dict[str, Any] = field(default_factory=dict)  # parameters, layers, weights hash, data sizes, subset size
    options: dict[str, Any] = field(default_factory=dict)  # the probe settings used
    skipped: list[str] = field(default_factory=list)  # sections not run (--sections / --skip)
    plan: dict[str, Any] = field(default_factory=dict)  # estimated seconds per section and the time budget, when planned

    def __getitem__(self, section: str) -> dict[str, float]:
        return self.sections[section]

    def __iter__(self) -> Iterator[str]:
        return iter(self.sections)

    def __len__(self) -> int:
        return len(self.sections)

    def estimate(self, section: str, key: str) -> tuple[float, float]:
        """(value, standard error); the error is 0 for a measure computed exactly and nan when none was estimated."""
        row = self.sections[section]
        se = row.get(f"{key}_se")
        return float(row[key]), float(se) if se is not None else math.nan

    def to_json(self) -> dict[str, Any]:
        clean = {s: {k: _finite_or_text(v) for k, v in row.items()} for s, row in self.sections.items()}
        return {
            "source": self.source, "data": self.data_note, "warnings": self.warnings, "subject": self.subject,
            "options": self.options, "skipped": self.skipped, "plan": self.plan,
            "sections": clean, "notes": self.notes, "seconds": self.seconds, "arrays": self.arrays,
        }  # fmt: skip

    def to_html(self, path: str | Path) -> Path:
        """Write the page to `path` (a .html file; figures go to `figures/` beside it) and card.json; return the page."""
        from biaslab.card.page import write_card

        path = Path(path)
        if path.suffix.lower() != ".html":
            return write_card(self, path)
        return write_card(self, path.parent, page_name=path.name)

    def _repr_html_(self) -> str:
        from biaslab.card.page import card_html

        return card_html(self, inline_figures=True)


def _finite_or_text(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)
