"""Byte counts as users write and read them: ``--max-mem 4GB`` parsed, ``1.97 GB`` printed.

One unit system: decimal (SI) units, 1 MB = 1,000,000 bytes, in every table and message,
the units ``--max-mem`` reads. The one exception is zarr's own ``.info`` text, which
``zarrgeno info`` shows as zarr prints it (:func:`zarr_bytes`, binary units). Shared by
the rechunk planner, ``zarrgeno verify`` and the CLI. Sizes are read with the units and
rules of dask's ``parse_bytes`` (``4GB``, ``2GiB``, ``500m``, ``1e9`` is refused), without
importing dask, which would add 0.4 s to every command's start.
"""

from __future__ import annotations

import re

from zarrgeno.errors import UsageError

_SIZE = re.compile(r"^\s*\d+(\.\d*)?\s*[a-zA-Z]*\s*$")


def _units() -> dict[str, int]:
    """The unit names ``parse_bytes`` reads, in lower case: ``kb``, ``k``, ``kib``, ``ki``..."""
    named = {"kB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "PB": 10**15}
    named |= {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40, "PiB": 2**50}
    units = {k.lower(): v for k, v in named.items()} | {"b": 1, "": 1}
    units |= {k[0]: v for k, v in list(units.items()) if k and "i" not in k}
    units |= {k[:-1]: v for k, v in list(units.items()) if k and "i" in k}
    return units


_UNITS = _units()


def _parse_bytes(text: str) -> int:
    """One number and one unit (checked by ``_SIZE``) as a byte count."""
    text = text.replace(" ", "").lower()
    at = next((i for i, c in enumerate(text) if c.isalpha()), len(text))
    number, unit = text[:at], text[at:]
    if unit not in _UNITS:
        raise ValueError(text)
    return int(float(number) * _UNITS[unit])


def parse_size(text: str | int) -> int:
    """Parse ``4GB``, ``500MB``, ``2GiB`` or plain bytes into a byte count.

    >>> parse_size("4GB"), parse_size("2GiB"), parse_size("1000")
    (4000000000, 2147483648, 1000)
    """
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        try:
            if not _SIZE.match(str(text)):
                raise ValueError(text)
            value = _parse_bytes(str(text).strip())
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
