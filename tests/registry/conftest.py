"""What the registry tests share."""

from __future__ import annotations

import pytest

from tests.lib.cleanup import Cleanup
from tests.lib.registry import Registry, htpasswd, start_registry
from tests.registry.test_pull import _archive


@pytest.fixture
def locked(cleanup: Cleanup) -> Registry:
    """A registry with htpasswd Basic auth (alice:s3cret) holding app:1."""
    reg = start_registry(cleanup, htpasswd(cleanup, {"alice": "s3cret"}))
    reg.creds = "alice:s3cret"
    reg.push_archive(_archive("app:1"), "app:1")
    return reg
