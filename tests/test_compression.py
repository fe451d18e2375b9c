"""Codec specs: parsing, errors, JSON configs, and format_codec as parse_compressor's inverse."""

from __future__ import annotations

import json

import numcodecs
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zarrgeno.errors import UsageError
from zarrgeno.io.compression import (
    BLOSC_CNAMES,
    DEFAULT_SPEC,
    SHUFFLES,
    codec_from_config,
    default_compressor,
    format_codec,
    parse_compressor,
    parse_filters,
)


@pytest.mark.parametrize(
    ("spec", "codec"),
    [
        ("blosc", numcodecs.Blosc("lz4", 5, numcodecs.Blosc.SHUFFLE)),
        ("blosc:zstd", numcodecs.Blosc("zstd", 5, numcodecs.Blosc.SHUFFLE)),
        ("blosc:zstd:7:bitshuffle", numcodecs.Blosc("zstd", 7, numcodecs.Blosc.BITSHUFFLE)),
        ("BLOSC:LZ4HC:0:NOSHUFFLE", numcodecs.Blosc("lz4hc", 0, numcodecs.Blosc.NOSHUFFLE)),
        (" zstd:3 ", numcodecs.Zstd(level=3)),
        ("zstd", numcodecs.Zstd(level=3)),
        ("zstd:-5", numcodecs.Zstd(level=-5)),
        ("lz4", numcodecs.LZ4(acceleration=1)),
        ("lz4:8", numcodecs.LZ4(acceleration=8)),
        ("zlib", numcodecs.Zlib(level=6)),
        ("gzip:0", numcodecs.GZip(level=0)),
        ("bz2", numcodecs.BZ2(level=9)),
        ("lzma:1", numcodecs.LZMA(preset=1)),
        ("none", None),
        (
            '{"id": "blosc", "cname": "zstd", "clevel": 7, "shuffle": 2}',
            numcodecs.Blosc("zstd", 7, numcodecs.Blosc.BITSHUFFLE),
        ),
        ('{"id": "Zstd", "level": 1}', numcodecs.Zstd(level=1)),
    ],
)
def test_parse_compressor(spec: str, codec: object) -> None:
    assert parse_compressor(spec) == codec


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "compressor spec is empty"),
        ("snappy", "unknown compressor 'snappy'"),
        ("none:1", "takes no arguments"),
        ("blosc:zstd:10", "Blosc clevel must be 0-9, got 10"),
        ("blosc:zstd:x", "clevel 'x' is not an integer"),
        ("blosc:foo", "unknown Blosc cname 'foo'"),
        ("blosc:zstd:5:twice", "unknown shuffle 'twice'"),
        ("blosc:a:1:shuffle:extra", "use blosc:CNAME:CLEVEL:SHUFFLE"),
        ("zstd:23", "zstd level must be from -131072 to 22, got 23"),
        ("zlib:1:2", "takes at most one argument"),
        ("lz4:0", "acceleration must be >= 1"),
        ("lzma:10", "lzma preset must be 0-9"),
        ("bz2:0", "bz2 level must be from 1 to 9"),
        ("{", "is not valid JSON"),
        ('{"level": 1}', "must be a JSON object with an 'id'"),
        ('{"id": "pickle"}', "id 'pickle' is not allowed"),
        ('{"id": "crc32"}', "id 'crc32' is not allowed"),
        ('{"id": "blosc", "cname": "nope"}', "cname must be one of"),
        ('{"id": "blosc", "clevel": 11}', "clevel must be an integer from 0 to 9"),
        ('{"id": "blosc", "shuffle": 7}', "shuffle must be -1 (auto), 0, 1 or 2"),
        ('{"id": "zstd", "level": "x"}', "level must be an integer from -131072 to 22"),
        ('{"id": "zlib", "level": true}', "level must be an integer from 0 to 9"),
        ('{"id": "lz4", "acceleration": 0}', "acceleration must be an integer >= 1"),
        ('{"id": "lzma", "preset": 12}', "preset must be an integer from 0 to 9"),
        ('{"id": "zstd", "bogus": 1}', "config"),
    ],
)
def test_parse_compressor_refuses(spec: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_compressor(spec)
    assert message in str(info.value)


def _specs() -> st.SearchStrategy[str]:
    return st.one_of(
        st.builds(
            "blosc:{}:{}:{}".format,
            st.sampled_from(BLOSC_CNAMES),
            st.integers(0, 9),
            st.sampled_from(sorted(SHUFFLES)),
        ),
        st.builds("zstd:{}".format, st.integers(-131072, 22)),
        st.builds("lz4:{}".format, st.integers(1, 1000)),
        st.builds("zlib:{}".format, st.integers(0, 9)),
        st.builds("gzip:{}".format, st.integers(0, 9)),
        st.builds("bz2:{}".format, st.integers(1, 9)),
        st.builds("lzma:{}".format, st.integers(0, 9)),
        st.just("none"),
    )


@settings(max_examples=200, deadline=None)
@given(_specs())
def test_format_is_the_inverse_of_parse(spec: str) -> None:
    codec = parse_compressor(spec)
    assert format_codec(codec) == spec
    assert parse_compressor(format_codec(codec)) == codec
    if codec is not None:
        assert parse_compressor(json.dumps(codec.get_config())) == codec


@settings(max_examples=40, deadline=None)
@given(_specs(), st.binary(min_size=1, max_size=300))  # zarr chunks are never empty
def test_every_spec_round_trips_bytes(spec: str, payload: bytes) -> None:
    codec = parse_compressor(spec)
    if codec is None:
        return
    data = np.frombuffer(payload, dtype="u1")
    assert bytes(codec.decode(codec.encode(data))) == payload


@pytest.mark.parametrize(
    "codec",
    [
        numcodecs.Blosc("zstd", 3, numcodecs.Blosc.SHUFFLE, blocksize=1 << 16),
        numcodecs.Blosc("zstd", 3, numcodecs.Blosc.AUTOSHUFFLE),
        numcodecs.LZMA(check=0, preset=3),
        numcodecs.Zstd(level=3, checksum=True),
    ],
)
def test_format_keeps_what_the_short_form_cannot_say(codec: object) -> None:
    text = format_codec(codec)  # JSON, so no setting is lost
    assert json.loads(text)["id"] == codec.codec_id
    assert parse_compressor(text) == codec


def test_filters() -> None:
    assert parse_filters(None) is None and parse_filters([]) is None
    assert parse_filters(["crc32", " ADLER32 ", '{"id": "fletcher32"}']) == [
        numcodecs.CRC32(),
        numcodecs.Adler32(),
        numcodecs.Fletcher32(),
    ]
    assert parse_filters(['{"id": "delta", "dtype": "i1"}']) == [numcodecs.Delta(dtype="i1")]
    for bad, message in [
        (["md5"], "unknown filter 'md5'"),
        (['{"id": "blosc"}'], "filter id 'blosc' is not allowed"),
        (["{"], "is not valid JSON"),
    ]:
        with pytest.raises(UsageError, match=message):
            parse_filters(bad)


def test_codec_from_config_and_defaults() -> None:
    assert codec_from_config({"id": "crc32"}) == numcodecs.CRC32()
    assert codec_from_config({"id": "zstd", "level": 2}) == numcodecs.Zstd(level=2)
    with pytest.raises(UsageError, match="not allowed"):
        codec_from_config({"id": "pickle"}, what="compressor")
    with pytest.raises(UsageError, match="must be a JSON object"):
        codec_from_config(["blosc"])
    assert default_compressor() == parse_compressor(DEFAULT_SPEC)
    assert format_codec(default_compressor()) == DEFAULT_SPEC == "blosc:lz4:5:shuffle"


def test_docstring_examples_run() -> None:
    import doctest

    import zarrgeno.io.compression

    result = doctest.testmod(zarrgeno.io.compression)
    assert result.attempted > 0 and result.failed == 0
