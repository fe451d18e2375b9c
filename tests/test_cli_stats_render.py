"""How ``zarrgeno stats`` prints its counts: a rate of exactly 0 is a number, only an
undefined one (no calls) is ``n/a``; a full-size contig's counts are whole on a terminal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_stats_reference import write_gt
from test_tables import ANSI, WIDTHS, assert_whole, stats_numbers
from typer.testing import CliRunner

from zarrgeno.cli import app
from zarrgeno.cli.stats import render_stats
from zarrgeno.stats.results import ContigStats, SampleCounts, StatsResult


def _rates(line: str) -> list[str]:
    """The missing rate and heterozygosity columns of a summary-table row."""
    return line.split()[-2:]


def test_a_total_rate_of_zero_prints_as_zero(tmp_path: Path) -> None:
    """Two contigs of hom-ref calls only: no missing call and no het, so both total rates
    are 0.0000 (they once printed n/a, 0 being falsy)."""
    store = tmp_path / "s.zarr"
    hom_ref = np.zeros((40, 3, 2), dtype="i1")
    write_gt(str(store), {"2L": hom_ref, "2R": hom_ref}, (20, 3))
    result = CliRunner().invoke(app, ["stats", str(store), "-b", "sequential"])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    total = next(line for line in lines if line.startswith("total "))
    assert _rates(total) == ["0.0000", "0.0000"]
    for contig in ("2L ", "2R "):
        assert _rates(next(line for line in lines if line.startswith(contig))) == [
            "0.0000",
            "0.0000",
        ]


def _full_size_result() -> StatsResult:
    """Counts as a full-size 2L (48,525,747 variants) and X of 81 samples give them: the
    widest numbers `stats` prints (hom-ref calls in the billions)."""
    rng = np.random.default_rng(1)
    names = tuple(f"AO{j:04d}-C" for j in range(81))
    contigs = []
    for contig, n in (("2L", 48_525_747), ("X", 24_393_108)):
        missing = rng.integers(n // 10, n // 3, 81)
        het = rng.integers(n // 40, n // 25, 81)
        counts = np.stack([missing, n - missing - het, het])
        samples = SampleCounts(names, n, counts)
        contigs.append(
            ContigStats(contig, f"{contig}/calldata/GT", 0, n, n // 3, n * 3 // 4, samples)
        )
    return StatsResult("data/bench/full", "threads", "tutorial", tuple(contigs), 812.5)


@pytest.mark.parametrize("width", WIDTHS)
def test_full_size_counts_are_whole_on_a_terminal(
    width: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The summary and per-sample tables of a full-size contig at 60, 80 and 120 columns:
    each count of --json whole (they showed `1,482,125,…` at 120 columns)."""
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setenv("COLUMNS", str(width))
    monkeypatch.setenv("NO_COLOR", "1")
    result = _full_size_result()
    render_stats(result, per_sample=True)
    text = ANSI.sub("", capsys.readouterr().out)
    expected = list(stats_numbers(result.to_dict(), per_sample=True))
    assert any(len(e) >= len("1,482,125,000") for e in expected)
    assert_whole(text, expected, width)
