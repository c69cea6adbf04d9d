"""Volumes: the local driver (a directory under --data-root per volume)."""
