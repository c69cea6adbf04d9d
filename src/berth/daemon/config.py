"""berthd's configuration: dockerd's flags and daemon.json keys, merged and validated once.

Rules, as dockerd's ``findConfigurationConflicts``:
- a daemon.json key that no dockerd option has → "the following directives don't match any
  configuration option: KEY";
- a key set both as a flag and in the file → one error listing every such key as
  "KEY: (from flag: V, from file: V)";
- a dockerd key berth does not honour yet → refused, named, rather than silently ignored;
- wrong types and bad values → refused, naming the key and the value.
All problems of one kind are reported together.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from berth import __version__
from berth.daemon.hosts import HostAddr, is_loopback, parse_host
from berth.daemon.userns import check_spec as check_userns_spec
from berth.errors import BerthError, InvalidParameter
from berth.network.model import NetSettings

DEFAULT_CONFIG_FILE = "/etc/berth/daemon.json"
LOG_LEVELS = ("debug", "info", "warn", "error", "fatal", "panic")

# Keys of berth's own, beyond dockerd's.
REGISTRY_KEYS = ("insecure-registries", "registry-mirrors", "max-concurrent-downloads", "registry-certs-dirs")
BERTH_KEYS = frozenset({"tlscrl", "authorization-policy", "listener-policies", "audit-log", "registry-certs-dirs"})
# Every key dockerd's daemon.json accepts on Linux (so that an unknown key and a key berth does not
# honour yet get different, precise errors).
DOCKERD_KEYS = frozenset("""
allow-nondistributable-artifacts api-cors-header authorization-plugins bip bip6 bridge builder
cdi-spec-dirs cgroup-parent containerd containerd-namespace containerd-plugins-namespace
cpu-rt-period cpu-rt-runtime cri-containerd data-root debug default-address-pools
default-cgroupns-mode default-gateway default-gateway-v6 default-ipc-mode default-network-opts
default-runtime default-shm-size default-ulimits dns dns-opts dns-search exec-opts exec-root
experimental features firewall-backend fixed-cidr fixed-cidr-v6 group host-gateway-ip
host-gateway-ips hosts icc init init-path insecure-registries ip ip-forward ip-forward-no-drop
ip-masq ip6tables iptables ipv6 labels live-restore log-driver log-format log-level log-opts
max-concurrent-downloads max-concurrent-uploads max-download-attempts min-api-version mtu
no-new-privileges node-generic-resources oom-score-adjust pidfile proxies raw-logs
registry-mirrors runtimes seccomp-profile selinux-enabled shutdown-timeout storage-driver
storage-opts swarm-default-advertise-addr tls tlscacert tlscert tlskey tlsverify userland-proxy
userland-proxy-path userns-remap
""".split())


@dataclass(frozen=True, slots=True)
class Option:
    key: str  # daemon.json key
    flags: tuple[str, ...]  # command-line spellings
    kind: Any  # bool, str, int, list or "pools"
    help: str
    metavar: str | None = None


OPTIONS: tuple[Option, ...] = (
    Option("hosts", ("-H", "--host"), list, "daemon socket(s) to listen on (repeatable)", "ADDR"),
    Option("group", ("-G", "--group"), str, "group for the unix socket (default \"docker\")"),
    Option("tls", ("--tls",), bool, "use TLS; implied by --tlsverify"),
    Option("tlsverify", ("--tlsverify",), bool, "use TLS and require client certificates signed by --tlscacert"),
    Option("tlscacert", ("--tlscacert",), str, "trust client certificates signed only by this CA"),
    Option("tlscert", ("--tlscert",), str, "path to the server's TLS certificate"),
    Option("tlskey", ("--tlskey",), str, "path to the server's TLS key"),
    Option("tlscrl", ("--tlscrl",), str, "refuse client certificates these CRLs revoke (PEM or DER; berth's own)",
           "FILE"),
    Option("data-root", ("--data-root",), str, "root of persistent berth state (default /var/lib/berth)"),
    Option("exec-root", ("--exec-root",), str, "root of runtime state (default /var/run/berth)"),
    Option("pidfile", ("-p", "--pidfile"), str, "path to the daemon's PID file (default /var/run/berth.pid)"),
    Option("debug", ("-D", "--debug"), bool, "enable debug logging"),
    Option("log-level", ("-l", "--log-level"), str, "debug, info, warn, error or fatal (default info)"),
    Option("labels", ("--label",), list, "a key=value label for this daemon (repeatable)", "KEY=VALUE"),
    Option("bridge", ("-b", "--bridge"), str, "bridge device of the default network (default berth0; \"none\": no "
           "default bridge network)"),
    Option("bip", ("--bip",), str, "address and prefix of the default bridge, such as 10.0.1.1/24", "CIDR"),
    Option("fixed-cidr", ("--fixed-cidr",), str, "give containers on the default bridge addresses only from this "
           "range", "CIDR"),
    Option("fixed-cidr-v6", ("--fixed-cidr-v6",), str, "IPv6 subnet of the default bridge (with --ipv6)", "CIDR"),
    Option("ipv6", ("--ipv6",), bool, "IPv6 on the default bridge"),
    Option("iptables", ("--iptables",), bool, "write nftables rules (in berth's own tables; default true)"),
    Option("ip6tables", ("--ip6tables",), bool, "IPv6 rules too (berth writes them whenever a network has IPv6)"),
    Option("ip-masq", ("--ip-masq",), bool, "masquerade bridge networks' traffic to the outside (default true)"),
    Option("ip-forward", ("--ip-forward",), bool, "set net.ipv4.ip_forward=1 (default true)"),
    Option("icc", ("--icc",), bool, "let containers on the default bridge talk to each other (default true)"),
    Option("userland-proxy", ("--userland-proxy",), bool, "accepted for dockerd compatibility: berth always "
           "publishes ports in the kernel, with no proxy process"),
    Option("mtu", ("--mtu",), int, "MTU of the default bridge's links"),
    Option("ip", ("--ip",), str, "default host address for published ports (default 0.0.0.0)"),
    Option("default-address-pools", ("--default-address-pool",), "pools",
           "where berth picks subnets: base=CIDR,size=N (repeatable)", "base=CIDR,size=N"),
    Option("dns", ("--dns",), list, "DNS server for containers (repeatable)", "IP"),
    Option("dns-search", ("--dns-search",), list, "DNS search domain for containers (repeatable)", "DOMAIN"),
    Option("dns-opts", ("--dns-opt",), list, "DNS option for containers (repeatable)", "OPT"),
    Option("log-driver", ("--log-driver",), str, "default log driver of containers: json-file, local, syslog, "
           "journald or none (default json-file)", "DRIVER"),
    Option("log-opts", ("--log-opt",), "opts", "default log driver option (repeatable)", "KEY=VALUE"),
    Option("authorization-plugins", ("--authorization-plugin",), list, "an authorization plugin of Docker's "
           "protocol, found as dockerd finds it (repeatable; asked after the policy)", "NAME"),
    Option("authorization-policy", ("--authorization-policy",), str, "who may do what: a Cedar policy file "
           "(berth's own; none: every caller who reaches a socket is admin)", "FILE"),
    Option("listener-policies", ("--listener-policy",), "listeners", "give a listener a fixed role: ADDR=ROLE, "
           "ROLE read-only, admin or one the policy names (repeatable; berth's own)", "ADDR=ROLE"),
    Option("audit-log", ("--audit-log",), str, "the tamper-evident audit log of every request (default "
           "<data-root>/audit/audit.log; \"none\": no audit log; berth's own)", "PATH"),
    Option("insecure-registries", ("--insecure-registry",), list, "a registry reached without TLS verification "
           "(HTTP when HTTPS fails): host:port or a CIDR (repeatable; loopback always is)", "REGISTRY"),
    Option("registry-certs-dirs", ("--registry-certs-dir",), list, "where a registry's CA (*.crt) and client "
           "certificate (*.cert, *.key) are found, as <dir>/<host:port>/ (repeatable; default /etc/berth/certs.d and "
           "/etc/docker/certs.d; berth's own)", "DIR"),
    Option("registry-mirrors", ("--registry-mirror",), list, "a Docker Hub mirror, asked before Docker Hub "
           "(repeatable)", "URL"),
    Option("max-concurrent-downloads", ("--max-concurrent-downloads",), int, "layers downloaded at once by a pull "
           "(default 3)", "N"),
    Option("userns-remap", ("--userns-remap",), str, "run containers' root as the subordinate ids of this user: "
           "\"default\" (the dockremap user, made when missing), user, user:group, uid or uid:gid", "USER"),
)
_BY_KEY = {o.key: o for o in OPTIONS}


@dataclass(slots=True)
class Config(NetSettings):
    """berthd's configuration; the network options are ``NetSettings``' fields (bridge, bip, fixed-cidr,
    ipv6, iptables, ip-masq, ip-forward, icc, mtu, ip, default-address-pools, dns…), inherited, so the
    network package gets them without a second list of names."""

    hosts: list[HostAddr] = field(default_factory=list)
    group: str = "docker"
    group_explicit: bool = False
    tls: bool = False
    tls_explicit_false: bool = False
    tlsverify: bool = False
    tlsverify_explicit_false: bool = False  # --tlsverify=false: TLS without client certificates, on purpose
    tlscacert: str = ""
    tlscert: str = ""
    tlskey: str = ""
    tlscrl: str = ""
    data_root: str = "/var/lib/berth"
    exec_root: str = "/var/run/berth"
    pidfile: str = "/var/run/berth.pid"
    debug: bool = False
    log_level: str = "info"
    labels: list[str] = field(default_factory=list)
    config_file: str = DEFAULT_CONFIG_FILE
    validate_only: bool = False
    flag_values: dict[str, Any] = field(default_factory=dict)  # what was given on the command line
    cleanup_network: bool = False
    userland_proxy: bool = False
    userns_remap: str = ""
    registries: Any = None  # berth.image.registry.Settings, parsed from the registry keys
    log_driver: str = "json-file"
    log_opts: dict[str, str] = field(default_factory=dict)
    authorization_policy: str = ""
    authorization_plugins: list[str] = field(default_factory=list)
    audit_log: str = ""  # "" : none
    listener_policies: dict[str, ListenerPolicy] = field(default_factory=dict)  # listener name → its policy


@dataclass(frozen=True, slots=True)
class ListenerPolicy:
    role: str
    mode: int | None = None  # a unix socket's mode (default 0660)
    group: str | None = None  # a unix socket's group (default -G's)


def _parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "t", "true", "yes", "on"):
        return True
    if low in ("0", "f", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value {text!r}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="berthd",
        description="berthd serves the Docker Engine API. Flags and daemon.json keys mirror dockerd's.",
    )
    for o in OPTIONS:
        dest = o.key.replace("-", "_")
        if o.kind is bool:
            p.add_argument(*o.flags, dest=dest, nargs="?", const=True, default=None, type=_parse_bool,
                           metavar="BOOL", help=o.help)
        elif o.kind is list or o.kind in ("pools", "opts", "listeners"):
            p.add_argument(*o.flags, dest=dest, action="append", default=None, metavar=o.metavar, help=o.help)
        elif o.kind is int:
            p.add_argument(*o.flags, dest=dest, default=None, type=int, metavar=o.metavar or "N", help=o.help)
        else:
            p.add_argument(*o.flags, dest=dest, default=None, metavar=o.metavar, help=o.help)
    p.add_argument("--config-file", default=None, help=f"daemon configuration file (default {DEFAULT_CONFIG_FILE})")
    p.add_argument("--validate", action="store_true", help="validate the configuration and exit")
    p.add_argument("--cleanup-network", action="store_true",
                   help="remove berth's nftables tables and the default bridge it made, then exit")
    p.add_argument("-v", "--version", action="version", version=f"berthd {__version__}")
    return p


def _go_format(value: Any) -> str:
    """Values printed as dockerd prints them in conflict messages: lists as [a b]."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + " ".join(_go_format(v) for v in value) + "]"
    return str(value)


