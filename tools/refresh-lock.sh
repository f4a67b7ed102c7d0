#!/bin/bash
# Refresh the locks of the embuffer service's runtime dependencies, one per Python that a
# supported platform brings (Debian 12: 3.11, Debian 13: 3.13):
#   files/python/lock/python3.11.txt, files/python/lock/python3.13.txt
# Each pins every runtime dependency of files/python/pyproject.toml to one version, with the
# sha256 of every file PyPI serves for it. The embuffer_service role deploys exactly these
# (pip download/install --require-hashes, no resolver at deploy time) and tools/setup-host.sh
# installs the 3.11 lock into .venv, so a buffer server runs the versions CI ran.
# One lock per Python rather than one universal lock: pip evaluates a lock's environment
# markers against the Python that runs it, so a controller on 3.11 downloading for a 3.13
# target would take the 3.11 pins.
#
# Usage (from anywhere; needs uv in .venv, from requirements-dev.txt):
#   tools/refresh-lock.sh                         # after pyproject.toml changed: adds and drops
#                                                 # what changed, keeps every other pin
#   tools/refresh-lock.sh --upgrade               # every dependency to its newest allowed release
#   tools/refresh-lock.sh --upgrade-package rich  # one dependency
#   tools/refresh-lock.sh --check                 # exit 1 when a lock no longer matches pyproject
# After writing, it proves each lock deployable as the role deploys it: every locked wheel
# downloads, hash-checked, for its Python on the Debian release that brings it (x86_64).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PYPROJECT=files/python/pyproject.toml
LOCK_DIR=files/python/lock
# Python of each supported Debian release -> that release's glibc (its manylinux wheels).
declare -A GLIBC_MINOR=([3.11]=36 [3.13]=41)
UV=$ROOT/.venv/bin/uv
PIP=$ROOT/.venv/bin/pip
[ -x "$UV" ] || { echo "no uv in .venv: run tools/setup-host.sh first" >&2; exit 1; }

compile_lock() {  # compile_lock PYTHON_VERSION OUTPUT [UV ARGS...]
  local python=$1 output=$2; shift 2
  "$UV" pip compile "$PYPROJECT" --quiet --generate-hashes \
    --python-version "$python" --python-platform linux \
    --custom-compile-command "tools/refresh-lock.sh" --output-file "$output" "$@"
}

# The platform tags of an x86_64 Debian with glibc 2.MINOR, newest first (what pip on it accepts).
manylinux_platforms() {
  local minor
  for ((minor = $1; minor >= 5; minor--)); do echo "--platform=manylinux_2_${minor}_x86_64"; done
  printf -- '--platform=%s\n' manylinux2014_x86_64 manylinux2010_x86_64 manylinux1_x86_64
}

check=false
if [ "${1:-}" = --check ]; then check=true; shift; fi
mkdir -p "$LOCK_DIR"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
stale=()
for python in $(printf '%s\n' "${!GLIBC_MINOR[@]}" | sort -V); do
  lock=$LOCK_DIR/python$python.txt
  if $check; then
    # Recompile into a copy: unchanged pins stay, so any difference is pyproject's change.
    [ -f "$lock" ] && cp "$lock" "$scratch/check.txt"
    compile_lock "$python" "$scratch/check.txt"
    cmp -s "$lock" "$scratch/check.txt" || stale+=("$lock")
    continue
  fi
  compile_lock "$python" "$lock" "$@"
  mapfile -t platforms < <(manylinux_platforms "${GLIBC_MINOR[$python]}")
  "$PIP" download --quiet --only-binary=:all: --require-hashes --dest "$scratch/$python" \
    --python-version "$python" --implementation cp "${platforms[@]}" -r "$lock"
  printf '%s: %d packages, wheels for Python %s on glibc 2.%s download and match their hashes\n' \
    "$lock" "$(grep -c '^[A-Za-z0-9]' "$lock")" "$python" "${GLIBC_MINOR[$python]}"
done
if [ ${#stale[@]} -gt 0 ]; then
  echo "out of date with $PYPROJECT: ${stale[*]} (run tools/refresh-lock.sh)" >&2
  exit 1
fi
