"""schemathesis against a real berthd, for every operation of the Engine API v1.47 spec: whatever a
generated request asks, the answer is never a 500, never a traceback, an error always has dockerd's
``{"message": ...}`` shape, nothing hangs, and the daemon is alive at the end.

The daemon runs inside a network namespace of the test's own, so generated network requests
(bridges, macvlan parents, published ports) touch only that namespace. Examples per operation are
bounded for CI (``FUZZ_EXAMPLES``; ``make fuzz`` runs more)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import schemathesis
from docker.transport import UnixHTTPAdapter
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from tests.lib import rawhttp
from tests.lib.daemon import Berthd, unix_ping
from tests.lib.images import busybox_rootfs_tar

SPEC = Path(__file__).resolve().parents[1] / "data" / "docker-engine-api-v1.47.yaml"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "3"))
# Operations that stream until the client goes away when their request is valid: a read timeout
# on them is an answer, not a hang.
STREAMING = {"SystemEvents", "ContainerStats", "ContainerAttach", "ContainerWait", "ContainerLogs",
             "ContainerExport", "ImageGetAll", "ImageGet", "ContainerAttachWebsocket", "ExecStart"}

# CI runs the random phase only; FUZZ_FULL=1 (make fuzz) adds the spec's examples and the coverage phase
_FULL = os.environ.get("FUZZ_FULL") == "1"
CONFIG = SchemathesisConfig.from_str(f"""
[phases.examples]
enabled = {str(_FULL).lower()}
[phases.coverage]
enabled = {str(_FULL).lower()}
""")
schema = schemathesis.openapi.from_path(SPEC, config=CONFIG)
schemathesis.serializer.alias("application/x-tar", "application/octet-stream")  # image load, archive upload


@pytest.fixture(scope="module")
def daemon() -> Iterator[tuple[Berthd, requests.Session]]:
    if os.geteuid() != 0:
        pytest.skip("needs root (the daemon runs in a network namespace of its own)")
    ns = f"bfuzz-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    d = Berthd(network=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        d.start(prefix=["nsenter", f"--net=/run/netns/{ns}"])
        r = rawhttp.request(d.sock, "POST", "/images/create?fromSrc=-&repo=bb&tag=latest", body=busybox_rootfs_tar())
        assert r.status == 200
        session = requests.Session()
        session.mount("http://berthd.invalid/", UnixHTTPAdapter(f"http+unix://{d.sock}", timeout=5))
        yield d, session
        assert unix_ping(d.sock, timeout=5), "berthd stopped answering during the fuzzing"
    finally:
        bugs = [line for line in d.log().splitlines() if "bug:" in line or line.startswith(("  File", "Traceback"))
                or "Error:" in line]
        if bugs:
            print("\n----- berthd found bugs -----\n" + "\n".join(bugs[-60:]))
        d.cleanup()
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_no_operation_answers_500_or_hangs(case: schemathesis.Case, daemon: tuple[Berthd, requests.Session]) -> None:
    d, session = daemon
    try:
        response = case.call(base_url="http://berthd.invalid/v1.47", session=session, timeout=5)
    except requests.exceptions.ReadTimeout:
        assert case.operation.definition.raw.get("operationId") in STREAMING, "no answer within 5 s"
        return
    except requests.exceptions.ConnectionError as exc:
        if "Read timed out" in str(exc) and case.operation.definition.raw.get("operationId") in STREAMING:
            return
        raise
    body = response.content
    assert b"Traceback" not in body and b"internal error" not in body, (body[:300], d.log_path)
    assert response.status_code != 500, body[:300]
    content_type = (response.headers.get("content-type") or [""])[0]
    if response.status_code >= 400 and content_type.startswith("application/json") and body:
        message = json.loads(body)
        assert isinstance(message, dict) and isinstance(message.get("message"), str), body[:300]
