"""Tables on a terminal: every number whole, no line wider than the window, no ``…``.

Every table of every command is drawn at 60, 80 and 120 columns, on a small simulated store
and on a metadata-only full-size 2L (48,525,747 variants), and each number of the command's
``--json`` output, formatted as the table formats it, must appear whole. Most runs are in
process: whether output is a terminal is decided by rich (``render.Output``), which obeys
``TTY_COMPATIBLE`` and ``COLUMNS`` as it obeys a real terminal's isatty and window size;
:func:`test_make_demo_in_a_real_terminal` runs the commands of ``make demo`` in a real
pseudo-terminal to show that the two agree.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import termios
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from typer.testing import CliRunner

from zarrgeno.cli import app
from zarrgeno.render import Column, draw_table
from zarrgeno.render.layout import wrap
from zarrgeno.simulate.genotypes import simulate_store
from zarrgeno.sizes import format_size, zarr_bytes

WIDTHS = (60, 80, 120)
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")
FULL_2L = 48_525_747

Expect = Callable[[Any], Iterable[str]]


# -- the stores -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small simulated store (several chunks per array), a rechunked copy, and a
    metadata-only full-size 2L; commands that write, write beside them (``root``)."""
    root = tmp_path_factory.mktemp("tables")
    small = root / "small.zarr"
    simulate_store(str(small), contigs=["2L", "X"], scale=0.002, n_samples=12, chunks=(20000, 5, 2))
    _run(["rechunk", str(small), str(root / "rechunked.zarr"), "--chunks", "50000,12,2"])
    wide = root / "wide.zarr"
    group = zarr.open_group(str(wide), mode="w")
    group.create_dataset(
        "2L/calldata/GT",
        shape=(FULL_2L, 81, 2),
        chunks=(300_000, 50, 2),
        dtype="i1",
        compressor=numcodecs.Blosc("lz4", 5, numcodecs.Blosc.SHUFFLE),
    )
    group.create_dataset("samples", data=np.array([f"AO{i:04d}-C" for i in range(81)], "S24"))
    zarr.consolidate_metadata(str(wide))
    return {"small": small, "rechunked": root / "rechunked.zarr", "wide": wide, "root": root}


def _run(args: list[str], env: dict[str, str] | None = None) -> str:
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 0, f"{args}: {result.stdout}{result.stderr}"
    return result.stdout


def on_terminal(args: list[str], width: int) -> str:
    """``zarrgeno ARGS`` in process, its stdout a terminal of ``width`` columns for rich."""
    env = {"TTY_COMPATIBLE": "1", "COLUMNS": str(width), "NO_COLOR": "1"}
    return ANSI.sub("", _run(args, env))


def as_json(args: list[str]) -> Any:
    return json.loads(_run([*args, "--json"]))


def assert_whole(text: str, expected: Iterable[str], width: int) -> None:
    """No ``…``, no line wider than ``width``, and each expected string whole in ``text``."""
    assert "…" not in text, text
    wide = [line for line in text.splitlines() if len(line) > width]
    assert not wide, f"lines wider than {width}:\n" + "\n".join(wide) + "\n\n" + text
    missing = [
        e for e in expected if not re.search(rf"(?<![\w.,]){re.escape(e)}(?![\w.,]|…)", text)
    ]
    assert not missing, f"not whole at {width} columns: {missing}\n{text}"


# -- what each table shows, from the command's --json ---------------------------------------


def _dims(shape: Iterable[int]) -> list[str]:
    return [str(n) for n in shape]


def _info(d: dict[str, Any]) -> Iterable[str]:
    for a in d["arrays"]:
        yield a["path"]
        yield "x".join(_dims(a["shape"]))
        yield "x".join(_dims(a["chunks"]))
        yield format_size(a["nbytes"])
        yield format_size(a["nbytes_stored"])
        yield f"{a['storage_ratio']:.1f}"
        yield f"{a['nchunks_initialized']}/{a['nchunks']}"
        yield format_size(a["avg_chunk_stored"])
        yield a["compressor_spec"]
    t = d["totals"]
    yield from (format_size(t["nbytes"]), format_size(t["nbytes_stored"]))
    yield f"{t['nchunks_initialized']}/{t['nchunks']}"
    for c in d["contigs"]:
        yield f"{c['n_variants']:,}"


