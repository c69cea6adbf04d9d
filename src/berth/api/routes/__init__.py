"""Route tables, one module per resource. Each exposes ``routes(backend) -> list[Route]``."""
