"""Every HostConfig field of the v1.47 spec is either honoured or refused by name: none is silently
ignored. And the namespace modes parse as dockerd's."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from berth.container import hostconfig
from berth.errors import InvalidParameter, NotSupported

SPEC = Path(__file__).resolve().parents[2] / "data" / "docker-engine-api-v1.47.yaml"


def spec_fields() -> set[str]:
    defs = yaml.safe_load(SPEC.read_text())["definitions"]
    out: set[str] = set()

    def collect(schema: dict) -> None:
        for part in schema.get("allOf", []):
            collect(defs[part["$ref"].split("/")[-1]] if "$ref" in part else part)
        out.update(schema.get("properties", {}))

    collect(defs["HostConfig"])
    return out


def test_every_field_is_honoured_or_refused():
    fields = spec_fields()
    assert len(fields) > 60
    unclassified = fields - hostconfig.HONOURED - set(hostconfig.REFUSED)
    assert not unclassified, f"HostConfig fields neither honoured nor refused: {sorted(unclassified)}"
    assert not hostconfig.HONOURED & set(hostconfig.REFUSED)


@pytest.mark.parametrize("field,value,kind", [("DeviceRequests", [{"Count": -1}], NotSupported),
                                              ("StorageOpt", {"size": "1G"}, NotSupported),
                                              ("CpuCount", 2, InvalidParameter),
                                              ("Isolation", "hyperv", InvalidParameter),
                                              ("CgroupParent", "../../escape", InvalidParameter),
                                              ("OomScoreAdj", 5000, InvalidParameter),
                                              ("GroupAdd", ["a b"], InvalidParameter)])
def test_refusals_name_the_field(field, value, kind):
    with pytest.raises(kind):
        hostconfig.check_fields({field: value})


def test_unused_values_of_refused_fields_pass():
    hostconfig.check_fields({"DeviceRequests": None, "StorageOpt": {}, "CpuCount": 0, "Cgroup": ""})


def test_namespace_modes():
    m = hostconfig.modes({"PidMode": "host", "IpcMode": "container:db", "UTSMode": "", "CgroupnsMode": "private"})
    assert m["PidMode"] == hostconfig.Mode("host")
    assert m["IpcMode"] == hostconfig.Mode("container", "db")
    for bad in ({"PidMode": "container:"}, {"IpcMode": "weird"}, {"UTSMode": "container:x"}, {"UsernsMode": "x"}):
        with pytest.raises(InvalidParameter):
            hostconfig.modes(bad)
