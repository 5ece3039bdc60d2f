"""Sweeps: a base `RunSpec` and a grid over dotted paths, and unions of such grids; `--set` applied to a sweep.

Contract: `Sweep.expand` gives every run, in grid order (the last axis varies fastest), then those of each part of
`also`, every one validated. `Sweep.override` applies `--set` values: a value on a swept path becomes (or replaces)
that axis, a field inside an axis of whole sections is set in each of its values, and on a union (`also`) a value
goes only to the parts whose runs can take it. Overriding validates every resulting run at once, not mid-sweep.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from pydantic import model_validator

from biaslab.spec.overrides import check_path, with_values
from biaslab.spec.rules import SpecError, _Frozen
from biaslab.spec.run import RunSpec

def _set_inside(option: Any, subpath: str, value: Any, path: str) -> Any:
    """A copy of a grid value (a section as a dict) with `subpath` set."""
    if not isinstance(option, dict):
        raise SpecError(f"{path}: cannot set a field inside the grid axis value {option!r}")
    option = json.loads(json.dumps(option))
    node = option
    *parents, leaf = subpath.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return option


class Sweep(_Frozen):
    """A base spec and a grid: every combination of the grid's values is one run.

    `also` adds further sweeps of the same experiment whose runs join this one's,
    for experiments whose runs are not one grid product (a union of grids).
    """

    base: RunSpec
    grid: dict[str, tuple[Any, ...]] = {}
    also: tuple["Sweep", ...] = ()

    @model_validator(mode="after")
    def _grid_paths_exist(self) -> "Sweep":
        for path, values in self.grid.items():
            check_path(path)
            if len(values) == 0:
                raise ValueError(f"grid axis {path} has no values")
        for part in self.also:
            if part.base.experiment != self.base.experiment:
                raise ValueError(f"also: every part must be of experiment {self.base.experiment!r}, got {part.base.experiment!r}")
        return self

    def expand(self) -> list[RunSpec]:
        """All runs, in grid order (the last axis varies fastest), then those of each part of `also`."""
        paths = list(self.grid)
        combos = itertools.product(*(self.grid[p] for p in paths))
        own = [with_values(self.base, dict(zip(paths, combo))) for combo in combos]
        return own + [spec for part in self.also for spec in part.expand()]

    def swept_paths(self) -> set[str]:
        """The grid axes of this sweep and of every part of `also`."""
        return set(self.grid).union(*(part.swept_paths() for part in self.also))

    def override(self, values: dict[str, Any], swept: set[str] | None = None) -> "Sweep":
        """Apply --set values: a path on the grid replaces that axis (a list sets several values).

        With parts (`also`): a path swept by any part is an axis in every part
        that takes it (where it was fixed, the values become its axis); a part
        whose base spec lacks the path's section (no `problem`, say), or whose
        runs do not read the field (a forest has no ridge), leaves it out; a
        value that no part can take is an error naming the section or field.
        """
        swept = self.swept_paths() if swept is None else swept
        if not self.also:
            return self._override_one(values, swept)
        own = self.model_copy(update={"also": ()})
        parts = (own, *self.also)
        for path, value in values.items():
            if not any(part._takes(path, value, swept) for part in parts):
                own._override_one({path: value}, swept)  # raises the error that names the unset section or the field
        chosen = [{path: value for path, value in values.items() if part._takes(path, value, swept)} for part in parts]
        done = [own._override_one(chosen[0], swept)] + [part.override(mine, swept) for part, mine in zip(self.also, chosen[1:])]
        return done[0].model_copy(update={"also": tuple(done[1:])})

    def _takes(self, path: str, value: Any = None, swept: set[str] | None = None) -> bool:
        """Whether every section on `path` is set in this sweep's base spec, or the path is inside a grid axis; and,
        given the value, whether this part's runs read the field (an estimator kind that has no ridge does not)."""
        if value is not None and self._takes(path):
            try:
                self._override_one({path: value}, swept if swept is not None else self.swept_paths())
            except SpecError as error:
                return not str(error).startswith(f"{path}: read only when")
            return True
        check_path(path)
        if any(path == axis or path.startswith(axis + ".") for axis in self.grid):
            return True
        node: Any = self.base.model_dump(mode="json")
        for part in path.split(".")[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
            if node is None:
                return False
        return True

    def _override_one(self, values: dict[str, Any], swept: set[str]) -> "Sweep":
        grid = dict(self.grid)
        fixed = {}
        for path, value in values.items():
            check_path(path)
            axis = next((a for a in grid if path.startswith(a + ".")), None)
            if path in grid or (path in swept and axis is None):
                if isinstance(value, list) and not value:
                    raise SpecError(f"{path}: a grid axis needs at least one value, got []")
                grid[path] = tuple(value) if isinstance(value, list) else (value,)
            elif axis is not None:  # a field inside a grid axis of whole sections: set it in every value of the axis
                grid[axis] = tuple(_set_inside(option, path[len(axis) + 1 :], value, path) for option in grid[axis])
            else:
                fixed[path] = value
        sweep = Sweep(base=with_values(self.base, fixed), grid=grid)
        sweep.expand()  # validate every combination now, not mid-sweep
        return sweep
