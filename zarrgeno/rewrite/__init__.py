"""The copy engine: plan a rechunk or recompression, execute it in bounded memory, verify it."""
