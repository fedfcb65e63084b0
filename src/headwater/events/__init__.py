"""Headwater's event platform (schema registry, event bus)."""
