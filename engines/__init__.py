"""Pluggable engines: one module per backend, plain synchronous Python."""