def _info_blocks(d: dict[str, Any]) -> Iterable[str]:
    yield from _info(d)
    for a in d["arrays"]:  # zarr's own .info text: the exact count, then zarr's binary size
        yield from zarr_bytes(a["nbytes"]).split(" ", 1)


def _rate(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def stats_numbers(d: dict[str, Any], per_sample: bool = False) -> Iterable[str]:
    """What `zarrgeno stats` shows of its --json: each contig's and the total's counts and
    rates, and with ``per_sample`` each sample's (over every contig)."""
    counts = ("total_pos", "complete_data", "more_anc_hom", "n_missing", "n_hom_ref", "n_het")
    for c in [*d["contigs"], d["total"]]:
        yield from ([c["contig"]] if "contig" in c else [])
        yield from (f"{c[key]:,}" for key in counts)
        yield from (_rate(c["missing_rate"]), _rate(c["heterozygosity"]))
    for s in d["total"]["samples"] if per_sample else ():
        yield s["sample"]
        yield from (f"{s[key]:,}" for key in ("n_missing", "n_hom_ref", "n_het", "n_called"))
        yield from (_rate(s["call_rate"]), _rate(s["heterozygosity"]))


def _plan(d: dict[str, Any]) -> Iterable[str]:
    for a in d["arrays"]:
        yield a["path"]
        for key in ("shape", "source_chunks", "target_chunks", "read_chunks", "write_chunks"):
            yield " x ".join(_dims(a[key]))
        yield from (format_size(a["nbytes"]), format_size(a["task_peak"]))
        yield f"{a['output_chunks']:,}"
        yield from (f"{s['tasks']:,}" for s in a["stages"])
    yield from (format_size(d["expected_peak"]), format_size(d["max_mem"]))


def _copy(d: dict[str, Any]) -> Iterable[str]:
    for a in d["arrays"]:
        yield from (a["path"], " x ".join(_dims(a["chunks"])), a["compressor"])
        yield from (format_size(a["nbytes"]), format_size(a["stored_bytes"]))
        yield f"{a['nbytes'] / max(a['stored_bytes'], 1):.1f}"
    yield f"{d['copied_keys']:,}"


def _integrity(d: dict[str, Any]) -> Iterable[str]:
    for a in d["arrays"]:
        yield a["path"]
        for key in ("nchunks", "missing", "unreadable", "corrupt", "not_stored"):
            yield f"{a[key]:,}"
    yield str(d["nchunks"])


def _compare(d: dict[str, Any]) -> Iterable[str]:
    yield from (format_size(d["nbytes"]), str(len(d["arrays"])))


def _codecs(d: dict[str, Any]) -> Iterable[str]:
    for r in d["results"]:  # the speeds are measured again by each run: not compared
        yield from (r["spec"], f"{r['ratio']:.1f}", format_size(r["projected_bytes"]))
        yield str(r["chunks"])
    yield from (format_size(d["sample_bytes"]), format_size(d["array_bytes"]))


def _download_plan(d: dict[str, Any]) -> Iterable[str]:
    nodes: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for f in d["fetch"]:
        node = nodes[f["key"].rsplit("/", 1)[0] if "/" in f["key"] else "/"]
        node[0] += 1
        node[1] += f["size"]
    for key, (n, size) in nodes.items():
        yield from (key, f"{n:,}", format_size(size))
    total = sum(f["size"] for f in d["fetch"])
    yield from (f"{len(d['fetch']):,}", format_size(total), f"{total:,}")


def _download(d: dict[str, Any]) -> Iterable[str]:
    yield from (f"{d['fetched_files']:,}", format_size(d["fetched_bytes"]))
    yield from (f"{d['complete_files']:,}", f"{d['verified_chunks']:,}")


def _consolidate(d: dict[str, Any]) -> Iterable[str]:
    yield from (str(d["groups"]), str(d["arrays"]))


def _backends(d: list[dict[str, Any]]) -> Iterable[str]:
    for b in d:
        yield from (b["name"], b["target"])


def _simulate(d: dict[str, Any]) -> Iterable[str]:
    for c in d["contigs"]:
        yield from (c["contig"], " x ".join(_dims(c["shape"])), f"{c['ratio']:.1f}")
        yield from (format_size(c["nbytes"]), format_size(c["nbytes_stored"]))
    yield f"{sum(c['shape'][0] for c in d['contigs']):,}"


# -- every table of every command -----------------------------------------------------------

#: (name, arguments with {small}, {wide}, {rechunked}, {out} for the stores, what it shows).
COMMANDS: list[tuple[str, list[str], Expect]] = [
    ("info", ["info", "{small}"], _info_blocks),
    ("info --summary", ["info", "{small}", "--summary"], _info),
    ("stats", ["stats", "{small}", "--no-progress"], stats_numbers),
    (
        "stats --per-sample",
        ["stats", "{small}", "--no-progress", "--per-sample"],
        lambda d: stats_numbers(d, per_sample=True),
    ),
    ("rechunk --plan", ["rechunk", "{small}", "{out}", "--chunks", "50000,12,2", "--plan"], _plan),
    ("rechunk", ["rechunk", "{small}", "{out}", "--chunks", "50000,12,2"], _copy),
    (
        "recompress --plan",
        ["recompress", "{small}", "{out}", "--compressor", "zstd:3", "--plan"],
        _plan,
    ),
    ("recompress", ["recompress", "{small}", "{out}", "--compressor", "zstd:3"], _copy),
    ("verify", ["verify", "{small}", "--no-progress"], _integrity),
    ("verify SRC TARGET", ["verify", "{small}", "{rechunked}", "--no-progress"], _compare),
    (
        "codecs",
        ["codecs", "{small}", "--sample", "1", "--codec", "zstd:3", "--codec", "lz4"],
        _codecs,
    ),
    (
        "download --dry-run",
        ["download", "memory://tables.zarr", "{out}", "--dry-run"],
        _download_plan,
    ),
    ("download", ["download", "memory://tables.zarr", "{out}"], _download),
    ("consolidate", ["consolidate", "{rechunked}"], _consolidate),
    ("backends", ["backends"], _backends),
    (
        "simulate",
        ["simulate", "{out}", "--contig", "X", "--scale", "0.001", "--samples", "12"],
        _simulate,
    ),
    ("info (full-size 2L)", ["info", "{wide}"], _info_blocks),
    ("info --summary (full-size 2L)", ["info", "{wide}", "--summary"], _info),
    (
        "rechunk --plan (full-size 2L)",
        ["rechunk", "{wide}", "{out}", "--chunks", "12131437,81,2", "--plan"],
        _plan,
    ),
    (
        "recompress --plan (full-size 2L)",
        ["recompress", "{wide}", "{out}", "--compressor", "zstd:3", "--plan"],
        _plan,
    ),
]


@pytest.fixture(scope="module")
def served(stores: dict[str, Path]) -> Iterable[None]:
    """The small store at memory://tables.zarr, for ``download``."""
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.put(str(stores["small"]), "/tables.zarr", recursive=True)
    yield
    fs.rm("/tables.zarr", recursive=True)


def _args(template: list[str], stores: dict[str, Path], out: Path) -> list[str]:
    names = {k: str(v) for k, v in stores.items()} | {"out": str(out)}
    return [a.format(**names) for a in template]


@pytest.mark.parametrize("name,template,expect", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_every_table_fits_the_terminal_whole(
    name: str, template: list[str], expect: Expect, stores: dict[str, Path], served: None
) -> None:
    """Each command's tables at 60, 80 and 120 columns: each number of its --json whole,
    every line within the width, no ellipsis."""
    out = stores["root"] / re.sub(r"\W+", "_", name)
    writes = "{out}" in template and "--plan" not in template and "--dry-run" not in template
    overwrite = ["--overwrite"] if writes and template[0] != "download" else []
    expected = list(expect(as_json(_args([*template, *overwrite], stores, out))))
    for width in WIDTHS:
        if writes and template[0] == "download":  # it resumes rather than overwrites
            shutil.rmtree(out, ignore_errors=True)
        text = on_terminal(_args([*template, *overwrite], stores, out), width)
        assert_whole(text, expected, width)


# -- sizes: one unit system -----------------------------------------------------------------


def test_info_and_rechunk_print_the_same_size_for_an_array(stores: dict[str, Path]) -> None:
    """An array's size reads the same in `info` and `rechunk --plan` (decimal units, as
    --max-mem reads them): info printed 75.0M where rechunk printed 78.6 MB."""
    small = str(stores["small"])
    nbytes = next(
        a["nbytes"] for a in as_json(["info", small])["arrays"] if a["path"] == "2L/calldata/GT"
    )
    size = format_size(nbytes)
    info_row = next(
        line for line in _run(["info", small, "--summary"]).splitlines() if line.startswith("2L/")
    )
    plan = _run(["rechunk", small, str(stores["root"] / "p"), "--chunks", "50000,12,2", "--plan"])
    shape_row = next(line for line in plan.splitlines() if line.startswith("shape"))
    assert f" {size} " in f" {info_row} "
    assert shape_row.endswith(f"({size})")


# -- piped output ---------------------------------------------------------------------------


def test_piped_tables_are_whole_lines_whatever_the_width(stores: dict[str, Path]) -> None:
    """Piped, a table is one line per row with every cell whole, even when COLUMNS is
    narrow: it is for awk and files, not a window."""
    text = _run(["info", str(stores["wide"]), "--summary"], {"COLUMNS": "60"})
    row = next(line for line in text.splitlines() if line.startswith("2L/calldata/GT *"))
    assert f" {FULL_2L}x81x2 " in row and " 7.86 GB " in row and "blosc:lz4:5:shuffle" in row
    assert "┃" not in text and len(row) > 60


# -- the layout on any table ----------------------------------------------------------------

_WORDS = st.sampled_from(["2L", "calldata/GT", "missing", "rate", "x", "hom-ref", "*", "total"])
_TEXT = st.lists(_WORDS, min_size=1, max_size=4).map(" ".join)
_NUMBER = st.integers(0, 10**13).map(lambda n: f"{n:,}")


@settings(max_examples=60, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 9), st.integers(1, 5)),
    data=st.data(),
    width=st.integers(40, 140),
)
def test_any_table_is_drawn_whole(shape: tuple[int, int], data: Any, width: int) -> None:
    """Random tables of numbers and wrappable text: every cell's words whole and every line
    within the width, whatever layout (wrapped, column groups, one block per row) it takes."""
    n_cols, n_rows = shape
    numeric = [i > 0 and data.draw(st.booleans()) for i in range(n_cols)]
    headers = [data.draw(_TEXT) for _ in range(n_cols)]
    rows = [
        [data.draw(_NUMBER if numeric[i] else _TEXT) for i in range(n_cols)] for _ in range(n_rows)
    ]
    console = Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None)
    columns = [Column(h, n) for h, n in zip(headers, numeric, strict=True)]
    draw_table(console, "a title", columns, rows, None)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    numbers = [cell for row in rows for cell, n in zip(row, numeric, strict=True) if n]
    assert_whole(text, numbers, width)
    words = {p for row in rows for cell in row for p in wrap(cell, 0, "/")}  # cut only at "/"
    assert all(word in text for word in words), text


