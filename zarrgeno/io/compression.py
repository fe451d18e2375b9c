"""Codec specs such as ``blosc:zstd:7:bitshuffle`` to and from numcodecs codecs; pure."""

from __future__ import annotations

import json
from typing import Any

import numcodecs
from numcodecs.abc import Codec

from zarrgeno.defaults import DEFAULT_SPEC
from zarrgeno.errors import UsageError

#: Blosc's compressors, as numcodecs names them.
BLOSC_CNAMES = ("lz4", "lz4hc", "zstd", "blosclz", "zlib")
SHUFFLES = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}
_SHUFFLE_NAMES = {v: k for k, v in SHUFFLES.items()}
#: Codec ids accepted from a user or a store: compressors, then checksum/transform filters.
COMPRESSOR_IDS = ("blosc", "zstd", "lz4", "zlib", "gzip", "bz2", "lzma")
FILTER_IDS = ("crc32", "adler32", "fletcher32", "delta")
#: Object codecs zarrgeno reads: each turns bytes into strings, bytes or numeric arrays and
#: nothing else, and its length-prefixed layout is checked before numcodecs decodes it
#: (zarrgeno.io.chunks.check_vlen). Not pickle (runs code), not json2 or msgpack2 (their
#: chunks carry their own dtype and shape, which numcodecs allocates unchecked).
OBJECT_CODEC_IDS = ("vlen-utf8", "vlen-bytes", "vlen-array")
#: Transform filters zarr stores may carry besides checksums and object codecs (not pickle);
#: a copy keeps them as they are.
EXTRA_FILTER_IDS = ("shuffle", "bitround", "quantize", "fixedscaleoffset", "astype", "packbits")

_LEVELS = {"zstd": (-131072, 22), "zlib": (0, 9), "gzip": (0, 9), "bz2": (1, 9), "lzma": (0, 9)}


def default_compressor() -> Codec:
    """Blosc(lz4, clevel 5, byte shuffle), as AG1000G stores use."""
    return parse_compressor(DEFAULT_SPEC)


def _int(text: str, what: str, spec: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"compressor {spec!r}: {what} {text!r} is not an integer") from None


def parse_compressor(spec: str) -> Codec | None:
    """Parse a compressor spec; ``none`` means uncompressed.

    Forms: ``blosc[:CNAME[:CLEVEL[:SHUFFLE]]]``, ``zstd[:LEVEL]``, ``lz4[:ACCELERATION]``,
    ``zlib|gzip|bz2[:LEVEL]``, ``lzma[:PRESET]``, or a JSON codec config such as
    ``{"id": "blosc", "cname": "zstd", "clevel": 7, "shuffle": 2}``.

    >>> parse_compressor("blosc:zstd:7:bitshuffle")
    Blosc(cname='zstd', clevel=7, shuffle=BITSHUFFLE, blocksize=0)
    >>> parse_compressor("zstd:3")
    Zstd(level=3)
    """
    text = spec.strip()
    if not text:
        raise UsageError("compressor spec is empty")
    if text.startswith("{"):
        try:
            config = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"compressor {spec!r} is not valid JSON: {exc.msg}") from None
        return codec_from_config(config, what="compressor")
    name, *args = text.lower().split(":")
    if name == "none":
        if args:
            raise UsageError("compressor 'none' takes no arguments")
        return None
    if name not in COMPRESSOR_IDS:
        raise UsageError(
            f"unknown compressor {name!r} (choose from {', '.join(COMPRESSOR_IDS)}, none)"
        )
    if name == "blosc":
        if len(args) > 3:
            raise UsageError(f"compressor {spec!r}: use blosc:CNAME:CLEVEL:SHUFFLE")
        cname = args[0] if args else "lz4"
        if cname not in BLOSC_CNAMES:
            raise UsageError(
                f"compressor {spec!r}: unknown Blosc cname {cname!r} "
                f"(choose from {', '.join(BLOSC_CNAMES)})"
            )
        clevel = _int(args[1], "clevel", spec) if len(args) > 1 else 5
        if not 0 <= clevel <= 9:
            raise UsageError(f"compressor {spec!r}: Blosc clevel must be 0-9, got {clevel}")
        shuffle_name = args[2] if len(args) > 2 else "shuffle"
        if shuffle_name not in SHUFFLES:
            raise UsageError(
                f"compressor {spec!r}: unknown shuffle {shuffle_name!r} "
                f"(choose from {', '.join(SHUFFLES)})"
            )
        return numcodecs.Blosc(cname=cname, clevel=clevel, shuffle=SHUFFLES[shuffle_name])
    if len(args) > 1:
        raise UsageError(f"compressor {spec!r}: {name} takes at most one argument")
    if name == "lz4":
        accel = _int(args[0], "acceleration", spec) if args else 1
        if accel < 1:
            raise UsageError(f"compressor {spec!r}: lz4 acceleration must be >= 1")
        return numcodecs.LZ4(acceleration=accel)
    if name == "lzma":
        preset = _int(args[0], "preset", spec) if args else 6
        if not 0 <= preset <= 9:
            raise UsageError(f"compressor {spec!r}: lzma preset must be 0-9, got {preset}")
        return numcodecs.LZMA(preset=preset)
    low, high = _LEVELS[name]
    level = _int(args[0], "level", spec) if args else {"zstd": 3, "bz2": 9}.get(name, 6)
    if not low <= level <= high:
        raise UsageError(
            f"compressor {spec!r}: {name} level must be from {low} to {high}, got {level}"
        )
    cls = {
        "zstd": numcodecs.Zstd,
        "zlib": numcodecs.Zlib,
        "gzip": numcodecs.GZip,
        "bz2": numcodecs.BZ2,
    }[name]
    return cls(level=level)


