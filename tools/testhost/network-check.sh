#!/bin/bash
# Preflight before the first molecule scenario: prove that two containers on each given podman
# network resolve each other by name, as the buffer test host must resolve leginondb's.
# Usage: network-check.sh NETWORK...   (tools/molecule.sh runs it; needs the test-host image)
# A network that does not exist yet is created for the check and removed again, so molecule
# still creates its own; one that exists is checked as it is, since molecule will reuse it.
set -euo pipefail
IMAGE=localhost/embuffer-testhost:latest
NOFILE=${MOLECULE_NOFILE:-20000}
NPROC=${MOLECULE_NPROC:-32768}
FIRST=embuffer-dnscheck-a
SECOND=embuffer-dnscheck-b

backend=$(podman info --format '{{.Host.NetworkBackend}}')
created=""
cleanup() {
  podman rm -f -t 0 "$FIRST" "$SECOND" >/dev/null 2>&1 || true
  if [ -n "$created" ]; then podman network rm -f "$created" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

resolves() {  # resolves FROM NAME: FROM finds NAME's address within a few seconds
  local attempt
  for attempt in 1 2 3 4 5 6 7 8 9 10; do
    podman exec "$1" getent hosts "$2" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  return 1
}

for network in "$@"; do
  created=""
  if ! podman network exists "$network"; then
    podman network create "$network" >/dev/null
    created=$network
  fi
  for name in "$FIRST" "$SECOND"; do
    podman rm -f -t 0 "$name" >/dev/null 2>&1 || true
    # the same runtime and rlimits as the molecule platforms (see molecule/base.yml)
    podman run -d --rm --name "$name" --network "$network" --runtime=runc \
      --ulimit "nofile=$NOFILE:$NOFILE" --ulimit "nproc=$NPROC:$NPROC" \
      "$IMAGE" sleep 300 >/dev/null
  done
  if resolves "$FIRST" "$SECOND" && resolves "$SECOND" "$FIRST"; then
    echo "podman network $network: containers resolve each other by name (backend $backend)"
  else
    cat >&2 <<MSG
podman network $network: containers on it do not resolve each other by name (backend $backend),
so the buffer test host would not find the leginondb host. Install name resolution for
podman's network backend, then remove the network (molecule creates it again):
  netavark backend: apt-get install netavark aardvark-dns iptables
  cni backend:      apt-get install golang-github-containernetworking-plugin-dnsname
  then:             podman network rm -f $network
tools/setup-host.sh (run by make demo and make test) does all of this.
MSG
    exit 1
  fi
  cleanup
done
