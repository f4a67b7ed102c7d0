#!/bin/bash
# Run molecule scenarios the way this kind of machine needs (podman + runc, systemd test
# hosts, rlimits that must not exceed the hard limits). From anywhere:
#   tools/molecule.sh all                 # `molecule test` for every scenario, one at a time
#   tools/molecule.sh default             # `molecule test` for one scenario
#   tools/molecule.sh default converge    # any other molecule command (create, verify, ...)
# A scenario whose image names ${EMBUFFER_TESTHOST_RELEASE} (default, outage) runs once per
# supported Debian release, one after the other (its hosts' names are fixed): Debian 12
# "bookworm", then Debian 13 "trixie" (EMBUFFER_TESTHOST_RELEASES="trixie" picks fewer), and
# prints the minutes of each. Any other command acts on one release's hosts: the first of
# EMBUFFER_TESTHOST_RELEASES, e.g. EMBUFFER_TESTHOST_RELEASES=trixie tools/molecule.sh default
# converge. The other scenarios run on the bookworm image only.
# Needs tools/setup-host.sh to have run (the .venv tools, podman, runc, debootstrap).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

usage() { echo "usage: $0 all|SCENARIO [MOLECULE_COMMAND [ARGS...]]" >&2; exit 2; }
[ $# -ge 1 ] || usage
TARGET=$1; shift
COMMAND=${1:-test}; [ $# -eq 0 ] || shift

if [ ! -x "$ROOT/.venv/bin/molecule" ]; then
  echo "$ROOT/.venv has no molecule: run tools/setup-host.sh first" >&2
  exit 1
fi
# molecule calls ansible-playbook, ansible-config and pytest by name.
export PATH="$ROOT/.venv/bin:$PATH"
# A container may not ask for more than the hard limits of this machine (crun/runc would
# fail on setrlimit); nproc is also bounded by the kernel's pid_max.
MOLECULE_NOFILE=$(ulimit -Hn)
hard_nproc=$(ulimit -Hu)
pid_max=$(cat /proc/sys/kernel/pid_max)
if [ "$hard_nproc" = unlimited ] || [ "$hard_nproc" -gt "$pid_max" ]; then
  MOLECULE_NPROC=$pid_max
else
  MOLECULE_NPROC=$hard_nproc
fi
[ "$MOLECULE_NOFILE" != unlimited ] || MOLECULE_NOFILE=1048576
export MOLECULE_NOFILE MOLECULE_NPROC
export ANSIBLE_FORCE_COLOR=${ANSIBLE_FORCE_COLOR:-false}

# The scenarios use the collection as it ships: built from galaxy.yml and installed with
# ansible-galaxy once per run, into a folder of this run (a run beside it keeps its own).
if [ "$COMMAND" != destroy ]; then
  MOLECULE_COLLECTION=$(mkdir -p "$ROOT/.work" && mktemp -d "$ROOT/.work/molecule-collection.XXXXXX")
  trap 'rm -rf "$MOLECULE_COLLECTION"' EXIT
  bash tools/collection.sh install "$MOLECULE_COLLECTION" >"$MOLECULE_COLLECTION.log" 2>&1 \
    || { cat "$MOLECULE_COLLECTION.log" >&2; exit 1; }
  rm -f "$MOLECULE_COLLECTION.log"
  export ANSIBLE_COLLECTIONS_PATH=$MOLECULE_COLLECTION/collections
  echo "=== embuffer.buffer $(sed -n 's/^version: //p' galaxy.yml) installed in $ANSIBLE_COLLECTIONS_PATH"
fi

if [ "$TARGET" = all ]; then
  mapfile -t SCENARIOS < <(find molecule -mindepth 2 -maxdepth 2 -name molecule.yml -printf '%h\n' \
                           | xargs -n1 basename | sort)
else
  [ -f "molecule/$TARGET/molecule.yml" ] || { echo "no scenario molecule/$TARGET" >&2; exit 2; }
  SCENARIOS=("$TARGET")
fi

SUPPORTED_RELEASES=(bookworm trixie)
read -r -a RELEASES <<< "${EMBUFFER_TESTHOST_RELEASES:-${SUPPORTED_RELEASES[*]}}"
releases_of() {  # the releases a scenario runs on, one a line
  if ! grep -q 'EMBUFFER_TESTHOST_RELEASE[:}]' "molecule/$1/molecule.yml"; then
    echo bookworm
  elif [ "$COMMAND" = test ]; then
    printf '%s\n' "${RELEASES[@]}"
  else
    echo "${RELEASES[0]}"
  fi
}

if [ "$COMMAND" != destroy ]; then
  bash tools/testhost/build-image.sh
fi
# Preflight before the first scenario: the scenarios' hosts must find each other by name.
case $COMMAND in
  test|create|converge)
    if [ -z "${EMBUFFER_NETWORK_CHECKED:-}" ]; then
      mapfile -t networks < <(bash tools/testhost/scenario-networks.sh "${SCENARIOS[@]}")
      [ ${#networks[@]} -eq 0 ] || bash tools/testhost/network-check.sh "${networks[@]}"
    fi ;;
esac

# molecule remembers created instances in its state file and then skips `create`; after a
# failed run, a reboot or a `podman rm` by hand, the containers are gone and converge would
# find the hosts UNREACHABLE. Forget such instances first (`test` starts with destroy anyway).
believes_created() {  # molecule's state file says the scenario's instances exist
  # plain lines: instance, driver, provisioner, scenario, created, converged
  NO_COLOR=1 molecule -c molecule/base.yml list -s "$1" -f plain 2>/dev/null \
    | sed 's/\x1b\[[0-9;]*m//g' | awk -v scenario="$1" '$4 == scenario && $5 == "true" {found=1} END {exit !found}'
}
platforms() {
  python -c 'import sys, yaml
for p in yaml.safe_load(open(sys.argv[1]))["platforms"]: print(p["name"])' "molecule/$1/molecule.yml"
}
forget_vanished_instances() {
  local scenario=$1 name
  believes_created "$scenario" || return 0
  for name in $(platforms "$scenario"); do
    if [ "$(podman container inspect --format '{{.State.Running}}' "$name" 2>/dev/null)" != true ]; then
      echo "=== molecule believes the $scenario hosts exist, but $name is not running: destroying first"
      molecule -c molecule/base.yml destroy -s "$scenario"
      return 0
    fi
  done
}

failed=()
summary=()
for scenario in "${SCENARIOS[@]}"; do
  for release in $(releases_of "$scenario"); do
    export EMBUFFER_TESTHOST_RELEASE=$release
    started=$SECONDS
    case $COMMAND in test|destroy) ;; *) forget_vanished_instances "$scenario" ;; esac
    echo "=== molecule $COMMAND -s $scenario on $release"
    if molecule -c molecule/base.yml "$COMMAND" -s "$scenario" "$@"; then
      result=passed
    else
      result=FAILED; failed+=("$scenario/$release")
    fi
    elapsed=$((SECONDS - started))
    summary+=("$(printf '%-12s %-9s %-7s %4ds (%d.%d min)' "$scenario" "$release" "$result" \
                 "$elapsed" $((elapsed / 60)) $((elapsed % 60 * 10 / 60)))")
  done
done

echo "=== molecule $COMMAND summary"
printf '%s\n' "${summary[@]}"
[ ${#failed[@]} -eq 0 ] || { echo "failed: ${failed[*]}" >&2; exit 1; }
