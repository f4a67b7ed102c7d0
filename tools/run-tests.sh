#!/bin/bash
# Run the whole test suite (or one stage: python | lint | collection | molecule). `make test`
# and CI's .ci/run call this after tools/setup-host.sh. Every stage must pass; the first failure
# stops.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
# No ANSIBLE_* settings: the roles and modules are the collection embuffer.buffer (galaxy.yml),
# which ansible-lint builds and installs in .ansible/ itself, the module tests find through
# ansible/checkout, and the collection stage builds and installs as a facility does.
stage=${1:-all}
started=$(date +%s)

step() { printf '\n==== %s (%ss so far)\n' "$1" "$(( $(date +%s) - started ))"; }

if [[ $stage == all || $stage == lint ]]; then
  step "ruff and mypy on the embuffer package and the benchmarks"
  (cd files/python && ruff check src tests && ruff format --check src && mypy src)
  ruff check --config files/python/pyproject.toml bench
  ruff format --check --config files/python/pyproject.toml bench
  step "each role's argument specs and defaults name the same variables"
  python tools/check_role_specs.py
  step "one version for the package, the collection and the roles; release-note fragments"
  python tools/check_versions.py
  step "the dependency locks match pyproject.toml"
  bash tools/refresh-lock.sh --check
  step "the previous release the upgrade scenario starts from (molecule/upgrade/previous)"
  (cd molecule/upgrade/previous &&
   awk '$1=="sha256:"{sum=$2} $1=="archive:"{file=$2} END{print sum "  " file}' release.yml \
     | sha256sum --check --strict)
  antsibull-changelog lint
  step "ansible-lint (production profile)"
  ansible-lint --profile production
fi
if [[ $stage == all || $stage == python ]]; then
  step "pytest: embuffer package, fault tests, Ansible module and GPU detection"
  python -m pytest -q -p no:cacheprovider files/python/tests ansible/tests
fi
if [[ $stage == all || $stage == collection ]]; then
  step "the collection: build, install, use by FQCN from outside the repository, ansible-test sanity"
  # Outside the checkout: inside a git work tree ansible-test lists its targets with git,
  # which ignores .work/, and would find nothing to test.
  collection_dir=$(mktemp -d /var/tmp/embuffer-collection.XXXXXX)
  bash tools/collection.sh check "$collection_dir"
  rm -rf "$collection_dir"
fi
if [[ $stage == all || $stage == molecule ]]; then
  step "molecule scenarios on podman test hosts"
  bash tools/molecule.sh all
fi
step "all stages passed"
