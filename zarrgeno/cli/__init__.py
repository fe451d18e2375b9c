"""The ``zarrgeno`` command line: parse, make one library call, render.

Importing this package is cheap on purpose: the console script imports it to find
:func:`main`, and so does every worker process that ``multiprocessing`` spawns from the
command line (spawn re-imports the parent's main script). The commands, typer and the
libraries behind them load when :func:`main` runs or :data:`app` is first used.
"""

from __future__ import annotations

import inspect
import sys
import types
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import typer


def _app() -> typer.Typer:
    """The typer app with every command registered (imported on first use)."""
    from zarrgeno.cli.app import app

    # Each module registers its commands on ``app``; `--help` lists them in this order.
    from zarrgeno.cli import simulate as _simulate  # noqa: F401  isort: skip
    from zarrgeno.cli import info as _info  # noqa: F401  isort: skip
    from zarrgeno.cli import stats as _stats  # noqa: F401  isort: skip
    from zarrgeno.cli import rechunk as _rechunk  # noqa: F401  isort: skip
    from zarrgeno.cli import remote as _remote  # noqa: F401  isort: skip

    for info in app.registered_commands:
        if info.help is None and info.callback is not None:
            info.help = _reflow(inspect.getdoc(info.callback) or "")
    return app


def _reflow(doc: str) -> str:
    """A docstring as help text: each paragraph on one line.

    typer's rich help keeps a docstring's line breaks, so on an 80-column terminal a line
    that is a little too long wraps into a one-word line; joined paragraphs wrap cleanly.
    """
    return "\n\n".join(" ".join(p.split()) for p in doc.split("\n\n"))


class _CliPackage(types.ModuleType):
    """This package, with ``app`` always meaning the typer app.

    The package has a submodule named ``app`` too; importing it would rebind the package
    attribute to that module, so the attribute is a property that ignores the rebinding.
    """

    @property
    def app(self) -> typer.Typer:
        return _app()

    @app.setter
    def app(self, value: object) -> None:  # the import system binding the submodule
        pass


sys.modules[__name__].__class__ = _CliPackage


def main() -> None:
    """Entry point of the ``zarrgeno`` console script.

    Runs the app outside Typer's standalone mode so that a usage error (an unknown option,
    a value that does not parse) is one ``Error:`` line with exit code 2, like every other
    error, instead of a framed box.
    """
    from typer import Abort
    from typer._click.exceptions import ClickException  # typer's own click (typer >= 0.26)

    from zarrgeno.cli.app import stop_on_sigterm, stopped_by
    from zarrgeno.render import Output

    app = _app()
    stop_on_sigterm()
    try:
        code = app(standalone_mode=False)
    except ClickException as exc:
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


__all__ = ["app", "main"]
