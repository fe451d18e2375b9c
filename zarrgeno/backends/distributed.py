"""The ``distributed`` backend: dask.distributed, on a running scheduler or a local cluster."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from zarrgeno.backends.base import Backend, Notify
from zarrgeno.errors import ClusterError

if TYPE_CHECKING:
    from zarrgeno.stats.api import Partial, ProgressCallback, StatsPlan, WorkUnit


class DistributedBackend(Backend):
    """The units on dask.distributed workers, each reading and counting its own chunks.

    With ``scheduler`` (``tcp://HOST:PORT`` or ``tls://HOST:PORT``) it uses a cluster
    started with ``dask scheduler`` / ``dask worker``, a tls:// one with ``security`` (a
    ``distributed.Security``; default: dask's ``distributed.comm.tls`` configuration);
    otherwise it starts a local cluster of ``workers`` processes x ``threads_per_worker``
    threads on 127.0.0.1. With ``persist`` it runs the ``dask`` backend's dask.array graph
    instead: the genotypes are rechunked to all samples per block and kept in worker
    memory, as the Ag1000G tutorial does, then counted from there.
    """

    name = "distributed"
    summary = "dask.distributed: a running cluster (--scheduler) or a local one"
    options = frozenset(
        {"workers", "threads_per_worker", "scheduler", "persist", "timeout", "security"}
    )

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.scheduler: str | None = self.config.get("scheduler")
        self.workers: int | None = self.config.get("workers")
        self.threads = int(self.config.get("threads_per_worker") or 1)
        self.persist = bool(self.config.get("persist"))
        self.timeout = float(self.config.get("timeout") or 10.0)
        if self.scheduler is not None and self.workers is not None:
            from zarrgeno.errors import UsageError

            raise UsageError(
                "--workers starts a local cluster; it cannot be combined with --scheduler"
            )
        from zarrgeno.cluster import check_security, normalize_address

        # Refused here, before any data is read: TLS settings without a tls:// scheduler,
        # none for one, or certificate files that are missing or do not load.
        address = normalize_address(self.scheduler) if self.scheduler is not None else None
        self.security = check_security(address, self.config.get("security"))
        self._where = "local cluster"

    def describe(self) -> str:
        return f"{self.name} ({self._where}{', persisted' if self.persist else ''})"

    def run(
        self,
        plan: StatsPlan,
        *,
        progress: ProgressCallback | None = None,
        notify: Notify | None = None,
    ) -> Iterator[Partial]:
        from distributed import as_completed

        from zarrgeno.cluster import dashboard_link, dask_client, scheduler_address
        from zarrgeno.stats.api import run_unit
        from zarrgeno.stats.graph import persisted_tasks, unit_key

        with dask_client(
            self.scheduler,
            n_workers=self.workers,
            threads_per_worker=self.threads,
            timeout=self.timeout,
            security=self.security,
        ) as client:
            address = scheduler_address(client)
            n_workers = len(client.scheduler_info().get("workers", {}))
            self._where = f"{n_workers} worker{'s' if n_workers != 1 else ''} at {address}"
            if notify is not None:
                link = dashboard_link(client)
                notify(f"dask scheduler {address}" + (f", dashboard {link}" if link else ""))
            if self.persist:
                # _keep: the persisted blocks live as long as this reference does
                tasks, _keep = persisted_tasks(plan, client)
                futures = client.compute(tasks)
            else:
                # One task reads and counts a unit: a unit's chunks never travel between
                # workers (separate read tasks for its two sample chunks would).
                keys = [unit_key(u) for u in plan.units]
                futures = client.map(run_unit, plan.units, key=keys, pure=False)
            sizes = {f.key: u.n_variants for f, u in zip(futures, plan.units, strict=True)}
            try:
                for future in as_completed(futures):
                    if future.status == "error":
                        exc = future.exception()
                        if type(exc).__name__ == "KilledWorker":
                            raise ClusterError(f"dask workers kept dying: {exc}") from None
                        raise exc
                    part = future.result()
                    future.release()
                    if progress is not None:
                        progress(sizes[future.key])
                    yield part
            except OSError as exc:
                raise ClusterError(f"lost the dask scheduler at {address}: {exc}") from None

    def map(
        self, func: Callable[[WorkUnit], Partial], units: tuple[WorkUnit, ...]
    ) -> Iterator[Partial]:
        from distributed import as_completed

        from zarrgeno.cluster import dask_client

        with dask_client(
            self.scheduler,
            n_workers=self.workers,
            threads_per_worker=self.threads,
            timeout=self.timeout,
            security=self.security,
        ) as client:
            for future in as_completed(client.map(func, units, pure=False)):
                yield future.result()
