"""How fast the CLI answers: `--help`, `list`, `show` and `export` on a small store, median of --repeats runs.

    python benchmarks/cli.py [--repeats 5] [--out benchmarks/results]

Each command runs as a fresh `python -m biaslab.cli ...` process (what a user waits for, imports included).
The store is made first with `biaslab run min-norm --preset tiny` (not timed). Goal (issue 20): under 1 s each
on a quiet machine. Prints the median and the spread (min-max) and writes cli.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(args: list[str], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "biaslab.cli", *args], check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = str(Path(tmp) / "store")
        subprocess.run([sys.executable, "-m", "biaslab.cli", "run", "min-norm", "--preset", "tiny", "--store", store, "--no-report"], check=True, capture_output=True)
        run_id = json.loads(subprocess.run([sys.executable, "-c", f"from biaslab import Store; import json; print(json.dumps(Store({store!r}).records()[0].spec_id))"],
                                           check=True, capture_output=True, text=True).stdout)  # fmt: skip
        commands = {"--help": ["--help"], "list": ["list"], "show": ["show", run_id, "--store", store],
                    "export": ["export", str(Path(tmp) / "runs.csv"), "--store", store]}  # fmt: skip
        results = {name: timed(argv, args.repeats) for name, argv in commands.items()}
    for name, times in results.items():
        print(f"biaslab {name:<8} median {statistics.median(times):5.2f} s  (min {min(times):.2f}, max {max(times):.2f}; goal < 1 s)")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cli.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
