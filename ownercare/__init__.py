"""Composition root: CLI, settings and the embedded stack launcher."""
