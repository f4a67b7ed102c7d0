#!/bin/bash
# Run molecule scenarios the way this kind of machine needs (podman + runc, systemd test
# hosts, rlimits that must not exceed the hard limits). From anywhere:
#   tools/molecule.sh all                 # `molecule test` for every scenario, one at a time
#   tools/molecule.sh default             # `molecule test` for one scenario
#   tools/molecule.sh default converge    # any other molecule command (create, verify, ...)
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

bash tools/testhost/build-image.sh

if [ "$TARGET" = all ]; then
  mapfile -t SCENARIOS < <(find molecule -mindepth 2 -maxdepth 2 -name molecule.yml -printf '%h\n' \
                           | xargs -n1 basename | sort)
else
  [ -f "molecule/$TARGET/molecule.yml" ] || { echo "no scenario molecule/$TARGET" >&2; exit 2; }
  SCENARIOS=("$TARGET")
fi

failed=()
summary=()
for scenario in "${SCENARIOS[@]}"; do
  started=$SECONDS
  echo "=== molecule $COMMAND -s $scenario"
  if molecule -c molecule/base.yml "$COMMAND" -s "$scenario" "$@"; then
    result=passed
  else
    result=FAILED; failed+=("$scenario")
  fi
  summary+=("$(printf '%-12s %-7s %4ds' "$scenario" "$result" $((SECONDS - started)))")
done

echo "=== molecule $COMMAND summary"
printf '%s\n' "${summary[@]}"
[ ${#failed[@]} -eq 0 ] || { echo "failed: ${failed[*]}" >&2; exit 1; }
