"""bio2zarr's region_index of a VCF Zarr store, rebuilt for new variants chunks.

The index (:func:`zarrgeno.vcfzarr.region_index_rows`) is computed one new variants chunk
at a time from ``variant_contig``, ``variant_position`` and ``variant_length`` read
through the checked chunk path, so memory holds one chunk of each, never whole columns.
It is written as bio2zarr writes it: one chunk, the dtype of ``variant_position``, the
source index's compressor, fill value and attributes.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import numpy as np
import zarr

from zarrgeno.io.chunks import ChunkLayout, read_chunk
from zarrgeno.rewrite.blockcopy import encode_chunk
from zarrgeno.rewrite.writers import create_array
from zarrgeno.vcfzarr import REGION_INDEX, REGION_INDEX_FIELDS, region_index_rows


def _rows(
    store: Any, layout: ChunkLayout, start: int, stop: int, allow_missing: bool
) -> np.ndarray:
    """Items ``start:stop`` of a 1-D array, chunk by chunk."""
    (size,) = layout.chunks
    out = np.empty(stop - start, dtype=layout.dtype)
    for k in range(start // size, -(-stop // size)):
        lo, hi = max(start, k * size), min(stop, (k + 1) * size)
        chunk = read_chunk(store, layout, (k,), allow_missing=allow_missing)
        out[lo - start : hi - start] = chunk[lo - k * size : hi - k * size]
    return out


def build_region_index(
    group: zarr.hierarchy.Group, store: Any, variants_chunk: int, *, allow_missing: bool
) -> np.ndarray:
    """The region index of the store ``group`` (chunks read from ``store``) for variants
    chunks of ``variants_chunk`` rows."""
    layouts = [
        ChunkLayout.of(group[n]) for n in ("variant_contig", "variant_position", "variant_length")
    ]
    n = layouts[1].shape[0]
    dtype = layouts[1].dtype
    blocks = [np.zeros((0, REGION_INDEX_FIELDS), dtype=dtype)]
    for i, start in enumerate(range(0, n, variants_chunk)):
        stop = min(n, start + variants_chunk)
        columns = [_rows(store, layout, start, stop, allow_missing) for layout in layouts]
        blocks.append(region_index_rows(i, *columns))
    return np.concatenate(blocks)


def write_region_index(
    group: zarr.hierarchy.Group,
    source_store: Any,
    target: MutableMapping[str, bytes],
    variants_chunk: int,
    *,
    zarr_format: int,
    allow_missing: bool,
) -> None:
    """Write the rebuilt ``region_index`` into ``target``, in ``zarr_format``."""
    index = build_region_index(group, source_store, variants_chunk, allow_missing=allow_missing)
    old = group[REGION_INDEX]
    chunks = (max(1, index.shape[0]), REGION_INDEX_FIELDS)
    layout = create_array(
        target,
        REGION_INDEX,
        shape=index.shape,
        chunks=chunks,
        dtype=index.dtype,
        compressor=old.compressor,
        filters=(),
        fill_value=old.fill_value,
        attributes=old.attrs.asdict(),
        zarr_format=zarr_format,
    )
    if index.shape[0]:
        target[layout.shard_key((0, 0))] = encode_chunk(layout, np.ascontiguousarray(index))
