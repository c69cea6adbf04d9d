#!/usr/bin/env bash
# Sets up this machine for berth, idempotently: Debian packages, the `docker` group, a virtualenv
# with berth installed. Called by `make run` and `make test`; safe to run again (it skips what is done).
#   TEST_EXTRAS=1  also installs what the test suite drives for real (sshd, systemd-socket-activate,
#                  dockerd and docker-compose 1.29 to compare with and to drive berth)
#   BENCH_EXTRAS=1 also installs Debian's docker.io, the dockerd that benchmarks compare against
set -euo pipefail
PYTHON=${1:-python3}
VENV=${2:-.venv}
cd "$(dirname "$0")/.."

say() { printf '[setup] %s\n' "$*"; }

pkgs=(crun conmon nftables iproute2 openssl openssh-client ca-certificates procps tini util-linux)
[ "${TEST_EXTRAS:-}" = 1 ] && pkgs+=(openssh-server systemd passwd procps docker.io busybox-static docker-compose docker-registry skopeo)
[ "${BENCH_EXTRAS:-}" = 1 ] && pkgs+=(docker.io gcc libssl-dev)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
  missing+=(python3-venv)
fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    say "missing Debian packages: ${missing[*]} (run as root to install them)"; exit 1
  fi
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d stops package scripts from starting services (sshd, dockerd) we did not ask for.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# crun refuses hybrid cgroups while cgroup2 still holds a controller (hugetlb on these hosts);
# mounting it as a v1 hierarchy fixes that. berthd does the same at start; doing it here makes
# `crun` usable by hand too.
if [ "$(id -u)" = 0 ] && [ -f /sys/fs/cgroup/unified/cgroup.controllers ] && [ ! -f /sys/fs/cgroup/cgroup.controllers ]; then
  for ctrl in $(cat /sys/fs/cgroup/unified/cgroup.controllers); do
    mkdir -p "/sys/fs/cgroup/$ctrl"
    if mount -t cgroup -o "$ctrl" cgroup "/sys/fs/cgroup/$ctrl" 2>/dev/null; then
      say "cgroups are hybrid and cgroup2 held '$ctrl', which crun refuses: mounted it as a v1 hierarchy at /sys/fs/cgroup/$ctrl"
    else
      say "cgroups are hybrid and cgroup2 holds '$ctrl'; mounting it as v1 failed: crun will not run containers (runc will)"
    fi
  done
fi

if [ "$(id -u)" = 0 ] && ! getent group docker >/dev/null; then
  groupadd --system docker
  say "created the 'docker' group (members may use berthd's socket)"
fi

if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtualenv $VENV"
  "$PYTHON" -m venv "$VENV"
fi
# One stamp per extras set, holding the pyproject hash it was installed from; "test" includes "base".
hash=$(sha256sum pyproject.toml | cut -c1-16)
kind=base; extras=""
if [ "${TEST_EXTRAS:-}" = 1 ]; then kind=test; extras="[test]"; fi
done_already() { [ "$(cat "$VENV/.berth-$1" 2>/dev/null)" = "$hash" ]; }
if ! done_already "$kind" && ! { [ "$kind" = base ] && done_already test; }; then
  say "installing berth$extras into $VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -e ".${extras}"
  printf '%s' "$hash" > "$VENV/.berth-$kind"
fi

# The wheelhouse `berth machine create` copies to a host: berth and every Python dependency as
# wheels (and setuptools and wheel, so that berth's own wheel can be rebuilt offline from changed
# sources), so a host with no route to a package index still provisions. Made once per pyproject.
wheelhouse="$VENV/share/berth/wheelhouse"
if [ "$(cat "$wheelhouse/.stamp" 2>/dev/null)" != "$hash" ]; then
  say "making the wheelhouse for 'berth machine create' in $wheelhouse"
  rm -rf "$wheelhouse"; mkdir -p "$wheelhouse"
  "$VENV/bin/pip" wheel -q --disable-pip-version-check -w "$wheelhouse" . "setuptools>=68" wheel
  printf '%s' "$hash" > "$wheelhouse/.stamp"
fi
