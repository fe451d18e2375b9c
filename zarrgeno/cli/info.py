"""`zarrgeno info`."""