def _load_file(path: str, explicit: bool) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        if explicit:
            raise InvalidParameter(f"unable to configure the berth daemon with file {path}: file does not exist") from None
        return {}
    except OSError as exc:
        raise InvalidParameter(f"unable to read the berth daemon configuration file {path}: {exc.strerror}") from None
    if not data.strip():
        return {}
    try:
        loaded = json.loads(data)
    except ValueError as exc:
        raise InvalidParameter(f"unable to configure the berth daemon with file {path}: {exc}") from None
    if not isinstance(loaded, dict):
        raise InvalidParameter(f"unable to configure the berth daemon with file {path}: the top level must be a JSON object")
    return loaded


def _check_file_keys(path: str, file_cfg: dict[str, Any], flag_values: dict[str, Any]) -> None:
    def fail(msg: str) -> None:
        raise InvalidParameter(f"unable to configure the berth daemon with file {path}: {msg}")

    unknown = sorted(k for k in file_cfg if k not in DOCKERD_KEYS | BERTH_KEYS)
    if unknown:
        fail("the following directives don't match any configuration option: " + ", ".join(unknown))
    conflicts = [
        f"{key}: (from flag: {_go_format(flag_values[key])}, from file: {_go_format(file_cfg[key])})"
        for key in _BY_KEY if key in flag_values and key in file_cfg
    ]
    if conflicts:
        fail("the following directives are specified both as a flag and in the configuration file: "
             + ", ".join(conflicts))
    unsupported = sorted(k for k in file_cfg if k not in _BY_KEY)
    if unsupported:
        fail("the following directives are dockerd options that berth does not support yet: "
             + ", ".join(unsupported))
    bad = []
    for key, value in file_cfg.items():
        kind = _BY_KEY[key].kind
        ok = (isinstance(value, bool) if kind is bool
              else isinstance(value, str) if kind is str
              else isinstance(value, int) and not isinstance(value, bool) if kind is int
              else isinstance(value, list) and all(isinstance(v, dict) for v in value) if kind == "pools"
              else isinstance(value, dict) and all(isinstance(v, str) for v in value.values()) if kind == "opts"
              else isinstance(value, dict) and all(isinstance(v, (str, dict)) for v in value.values())
              if kind == "listeners"
              else isinstance(value, list) and all(isinstance(v, str) for v in value))
        if not ok:
            want = {bool: "a boolean", str: "a string", list: "a list of strings", int: "an integer",
                    "pools": 'a list of {"base": CIDR, "size": N} objects', "opts": "an object of strings",
                    "listeners": 'an object of ADDR: ROLE or ADDR: {"role": R, "mode": "0660", "group": G}'}[kind]
            bad.append(f"{key} must be {want}, got {json.dumps(value)}")
    if bad:
        fail("invalid type: " + "; ".join(bad))


