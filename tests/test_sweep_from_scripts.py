"""`run_sweep` from a script read from stdin or a script without a main guard: the runs happen, in this process.

Worker processes are spawned; a spawned worker imports the parent's
`__main__` from its file first. From `python -` there is no file, and a
script without `if __name__ == "__main__":` would start the sweep again in
every worker: either way every run used to be recorded as `failed`. These
tests run real Python subprocesses at tiny scale and ask for worker processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import biaslab
from biaslab.sweep import _guarded, spawn_problem

SWEEP = textwrap.dedent(
    """
    import json, sys
    from biaslab.experiments import CATALOG
    from biaslab.store import Store
    from biaslab.sweep import run_sweep

    sweep = CATALOG.get("width-sweep").sweep("tiny")
    outcome = run_sweep(sweep, Store(sys.argv[1]), "tiny", executor="processes", workers=2)
    print(json.dumps({"executor": outcome.executor, "statuses": [r.status for r in outcome.records], "runs": len(sweep.expand())}))
    """
)


def run_python(argv: list[str], tmp_path: Path, stdin: str | None = None) -> tuple[dict, str]:
    source = str(Path(biaslab.__file__).resolve().parents[1])  # this biaslab, wherever the subprocess starts
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([source, os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, *argv], input=stdin, capture_output=True, text=True, timeout=280, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


def assert_ran_here_with_one_warning(outcome: dict, stderr: str, why: str) -> None:
    assert outcome["statuses"] == ["ok"] * outcome["runs"] and outcome["runs"] >= 2, outcome
    assert outcome["executor"].startswith("in-process"), outcome
    warnings = [line for line in stderr.splitlines() if "SweepWarning" in line]
    assert len(warnings) == 1, stderr
    assert "worker processes cannot start here" in warnings[0] and why in warnings[0], warnings[0]
    assert "Traceback" not in stderr


@pytest.mark.slow
def test_a_sweep_from_python_stdin_runs_in_process_with_a_warning(tmp_path: Path) -> None:
    outcome, stderr = run_python(["-", str(tmp_path / "store")], tmp_path, stdin=SWEEP)
    assert_ran_here_with_one_warning(outcome, stderr, "'<stdin>'")


@pytest.mark.slow
def test_a_sweep_from_a_script_without_a_main_guard_runs_in_process_with_a_warning(tmp_path: Path) -> None:
    script = tmp_path / "unguarded.py"
    script.write_text(SWEEP, encoding="utf-8")
    outcome, stderr = run_python([str(script), str(tmp_path / "store")], tmp_path)
    assert_ran_here_with_one_warning(outcome, stderr, "if __name__")


def test_guarded_lines_are_those_under_the_main_test(tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text(
        "import os\n"  # 1
        "def main():\n"  # 2
        "    return 1\n"  # 3
        "main()\n"  # 4
        "if __name__ == '__main__':\n"  # 5
        "    main()\n"  # 6
        "    x = [\n"  # 7
        "        main()]\n"  # 8
        "if '__main__' == __name__:\n"  # 9
        "    main()\n"  # 10
        "if __name__ != '__main__':\n"  # 11
        "    main()\n",  # 12
        encoding="utf-8",
    )
    assert [line for line in range(1, 13) if _guarded(script, line)] == [6, 7, 8, 10]


def test_pytest_itself_is_a_place_workers_can_start_from() -> None:
    assert spawn_problem([]) is None


def test_an_experiment_defined_in_main_keeps_the_sweep_in_process(monkeypatch) -> None:
    from biaslab.experiments import CATALOG, Experiment
    from biaslab.spec import RunSpec

    notebook_experiment = type("NotebookExperiment", (Experiment,), {"__module__": "__main__", "name": "from-a-notebook"})
    monkeypatch.setitem(CATALOG._items, "from-a-notebook", notebook_experiment())
    problem = spawn_problem([[RunSpec(experiment="from-a-notebook")]])
    assert problem is not None and "'from-a-notebook' is defined in __main__" in problem
    assert spawn_problem([[RunSpec(experiment="width-sweep")]]) is None
