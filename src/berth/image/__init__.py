"""berth.image: arrives with its issue (see docs/design.md)."""
