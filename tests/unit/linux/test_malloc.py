"""glibc's allocator settings for streaming: taken on glibc, left to the environment when it says."""

from __future__ import annotations

import platform

import pytest

from berth.linux import malloc


def test_glibc_takes_the_settings_and_the_environment_wins() -> None:
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc: mallopt's settings do not apply")
    assert malloc.tune({}) is True
    assert malloc.tune({"MALLOC_TRIM_THRESHOLD_": "131072"}) is False
