#!/bin/bash
# Install everything the demo and the test suite need on a fresh Debian 12 machine (as root):
# Debian packages, then one virtual environment (.venv) with the pinned Ansible/molecule tools,
# the test tools and the embuffer package itself (editable). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
APT_PACKAGES=(
  mariadb-server mariadb-client      # the private test leginondb
  podman runc debootstrap zstd       # test hosts booted with systemd
  rsync acl xfsprogs e2fsprogs       # benchmarks' baselines, ACL checks, loop filesystems
  prometheus                         # promtool for the alert-rule tests
  fuse3                              # fusermount3 and libfuse3 for the power-cut test filesystem
  python3-venv git make
)
missing=()
for package in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  # A policy-rc.d keeps the packaged services (mariadb, prometheus) from starting on this
  # host: the tests run their own private instances. Ours is removed again afterwards.
  own_policy=false
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    own_policy=true
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if $own_policy; then rm -f /usr/sbin/policy-rc.d; fi
fi
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip >/dev/null
.venv/bin/pip install -q -r requirements-dev.txt
.venv/bin/pip install -q -e 'files/python[test]'
echo "tools ready in $(pwd)/.venv"
