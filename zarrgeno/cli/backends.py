"""`zarrgeno backends`: the installed statistics backends."""

from __future__ import annotations

from zarrgeno.cli.common import JsonOpt, app, print_json, reports_errors
from zarrgeno.render import Column, Output


@app.command()
@reports_errors
def backends(json_output: JsonOpt = False) -> None:
    """List the installed statistics backends (entry-point group zarrgeno.backends).

    A third-party package adds one by declaring an entry point in that group that names
    a zarrgeno.stats.backends.Backend subclass.

    Example: zarrgeno backends
    """
    # Here, not at the top: --help imports this module; the registry imports importlib.metadata.
    from zarrgeno.stats.backends import describe_backends
    from zarrgeno.stats.backends.base import option_flag

    infos = describe_backends()
    if json_output:
        print_json([i.to_dict() for i in infos])
        return
    Output.table(
        None,
        [Column("backend"), Column("options"), Column("description"), Column("entry point")],
        [
            [
                i.name,
                ", ".join(option_flag(o) for o in i.options) or "-",
                i.summary if i.available else f"unavailable: {i.error}",
                i.target,
            ]
            for i in infos
        ],
    )
