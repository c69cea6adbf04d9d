"""glibc's allocator, set for a daemon that streams large buffers (pulls, pushes, loads).

By default glibc serves an allocation of 128 KiB or more with a fresh mmap, and gives memory back to
the kernel as soon as 128 KiB are free at the top of the heap. A pull moves each byte through several
buffers of 256 KiB to 1 MiB, each one a new mmap and new zeroed pages: half of berthd's CPU time in a
500 MB pull was the kernel's (1.75 s against dockerd's 1.0 s). With mmap kept for 8 MiB and more
and the heap trimmed past 64 MiB, the buffers come from memory already mapped: the pull went from
2.6 s to 2.2 s (docs/performance.md). The environment's MALLOC_MMAP_THRESHOLD_ and
MALLOC_TRIM_THRESHOLD_ still win (they are read before this runs, and this then leaves them).
"""

from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 8 << 20
TRIM_THRESHOLD = 64 << 20


def tune(environ: dict[str, str] | None = None) -> bool:
    """True when glibc took the settings; False elsewhere (another libc, or the environment set them)."""
    env = os.environ if environ is None else environ
    if "MALLOC_MMAP_THRESHOLD_" in env or "MALLOC_TRIM_THRESHOLD_" in env:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # this process's symbols, libc's among them (no ldconfig run)
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
