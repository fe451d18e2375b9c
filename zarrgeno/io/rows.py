"""Rows of a stored array (every other axis whole), read through the checked chunk path."""

from __future__ import annotations

import threading
from itertools import product

import numpy as np
import zarr

from zarrgeno.io.chunks import ChunkLayout, read_chunk
from zarrgeno.io.store import StoreRef, missing_chunks_allowed

_OPENED: dict[tuple[str, str], zarr.hierarchy.Group] = {}
_OPENED_LOCK = threading.Lock()


def opened_group(ref: StoreRef) -> zarr.hierarchy.Group:
    """The root group of ``ref``, opened once per process (a worker that unpickles a
    reference to a store opens it on first use)."""
    key = (ref.name, repr(ref))
    with _OPENED_LOCK:
        if key not in _OPENED:
            _OPENED[key] = ref.open()
        return _OPENED[key]


def read_row_range(group: zarr.hierarchy.Group, path: str, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` (every other axis whole) of array ``path``, through the checked
    chunk reads; a missing chunk is an error unless the store leaves out fill chunks."""
    array = group[path]
    layout = ChunkLayout.of(array)
    allow = missing_chunks_allowed(None, group)
    start, stop = max(0, start), min(stop, layout.shape[0])
    out = np.empty((max(0, stop - start), *layout.shape[1:]), dtype=layout.dtype)
    if stop <= start:
        return out
    size, grid = layout.chunks[0], layout.grid()
    for i in range(start // size, -(-stop // size)):
        lo, hi = max(start, i * size), min(stop, (i + 1) * size)
        for rest in product(*(range(n) for n in grid[1:])):
            chunk = read_chunk(array.chunk_store, layout, (i, *rest), allow_missing=allow)
            spans = [
                (k * c, min((k + 1) * c, n))
                for k, c, n in zip(rest, layout.chunks[1:], layout.shape[1:], strict=True)
            ]
            inner = tuple(slice(0, b - a) for a, b in spans)
            out[(slice(lo - start, hi - start), *(slice(a, b) for a, b in spans))] = chunk[
                (slice(lo - i * size, hi - i * size), *inner)
            ]
    return out
