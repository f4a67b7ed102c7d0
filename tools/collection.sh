#!/bin/bash
# The Ansible collection embuffer.buffer as a facility gets it: built from this repository
# (galaxy.yml), installed with ansible-galaxy into an empty collections path, used from a
# folder outside the repository.
#   tools/collection.sh install DIR   build DIR/embuffer-buffer-<version>.tar.gz and install it
#                                     into DIR/collections (emptied first); molecule runs this
#   tools/collection.sh check DIR     install, then from a new folder outside the repository:
#                                     a playbook calling every role and module by FQCN
#                                     (--syntax-check), ansible-doc of each module, ansible-lint
#                                     (production profile); then ansible-test sanity on the
#                                     installed tree but files/ (tests/sanity/ignore-2.NN.txt
#                                     applies; see sanity_targets)
# No ANSIBLE_* variable of the project is set for any of it. Needs the .venv of
# tools/setup-host.sh; ansible-test sanity also needs PyPI for its test venvs' requirements.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

usage() { echo "usage: $0 install|check DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
ACTION=$1
mkdir -p "$2"
OUT=$(cd "$2" && pwd)
case $OUT/ in "$ROOT"/.work/*) ;; "$ROOT"/*) echo "DIR must be outside the repository or under .work/" >&2; exit 2 ;; esac
VENV_BIN=$ROOT/.venv/bin
[ -x "$VENV_BIN/ansible-galaxy" ] || { echo "$ROOT/.venv has no ansible: run tools/setup-host.sh first" >&2; exit 1; }

# A facility's shell: its own PATH and HOME, none of this project's ANSIBLE_* settings.
clean() {
  env -i HOME="$HOME" PATH="$VENV_BIN:/usr/local/bin:/usr/bin:/bin" LANG=C.UTF-8 NO_COLOR=1 "$@"
}

VERSION=$("$VENV_BIN/python" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["version"])' galaxy.yml)
TARBALL=$OUT/embuffer-buffer-$VERSION.tar.gz
COLLECTIONS=$OUT/collections
INSTALLED=$COLLECTIONS/ansible_collections/embuffer/buffer

install_collection() {
  rm -rf "$COLLECTIONS" "$TARBALL"
  mkdir -p "$COLLECTIONS"
  echo "\$ ansible-galaxy collection build --output-path $OUT"
  clean ansible-galaxy collection build --output-path "$OUT" "$ROOT"
  [ -f "$TARBALL" ] || { echo "no $TARBALL was built" >&2; exit 1; }
  echo "\$ ansible-galaxy collection install $TARBALL -p $COLLECTIONS"
  # --force: a copy in a default collections path (~/.ansible/collections) must not stop it
  clean ansible-galaxy collection install --offline --force "$TARBALL" -p "$COLLECTIONS"
  [ -f "$INSTALLED/MANIFEST.json" ] || { echo "nothing installed in $INSTALLED" >&2; exit 1; }
}

# A facility's project: its ansible.cfg names where it installed the collection.
write_user_project() {
  local project=$1 role module
  cat > "$project/ansible.cfg" <<EOF
[defaults]
collections_path = $COLLECTIONS
EOF
  mkdir -p "$project/group_vars"
  cat > "$project/hosts.yml" <<'EOF'
---
embuffer_buffer_servers:
  hosts:
    buffer-01.example.org:
EOF
  {
    echo "---"
    echo "# Every role and module of embuffer.buffer by its FQCN, and the collection's own playbooks."
    for playbook in site outage-on outage-off; do
      echo "- name: Run the collection's $playbook playbook"
      echo "  ansible.builtin.import_playbook: $INSTALLED/ansible/$playbook.yml"
      echo
    done
    echo "- name: Use each role of the collection on the buffer servers"
    echo "  hosts: embuffer_buffer_servers"
    echo "  become: true"
    echo "  gather_facts: false"
    echo "  roles:"
    for role in "$INSTALLED"/roles/*/; do
      role=$(basename "$role")
      echo "    - role: embuffer.buffer.$role"
    done
    cat <<'EOF'

- name: Call each module and filter of the collection
  hosts: embuffer_buffer_servers
  become: true
  gather_facts: false
  tasks:
    - name: Detect the NVIDIA GPUs
      embuffer.buffer.nvidia_gpu_facts:
      register: user_gpu

    - name: Choose the MotionCor2 build for the host's CUDA
      ansible.builtin.set_fact:
        user_motioncor2: >-
          {{ user_motioncor2_artifacts | embuffer.buffer.emtools_select('motioncor2', user_gpu.cuda_version,
                                                                        '', 'minor') }}

    - name: Install the chosen MotionCor2 binary
      embuffer.buffer.emtools_artifact:
        archive: "/var/cache/embuffer/emtools/{{ user_motioncor2.build.archive_name }}"
        sha256: "{{ user_motioncor2.build.sha256 }}"
        format: zip
        member: "{{ user_motioncor2.build.member }}"
        dest_dir: /opt/emtools/motioncor2/{{ user_motioncor2.build.version }}
        owner: root
        group: root
        mode: "0755"

    - name: Register this buffer server for its camera in leginondb
      embuffer.buffer.leginon_buffer_host:
        camera_host: k3-cam-01
        buffer_hostname: "{{ inventory_hostname }}"
        buffer_base_path: /bufferdata/frames
        login_host: leginondb.example.org
        login_user: embuffer_registrar
        login_password: "{{ user_registrar_password }}"
      no_log: true
      delegate_to: localhost

    - name: Index CameraEMData's frames name
      embuffer.buffer.leginon_frames_name_index:
        login_host: leginondb.example.org
        login_user: embuffer_registrar
        login_password: "{{ user_registrar_password }}"
      no_log: true
      delegate_to: localhost
EOF
  } > "$project/playbook.yml"
}

