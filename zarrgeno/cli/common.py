"""The Typer application, shared CLI arguments and the one place errors become exit codes.

Every command module (``zarrgeno.cli.NAME``) registers its command on :data:`app`.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

import zarrgeno.cli.exits as exits
from zarrgeno import __version__
from zarrgeno.defaults import (  # not the library modules
    CACHE_ENV,
    DEFAULT_FETCH_CONCURRENCY,
    FETCH_CONCURRENCY_ENV,
    MAX_FETCH_CONCURRENCY,
    PROMISE_FACTOR,
    STORE_ENV,
)
from zarrgeno.errors import ZarrgenoError
from zarrgeno.render import Output

app = typer.Typer(
    name="zarrgeno",
    help=(
        "Inspect, rechunk, recompress and compute genotype statistics on Zarr genotype "
        "stores (Ag1000G / MalariaGEN and VCF Zarr layouts) that do not fit in memory."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)

F = TypeVar("F", bound=Callable[..., Any])

#: The STORE argument every reading command takes.
StoreArg = Annotated[
    str,
    typer.Argument(
        metavar="STORE",
        envvar=STORE_ENV,
        show_envvar=True,
        help="Store: a directory, a .zip file or an fsspec URL (memory://, gs://, s3://, https://).",
    ),
]
#: Where chunks read from remote stores are kept (see zarrgeno.io.remote_cache.ChunkCache).
CacheOpt = Annotated[
    str | None,
    typer.Option(
        "--cache",
        metavar="DIR",
        envvar=CACHE_ENV,
        show_envvar=True,
        help="Keep chunks read from remote (URL) stores in DIR, so that none is fetched twice.",
    ),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")
]

#: The memory budget of the commands that copy or compare chunks (rechunk, recompress, verify).
DEFAULT_MAX_MEM = "4GB"
MaxMemOpt = Annotated[
    str,
    typer.Option(
        "--max-mem",
        help="Memory budget of the whole process, e.g. 4GB, 500MB, 2GiB: peak RSS stays within "
        f"{PROMISE_FACTOR}x this plus the interpreter's baseline, whatever the parallelism.",
    ),
]
#: Chunk requests kept in flight ahead of decoding, per process (remote stores).
FetchConcurrencyOpt = Annotated[
    int | None,
    typer.Option(
        "--fetch-concurrency",
        metavar="N",
        min=1,
        max=MAX_FETCH_CONCURRENCY,
        envvar=FETCH_CONCURRENCY_ENV,
        show_envvar=True,
        help="Chunk requests each process keeps in flight ahead of decoding, for remote (URL) "
        f"stores; their bodies count in --max-mem. [default: {DEFAULT_FETCH_CONCURRENCY}]",
    ),
]


def use_fetch_concurrency(window: int | None) -> None:
    """Make ``window`` the fetch concurrency of this command and its worker processes,
    which read remote options from the environment."""
    if window is not None:
        os.environ[FETCH_CONCURRENCY_ENV] = str(window)


MissingOpt = Annotated[
    bool | None,
    typer.Option(
        "--allow-missing/--require-chunks",
        help="Read a chunk missing from the store as the fill value (--allow-missing) or refuse "
        "it (--require-chunks); default: read it so only when the store's writer leaves out "
        "fill-value chunks (Zarr format 3, bio2zarr), else refuse.",
    ),
]
ProgressOpt = Annotated[
    bool | None,
    typer.Option(
        "--progress/--no-progress", help="Progress bar on stderr (default: when it is a terminal)."
    ),
]

#: How `info` and `consolidate` explain a document on which .zmetadata disagrees.
MISMATCH_REASONS = {
    "differs": "differs from the consolidated copy",
    "not consolidated": "missing from .zmetadata (zarr will not see it)",
    "stale": "in .zmetadata but not in the store",
}

# The TLS files of a tls:// --scheduler, named as `dask worker` names them; every command
# that takes --scheduler takes these (see zarrgeno.runtime.cluster.tls_security). Unset, dask's
# configuration (distributed.comm.tls.*) is used.
_TLS_PANEL = "TLS (a tls:// --scheduler)"
TlsCaFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--tls-ca-file",
        metavar="PEM",
        rich_help_panel=_TLS_PANEL,
        help="CA certificate that signed the cluster's certificates "
        "(default: dask config distributed.comm.tls.ca-file).",
    ),
]
TlsCertOpt = Annotated[
    Path | None,
    typer.Option(
        "--tls-cert",
        metavar="PEM",
        rich_help_panel=_TLS_PANEL,
        help="This client's certificate (default: dask config distributed.comm.tls.client.cert).",
    ),
]
TlsKeyOpt = Annotated[
    Path | None,
    typer.Option(
        "--tls-key",
        metavar="PEM",
        rich_help_panel=_TLS_PANEL,
        help="The key of --tls-cert, unless that file holds it too "
        "(default: dask config distributed.comm.tls.client.key).",
    ),
]


def reports_errors(func: F) -> F:
    """Turn package errors into a one-line message and their exit code; no traceback.

    Anything else is a bug and keeps its traceback.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ZarrgenoError as exc:
            Output.error(str(exc))
            raise typer.Exit(int(exc.exit_code)) from None
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM (see zarrgeno.cli.exits)
            raise typer.Exit(int(exits.report_stop())) from None

    return wrapper  # type: ignore[return-value]


def print_json(data: Any) -> None:
    """Write ``data`` as indented JSON to standard output."""
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"zarrgeno {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
    cache: CacheOpt = None,
) -> None:
    """Genotype stores that no longer fit in memory.

    The STORE argument of each command defaults to $ZARRGENO_STORE, then data/AG1000G-AO.
    """
    if cache:  # every command, and its worker processes, read remote options from here
        os.environ[CACHE_ENV] = str(Path(cache).expanduser().absolute())
