"""berth.volume: arrives with its issue (see docs/design.md)."""
