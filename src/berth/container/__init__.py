"""berth.container: arrives with its issue (see docs/design.md)."""