check_as_a_user() {
  local project module
  project=$(mktemp -d /tmp/embuffer-collection-user.XXXXXX)
  write_user_project "$project"
  echo "=== a playbook outside the repository ($project), roles and modules by FQCN"
  echo "\$ ansible-playbook -i hosts.yml playbook.yml --syntax-check"
  (cd "$project" && clean ansible-playbook -i hosts.yml playbook.yml --syntax-check)
  for module in "$INSTALLED"/plugins/modules/*.py; do
    module=embuffer.buffer.$(basename "$module" .py)
    echo "\$ ansible-doc $module"
    (cd "$project" && clean ansible-doc "$module") > "$project/doc.txt"
    head -n 2 "$project/doc.txt"
    # the module's page, not ansible-doc's "module not found" warning with an empty page
    grep -q 'OPTIONS' "$project/doc.txt" || { echo "ansible-doc $module shows no options" >&2; exit 1; }
  done
  echo "\$ ansible-lint --profile production playbook.yml"
  (cd "$project" && clean ansible-lint --profile production --nocolor playbook.yml)
  rm -rf "$project"
}

# ansible-test bootstraps pip in each sanity venv with a get-pip.py it downloads from a host
# this machine cannot reach. A copy in its cache is used instead: ours installs pip from the
# wheel of the version ansible-test pins (downloaded from PyPI here, with the project's pip).
provide_pip_bootstrap() {
  local pip_version cache
  pip_version=$("$VENV_BIN/python" -c '
import types
from ansible_test._internal.python_requirements import get_venv_packages
print(get_venv_packages(types.SimpleNamespace(version="3.11"))["pip"])')
  cache=$HOME/.ansible/test/cache
  mkdir -p "$cache"
  [ -f "$cache/pip-$pip_version-py3-none-any.whl" ] \
    || "$VENV_BIN/pip" download -q --no-deps --only-binary=:all: -d "$cache" "pip==$pip_version"
  install -m 0644 tools/ansible_test_get_pip.py "$cache/get_pip_${pip_version//./_}.py"
}

# Every path of the installed collection but files/: that holds what the roles deploy, the
# embuffer package (built into a wheel on the controller, run in its own venv on the host; ruff
# and mypy --strict check it in the lint stage) and the Prometheus rules and Grafana dashboard
# (promtool checks them). ansible-test's pylint profile is for Ansible plugins and bans names
# such as `_`, which the package uses as Python does.
sanity_targets() {
  local path
  for path in "$INSTALLED"/* "$INSTALLED"/.[!.]*; do
    [ -e "$path" ] || continue
    path=${path#"$INSTALLED"/}
    [ "$path" != files ] || continue
    if [ -d "$INSTALLED/$path" ]; then echo "$path/"; else echo "$path"; fi
  done
}

run_sanity() {
  local targets
  provide_pip_bootstrap
  mapfile -t targets < <(sanity_targets)
  # The controller's Python (Debian 12's 3.11) is the only one here; ansible-test would skip
  # the others with a warning each.
  echo "=== ansible-test sanity --python 3.11 on $INSTALLED: ${targets[*]}"
  (cd "$INSTALLED" && clean ansible-test sanity --python 3.11 --color no "${targets[@]}")
  echo "ansible-test sanity: every test passed"
}

case $ACTION in
  install) install_collection ;;
  check) install_collection; check_as_a_user; run_sanity ;;
  *) usage ;;
esac
