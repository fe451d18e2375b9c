"""zarrgeno: genotype statistics, inspection, rechunking and recompression for Zarr stores."""

from __future__ import annotations

__version__ = "0.1.0"
