"""Snapshot every catalog experiment's `tiny` records, or compare two snapshots: the check that a refactor kept the numbers.

    PYTHONPATH=src python3 scripts/record_snapshot.py dump OUT.json [--population] [NAME ...]
    python3 scripts/record_snapshot.py compare BEFORE.json AFTER.json

`dump` runs each experiment's tiny sweep in-process (with `--population`, the
"population" executor, so poolable runs train together) into a fresh temporary
store and writes {spec_id: [experiment, status, final, curves, arrays, stopped]}
and, per experiment, {"verdict:NAME": [experiment, passed, numbers, reason,
notes]} from its claim check; env (versions, host, timing) and seconds are left
out because they are not results. Floats are written with `repr`, so `compare` checks them for exact
equality (NaN equal to NaN), which holds on one CPU and torch version.
"""

from __future__ import annotations

import json
import sys
import tempfile
from typing import Any


def _exact(value: Any) -> Any:
    """Floats as their repr (exact, NaN-safe); numpy scalars as Python ones; containers recursively."""
    if hasattr(value, "item") and not isinstance(value, (dict, list, tuple)):
        value = value.item()  # np.float64, np.bool_ -> float, bool
    if isinstance(value, float):
        return repr(float(value))
    if isinstance(value, dict):
        return {k: _exact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_exact(v) for v in value]
    return value


def dump(path: str, names: list[str], executor: str = "inprocess") -> None:
    """Run the tiny sweeps of `names` (all experiments when empty) and write their records' numbers to `path`."""
    from biaslab.experiments import CATALOG
    from biaslab.store import Store
    from biaslab.sweep import run_sweep

    snapshot: dict[str, Any] = {}
    for name in names or CATALOG.names():
        with tempfile.TemporaryDirectory() as root:
            outcome = run_sweep(CATALOG.get(name).sweep("tiny"), Store(root), "tiny", executor=executor)
        for r in outcome.records:
            snapshot[r.spec_id] = _exact([name, r.status, r.final, r.curves, r.arrays, r.env.get("stopped")])
        verdict = CATALOG.get(name).claim(outcome.records)
        snapshot[f"verdict:{name}"] = _exact([name, verdict.passed, verdict.numbers, verdict.reason, list(verdict.notes)])
        print(name, len(outcome.records), flush=True)
    with open(path, "w") as f:
        json.dump(snapshot, f, sort_keys=True)


def compare(before_path: str, after_path: str) -> int:
    """Print every spec_id whose numbers differ; 0 when all are equal."""
    with open(before_path) as f:
        before = json.load(f)
    with open(after_path) as f:
        after = json.load(f)
    differing = sorted(k for k in before.keys() & after.keys() if before[k] != after[k])
    missing, extra = sorted(before.keys() - after.keys()), sorted(after.keys() - before.keys())
    for key in differing:
        print("differs:", before[key][0], key)
    for key in missing:
        print("missing after:", before[key][0], key)
    for key in extra:
        print("new after:", after[key][0], key)
    print(f"{len(before)} before, {len(after)} after, {len(differing)} differ, {len(missing)} missing, {len(extra)} new")
    return 1 if differing or missing or extra else 0


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "dump":
        population = "--population" in sys.argv[3:]
        dump(sys.argv[2], [a for a in sys.argv[3:] if a != "--population"], "population" if population else "inprocess")
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        sys.exit(compare(sys.argv[2], sys.argv[3]))
    else:
        sys.exit(__doc__)
