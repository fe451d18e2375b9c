"""How ``zarrgeno stats`` prints rates: a rate of exactly 0 is a number, only an undefined
one (no calls) is ``n/a``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from test_stats_reference import write_gt
from typer.testing import CliRunner

from zarrgeno.cli import app


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
