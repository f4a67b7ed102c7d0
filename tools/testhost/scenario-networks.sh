#!/bin/bash
# Print the podman networks the given molecule scenarios put their hosts on (all scenarios
# when none is given), one a line: the `network:` keys of their platforms.
set -euo pipefail
cd "$(dirname "$0")/../.."
files=()
if [ $# -eq 0 ]; then
  files=(molecule/*/molecule.yml)
else
  for scenario in "$@"; do files+=("molecule/$scenario/molecule.yml"); done
fi
# `network: &anchor name` and `network: name`; `network: *anchor` repeats one already listed.
sed -n 's/^ *network: *&[A-Za-z0-9_]* *\([A-Za-z0-9][A-Za-z0-9_.-]*\) *$/\1/p
        s/^ *network: *\([A-Za-z0-9][A-Za-z0-9_.-]*\) *$/\1/p' "${files[@]}" | sort -u
