"""claims.Checks: how a claim's parts become one verdict."""

from __future__ import annotations

import numpy as np

from biaslab.claims import Checks


def test_checks_pass_only_when_every_part_passes_and_the_reason_lists_what_decided_it():
    checks = Checks()
    assert checks.check(True, "(1) slope -1.0 vs predicted -1") is True
    assert checks.check(False, "(2) peak at 2n, need n") is False
    checks.fail("(3) no runs on the data axis")
    verdict = checks.verdict("a claim", {"slope": np.float64(-1.0), "runs": 3}, ["a note"])
    assert not verdict.passed
    assert verdict.reason == "FAIL: (2) peak at 2n, need n; (3) no runs on the data axis"  # failed parts only
    assert verdict.numbers == {"slope": -1.0, "runs": 3.0} and all(type(v) is float for v in verdict.numbers.values())
    assert verdict.notes == ("a note",)


def test_checks_that_all_pass_give_every_part_as_the_reason():
    checks = Checks()
    checks.check(True, "(1) holds")
    checks.check(True, "(2) holds too")
    verdict = checks.verdict("a claim", {})
    assert verdict.passed and verdict.reason == "(1) holds; (2) holds too" and verdict.notes == ()


def test_last_decade_reads_the_end_and_the_evaluation_nearest_a_tenth_of_it():
    from biaslab.claims import last_decade

    steps = [0, 1, 10, 30, 100, 300, 1000]
    assert last_decade(steps, [9, 8, 7, 6, 5, 4, 3]) == (1000.0, 3.0, 100.0, 5.0)
    assert last_decade([1, 2, 20], [1.0, 2.0, 3.0]) == (20.0, 3.0, 2.0, 2.0)  # log10 2 is the nearest to log10 20 - 1
