"""``--plot``: missing rate and heterozygosity along each contig, in windows of variants."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zarrgeno.errors import StoreIOError, TargetExistsError, UsageError, os_reason
from zarrgeno.io.partfiles import write_whole
from zarrgeno.io.sites import ContigPositions
from zarrgeno.stats.kernels import HET, MISSING
from zarrgeno.stats.results import ContigStats, StatsResult

PLOT_FORMATS = ("png", "svg", "pdf")
#: Windows across all plotted contigs when the window size is not given.
TARGET_WINDOWS = 600
INSTALL_HINT = "pip install 'zarrgeno[plot]'"


def require_matplotlib() -> None:
    """Fail early, in one line, when the plot extra is not installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError(f"--plot needs matplotlib: {INSTALL_HINT}") from None


def check_plot_path(path: str | os.PathLike[str], *, overwrite: bool) -> Path:
    """A writable ``.png``/``.svg``/``.pdf`` path that is not an existing file (unless
    ``overwrite``)."""
    return check_drawing_file("--plot", path, PLOT_FORMATS, overwrite=overwrite)


def check_drawing_file(
    option: str, path: str | os.PathLike[str], formats: tuple[str, ...], *, overwrite: bool
) -> Path:
    """The file of ``option`` (``--plot``, ``--visualize``), checked before anything is
    computed: one of ``formats`` by its suffix, in a directory that exists, not an
    existing file (unless ``overwrite``)."""
    target = Path(path).expanduser()
    if target.suffix.lstrip(".").lower() not in formats:
        names = ", ".join(f".{f}" for f in formats[:-1]) + f" or .{formats[-1]}"
        raise UsageError(f"{option} {target}: use a {names} file name")
    if target.exists() and not overwrite:
        raise TargetExistsError(f"{target} already exists; pass --overwrite to replace it")
    if target.is_dir():
        raise UsageError(f"{option} {target} is a directory")
    if not target.parent.is_dir():
        raise UsageError(f"{option} {target}: directory {target.parent} does not exist")
    return target


@dataclass(frozen=True)
class Windows:
    """Windowed rates of one contig: ``x`` (window centres), missing rate, heterozygosity."""

    contig: str
    x: np.ndarray
    x_label: str
    missing_rate: np.ndarray
    heterozygosity: np.ndarray


def window_size(result: StatsResult, window: int | None) -> int:
    """Variants per window: the given size, or one giving ~:data:`TARGET_WINDOWS` in all."""
    if window is not None:
        if window < 1:
            raise UsageError(f"--window must be at least 1 variant, got {window}")
        return window
    total = sum(c.total_pos for c in result.contigs)
    return max(1, -(-total // TARGET_WINDOWS))


def windowed(c: ContigStats, size: int, positions: ContigPositions | None = None) -> Windows:
    """Per-window rates of contig ``c``: missing calls / calls; het calls / called calls."""
    counts = c.variant_counts
    if counts is None:
        raise UsageError("--plot needs per-variant counts (per_variant=True)")
    n = counts.shape[1]
    starts = np.arange(0, n, size)
    missing = np.add.reduceat(counts[MISSING].astype(np.int64), starts) if n else np.zeros(0)
    het = np.add.reduceat(counts[HET].astype(np.int64), starts) if n else np.zeros(0)
    lengths = np.diff(np.append(starts, n))
    calls = lengths * c.n_samples
    with np.errstate(invalid="ignore", divide="ignore"):
        missing_rate = np.where(calls > 0, missing / np.maximum(calls, 1), np.nan)
        called = calls - missing
        heterozygosity = np.where(called > 0, het / np.maximum(called, 1), np.nan)
    centres = starts + lengths // 2
    x, label = centres / 1e6, "variant index (millions)"
    if positions is not None and centres.size:
        x, label = positions.take(c.variant_rows()[centres]) / 1e6, "position (Mbp)"
    return Windows(c.contig, x, label, missing_rate, heterozygosity)


def plot_stats(
    result: StatsResult,
    path: str | os.PathLike[str],
    *,
    window: int | None = None,
    overwrite: bool = False,
    positions: Mapping[str, ContigPositions] | None = None,
) -> Path:
    """Draw missing rate (top) and heterozygosity (bottom) along every contig, side by
    side with widths proportional to their lengths; write ``path`` whole (a file that
    cannot be written is a StoreIOError)."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    target = check_plot_path(path, overwrite=overwrite)
    size = window_size(result, window)
    panels = [windowed(c, size, (positions or {}).get(c.contig)) for c in result.contigs]
    widths = [max(c.total_pos, 1) for c in result.contigs]
    fig = Figure(figsize=(max(7.0, 2.2 + 2.2 * len(panels)), 5.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(
        2, len(panels), sharey="row", squeeze=False, gridspec_kw={"width_ratios": widths}
    )
    rows = (
        ("missing_rate", "missing rate", "#c0392b"),
        ("heterozygosity", "heterozygosity\n(het / called)", "#2471a3"),
    )
    for col, (w, c) in enumerate(zip(panels, result.contigs, strict=True)):
        for row, (attr, label, colour) in enumerate(rows):
            ax = axes[row][col]
            y = getattr(w, attr)
            if row == 0:  # a rate from 0: shade it; heterozygosity keeps its own scale
                ax.fill_between(w.x, y, step="mid", color=colour, alpha=0.25, linewidth=0)
            ax.step(w.x, y, where="mid", color=colour, linewidth=0.8)
            overall = c.missing_rate if attr == "missing_rate" else c.heterozygosity
            if np.isfinite(overall):
                ax.axhline(overall, color="0.25", linewidth=0.7, linestyle="--")
            ax.grid(True, axis="y", color="0.9", linewidth=0.6)
            ax.set_axisbelow(True)
            ax.spines[["top", "right"]].set_visible(False)
            ax.margins(x=0)
            if col == 0:
                ax.set_ylabel(label)
            if row == 0:
                ax.set_title(c.contig, fontweight="bold")
    axes[0][0].set_ylim(bottom=0)
    fig.supxlabel(panels[0].x_label if len({p.x_label for p in panels}) == 1 else "position")
    n_samples = len(result.sample_names)
    fig.suptitle(
        f"{Path(result.store).name}: {n_samples} samples, windows of {size:,} variants "
        f"(dashed: contig mean; {result.semantics} semantics)",
        fontsize=10,
    )
    drawn = io.BytesIO()  # drawn in memory, then written whole: never a partial file
    fig.savefig(drawn, format=target.suffix.lstrip(".").lower(), dpi=150)
    try:
        write_whole(target, drawn.getvalue())
    except OSError as exc:
        raise StoreIOError(f"cannot write {target}: {os_reason(exc)}", exc.errno) from None
    return target
