"""One module per command: ``add_arguments(parser)`` and ``run(cli, opts) -> exit code``."""