def parse_filters(specs: list[str] | None) -> list[Codec] | None:
    """Parse checksum filters: ``crc32``, ``adler32``, ``fletcher32`` or JSON configs."""
    if not specs:
        return None
    filters = []
    for spec in specs:
        text = spec.strip()
        if text.startswith("{"):
            try:
                config = json.loads(text)
            except json.JSONDecodeError as exc:
                raise UsageError(f"filter {spec!r} is not valid JSON: {exc.msg}") from None
            filters.append(codec_from_config(config, what="filter"))
            continue
        name = text.lower()
        if name not in ("crc32", "adler32", "fletcher32"):
            raise UsageError(f"unknown filter {spec!r} (choose from crc32, adler32, fletcher32)")
        filters.append(numcodecs.get_codec({"id": name}))
    return filters


def codec_from_config(config: Any, *, what: str = "codec") -> Codec:
    """Build a codec from a JSON config, refusing ids outside the allow-list (never pickle)."""
    if not isinstance(config, dict) or not isinstance(config.get("id"), str):
        raise UsageError(f"{what} config must be a JSON object with an 'id', got {config!r}")
    allowed: tuple[str, ...] = COMPRESSOR_IDS if what == "compressor" else FILTER_IDS
    if what == "codec":  # a codec read back from a store's metadata (a copy keeps it)
        allowed = COMPRESSOR_IDS + FILTER_IDS + EXTRA_FILTER_IDS + OBJECT_CODEC_IDS
    codec_id = config["id"].lower()
    if codec_id not in allowed:
        raise UsageError(
            f"{what} id {config['id']!r} is not allowed (choose from {', '.join(allowed)})"
        )
    if codec_id in COMPRESSOR_IDS:
        _check_compressor_config(codec_id, config, what)
    try:
        return numcodecs.get_codec({**config, "id": codec_id})
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{what} config {config!r}: {exc}") from None


def _check_compressor_config(codec_id: str, config: dict[str, Any], what: str) -> None:
    problem = compressor_config_problem(codec_id, config)
    if problem:
        raise UsageError(f"{what} config {config!r}: {problem}")


def compressor_config_problem(codec_id: str, config: dict[str, Any]) -> str | None:
    """Why a compressor config holds values numcodecs would accept here and fail on later
    (a bad cname, a level of "x" or 99), with the same ranges as the spec syntax; or None.

    >>> compressor_config_problem("blosc", {"id": "blosc", "shuffle": 9})
    'shuffle must be -1 (auto), 0, 1 or 2'
    """

    def integer(low: int, high: int) -> Any:
        return lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high

    checks: list[tuple[str, Any, str]] = []
    if codec_id == "blosc":
        checks = [
            ("cname", lambda v: v in BLOSC_CNAMES, f"one of {', '.join(BLOSC_CNAMES)}"),
            ("clevel", integer(0, 9), "an integer from 0 to 9"),
            ("shuffle", integer(-1, 2), "-1 (auto), 0, 1 or 2"),
            ("blocksize", integer(0, 2**31), "a non-negative integer"),
            ("typesize", integer(1, 255), "an integer from 1 to 255"),
        ]
    elif codec_id == "lz4":
        checks = [("acceleration", integer(1, 2**31), "an integer >= 1")]
    elif codec_id == "lzma":
        checks = [("preset", lambda v: v is None or integer(0, 9)(v), "an integer from 0 to 9")]
    elif codec_id in _LEVELS:
        low, high = _LEVELS[codec_id]
        checks = [("level", integer(low, high), f"an integer from {low} to {high}")]
        if codec_id == "zstd":
            checks.append(("checksum", lambda v: isinstance(v, bool), "true or false"))
    for key, valid, expected in checks:
        if key in config and not valid(config[key]):
            return f"{key} must be {expected}"
    return None


def format_codec(codec: Codec | None) -> str:
    """The spec string for ``codec``; the inverse of :func:`parse_compressor` for our codecs.

    >>> format_codec(parse_compressor("blosc:lz4:5:shuffle"))
    'blosc:lz4:5:shuffle'
    """
    if codec is None:
        return "none"
    config = codec.get_config()
    codec_id = config["id"]
    # The short form only when it rebuilds the same codec; JSON otherwise (a Blosc blocksize
    # or automatic shuffle, an LZMA format or filter chain), so nothing is silently dropped.
    if (
        codec_id == "blosc"
        and config.get("blocksize", 0) == 0
        and config["shuffle"] in _SHUFFLE_NAMES
    ):
        return f"blosc:{config['cname']}:{config['clevel']}:{_SHUFFLE_NAMES[config['shuffle']]}"
    if codec_id == "zstd" and config.get("checksum"):  # zstd's own frame checksum
        return json.dumps(config, sort_keys=True)
    only_level = set(config) - {"checksum"} == {"id", "level"}
    if codec_id in ("zstd", "zlib", "gzip", "bz2") and only_level:
        return f"{codec_id}:{config['level']}"
    if codec_id == "lz4" and set(config) == {"id", "acceleration"}:
        return f"lz4:{config['acceleration']}"
    if (
        codec_id == "lzma"
        and config.get("format", 1) == 1
        and config.get("check", -1) == -1
        and config.get("filters") is None
    ):
        return f"lzma:{config.get('preset') if config.get('preset') is not None else 6}"
    return json.dumps(config, sort_keys=True)
