"""berth.store: arrives with its issue (see docs/design.md)."""
