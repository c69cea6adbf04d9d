"""Log driver options, syslog and journald wire formats, rotation with compression (real files)."""

from __future__ import annotations

import datetime as dt
import gzip
import os
import struct

import pytest

from berth.container import logdrivers
from berth.container import logs as clogs
from berth.errors import InvalidParameter, NotSupported

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)


def test_defaults_and_limits():
    assert logdrivers.parse(None).file_limits() == (0, 0)
    local = logdrivers.parse({"Type": "local"})
    assert (local.max_size, local.max_files, local.compress) == (20 * 1024 * 1024, 5, True)
    assert logdrivers.parse({"Type": "local", "Config": {"compress": "false"}}).compress is False
    jf = logdrivers.parse({"Type": "json-file", "Config": {"max-size": "10k", "max-file": "3"}})
    assert jf.file_limits() == (10_000, 3) and jf.readable and not jf.shipped
    assert logdrivers.parse({"Type": "syslog"}).file_limits() == logdrivers.KEPT_FOR_ATTACH
    assert not logdrivers.parse({"Type": "syslog"}).readable and logdrivers.parse({"Type": "journald"}).readable


@pytest.mark.parametrize("cfg,kind,words", [
    ({"Type": "nope"}, InvalidParameter, "logger: no log driver named 'nope' is registered"),
    ({"Type": "fluentd"}, NotSupported, "not supported by berth"),
    ({"Type": "json-file", "Config": {"max-size": "-1"}}, InvalidParameter, "invalid value for log opt max-size"),
    ({"Type": "json-file", "Config": {"max-size": "1k", "max-file": "0"}}, InvalidParameter, "max-file"),
    ({"Type": "json-file", "Config": {"compress": "maybe"}}, InvalidParameter, "compress"),
    ({"Type": "json-file", "Config": {"max-size": 5}}, InvalidParameter, "strings"),
    ({"Type": "none", "Config": {"max-size": "1k"}}, InvalidParameter, "unknown log opt 'max-size' for none"),
    ({"Type": "syslog", "Config": {"syslog-address": "udp://"}}, InvalidParameter, "missing host"),
    ({"Type": "syslog", "Config": {"syslog-address": "tcp://h:99999"}}, InvalidParameter, "invalid port"),
    ({"Type": "syslog", "Config": {"syslog-address": "unix:///no/such/sock"}}, InvalidParameter, "no such file"),
    ({"Type": "syslog", "Config": {"syslog-facility": "24"}}, InvalidParameter, "invalid syslog facility"),
    ({"Type": "journald", "Config": {"labels-regex": "("}}, InvalidParameter, "invalid labels-regex"),
    ({"Type": "journald", "Config": {"tag": "{{.Name | printf}}"}}, InvalidParameter, "tag fields"),
])
def test_refusals(cfg, kind, words):
    with pytest.raises(kind) as err:
        logdrivers.parse(cfg)
    assert words in err.value.message


def test_addresses_and_facilities():
    assert logdrivers.syslog_address("udp://10.0.0.1") == logdrivers.SyslogAddress("udp", host="10.0.0.1", port=514)
    assert logdrivers.syslog_address("tcp+tls://[::1]:6514").port == 6514
    assert logdrivers.facility("") == 3 and logdrivers.facility("local7") == 23 and logdrivers.facility("7") == 7


INFO = logdrivers.Info("c" * 64, "/web", "sha256:" + "1" * 64, "nginx:1", {"team": "blue", "x": "y"},
                       ("PATH=/bin", "MODE=prod"))


def test_tags():
    assert logdrivers.tag({}, INFO) == "c" * 12
    assert logdrivers.tag({"tag": "{{.Name}}/{{.ImageName}}/{{.ImageID}}/{{ .FullID }}"}, INFO) == \
        f"web/nginx:1/{'1' * 12}/{'c' * 64}"


def test_syslog_formats_as_dockerds():
    unix = logdrivers.syslog_message({}, "tg", 1, b"hello\n", "unixgram", now=NOW, pid=7)
    assert unix == b"<30>Jan  2 03:04:05 tg[7]: hello\n"
    assert logdrivers.syslog_message({"syslog-format": "rfc3164", "syslog-facility": "local0"}, "tg", 2, b"e",
                                     "udp", now=NOW, hostname="h", pid=7) == b"<131>Jan  2 03:04:05 h tg[7]: e\n"
    assert logdrivers.syslog_message({"syslog-format": "rfc5424"}, "tg", 1, b"m\n", "tcp", now=NOW, hostname="h",
                                     pid=7) == b"<30>1 2026-01-02T03:04:05Z h tg 7 tg - m\n"
    framed = logdrivers.syslog_message({"syslog-format": "rfc5424micro"}, "tg", 1, b"m", "tcp+tls", now=NOW,
                                       hostname="h", pid=7)
    body = b"<30>1 2026-01-02T03:04:05.678901Z h tg 7 tg - m\n"
    assert framed == str(len(body)).encode() + b" " + body


def test_journal_fields_and_datagram():
    fields = dict(logdrivers.journal_fields({"labels": "team", "env": "MODE", "tag": "{{.Name}}"}, INFO, 2,
                                            b"two\nlines"))
    assert fields["MESSAGE"] == b"two\nlines" and fields["PRIORITY"] == b"3"
    assert fields["CONTAINER_PARTIAL_MESSAGE"] == b"true" and fields["CONTAINER_TAG"] == b"web"
    assert fields["TEAM"] == b"blue" and fields["MODE"] == b"prod" and "X" not in fields
    wire = logdrivers.journal_datagram([("A", b"1"), ("MESSAGE", b"two\nlines")])
    assert wire == b"A=1\nMESSAGE\n" + struct.pack("<Q", 9) + b"two\nlines\n"


def test_rotation_with_compression_keeps_every_record_readable(tmp_path):
    path = str(tmp_path / "ctr.log")

    def write(n: int) -> None:
        with open(path, "w") as f:
            f.write(f"2026-01-02T03:04:05.{n:09d}Z stdout F line {n}\n")

    for n in range(1, 5):
        write(n)
        clogs.rotate(path, 3, compress=True)
    names = sorted(os.listdir(tmp_path))
    assert names == ["ctr.log.1.gz", "ctr.log.2.gz"]
    with gzip.open(tmp_path / "ctr.log.1.gz") as f:
        assert f.read().endswith(b"line 4\n")
    write(5)
    lines = [line.data for p in clogs.rotated_files(path) for line in clogs.read_rotated(p)]
    assert lines == [b"line 3\n", b"line 4\n"]
    clogs.rotate(path, 2, compress=False)  # max-file shrank: older files go, whatever their form
    assert sorted(os.listdir(tmp_path)) == ["ctr.log.1"]


def test_a_truncated_log_is_read_again_from_its_start(tmp_path):
    path = str(tmp_path / "ctr.log")
    with open(path, "w") as f:
        f.write("2026-01-02T03:04:05.000000001Z stdout F a long first line\n")
    reader = clogs.LogReader(path)
    assert [ln.data for ln in reader.read_new()] == [b"a long first line\n"]
    with open(path, "w") as f:  # conmon's size cap truncates in place
        f.write("2026-01-02T03:04:06Z stdout F b\n")
    assert [ln.data for ln in reader.read_new()] == [b"b\n"]
    reader.close()
