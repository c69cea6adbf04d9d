"""Human output as the docker CLI prints it: sizes, durations, tables."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TextIO

from berth.units import human_duration


def human_size(n: float) -> str:
    """docker's units.HumanSize: decimal units, 3 significant digits ("1.98MB", "512B")."""
    units = ["B", "kB", "MB", "GB", "TB", "PB"]
    i = 0
    while n >= 1000 and i < len(units) - 1:
        n /= 1000
        i += 1
    return f"{n:.3g}{units[i]}"


def since(unix: float) -> str:
    return human_duration(time.time() - unix) + " ago"


def table(out: TextIO, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Columns padded like docker's tabwriter (three spaces between columns)."""
    widths = [max([len(header[i])] + [len(r[i]) for r in rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [c.ljust(w) for c, w in zip(row[:-1], widths[:-1], strict=True)] + [row[-1]]
        print("   ".join(cells).rstrip(), file=out)
