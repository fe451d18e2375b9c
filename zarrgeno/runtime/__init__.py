"""Where work runs: the core count, and the dask.distributed cluster."""
