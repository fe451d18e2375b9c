"""The ``distributed`` backend: dask.distributed, on a running scheduler or a local cluster."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from zarrgeno.errors import ClusterError, UsageError, ZarrgenoError
from zarrgeno.stats.backends.base import Backend, Notify
from zarrgeno.stats.plan import Partial, ProgressCallback, StatsPlan, WorkUnit


class DistributedBackend(Backend):
    """The units on dask.distributed workers, each reading and counting its own chunks.

    With ``scheduler`` (``tcp://HOST:PORT`` or ``tls://HOST:PORT``) it uses a cluster
    started with ``dask scheduler`` / ``dask worker``, a tls:// one with ``security`` (a
    ``distributed.Security``; default: dask's ``distributed.comm.tls`` configuration);
    otherwise it starts a local cluster of ``workers`` processes x ``threads_per_worker``
    threads on 127.0.0.1. With ``persist`` it runs the ``dask`` backend's dask.array graph
    instead: the genotypes are rechunked to all samples per block and kept in worker
    memory, as the Ag1000G tutorial does, then counted from there.

    dask reruns a task whose worker died up to ``distributed.scheduler.allowed-failures``
    times (dask config, read by the scheduler; default 3); then the run stops with a
    ClusterError naming the chunks of that task.

    A local cluster is started without the dask dashboard unless ``dashboard`` (its start
    imports bokeh, most of a second of CPU); how long the start took is part of
    :meth:`describe` and of the note sent to ``notify``.
    """

    name = "distributed"
    summary = "dask.distributed: a running cluster (--scheduler) or a local one"
    options = frozenset(
        {
            "workers",
            "threads_per_worker",
            "scheduler",
            "persist",
            "timeout",
            "security",
            "dashboard",
        }
    )

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.scheduler: str | None = self.config.get("scheduler")
        self.workers: int | None = self.config.get("workers")
        self.threads = int(self.config.get("threads_per_worker") or 1)
        self.persist = bool(self.config.get("persist"))
        self.timeout = float(self.config.get("timeout") or 10.0)
        if self.scheduler is not None and self.workers is not None:
            raise UsageError(
                "--workers starts a local cluster; it cannot be combined with --scheduler"
            )
        # zarrgeno.runtime.cluster is imported on first use throughout this module, for
        # start-up cost only (it imports ssl): `zarrgeno backends` imports this module.
        from zarrgeno.runtime.cluster import check_security, normalize_address

        # Refused here, before any data is read: TLS settings without a tls:// scheduler,
        # none for one, or certificate files that are missing or do not load.
        address = normalize_address(self.scheduler) if self.scheduler is not None else None
        self.security = check_security(address, self.config.get("security"))
        self.dashboard = bool(self.config.get("dashboard"))
        self._where = "local cluster"
        #: Seconds the local cluster took to start (None: a running cluster was used).
        self.start_seconds: float | None = None

    def describe(self) -> str:
        started = "" if self.start_seconds is None else f", started in {self.start_seconds:.2f} s"
        return f"{self.name} ({self._where}{started}{', persisted' if self.persist else ''})"

    @contextmanager
    def _client(self) -> Iterator[Any]:
        """A client of ``scheduler``, or of a local cluster whose workers get a thread lock
        for numcodecs (see :func:`_blosc_thread_mutex`)."""
        from zarrgeno.runtime.cluster import dask_client

        clock = time.perf_counter()
        with dask_client(
            self.scheduler,
            n_workers=self.workers,
            threads_per_worker=self.threads,
            timeout=self.timeout,
            security=self.security,
            dashboard=self.dashboard,
        ) as client:
            if self.scheduler is None:
                client.register_plugin(_blosc_thread_mutex(), name="zarrgeno-blosc-mutex")
                self.start_seconds = time.perf_counter() - clock
            yield client

    def run(
        self,
        plan: StatsPlan,
        *,
        progress: ProgressCallback | None = None,
        notify: Notify | None = None,
    ) -> Iterator[Partial]:
        # Imported on first use for start-up cost and an optional dependency (distributed
        # is an extra; the graph and unit modules import numpy), not to break a cycle.
        from zarrgeno.runtime.cluster import dashboard_link, scheduler_address
        from zarrgeno.stats.graph import persisted_tasks
        from zarrgeno.stats.plan import batch_units

        batches: dict[Any, tuple[WorkUnit, ...]] = {}  # by task key
        with self._client() as client:
            address = scheduler_address(client)
            workers = client.scheduler_info().get("workers", {})
            n_workers = len(workers)
            self._where = f"{n_workers} worker{'s' if n_workers != 1 else ''} at {address}"
            if notify is not None:
                # Without a dashboard dask still makes up a link (the configured address).
                served = self.scheduler is not None or self.dashboard
                link = dashboard_link(client) if served else None
                started = (
                    ""
                    if self.start_seconds is None
                    else f" (local cluster started in {self.start_seconds:.2f} s)"
                )
                notify(
                    f"dask scheduler {address}{started}" + (f", dashboard {link}" if link else "")
                )
            if self.persist:
                # _keep: the persisted blocks live as long as this reference does
                tasks, _keep = persisted_tasks(plan, client)
                futures = client.compute(tasks)
                batches.update((f.key, (u,)) for f, u in zip(futures, plan.units, strict=True))
            else:
                # One task reads and counts a batch of consecutive units: a unit's chunks
                # never travel between workers, and the scheduler and this client handle
                # a few tasks per worker thread rather than one per chunk row.
                threads = sum(int(w.get("nthreads", 1)) for w in workers.values())
                futures = self._submit(client, batch_units(plan.units, threads), batches)
            yield from self._gather(client, futures, batches, address, progress)

    @staticmethod
    def _submit(
        client: Any,
        groups: Sequence[tuple[WorkUnit, ...]],
        batches: dict[Any, tuple[WorkUnit, ...]],
    ) -> list[Any]:
        """Submit one task per group (recorded in ``batches`` by key); its futures."""
        from zarrgeno.stats.graph import batch_key
        from zarrgeno.stats.unit import run_units

        keys = [batch_key(group) for group in groups]
        batches.update(zip(keys, groups, strict=True))
        return list(client.map(run_units, groups, key=keys, pure=False))

    @classmethod
    def _gather(
        cls,
        client: Any,
        futures: list[Any],
        batches: dict[Any, tuple[WorkUnit, ...]],
        address: str,
        progress: ProgressCallback | None,
    ) -> Iterator[Partial]:
        """The partials of ``futures`` as they finish. A batch whose task kept killing
        workers is rerun one unit per task, so that the unit that kills them is the one
        named, as the multiprocessing backend does."""
        from distributed import as_completed

        finished = as_completed(futures)
        try:
            for future in finished:
                units = batches[future.key]
                if _killed(future):
                    if len(units) > 1:
                        alone = cls._submit(client, [(u,) for u in units], batches)
                        futures += alone
                        finished.update(alone)
                        continue
                    raise ClusterError(killed_worker_message(futures, batches)) from None
                if future.status == "error":
                    raise _task_error(future.exception(), address)
                parts = future.result()
                future.release()
                for part in parts if isinstance(parts, list) else (parts,):
                    if progress is not None:
                        progress(part.stop - part.start)
                    yield part
        except OSError as exc:
            if isinstance(exc, ZarrgenoError):
                raise  # a task's own I/O error (a server that failed for good)
            raise ClusterError(f"lost the dask scheduler at {address}: {exc}") from None


def _blosc_thread_mutex() -> Any:
    """A worker plugin giving numcodecs a thread lock in each local worker process (also
    after a restart), so that a killed worker leaves no semaphore for this process's
    resource tracker to warn about at exit (see
    :func:`zarrgeno.stats.backends.blosc.thread_mutex`)."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class BloscThreadMutex(WorkerPlugin):
        def setup(self, worker: Any) -> None:
            # In the worker, on first use: blosc imports numcodecs (start-up cost only).
            from zarrgeno.stats.backends.blosc import thread_mutex

            thread_mutex()

    return BloscThreadMutex()


def _task_error(exc: BaseException | None, address: str) -> BaseException:
    """A task's own error (bad data, a missing chunk) as it is; anything else the cluster
    raised (a graph the scheduler cannot unpickle because its zarrgeno or dask differs, a
    worker-side failure) as one line naming the scheduler."""
    if isinstance(exc, ZarrgenoError):
        return exc
    text = " ".join(str(exc).split()) if exc is not None else ""
    text = text.split(". ", 1)[0].rstrip(".")  # the first sentence
    hint = ""
    if "deserializ" in text.lower():
        hint = "; the scheduler and workers must run the same zarrgeno, dask and Python"
    what = type(exc).__name__ if exc is not None else "an unknown error"
    return ClusterError(f"the dask cluster at {address} failed a task ({what}: {text}){hint}")


def _is_killed_worker(exc: BaseException | None) -> bool:
    return type(exc).__name__ == "KilledWorker"


def _killed(future: Any) -> bool:
    return future.status == "error" and _is_killed_worker(future.exception())


def killed_worker_message(
    futures: Sequence[Any], batches: Mapping[Any, tuple[WorkUnit, ...]]
) -> str:
    """A one-line ClusterError message for dask's ``KilledWorker``: the chunks of the
    one-unit task that kept killing workers, and how many workers it killed.

    Every task that sat on a worker when it died is blamed, so a task beside the culprit
    may be given up on as well: all the one-unit tasks given up on so far are named (a
    batch of several is rerun unit by unit instead).
    """
    errors = [f.exception() for f in futures if _killed(f) and len(batches[f.key]) == 1]
    names: list[str] = []
    for error in errors:
        what = _task_chunks(error.task, batches)
        if what not in names:
            names.append(what)
    allowed = int(errors[0].allowed_failures)
    beside = "; they ran on the same workers" if len(names) > 1 else ""
    return (
        f"{' or '.join(names)} killed {allowed + 1} dask workers "
        f"(distributed.scheduler.allowed-failures is {allowed}{beside}); the run was stopped "
        "(out of memory, or a chunk that crashes the decoder? see the workers' logs)"
    )


def _task_chunks(key: Any, batches: Mapping[Any, tuple[WorkUnit, ...]]) -> str:
    """The stored chunks of the task ``key``: a batch's task (consecutive units of one
    array), a block read of ``--persist``, or else the key itself."""
    if key in batches:
        units = batches[key]
        return units[0].reader.describe_chunks(units[0].start, units[-1].stop)
    if isinstance(key, tuple) and len(key) >= 3 and str(key[0]).startswith("read-"):
        # ("read-CONTIG-TOKEN", i, j, 0), named in zarrgeno.stats.graph.genotype_arrays
        readers = {id(u.reader): u.reader for units in batches.values() for u in units}
        for reader in readers.values():
            if str(key[0]).endswith(reader.token[:8]):
                return reader.describe_chunk(int(key[1]), int(key[2]))
    return f"the dask task {key!r}"
