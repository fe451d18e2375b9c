"""``python -m zarrgeno``: the same command-line interface as ``zarrgeno``."""

from zarrgeno.cli import main

main()
