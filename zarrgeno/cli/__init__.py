"""The ``zarrgeno`` command line: parse, make one library call, render.

Importing this package is cheap on purpose: the console script imports it to find
:func:`main`, and so does every worker process that ``multiprocessing`` spawns from the
command line (spawn re-imports the parent's main script). The commands, typer and the
libraries behind them load when :func:`main` runs or :data:`app` is first used.
"""

from __future__ import annotations

import os
import sys

import zarrgeno.cli.exits as exits

TYPE_CHECKING = False  # not typing's, which would load before main() handles Ctrl-C
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
    import importlib
    import inspect

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


def _root_help_app() -> typer.Typer:
    """The app of a command line that runs no command, such as ``zarrgeno --help``: every
    command with its help text, in order, but none of its options.

    The root help shows only the commands' names and help texts, and building all their
    options (typer evaluates each parameter's annotation; the --backend help of ``stats``
    reads the backend registry) was most of the time ``zarrgeno --help`` took.
    tests/test_startup.py checks that both apps print the same help.
    """
    import copy

    app = _app()
    stand_ins = []
    for info in app.registered_commands:
        stand_in = copy.copy(info)
        stand_in.name = _command_name(info)
        stand_in.callback = _listed_only
        stand_ins.append(stand_in)
    root = copy.copy(app)  # the same root options, callback and settings
    root.registered_commands = stand_ins
    return root


def _listed_only() -> None:
    """The callback of every command of :func:`_root_help_app`, which only prints help."""


def _runs_no_command(argv: list[str]) -> bool:
    """Whether ``argv`` names no command (``zarrgeno``, ``zarrgeno --help``) or asks for the
    root help before one (``zarrgeno --help stats`` prints the root help, listing them all)."""
    options, index = _split_root(argv)
    return index is None or bool({"--help", "-h"} & set(options))


def _command_name(info: typer.models.CommandInfo) -> str:
    """A registered command's name (typer derives it from the function when not given)."""
    if info.name:
        return info.name
    return getattr(info.callback, "__name__", "").replace("_", "-")


def command_of(argv: list[str]) -> str | None:
    """The command word of a command line (``zarrgeno --cache D stats X`` -> ``stats``), or
    None when there is none (``zarrgeno --help``)."""
    index = _split_root(argv)[1]
    return None if index is None else argv[index]


def _split_root(argv: list[str]) -> tuple[list[str], int | None]:
    """The root options before the command word (their values left out), and where that
    word is in ``argv`` (None when there is none)."""
    options: list[str] = []
    k = 0
    while k < len(argv):
        if not argv[k].startswith("-"):
            return options, k
        options.append(argv[k])
        k += 2 if argv[k] in _ROOT_VALUE_OPTIONS else 1  # past its value
    return options, None


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

    Ctrl-C and SIGTERM are handled from its first line (:mod:`zarrgeno.cli.exits`): at any
    moment after it, they stop the command with one line and exit 130 or 143.
    """
    # No command uses BLAS, but numpy's OpenBLAS starts a thread per core at import that
    # spins for a while: one thread spares every command that CPU (the user's setting wins).
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        exits.install()
        code: int | None = _run(sys.argv[1:])
    except KeyboardInterrupt:
        code = None
    except OSError as exc:
        if not exits.is_closed_stdout(exc):
            raise
        code = exits.closed_stdout()
    # A plain store, where Python checks for no signal: from here one cannot raise.
    exits.run.over = True
    sys.exit(exits.finish(code))


def _run(argv: list[str]) -> int:
    """Run the command line ``argv``; its exit code.

    The app runs outside Typer's standalone mode so that a usage error (an unknown option,
    a value that does not parse) is one ``Error:`` line with exit code 2, like every other
    error, instead of a framed box.
    """
    if argv == ["--version"]:  # no typer, rich or numpy just to print a version
        from zarrgeno import __version__

        sys.stdout.write(f"zarrgeno {__version__}\n")
        return 0
    command = command_of(argv)
    if command == "stats":
        _warm_up_stats(argv)
    # Usage errors derive from the public TyperException since typer 0.28 (pyproject.toml).
    from typer import Abort, TyperException

    from zarrgeno.render import Output

    app = _root_help_app() if _runs_no_command(argv) else _app(command)
    if not argv or {"--help", "-h"} & set(argv):
        from zarrgeno.cli.richhelp import import_rich_utils

        import_rich_utils()  # without rich.markdown and rich.traceback (see there)
    try:
        code = app(args=argv, standalone_mode=False)
    except TyperException as exc:
        message = exc.format_message()
        if message:  # empty when `zarrgeno` alone printed the help
            ctx = getattr(exc, "ctx", None)
            command = ctx.command_path if ctx is not None else "zarrgeno"
            Output.error(f"{message} (see '{command} --help')")
        return exc.exit_code
    except Abort:  # typer's form of a KeyboardInterrupt while it parses
        raise KeyboardInterrupt from None
    except SystemExit as exc:  # typer's exit 1 on a broken pipe: stdout's reader is gone?
        if exits.is_closed_stdout(exc.__context__):
            return exits.closed_stdout()
        raise
    return code if isinstance(code, int) else 0


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
