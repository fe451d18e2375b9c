"""`pytest --reliability-report` (conftest.py) counts hostile and fault cases by outcome."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_report_counts_each_case_by_its_outcome(pytester: pytest.Pytester) -> None:
    pytester.makeconftest((ROOT / "conftest.py").read_text())
    pytester.makeini("[pytest]\nmarkers =\n    hostile: bad input\n    fault: fault injected\n")
    pytester.makepyfile(
        test_cases="""
        import pytest

        @pytest.mark.hostile
        @pytest.mark.parametrize("case", ["a", "b", "c"])
        def test_refused(case):
            assert case != "c"

        @pytest.mark.fault
        def test_survived():
            pass

        @pytest.mark.fault
        def test_not_here():
            pytest.skip("no tmpfs")

        def test_unmarked():
            pass
        """
    )
    result = pytester.runpytest_inprocess("--reliability-report", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4, failed=1, skipped=1)
    result.stdout.fnmatch_lines(
        [
            "*hostile *3 cases: 2 passed, 1 failed, 0 skipped*",
            "*fault *2 cases: 1 passed, 0 failed, 1 skipped*",
        ]
    )


def test_without_the_option_there_is_no_report(pytester: pytest.Pytester) -> None:
    pytester.makeconftest((ROOT / "conftest.py").read_text())
    pytester.makepyfile(test_one="def test_one():\n    pass\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "reliability figures" not in result.stdout.str()
