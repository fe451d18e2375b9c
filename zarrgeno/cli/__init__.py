"""The ``zarrgeno`` command line: parse, make one library call, render."""

from __future__ import annotations

from zarrgeno.cli.app import app

# Each module registers its commands on ``app``; `--help` lists them in this order.
from zarrgeno.cli import simulate as _simulate  # noqa: F401  isort: skip
from zarrgeno.cli import info as _info  # noqa: F401  isort: skip
from zarrgeno.cli import stats as _stats  # noqa: F401  isort: skip
from zarrgeno.cli import rechunk as _rechunk  # noqa: F401  isort: skip
from zarrgeno.cli import remote as _remote  # noqa: F401  isort: skip


def main() -> None:
    """Entry point of the ``zarrgeno`` console script."""
    app()


__all__ = ["app", "main"]
