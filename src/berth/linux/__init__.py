"""Thin, typed wrappers over the operating system. Failures become kinds from ``berth.errors``."""
