"""Simulated AG1000G-AO-shaped stores: genotypes, and a sites store for ``--region``."""
