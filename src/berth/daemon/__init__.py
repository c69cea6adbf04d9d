"""berthd: the composition root. Configuration, listeners, backends and lifecycle live here."""