def load(argv: list[str], environ: dict[str, str] | None = None) -> Config:
    """Parse flags and daemon.json into a Config; raises InvalidParameter with every problem found."""
    env = os.environ if environ is None else environ
    ns = build_parser().parse_args(argv)
    flag_values = {o.key: getattr(ns, o.key.replace("-", "_")) for o in OPTIONS}
    flag_values = {k: v for k, v in flag_values.items() if v is not None}
    explicit_file = ns.config_file is not None
    path = ns.config_file or DEFAULT_CONFIG_FILE
    file_cfg = _load_file(path, explicit_file)
    _check_file_keys(path, file_cfg, flag_values)
    merged: dict[str, Any] = {**file_cfg, **flag_values}

    cfg = Config(config_file=path, validate_only=ns.validate, flag_values=flag_values)
    cert_dir = env.get("DOCKER_CERT_PATH") or os.path.join(os.path.expanduser("~"), ".docker")
    cfg.tlscacert = merged.get("tlscacert", os.path.join(cert_dir, "ca.pem"))
    cfg.tlscert = merged.get("tlscert", os.path.join(cert_dir, "cert.pem"))
    cfg.tlskey = merged.get("tlskey", os.path.join(cert_dir, "key.pem"))
    cfg.tlscrl = os.path.abspath(merged["tlscrl"]) if merged.get("tlscrl") else ""
    cfg.tlsverify = bool(merged.get("tlsverify", False))
    cfg.tls = bool(merged.get("tls", False)) or cfg.tlsverify
    cfg.tls_explicit_false = merged.get("tls") is False and not cfg.tlsverify
    cfg.tlsverify_explicit_false = merged.get("tlsverify") is False
    cfg.group = merged.get("group", "docker")
    cfg.group_explicit = "group" in merged
    for key in ("data-root", "exec-root", "pidfile"):
        if key in merged:
            value = merged[key]
            if not value:
                raise InvalidParameter(f"invalid value for {key}: it must not be empty")
            setattr(cfg, key.replace("-", "_"), os.path.abspath(value))
    cfg.debug = bool(merged.get("debug", False))
    level = merged.get("log-level", "debug" if cfg.debug else "info")
    if level.lower() not in LOG_LEVELS:
        raise InvalidParameter(f"unable to parse logging level: {level} (use one of {', '.join(LOG_LEVELS[:5])})")
    cfg.log_level = "debug" if cfg.debug else level.lower()
    labels = merged.get("labels", [])
    bad_labels = [lb for lb in labels if "=" not in lb or not lb.split("=", 1)[0]]
    if bad_labels:
        raise InvalidParameter(f"invalid label {bad_labels[0]!r}: labels must be KEY=VALUE")
    cfg.labels = list(labels)
    cfg.hosts = [parse_host(h, cfg.tls) for h in merged.get("hosts") or ["unix://"]]
    _network_options(cfg, merged)
    _log_options(cfg, merged)
    _registries(cfg, merged)
    cfg.authorization_policy = os.path.abspath(merged["authorization-policy"]) \
        if merged.get("authorization-policy") else ""
    cfg.listener_policies = _listener_policies(cfg, merged.get("listener-policies") or {})
    cfg.authorization_plugins = list(dict.fromkeys(merged.get("authorization-plugins") or []))
    audit = merged.get("audit-log")
    cfg.audit_log = "" if audit in ("none", "") else os.path.abspath(audit) if audit else \
        os.path.join(cfg.data_root, "audit", "audit.log")
    cfg.userns_remap = str(merged.get("userns-remap") or "")
    check_userns_spec(cfg.userns_remap)
    cfg.cleanup_network = bool(ns.cleanup_network)
    _check_security(cfg)
    return cfg


