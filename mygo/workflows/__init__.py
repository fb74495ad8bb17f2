"""Workflows over the stages: the pipeline (`main`), sweeps, reproduction and lineage."""
