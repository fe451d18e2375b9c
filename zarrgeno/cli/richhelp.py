"""typer's rich help without importing rich.markdown and rich.traceback up front.

typer.rich_utils, which draws every ``--help``, imports ``rich.markdown`` (and with it
markdown-it and pygments) and ``rich.traceback`` at its top: about 60 ms, more than a third of
what ``zarrgeno --help`` takes without them. The help never renders markdown (the app's
markup mode is ``rich``) and prints no traceback, so :func:`import_rich_utils` imports
typer.rich_utils with a stand-in for each of those two classes that imports the real one
when it is first used (called, or an attribute such as ``Traceback.from_exception`` read).
Only the command line calls it, and only for a help run (see :func:`zarrgeno.cli.main`).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

#: The modules typer.rich_utils imports at its top but a help run does not use, and the one
#: class it takes from each.
DEFERRED = {"rich.markdown": "Markdown", "rich.traceback": "Traceback"}


class _Deferred(type):
    """The metaclass of a stand-in: reading an attribute the stand-in lacks reads the real
    class's (``Traceback.from_exception``)."""

    def __getattr__(cls, attr: str) -> Any:
        return getattr(cls.real(), attr)


def _stand_in(module: str, name: str) -> type:
    """A class named like ``module.name`` whose instances and attributes are the real one's.

    A class, not a function: typer's annotations such as ``Markdown | Text`` need a type.
    """

    def real() -> type:
        return getattr(importlib.import_module(module), name)

    def new(cls: type, *args: Any, **kwargs: Any) -> Any:
        return real()(*args, **kwargs)

    namespace = {"__new__": new, "real": staticmethod(real), "__module__": module}
    return _Deferred(name, (), namespace)


def import_rich_utils() -> None:
    """Import typer.rich_utils without importing the modules of :data:`DEFERRED`.

    Nothing to do when it is imported already, or when one of those modules is (then typer
    gets the real classes). A typer that takes more names from them than these stand-ins
    provide is imported the ordinary way.
    """
    if "typer.rich_utils" in sys.modules or any(m in sys.modules for m in DEFERRED):
        return
    stubs = {}
    for module, name in DEFERRED.items():
        stub = types.ModuleType(module, "A stand-in (see zarrgeno.cli.richhelp).")
        setattr(stub, name, _stand_in(module, name))
        stubs[module] = sys.modules[module] = stub
    try:
        importlib.import_module("typer.rich_utils")
    except ImportError:
        pass  # imported below with the real modules
    finally:
        # Anyone else importing these modules later gets the real ones.
        for module, stub in stubs.items():
            if sys.modules.get(module) is stub:
                del sys.modules[module]
    importlib.import_module("typer.rich_utils")
