"""The ``zarrgeno`` command line: parse, make one library call, render.

Importing this package is cheap on purpose: the console script imports it to find
:func:`main`, and so does every worker process that ``multiprocessing`` spawns from the
command line (spawn re-imports the parent's main script). The commands, typer and the
libraries behind them load when :func:`main` runs or :data:`app` is first used.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import typer


#: The module that registers each command (``zarrgeno.cli.NAME``), so that running one
#: command imports only its module; ``--help`` imports them all, in this order.
#: tests/test_startup.py checks this table against the commands the modules register.
COMMAND_MODULES = {
    "simulate": "simulate",
    "info": "info",
    "stats": "stats",
    "backends": "backends",
    "rechunk": "rechunk",
    "recompress": "rechunk",
    "codecs": "codecs",
    "verify": "verify",
    "download": "download",
    "consolidate": "consolidate",
}
_MODULE_ORDER = tuple(dict.fromkeys(COMMAND_MODULES.values()))
#: Options of the root command that take a value (see zarrgeno.cli.common._root).
_ROOT_VALUE_OPTIONS = ("--cache",)


def _app(command: str | None = None) -> typer.Typer:
    """The typer app with the commands registered: only ``command``'s module when it is
    known (a run of one command loads nothing else), every module otherwise."""
    from zarrgeno.cli.common import app

    module = COMMAND_MODULES.get(command or "")
    for name in (module,) if module else _MODULE_ORDER:
        importlib.import_module(f"zarrgeno.cli.{name}")  # registers its commands on ``app``
    rank = {name: i for i, name in enumerate(COMMAND_MODULES)}
    # `--help` lists the commands in the table's order, whichever module was imported first.
    app.registered_commands.sort(key=lambda c: rank.get(_command_name(c), len(rank)))
    for info in app.registered_commands:
        if info.help is None and info.callback is not None:
            info.help = _reflow(inspect.getdoc(info.callback) or "")
    return app


def _command_name(info: typer.models.CommandInfo) -> str:
    """A registered command's name (typer derives it from the function when not given)."""
    if info.name:
        return info.name
    return getattr(info.callback, "__name__", "").replace("_", "-")


def command_of(argv: list[str]) -> str | None:
    """The command word of a command line (``zarrgeno --cache D stats X`` -> ``stats``), or
    None when there is none (``zarrgeno --help``)."""
    args = iter(argv)
    for arg in args:
        if arg in _ROOT_VALUE_OPTIONS:
            next(args, None)
        elif not arg.startswith("-"):
            return arg
    return None


def _reflow(doc: str) -> str:
    """A docstring as help text: each paragraph on one line.

    typer's rich help keeps a docstring's line breaks, so on an 80-column terminal a line
    that is a little too long wraps into a one-word line; joined paragraphs wrap cleanly.
    """
    return "\n\n".join(" ".join(p.split()) for p in doc.split("\n\n"))


def __getattr__(name: str) -> typer.Typer:
    """``zarrgeno.cli.app``: the typer app with every command registered, built on first
    use so that importing this package stays cheap (see the module docstring)."""
    if name == "app":
        return _app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    """Entry point of the ``zarrgeno`` console script.

    Runs the app outside Typer's standalone mode so that a usage error (an unknown option,
    a value that does not parse) is one ``Error:`` line with exit code 2, like every other
    error, instead of a framed box.
    """
    if sys.argv[1:] == ["--version"]:  # no typer, rich or numpy just to print a version
        from zarrgeno import __version__

        sys.stdout.write(f"zarrgeno {__version__}\n")
        sys.exit(0)
    command = command_of(sys.argv[1:])
    if command == "stats":
        _warm_up_stats(sys.argv[1:])
    # Usage errors derive from the public TyperException since typer 0.28 (pyproject.toml).
    from typer import Abort, TyperException

    from zarrgeno.cli.common import stop_on_sigterm, stopped_by
    from zarrgeno.render import Output

    app = _app(command)
    stop_on_sigterm()
    try:
        code = app(standalone_mode=False)
    except TyperException as exc:
        message = exc.format_message()
        if message:  # empty when `zarrgeno` alone printed the help
            ctx = getattr(exc, "ctx", None)
            command = ctx.command_path if ctx is not None else "zarrgeno"
            Output.error(f"{message} (see '{command} --help')")
        sys.exit(exc.exit_code)
    except (Abort, KeyboardInterrupt):
        message, stop_code = stopped_by()
        Output.error(message)
        sys.exit(int(stop_code))
    sys.exit(code if isinstance(code, int) else 0)


def _option(argv: list[str], *names: str) -> str | None:
    """The value given to option ``names`` on a command line (its last one), if any."""
    value = None
    for k, arg in enumerate(argv):
        for name in names:
            if arg == name and k + 1 < len(argv):
                value = argv[k + 1]
            elif arg.startswith(name + "="):
                value = arg[len(name) + 1 :]
    return value


def _warm_up_stats(argv: list[str]) -> None:
    """``zarrgeno stats`` on the multiprocessing backend: start its worker processes now,
    so that their imports overlap with this process's (see
    :func:`zarrgeno.stats.backends.processes.warm_up`). The options are only peeked at here;
    typer parses them, and refuses bad ones, as usual (an unused pool is stopped)."""
    from zarrgeno.stats.backends import DEFAULT_BACKEND

    if {"--help", "-h", "--visualize"} & set(argv) or any(a.startswith("memory://") for a in argv):
        return  # (--visualize and in-memory stores default to dask)
    if (_option(argv, "--backend", "-b") or DEFAULT_BACKEND) != "multiprocessing":
        return
    workers = _option(argv, "--workers", "-w")
    if workers is not None and not (workers.isdigit() and int(workers) >= 1):
        return
    from zarrgeno.stats.backends.processes import warm_up

    warm_up(int(workers) if workers is not None else None)


__all__ = ["COMMAND_MODULES", "app", "command_of", "main"]
