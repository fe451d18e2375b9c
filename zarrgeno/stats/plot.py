"""``--plot``: missing rate and heterozygosity along each contig, from the windowed table."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from zarrgeno.errors import StoreIOError, TargetExistsError, UsageError, os_reason
from zarrgeno.io.partfiles import write_whole
from zarrgeno.stats.results import StatsResult

PLOT_FORMATS = ("png", "svg", "pdf")
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


def _axis(table: Any, block: dict[str, np.ndarray]) -> tuple[np.ndarray, str]:
    """Window centres of a :class:`zarrgeno.stats.windows.WindowTable` (which imports this
    module) along the x axis: positions in Mbp, or rows in millions."""
    centres = (block["start"] + block["end"]) / 2
    if table.spec.bp or table.positions:
        return centres / 1e6, "position (Mbp)"
    return centres / 1e6, "variant index (millions)"


def plot_stats(
    result: StatsResult,
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
) -> Path:
    """Draw missing rate (top) and heterozygosity (bottom) along every contig from the
    result's windowed table (``result.windows``), side by side with widths proportional
    to their lengths; write ``path`` whole (a file that cannot be written is a
    StoreIOError)."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    table = result.windows
    if table is None:
        raise UsageError("--plot draws the windowed table: compute with windows")
    target = check_plot_path(path, overwrite=overwrite)
    contigs = result.contigs
    blocks = [table.contig(c.contig) for c in contigs]
    axes_x = [_axis(table, b) for b in blocks]
    widths = [max(c.n_variants, 1) for c in contigs]
    n_panels = max(1, len(blocks))
    fig = Figure(figsize=(max(7.0, 2.2 + 2.2 * n_panels), 5.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(
        2, n_panels, sharey="row", squeeze=False, gridspec_kw={"width_ratios": widths or [1]}
    )
    rows = (
        ("missing_rate", "missing rate", "#c0392b"),
        ("heterozygosity", "heterozygosity\n(het / called)", "#2471a3"),
    )
    for col, (block, (x, _), c) in enumerate(zip(blocks, axes_x, contigs, strict=True)):
        for row, (attr, label, colour) in enumerate(rows):
            ax = axes[row][col]
            y = block[attr]
            if row == 0:  # a rate from 0: shade it; heterozygosity keeps its own scale
                ax.fill_between(x, y, step="mid", color=colour, alpha=0.25, linewidth=0)
            ax.step(x, y, where="mid", color=colour, linewidth=0.8)
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
    fig.supxlabel(axes_x[0][1] if axes_x else "position")
    n_samples = len(result.sample_names)
    fig.suptitle(
        f"{Path(result.store).name}: {n_samples} samples, windows of {table.spec.describe()} "
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
