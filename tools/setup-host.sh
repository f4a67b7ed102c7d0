#!/bin/bash
# Install everything the demo and the test suite need on a fresh Debian 12 machine (as root):
# Debian packages, then one virtual environment (.venv) with the pinned Ansible/molecule tools,
# the test tools and the embuffer package itself (editable). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
# Container name resolution: the buffer test host reaches leginondb as `embuffer-leginondb`.
# Debian 12's podman 4.3 resolves names on a network only with one of two packages sets:
# - netavark + aardvark-dns (chosen): podman's own network stack and its upstream default
#   since 4.0, the only one left in podman 5 (Debian 13), and what these scripts need nowhere
#   to configure: podman picks netavark by itself at its first use when netavark is installed
#   and no image, container or CNI network exists yet. netavark 1.4 drives iptables, which it
#   does not pull in itself.
# - the CNI dnsname plugin (golang-github-containernetworking-plugin-dnsname): a dnsmasq per
#   network; the plugin is archived upstream and CNI is gone from podman 5.
# podman records its choice in its storage (defaultNetworkBackend) and keeps it. A machine
# whose podman had already settled on CNI before this script ran would need
# `network_backend = "netavark"` in containers.conf plus `podman system reset`, which deletes
# every container, image, volume and network of the machine, not only ours: on such a machine
# this script installs the dnsname plugin instead and leaves podman's choice alone.
APT_PACKAGES=(
  mariadb-server mariadb-client      # the private test leginondb
  podman runc debootstrap zstd       # test hosts booted with systemd
  netavark aardvark-dns iptables     # their network: containers resolve each other by name
  rsync acl xfsprogs e2fsprogs       # benchmarks' baselines, ACL checks, loop filesystems
  prometheus                         # promtool for the alert-rule tests
  fuse3                              # fusermount3 and libfuse3 for the power-cut test filesystem
  samba smbnetfs                     # a camera PC's SMB share on loopback, and a FUSE client for it
  python3-venv git make
)
CNI_DNS_PACKAGE=golang-github-containernetworking-plugin-dnsname

install_packages() {
  local missing=() package
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  echo "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  # A policy-rc.d keeps the packaged services (mariadb, prometheus, smbd, nmbd) from starting
  # on this host: the tests run their own private instances. Ours is removed again afterwards.
  local own_policy=false
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    own_policy=true
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if $own_policy; then rm -f /usr/sbin/policy-rc.d; fi
}

# policy-rc.d holds only during the install: with systemd, the next boot would start the
# packaged Samba daemons, which share printers and home folders on every interface. The tests
# run their own smbd (own config, port and folders, loopback only), so when this script is what
# installs samba, the system's daemons are masked. A machine that had samba before keeps its
# own file server as it was. Without systemd (a container) nothing starts them at boot.
mask_system_samba() {
  [ -d /run/systemd/system ] || return 0
  local unit
  for unit in smbd.service nmbd.service samba-ad-dc.service; do
    systemctl stop "$unit" 2>/dev/null || true
    systemctl mask "$unit" >/dev/null
  done
}

samba_was_installed=false
dpkg-query -W -f='${Status}' samba 2>/dev/null | grep -q "install ok installed" && samba_was_installed=true
install_packages "${APT_PACKAGES[@]}"
$samba_was_installed || mask_system_samba

backend=$(podman info --format '{{.Host.NetworkBackend}}')
if [ "$backend" = cni ]; then
  echo "podman on this machine already uses the CNI network backend: adding $CNI_DNS_PACKAGE for name resolution"
  install_packages "$CNI_DNS_PACKAGE"
fi
# A scenario network created before name resolution was installed keeps resolving nothing:
# remove it (with the test hosts on it); molecule creates it again, this time with DNS.
mapfile -t networks < <(bash tools/testhost/scenario-networks.sh)
for network in "${networks[@]}"; do
  if podman network exists "$network" &&
     [ "$(podman network inspect --format '{{.DNSEnabled}}' "$network")" != true ]; then
    echo "podman network $network was made without name resolution: removing it and its containers"
    podman network rm -f "$network" >/dev/null
  fi
done

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip >/dev/null
.venv/bin/pip install -q -r requirements-dev.txt
# The service's runtime dependencies at exactly the versions the roles deploy (the lock of
# this Python, hash-checked), so the tests run what a buffer server runs; the editable
# install below finds them satisfied and adds only the test tools.
venv_python=$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
lock=files/python/lock/python$venv_python.txt
[ -f "$lock" ] || { echo "no dependency lock for Python $venv_python ($lock): see tools/refresh-lock.sh" >&2; exit 1; }
.venv/bin/pip install -q --require-hashes -r "$lock"
.venv/bin/pip install -q -e 'files/python[test]'
echo "tools ready in $(pwd)/.venv (podman network backend: $backend)"
