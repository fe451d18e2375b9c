"""Byte counts as users write and read them: ``--max-mem 4GB`` parsed, ``1.97 GB`` printed.

One unit system: decimal (SI) units, 1 MB = 1,000,000 bytes, in every table and message,
the units ``--max-mem`` reads. The one exception is zarr's own ``.info`` text, which
``zarrgeno info`` shows as zarr prints it (:func:`zarr_bytes`, binary units). Shared by
the rechunk planner, ``zarrgeno verify`` and the CLI; dask's parser (imported only when a
size is parsed) reads the units, after a check that the text is one number and one unit.
"""

from __future__ import annotations

import re

from zarrgeno.errors import UsageError

_SIZE = re.compile(r"^\s*\d+(\.\d*)?\s*[a-zA-Z]*\s*$")


def parse_size(text: str | int) -> int:
    """Parse ``4GB``, ``500MB``, ``2GiB`` or plain bytes into a byte count.

    >>> parse_size("4GB"), parse_size("2GiB"), parse_size("1000")
    (4000000000, 2147483648, 1000)
    """
    from dask.utils import parse_bytes

    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        try:
            if not _SIZE.match(str(text)):
                raise ValueError(text)
            value = int(parse_bytes(str(text).strip()))
        except (ValueError, TypeError, KeyError):
            raise UsageError(
                f"size {text!r} is not understood (use e.g. 4GB, 500MB, 2GiB or a number of bytes)"
            ) from None
    if value <= 0:
        raise UsageError(f"size {text!r} must be positive")
    return value


def format_size(n: int | float) -> str:
    """Bytes in SI units, as ``--max-mem`` is usually written: ``1.97 GB``, ``512 MB``.

    Three significant digits, so that a size can be typed back as a ``--max-mem``.

    >>> format_size(78_611_634), format_size(1_965_292_794), format_size(4e9), format_size(421)
    ('78.6 MB', '1.97 GB', '4 GB', '421 B')
    """
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.3g} {unit}" if abs(value) < 100 else f"{value:.0f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def zarr_bytes(n: int) -> str:
    """``No. bytes`` as zarr's ``.info`` prints it, in binary units: ``162000 (158.2K)``, or
    just ``1000`` below 1 KiB. Only for that text; everything else uses :func:`format_size`.

    >>> zarr_bytes(162000), zarr_bytes(1000)
    ('162000 (158.2K)', '1000')
    """
    value = float(n)
    for unit in ("", "K", "M", "G", "T", "P"):
        if abs(value) < 1024.0 or unit == "P":
            return f"{n}" if unit == "" else f"{n} ({value:.1f}{unit})"
        value /= 1024.0
    raise AssertionError("unreachable")
