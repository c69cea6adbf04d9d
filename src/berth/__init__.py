"""berth: a Docker-compatible container engine (berthd) and its CLI (berth)."""

__version__ = "0.1.0"

#: Highest and lowest Engine API versions berthd speaks; clients may ask for any in between.
API_VERSION = "1.47"
MIN_API_VERSION = "1.24"
