"""One-shot rechunk: plan (``plan_store``) and carry out (``execute_store``) in one call.

The two steps stay public apart so that a caller can look at a plan (memory per task,
temporary stage, compression ratios) before anything is written.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping, Sequence
from typing import Any

from zarrgeno.rewrite.execute import CopyResult, execute_store
from zarrgeno.rewrite.executors import Progress
from zarrgeno.rewrite.storeplan import plan_store


def rechunk(
    source: Any,
    target: str | os.PathLike[str] | MutableMapping[str, bytes],
    *,
    chunks: str | Sequence[int],
    overwrite: bool = False,
    verify: bool = False,
    progress: Progress | None = None,
    **options: Any,
) -> CopyResult:
    """Rechunk ``source`` into ``target`` with ``chunks`` (``"-1,81,2"`` or a tuple).

    ``options`` are those of :func:`zarrgeno.rewrite.storeplan.plan_store` (``arrays``,
    ``max_mem``, ``backend``, ``workers``, ``compressor``...). The source is only read; an
    existing ``target`` is refused unless ``overwrite``.

    >>> import zarr, numpy as np
    >>> source = zarr.MemoryStore()
    >>> _ = zarr.open_group(source, mode="w").create_dataset("x", data=np.arange(1000), chunks=100)
    >>> target = zarr.MemoryStore()
    >>> result = rechunk(source, target, chunks="500", arrays=["x"], max_mem="100MB", verify=True)
    >>> zarr.open_group(target, mode="r")["x"].chunks, result.verified
    ((500,), True)
    """
    plan = plan_store(source, chunks=chunks, **options)
    return execute_store(plan, target, overwrite=overwrite, progress=progress, verify=verify)
