"""The pure parts of provisioning: engine options, labels, the host report, daemon.json, SANs."""

from __future__ import annotations

import pytest

from berth.cli import machinecerts, provision
from berth.errors import InvalidParameter


def test_engine_opts_become_flags_and_only_option_names_pass() -> None:
    assert provision.engine_flags(["dns=10.0.0.2", "debug", "log-level=warn"]) == [
        "--dns=10.0.0.2", "--debug", "--log-level=warn"]
    for bad in ("--dns=1", "Dns=1", "dns;rm -rf /=1", "=x", "a b=c"):
        with pytest.raises(InvalidParameter, match="--engine-opt"):
            provision.engine_flags([bad])
    # a value is an argv element, never shell text: it is kept whole
    assert provision.engine_flags(["label=a=$(reboot)"]) == ["--label=a=$(reboot)"]


def test_labels_need_a_key() -> None:
    assert provision.check_labels(["role=web", "empty="]) == ["role=web", "empty="]
    for bad in ("role", "=web", " x=y"):
        with pytest.raises(InvalidParameter, match="--engine-label"):
            provision.check_labels([bad])


def test_daemon_json_and_argv() -> None:
    e = provision.Engine(2376, ("--log-level=debug",), ("role=web",))
    assert e.daemon_json() == {
        "hosts": ["unix:///var/run/docker.sock", "tcp://0.0.0.0:2376"], "tls": True, "tlsverify": True,
        "tlscacert": "/etc/berth/certs/ca.pem", "tlscert": "/etc/berth/certs/server.pem",
        "tlskey": "/etc/berth/certs/server-key.pem", "labels": ["role=web"]}
    assert e.argv() == ["/opt/berth/venv/bin/berthd", "--config-file", "/etc/berth/daemon.json", "--log-level=debug"]
    assert provision.Engine(2376, crl=True).daemon_json()["tlscrl"] == "/etc/berth/certs/crl.pem"
    assert provision.Engine(0).daemon_json() == {"hosts": ["unix:///var/run/docker.sock"]}  # ssh-only: no TCP


def test_purge_removes_only_absolute_data_roots() -> None:
    assert provision.Engine(0).data_roots() == ["/var/lib/berth", "/var/run/berth"]
    e = provision.Engine(0, ("--data-root=/srv/berth", "--exec-root=../../etc", "--exec-root=/x/../etc"))
    assert e.data_roots() == ["/srv/berth", "/var/run/berth"]


def _facts(**kw: object) -> provision.Facts:
    f = provision.Facts(os_id="debian", os_name="Debian GNU/Linux 12", uid=0, kernel="6.1.0-18-amd64",
                        arch="x86_64", overlay=True, cgroups=True, userns=True, python="3.11")
    for k, v in kw.items():
        setattr(f, k, v)
    return f


def test_the_host_report_lists_every_problem_with_what_to_do() -> None:
    assert provision.problems(_facts(), "3.11", "x86_64") == []
    assert provision.problems(_facts(os_id="ubuntu", os_like="debian", uid=1000, sudo=True), "3.11", "x86_64") == []
    found = provision.problems(_facts(os_id="fedora", os_name="Fedora Linux 40", uid=1000, kernel="4.19.0",
                                      overlay=False, cgroups=False, arch="aarch64", python="3.12"), "3.11", "x86_64")
    text = "\n".join(found)
    assert len(found) == 7
    for words in ("Fedora Linux 40", "passwordless sudo", "4.19.0: berth needs 5.6", "no overlay filesystem",
                  "no cgroup controllers", "aarch64", "python3 is 3.12 and the wheelhouse is for 3.11"):
        assert words in text
    # a host without python3 gets it from apt: not a problem
    assert provision.problems(_facts(python="", missing=["python3"]), "3.11", "x86_64") == []


def test_server_sans_name_the_address_as_what_it_is() -> None:
    assert machinecerts.server_sans("10.0.0.5", ["h1", "h1.example.test"]) == [
        "IP:10.0.0.5", "DNS:h1", "DNS:h1.example.test", "DNS:localhost", "IP:127.0.0.1"]
    assert machinecerts.server_sans("build.example.test", ["build"])[0] == "DNS:build.example.test"
    assert machinecerts.server_sans("fd00::5", [])[0] == "IP:fd00::5"


def test_each_ca_has_a_name_of_its_own() -> None:
    assert machinecerts.ca_cn() != machinecerts.ca_cn()
    assert machinecerts.ca_cn().startswith("berth machine CA ")


def test_the_systemd_unit_and_drop_in_pass_systemd_analyze(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Checked by systemd's own parser (the test hosts have no systemd to run them: see docs/machine.md)."""
    import shutil
    import subprocess

    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    true = shutil.which("true") or "/bin/true"  # the unit's berthd does not exist here: verify wants it executable
    (tmp_path / "berthd.service.d").mkdir()
    (tmp_path / "berthd.service").write_text(provision.UNIT_TEXT.replace(provision.BERTHD, true))
    text = provision.dropin_text(provision.Engine(2376, ("--label=a b",)))
    assert text.endswith(f"ExecStart={provision.BERTHD} --config-file /etc/berth/daemon.json '--label=a b'\n")
    (tmp_path / "berthd.service.d" / "10-machine.conf").write_text(text.replace(provision.BERTHD, true))
    r = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "berthd.service")], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "berthd" not in r.stderr, r.stderr


def test_purge_never_follows_a_data_root_to_a_system_directory() -> None:
    for bad in ("/", "/var", "/var/lib", "/var/lib/", "/usr/local", "relative/x", "/srv/../etc", "/srv/./x", "/etc/systemd"):
        assert not provision.purgeable(bad), bad
        assert provision.Engine(0, (f"--data-root={bad}",)).data_roots()[0] == "/var/lib/berth"
    assert provision.purgeable("/srv/berth") and provision.purgeable("/var/lib/berth-ci")


def test_the_host_cannot_name_packages_to_install_or_odd_names() -> None:
    f = provision.parse_facts("os_id=debian\nuid=0\nmissing=tini\nmissing=evil; rm -rf /\nmissing=netcat\n"
                              "hostname=-oProxy\nhostname=h1\nhostname=h1\nhostname=a b\n")
    assert f.missing == ["tini"] and f.hostnames == ["h1"] and f.uid == 0


def test_the_drop_in_keeps_dollars_and_percents_from_systemd() -> None:
    text = provision.dropin_text(provision.Engine(2376, ("--label=cost=$HOME%h",)))
    assert "'--label=cost=$$HOME%%h'" in text


def test_a_record_cannot_smuggle_an_option_into_ssh() -> None:
    from berth.cli import machines

    for driver in ({"IPAddress": "-oProxyCommand=touch /tmp/x"}, {"IPAddress": "10.0.0.1", "SSHUser": "-oProxyCommand=x"},
                   {"IPAddress": "a@b"}):
        with pytest.raises(InvalidParameter, match="machine m: Driver"):
            machines.parse("m", {"Driver": driver}, "/nonexistent")
    m = machines.parse("m", {"Driver": {"IPAddress": "fd00::5", "SSHUser": "deploy"}}, "/nonexistent")
    argv = machines.ssh_argv(m, ["uname"], tty=False)
    assert argv[argv.index("--") + 1:] == ["deploy@fd00::5", "uname"]
