"""``--max-mem`` sizes: read as dask's ``parse_bytes`` reads them, without importing dask."""

from __future__ import annotations

import subprocess
import sys

import pytest
from dask.utils import parse_bytes
from hypothesis import given
from hypothesis import strategies as st

from zarrgeno.errors import UsageError
from zarrgeno.sizes import _UNITS, parse_size

UNITS = [*sorted(_UNITS), "KB", "Mb", "GiB", "TIB", "pB", "kib", "B"]


@given(
    number=st.one_of(
        st.integers(1, 10**6).map(str), st.decimals("0.01", "9999", places=2).map(str)
    ),
    space=st.sampled_from(["", " ", "  "]),
    unit=st.sampled_from(UNITS),
)
def test_every_unit_reads_as_dasks_parse_bytes(number: str, space: str, unit: str) -> None:
    text = f"{number}{space}{unit}"
    expected = parse_bytes(text)
    if expected <= 0:
        with pytest.raises(UsageError):
            parse_size(text)
    else:
        assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["4XB", "1e9", "GB", "-1GB", "4 G B", "", "0", "0.1B", "4GB2"])
def test_what_is_not_a_size_is_refused(text: str) -> None:
    with pytest.raises(UsageError):
        parse_size(text)


def test_parsing_a_size_does_not_import_dask() -> None:
    code = (
        "import sys; from zarrgeno.sizes import parse_size; parse_size('4GiB');"
        " print('dask' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
