"""berth.network: arrives with its issue (see docs/design.md)."""