def _listener_policies(cfg: Config, value: dict[str, Any] | list[str]) -> dict[str, ListenerPolicy]:
    """listener-policies: each key one of the daemon's own listeners, each value a role (or an object
    with the role and a unix socket's mode and group)."""
    if isinstance(value, list):  # --listener-policy ADDR=ROLE, repeated
        pairs: dict[str, Any] = {}
        for item in value:
            addr, sep, role = item.rpartition("=")
            if not sep or not addr:
                raise InvalidParameter(f"invalid --listener-policy {item!r}: it must be ADDR=ROLE")
            pairs[addr] = role
        value = pairs
    ours = {str(h): h for h in cfg.hosts}
    out: dict[str, ListenerPolicy] = {}
    for key, spec in value.items():
        h = parse_host(key, cfg.tls)
        if str(h) not in ours:
            raise InvalidParameter(f"listener-policies names {key}, which is not one of this daemon's listeners "
                                   f"({', '.join(ours)}): add it to hosts (-H) too")
        if h.proto == "fd":
            raise InvalidParameter(f"listener-policies: {key}: a socket-activated listener cannot have a role yet")
        if isinstance(spec, str):
            spec = {"role": spec}
        unknown = sorted(set(spec) - {"role", "mode", "group"})
        if unknown:
            raise InvalidParameter(f"listener-policies: {key}: unknown field(s) {', '.join(unknown)} "
                                   "(role, mode, group)")
        role = spec.get("role")
        if not isinstance(role, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", role):
            raise InvalidParameter(f"listener-policies: {key}: the role must be a name, got {json.dumps(role)}")
        mode = spec.get("mode")
        if mode is not None:
            if h.proto != "unix":
                raise InvalidParameter(f"listener-policies: {key}: mode is for unix sockets")
            try:
                mode = int(mode, 8) if isinstance(mode, str) else int(mode)
            except ValueError:
                raise InvalidParameter(f"listener-policies: {key}: mode must be octal, such as \"0660\"") from None
            if not 0 <= mode <= 0o777:
                raise InvalidParameter(f"listener-policies: {key}: mode {oct(mode)} is out of range")
        group = spec.get("group")
        if group is not None and (h.proto != "unix" or not isinstance(group, str) or not group):
            raise InvalidParameter(f"listener-policies: {key}: group must be a group name or id, for unix sockets")
        out[str(h)] = ListenerPolicy(role, mode, group)
    return out


def _registries(cfg: Config, merged: dict[str, Any]) -> None:
    from berth.image.registry import Settings

    cfg.registries = Settings.parse(merged.get("insecure-registries") or [], merged.get("max-concurrent-downloads", 3),
                                    merged.get("registry-certs-dirs") or [], merged.get("registry-mirrors") or [])


def _log_options(cfg: Config, merged: dict[str, Any]) -> None:
    """log-driver and log-opts: the LogConfig of containers that name no driver, checked as a
    container's would be (a bad one stops the daemon from starting, as dockerd)."""
    from berth.container import logdrivers

    opts = merged.get("log-opts") or {}
    if isinstance(opts, list):  # --log-opt KEY=VALUE, repeated
        bad = [o for o in opts if "=" not in o]
        if bad:
            raise InvalidParameter(f"invalid log opt {bad[0]!r}: it must be KEY=VALUE")
        opts = dict(o.split("=", 1) for o in opts)
    cfg.log_driver = str(merged.get("log-driver") or "json-file")
    cfg.log_opts = dict(opts)
    try:
        logdrivers.parse({"Type": cfg.log_driver, "Config": cfg.log_opts})
    except BerthError as exc:
        raise InvalidParameter(f"failed to set log opts: {exc.message}") from None


def _network_options(cfg: Config, merged: dict[str, Any]) -> None:
    import ipaddress

    from berth.network import ipam

    cfg.bridge = merged.get("bridge") or "berth0"
    for key in ("bip", "fixed-cidr", "fixed-cidr-v6"):
        value = merged.get(key) or ""
        if value:
            try:
                ipaddress.ip_interface(value)
            except ValueError:
                raise InvalidParameter(f"invalid {key} {value!r}: it must be an address with a prefix") from None
            if "/" not in value:
                raise InvalidParameter(f"invalid {key} {value!r}: it must be an address with a prefix")
        setattr(cfg, key.replace("-", "_"), value)
    if cfg.bridge == "none" and (cfg.bip or cfg.fixed_cidr):
        raise InvalidParameter("You specified -b & --bip, mutually exclusive options. Please specify only one"
                               if cfg.bip else "--fixed-cidr needs the default bridge (it is none)")
    for key in ("ipv6", "iptables", "ip-masq", "ip-forward", "icc"):
        if key in merged:
            setattr(cfg, key.replace("-", "_"), bool(merged[key]))
    if merged.get("ip-masq") and not cfg.iptables:
        raise InvalidParameter("You specified --iptables=false with --ip-masq=true: masquerading needs firewall "
                               "rules")
    cfg.userland_proxy = bool(merged.get("userland-proxy", False))
    cfg.mtu = int(merged.get("mtu") or 0)
    if cfg.mtu and not 68 <= cfg.mtu <= 65535:
        raise InvalidParameter(f"invalid mtu {cfg.mtu}: it must be between 68 and 65535")
    ip = merged.get("ip") or "0.0.0.0"
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        raise InvalidParameter(f"invalid ip {ip!r}: it must be an address") from None
    cfg.default_bind_ip = ip
    cfg.address_pools = ipam.parse_address_pools(merged.get("default-address-pools") or []) or list(ipam.DEFAULT_POOLS)
    for key in ("dns",):
        for server in merged.get(key) or []:
            try:
                ipaddress.ip_address(server)
            except ValueError:
                raise InvalidParameter(f"{server} is not an ip address") from None
    cfg.dns = list(merged.get("dns") or [])
    cfg.dns_search = list(merged.get("dns-search") or [])
    cfg.dns_opts = list(merged.get("dns-opts") or [])


def _check_security(cfg: Config) -> None:
    """TCP without TLS only on loopback, unless --tls=false says the operator means it."""
    for h in cfg.hosts:
        if h.proto == "tcp" and cfg.tls and not cfg.tlsverify and not is_loopback(h.host) \
                and not cfg.tlsverify_explicit_false:
            raise InvalidParameter(
                f"refusing to listen on tcp://{h.address} with --tls but without --tlsverify: TLS without client "
                "certificates authenticates nobody, so anyone who can reach this address would have root on this "
                "host.\n"
                "  To secure it:   add --tlsverify --tlscacert /etc/berth/pki/ca.pem (clients then need a "
                "certificate from that CA: berth pki client)\n"
                "  To accept the risk explicitly: add --tlsverify=false"
            )
        if h.proto != "tcp" or cfg.tls:
            continue
        if is_loopback(h.host):
            continue
        if not cfg.tls_explicit_false:
            raise InvalidParameter(
                f"refusing to listen on tcp://{h.address} without TLS: anyone who can reach this address "
                "would have root on this host.\n"
                "  To secure it:   berth pki init --dir /etc/berth/pki && "
                "berth pki server --dir /etc/berth/pki --cn $(hostname) --san DNS:$(hostname) "
                "--san IP:<address> --out /etc/berth/pki\n"
                "                  berthd --tlsverify --tlscacert /etc/berth/pki/ca.pem "
                "--tlscert /etc/berth/pki/cert.pem --tlskey /etc/berth/pki/key.pem "
                f"-H tcp://{h.host}:2376\n"
                "  To accept the risk explicitly: add --tls=false"
            )
    if cfg.tls:
        missing = [f"{name} {path}" for name, path in (("--tlscert", cfg.tlscert), ("--tlskey", cfg.tlskey))
                   if not os.path.isfile(path)]
        if cfg.tlsverify and not os.path.isfile(cfg.tlscacert):
            missing.append(f"--tlscacert {cfg.tlscacert}")
        if missing and any(h.proto in ("tcp", "fd") for h in cfg.hosts):
            raise InvalidParameter("TLS is on but these files do not exist: " + ", ".join(missing))


def reloadable(cfg: Config, path: str) -> dict[str, Any]:
    """The keys SIGHUP may change (debug, log-level, labels, the TLS files' paths), read again from the file. The file is
    checked as at start, conflicts with the command line included, so a reload cannot override a flag."""
    file_cfg = _load_file(path, explicit=False)
    _check_file_keys(path, file_cfg, cfg.flag_values)
    out: dict[str, Any] = {}
    for key in ("debug", "log-level", "labels", "tlscert", "tlskey", "tlscacert", "tlscrl", "authorization-policy",
                "authorization-plugins", *REGISTRY_KEYS):
        if key in file_cfg:
            out[key] = file_cfg[key]
    return out
