"""The Typer application, shared CLI arguments and the one place errors become exit codes."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from zarrgeno import __version__
from zarrgeno.errors import ExitCode, ZarrgenoError
from zarrgeno.remote import CACHE_ENV
from zarrgeno.render import Output
from zarrgeno.store import DEFAULT_STORE, STORE_ENV

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
#: Where chunks read from remote stores are kept (see zarrgeno.remote.ChunkCache).
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

# The TLS files of a tls:// --scheduler, named as `dask worker` names them; every command
# that takes --scheduler takes these (see zarrgeno.cluster.tls_security). Unset, dask's
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
        except KeyboardInterrupt:
            Output.error("interrupted")
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None

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


DEFAULT_STORE_TEXT = DEFAULT_STORE
