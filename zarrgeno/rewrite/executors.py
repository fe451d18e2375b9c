"""Where copy tasks run: rechunker pipelines on the sequential, dask-threads or distributed backend.

Backends are chosen by :func:`resolve_backend` and driven by :func:`run_pipelines`, which
counts finished tasks into a :class:`Progress`, keeps at most the planned number of tasks in
flight (a :class:`~zarrgeno.io.writing.WriterPool` of threads, or a window of futures on a dask
cluster), and on an interrupt sets :data:`CANCEL` so running tasks stop at their next chunk
before the pool drains. The tasks themselves are any ``fn(key, config=...)`` stage functions
(zarrgeno.rewrite.blockcopy's for rechunk and recompress). rechunker, dask and distributed are
imported only when a run starts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from zarrgeno.defaults import BACKENDS
from zarrgeno.errors import (
    BadDataError,
    ClusterError,
    StoreIOError,
    UsageError,
    ZarrgenoError,
    os_reason,
)
from zarrgeno.io.writing import WriterPool
from zarrgeno.rewrite.buffers import release_buffers
from zarrgeno.runtime.cores import usable_cores

if TYPE_CHECKING:
    # rechunker imports dask.array (a quarter of a second); it loads when a copy runs.
    from rechunker.types import ParallelPipelines


#: Set when the user interrupts: copy tasks still running in pool threads stop at their next
#: chunk (raising :class:`Cancelled`), so nothing is written into the staging directory
#: after it has been removed.
CANCEL = threading.Event()


class Cancelled(Exception):
    """A copy task stopped because the run was interrupted."""


class Progress:
    """Progress callbacks; the default does nothing. The CLI draws a bar from them."""

    def start(self, description: str, total: int) -> None:
        """A new phase of ``total`` tasks begins."""

    def advance(self, n: int = 1) -> None:
        """``n`` tasks finished (called from worker threads too)."""


def resolve_backend(
    backend: str | None, scheduler: str | None, workers: int | None
) -> tuple[str, int]:
    """The backend name and the number of parallel tasks requested."""
    if scheduler is not None:
        if backend not in (None, "distributed"):
            raise UsageError(f"--scheduler needs --backend distributed, not {backend}")
        backend = "distributed"
    backend = backend or "dask"
    if backend in ("multiprocessing", "threads"):
        raise UsageError(
            "rechunk and recompress run on sequential, dask (threads) or distributed; "
            f"{backend} is a `zarrgeno stats` backend"
        )
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    if backend == "sequential":
        return backend, 1
    return backend, workers or usable_cores()


def _counted(pipelines: ParallelPipelines, progress: Progress) -> ParallelPipelines:
    """Wrap every stage function so each finished task advances the progress bar."""
    from rechunker.types import Pipeline

    wrapped = []
    for pipeline in pipelines:
        stages = []
        for stage in pipeline.stages:
            function = stage.function

            def counted(key: Any, *, config: Any, _function: Callable = function) -> None:
                _function(key, config=config)
                progress.advance(1)

            stages.append(replace(stage, function=counted))
        wrapped.append(Pipeline(stages, config=pipeline.config))
    return tuple(wrapped)


def run_pipelines(
    pipelines: ParallelPipelines,
    *,
    backend: str,
    concurrency: int,
    client: Any = None,
    progress: Progress | None = None,
    stop: Callable[[], None] | None = None,
) -> None:
    """Run rechunker pipelines (stages of ``fn(key, config=...)`` tasks) on a backend.

    ``sequential`` is rechunker's python executor; ``dask`` is rechunker's dask executor on
    a pool of ``concurrency`` threads (one task at a time runs in the calling thread,
    where Blosc uses its own threads); ``distributed`` submits tasks to ``client`` with at
    most ``concurrency`` in flight. Stages run in order; the pipelines one after another.
    On a failure or an interrupt, ``stop()`` is called at once, before the running tasks
    are waited for (to cancel a remote source's requests in flight).
    """
    progress = progress or Progress()
    CANCEL.clear()
    try:
        _dispatch(pipelines, backend, concurrency, client, progress, stop)
    except Cancelled:
        raise KeyboardInterrupt from None
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        if isinstance(exc, UsageError | StoreIOError):
            raise
        # zarr's DirectoryStore reports a directory it cannot create as a KeyError.
        cause = exc.__cause__ if isinstance(exc, KeyError) else exc
        if isinstance(cause, OSError):
            raise StoreIOError(f"copy failed: {os_reason(cause)}", cause.errno) from None
        if isinstance(exc, KeyError):
            raise
        raise BadDataError(f"copy failed: {exc}") from None
    finally:
        CANCEL.clear()
        release_buffers()


def _dispatch(
    pipelines: ParallelPipelines,
    backend: str,
    concurrency: int,
    client: Any,
    progress: Progress,
    stop: Callable[[], None] | None,
) -> None:
    """Run the pipelines on ``backend``; ``stop()`` at once when they fail."""
    try:
        if backend == "distributed":
            _run_distributed(pipelines, client, concurrency, progress)
        elif backend == "sequential" or (backend == "dask" and concurrency == 1):
            from rechunker.executors.python import PythonPipelineExecutor

            executor = PythonPipelineExecutor()
            executor.execute_plan(executor.pipelines_to_plan(_counted(pipelines, progress)))
        elif backend == "dask":
            _run_dask_threads(pipelines, concurrency, progress, stop)
        else:
            raise UsageError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    except BaseException:
        if stop is not None:  # the dask backend has called it already: twice is harmless
            stop()
        raise


def _run_dask_threads(
    pipelines: ParallelPipelines,
    threads: int,
    progress: Progress,
    stop: Callable[[], None] | None = None,
) -> None:
    import dask
    from rechunker.executors.dask import DaskPipelineExecutor

    executor = DaskPipelineExecutor()
    plan = executor.pipelines_to_plan(_counted(pipelines, progress))
    pool = WriterPool(threads, thread_name_prefix="zarrgeno-copy")
    try:
        # One pipeline (array) at a time keeps `threads` tasks in flight, not more.
        for delayed in plan:
            dask.compute(delayed, scheduler="threads", pool=pool)
    except BaseException:
        CANCEL.set()  # stop running tasks at their next chunk, then wait for them
        if stop is not None:  # tasks waiting for a slow server return at once
            stop()
        raise
    finally:
        pool.drain()


def _run_distributed(
    pipelines: ParallelPipelines, client: Any, limit: int, progress: Progress
) -> None:
    from distributed import as_completed

    if client is None:
        raise UsageError("the distributed backend needs a dask.distributed client")
    for pipeline in pipelines:
        [config] = client.scatter([pipeline.config], broadcast=True)
        for stage in pipeline.stages:
            keys: Iterator[Any] = iter(stage.mappable or ())
            pending = as_completed()
            for key in keys:
                pending.add(client.submit(_remote, stage.function, key, config, pure=False))
                if pending.count() >= limit:
                    break
            try:
                for future in pending:
                    _result(future)
                    progress.advance(1)
                    key = next(keys, None)
                    if key is not None:
                        pending.add(client.submit(_remote, stage.function, key, config, pure=False))
            except BaseException:
                client.cancel(list(pending.futures))
                raise


def _remote(function: Callable[..., None], key: Any, config: Any) -> None:
    """Run one task on a worker; its buffers are freed after it, as worker threads live on."""
    try:
        function(key, config=config)
    finally:
        release_buffers()


def _result(future: Any) -> None:
    try:
        future.result()
    except (ZarrgenoError, OSError, RuntimeError, ValueError):
        raise  # the task's own error (a corrupt chunk, a full disk), as in-process
    except Exception as exc:  # KilledWorker, CommClosedError, ...
        raise ClusterError(
            f"a copy task failed on the cluster: {type(exc).__name__}: {exc}"
        ) from None
