"""Sync domain logic: extraction, guards. Plain Python, no Dagster."""
