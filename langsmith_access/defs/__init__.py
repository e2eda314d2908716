"""Thin Dagster wiring around the plain-Python modules; autoloaded by ``definitions.py``."""
