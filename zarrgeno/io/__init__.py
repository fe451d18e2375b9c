"""Store I/O: open and validate stores, the one checked chunk read/decode path, safe writes,
consolidated metadata, sites and regions, inspection, and remote access."""