# -- a real terminal ------------------------------------------------------------------------


def in_a_pty(args: list[str], width: int) -> str:
    """``zarrgeno ARGS`` as a process whose stdout is a pseudo-terminal ``width`` columns wide."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, width, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("TTY_COMPATIBLE", "FORCE_COLOR")}
    env |= {"COLUMNS": str(width), "TERM": "xterm-256color"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "zarrgeno", *args],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=subprocess.PIPE,
        env=env,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the process closed its end
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    return ANSI.sub("", b"".join(chunks).decode())


@pytest.mark.parametrize("width", WIDTHS)
def test_make_demo_in_a_real_terminal(width: int, stores: dict[str, Path]) -> None:
    """`make demo` (info --summary, stats) in a pseudo-terminal of 60, 80 and 120 columns:
    it showed `485,2…`, `0.03…` and `2L/c…` at 80 columns."""
    small = str(stores["small"])
    info = in_a_pty(["info", small, "--summary"], width)
    assert "┃" in info  # drawn by rich, as on a terminal
    assert_whole(info, _info(as_json(["info", small])), width)
    stats = in_a_pty(["stats", small, "--no-progress"], width)
    assert_whole(stats, stats_numbers(as_json(["stats", small, "--no-progress"])), width)
    wide = in_a_pty(["info", str(stores["wide"]), "--summary"], width)
    assert_whole(wide, _info(as_json(["info", str(stores["wide"])])), width)
