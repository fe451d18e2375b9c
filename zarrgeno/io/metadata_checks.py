"""Checks of one array's fill value and codec configurations, before zarr or numcodecs use them.

zarr 2.18 decodes a ``.zarray``'s ``fill_value`` with numpy (``1000`` for int8 overflows,
``"NaN"`` for an integer or a dict raise) and numcodecs builds codecs from their
configurations (an unknown keyword, ``dtype: "zzz"``, a Blosc ``shuffle`` of 9 raise; a
``clevel`` of 99 or a fixed-scale-offset ``scale`` of 0 pass and fail or warn on first use).
Each check here returns why a value is refused, or None: the fill value against the dtype,
as zarr's format 2 encodes it, and every codec built inside a guard plus range checks.
"""

from __future__ import annotations

import base64
import binascii
import lzma
import math
import warnings
from typing import Any

import numcodecs
import numpy as np
from zarr.meta import Metadata2

from zarrgeno.io.compression import compressor_config_problem

_FLOAT_WORDS = ("NaN", "Infinity", "-Infinity")
#: liblzma's largest dictionary (1.5 GiB); a filter chain holds at most 4 filters.
_LZMA_MAX_DICT = 1536 * 2**20
_LZMA_FORMATS = (lzma.FORMAT_AUTO, lzma.FORMAT_XZ, lzma.FORMAT_ALONE, lzma.FORMAT_RAW)
_LZMA_CHECKS = (-1, lzma.CHECK_NONE, lzma.CHECK_CRC32, lzma.CHECK_CRC64, lzma.CHECK_SHA256)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _float_fits(value: Any, dtype: np.dtype) -> bool:
    if value in _FLOAT_WORDS:
        return True
    if not _is_number(value):
        return False
    try:
        return math.isfinite(float(value)) and abs(float(value)) <= float(np.finfo(dtype).max)
    except OverflowError:  # an integer beyond any float
        return False


def _fill_fits(fill: Any, dtype: np.dtype) -> bool:
    """Whether ``fill`` is the format-2 JSON of a value of ``dtype``."""
    kind = dtype.kind
    if kind == "b":
        return isinstance(fill, bool) or (_is_int(fill) and fill in (0, 1))
    if kind in "iu":
        integral = _is_int(fill) or (isinstance(fill, float) and fill.is_integer())
        info = np.iinfo(dtype)
        return integral and info.min <= fill <= info.max
    if kind == "f":
        return _float_fits(fill, dtype)
    if kind == "c":
        part = np.empty(0, dtype).real.dtype
        return isinstance(fill, list) and len(fill) == 2 and all(_float_fits(x, part) for x in fill)
    if kind == "S":  # base64 of the bytes (zarr also takes a number, as its text)
        if _is_number(fill):
            return True
        try:
            return isinstance(fill, str) and len(base64.b64decode(fill, validate=True)) <= (
                dtype.itemsize
            )
        except (binascii.Error, ValueError):
            return False
    if kind == "U":
        return (isinstance(fill, str) and len(fill) <= dtype.itemsize // 4) or _is_number(fill)
    if kind in "mM":
        return (_is_int(fill) and -(2**63) < fill < 2**63) or fill == "NaT"
    return isinstance(fill, str | bool) or _is_number(fill)  # an object array's scalar


def fill_value_problem(fill: Any, dtype: np.dtype) -> str | None:
    """Why ``fill`` is not a fill value of ``dtype`` as zarr format 2 writes it, or None.

    Null is always allowed; integers must be in range, floats finite and in range or
    ``"NaN"``, ``"Infinity"``, ``"-Infinity"``; complex a pair of those; bytes base64 text
    no longer than the dtype. zarr then decodes it here, with warnings as errors.

    >>> fill_value_problem(1000, np.dtype("i1"))
    "fill_value 1000 does not fit dtype 'int8'"
    >>> fill_value_problem("NaN", np.dtype("f4")) is None
    True
    """
    if fill is None:
        return None
    refused = f"fill_value {fill!r:.60} does not fit dtype {str(dtype)!r}"
    if not _fill_fits(fill, dtype):
        return refused
    if dtype.kind == "O":
        return None  # zarr keeps an object array's scalar as it is
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            Metadata2.decode_fill_value(fill, dtype)
    except Exception:  # any failure to decode it is the metadata's fault
        return refused
    return None


def _lzma_problem(config: dict[str, Any]) -> str | None:
    fmt, check = config.get("format", lzma.FORMAT_XZ), config.get("check", -1)
    filters = config.get("filters")
    if fmt not in _LZMA_FORMATS or check not in _LZMA_CHECKS:
        return f"lzma format {fmt!r} or check {check!r} is not one of liblzma's"
    if filters is None:
        return None if fmt != lzma.FORMAT_RAW else "lzma format 3 (raw) needs filters"
    if not isinstance(filters, list) or not 1 <= len(filters) <= 4:
        return "lzma filters must be a list of 1 to 4 filters"
    for f in filters:
        if not isinstance(f, dict) or not _is_int(f.get("id")):
            return f"lzma filter {f!r:.60} is not an object with an integer id"
        if not (_is_int(f.get("dict_size", 0)) and 0 <= f.get("dict_size", 0) <= _LZMA_MAX_DICT):
            return f"lzma filter dict_size {f.get('dict_size')!r} is out of range"
    if fmt == lzma.FORMAT_RAW:
        try:  # validates the chain; a decompressor allocates nothing before data arrives
            lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=filters)
        except (ValueError, TypeError, lzma.LZMAError) as exc:
            return f"lzma filters {filters!r:.80} are invalid ({exc})"
    return None


