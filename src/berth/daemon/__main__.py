"""berthd entry point."""

import sys

from berth.daemon.server import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