def _number(config: dict[str, Any], key: str) -> bool:
    value = config.get(key, 0)
    return _is_number(value) and math.isfinite(value)


def is_numeric_dtype(text: Any) -> bool:
    """True for the text of a boolean, integer or float dtype (``"<i4"``, ``"|u1"``)."""
    try:
        return isinstance(text, str) and np.dtype(text).kind in "biuf"
    except (TypeError, ValueError):
        return False


def _numeric_dtype(config: dict[str, Any], *keys: str) -> str | None:
    for key in keys:
        text = config.get(key)
        if text is not None and not is_numeric_dtype(text):
            return f"{config['id']} {key} {text!r:.40} is not a numeric dtype"
    return None


def _filter_problem(codec_id: str, config: dict[str, Any]) -> str | None:
    """Range checks of the transform filters numcodecs would accept and fail on later."""
    if codec_id in ("delta", "fixedscaleoffset", "quantize", "astype"):
        problem = _numeric_dtype(config, "dtype", "astype", "encode_dtype", "decode_dtype")
        if problem:
            return problem
    if codec_id == "fixedscaleoffset":
        if not (_number(config, "offset") and _number(config, "scale")) or not config.get("scale"):
            return "fixedscaleoffset scale must be a non-zero finite number, offset finite"
    elif codec_id == "shuffle":
        size = config.get("elementsize", 4)
        if not (_is_int(size) and 1 <= size <= 2**16):
            return f"shuffle elementsize {size!r} must be an integer from 1 to 65536"
    elif codec_id == "quantize":
        digits = config.get("digits")
        if not (isinstance(digits, int) and not isinstance(digits, bool) and 0 <= digits <= 32):
            return f"quantize digits {digits!r} must be an integer from 0 to 32"
    elif codec_id == "bitround":
        keepbits = config.get("keepbits")
        if not (
            isinstance(keepbits, int) and not isinstance(keepbits, bool) and 0 <= keepbits <= 52
        ):
            return f"bitround keepbits {keepbits!r} must be an integer from 0 to 52"
    return None


def codec_config_problem(config: dict[str, Any]) -> str | None:
    """Why numcodecs cannot use the (allowed) codec ``config`` safely, or None.

    Range checks first (numcodecs accepts a Blosc ``clevel`` of 99 and a scale of 0),
    then the codec is built inside a guard, warnings as errors.
    """
    codec_id = config["id"].lower()
    problem = compressor_config_problem(codec_id, config)
    if problem is None and codec_id == "lzma":
        problem = _lzma_problem(config)
    problem = problem or _filter_problem(codec_id, config)
    if problem:
        return f"codec {codec_id}: {problem}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            numcodecs.get_codec({**config, "id": codec_id})
    except Exception as exc:  # an unknown keyword, a bad dtype, ...: the store's fault
        return f"codec {codec_id} config {config!r:.80} is invalid ({type(exc).__name__}: {exc})"
    return None
