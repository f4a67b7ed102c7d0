#!/bin/bash
# Build (or reuse) the test-host images the molecule scenarios boot: Debian with systemd as
# PID 1, one image per supported release:
#   localhost/embuffer-testhost-bookworm:latest   Debian 12 (also tagged embuffer-testhost:latest,
#                                                 the image of emtools and the network check)
#   localhost/embuffer-testhost-trixie:latest     Debian 13
# Usage: build-image.sh [RELEASE...]   (no argument: every supported release)
# Needs podman, runc, debootstrap, zstd (tools/setup-host.sh).
# Reuse order per release: image in podman storage -> cached tarball under /var/cache ->
# fresh debootstrap. The cache key is this script's hash, so editing it rebuilds everything.
set -euo pipefail
SUPPORTED_RELEASES=(bookworm trixie)
DEFAULT_RELEASE=bookworm
IMAGE_PREFIX=localhost/embuffer-testhost
CACHE_DIR=${EMBUFFER_IMAGE_CACHE:-/var/cache/embuffer/testhost-images}
WORK=${EMBUFFER_IMAGE_WORK:-/var/tmp/embuffer-testhost-rootfs}
KEY=$(sha256sum "$0" | cut -c1-12)
PACKAGES=systemd,systemd-sysv,dbus,python3,python3-apt,python3-venv,python3-packaging,python3-pymysql,sudo,iproute2,procps,ca-certificates,acl

# PID 1 is plain /sbin/init on both releases, on this machine too (cgroup v1 "hybrid", podman
# 4.3 with runc). Debian 13's systemd 257 refuses cgroup v1 only where it would set the v1
# hierarchies up itself (a host booted with systemd.unified_cgroup_hierarchy=0, unless
# SYSTEMD_CGROUP_ENABLE_LEGACY_FORCE=1 is on its command line). In a container it mounts no
# cgroups: podman --systemd=always has mounted them already (the v1 controllers read-only, the
# named `systemd` hierarchy writable), and systemd adopts what it finds and boots ("System is
# tainted: cgroupsv1"; no BPF firewalling, as on Debian 12). Tried here with systemd
# 257.13: /sbin/init boots to "running", and passing SYSTEMD_CGROUP_ENABLE_LEGACY_FORCE=1 as
# PID 1's argument (where a container's systemd reads its kernel command line) only makes it
# try to mount the controllers again ("Failed to create symlink /sys/fs/cgroup/cpu"), so the
# images do not carry it. On a cgroup v2 machine the same images boot on v2.

# The machine's own apt mirror, read at run time (deb822 sources first, then one-line form).
host_mirror() {
  local mirror
  mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  [ -n "$mirror" ] || mirror=$(awk '$1=="deb"{print $2; exit}' /etc/apt/sources.list)
  echo "$mirror"
}

# The host's apt sources, with the host's release name replaced by the image's (suites such
# as bookworm-updates and bookworm-security become trixie-updates and trixie-security).
copy_apt_sources() {
  local rootfs=$1 release=$2 host_release source
  host_release=$(. /etc/os-release && echo "$VERSION_CODENAME")
  rm -f "$rootfs/etc/apt/sources.list"
  for source in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list; do
    [ -f "$source" ] || continue
    sed -E "s/\\b$host_release(-|\\b)/$release\\1/g" "$source" > "$rootfs/etc/apt/${source#/etc/apt/}"
  done
  grep -l '^Acquire::' /etc/apt/apt.conf.d/* 2>/dev/null | xargs -r cp -t "$rootfs/etc/apt/apt.conf.d/"
}

build_rootfs_tarball() {
  local release=$1 tarball=$2 rootfs=$WORK/$1/rootfs mirror
  mirror=$(host_mirror)
  rm -rf "$rootfs"; mkdir -p "$WORK/$release"
  echo "building the $release test-host root filesystem from $mirror (about a minute)"
  debootstrap --variant=minbase --include="$PACKAGES" "$release" "$rootfs" "$mirror"
  copy_apt_sources "$rootfs" "$release"
  chroot "$rootfs" apt-get update -qq          # keep the lists: cache_valid_time relies on them
  chroot "$rootfs" systemctl mask \
    getty.target console-getty.service systemd-udevd.service systemd-udev-trigger.service \
    systemd-remount-fs.service sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount \
    systemd-firstboot.service systemd-modules-load.service \
    apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer
  : > "$rootfs/etc/machine-id"
  chroot "$rootfs" apt-get clean
  mkdir -p "$CACHE_DIR"
  tar -C "$rootfs" -c . | zstd -q -T0 -3 > "$tarball.tmp" && mv "$tarball.tmp" "$tarball"
  rm -rf "$rootfs"
}

build_release() {
  local release=$1 image=$IMAGE_PREFIX-$1 tarball=$CACHE_DIR/$1-systemd-$KEY.tar.zst
  if podman image exists "$image:$KEY"; then
    echo "test-host image $image:$KEY already present"
  else
    [ -s "$tarball" ] || build_rootfs_tarball "$release" "$tarball"
    echo "importing the $release test-host image from $tarball"
    zstd -dc "$tarball" | podman import \
      --change 'CMD ["/sbin/init"]' --change 'STOPSIGNAL SIGRTMIN+3' - "$image:$KEY"
  fi
  podman tag "$image:$KEY" "$image:latest"
  if [ "$release" = "$DEFAULT_RELEASE" ]; then
    podman tag "$image:$KEY" "$IMAGE_PREFIX:latest"
  fi
  # Builds by an earlier version of this script only take space (a tarball is ~90 MB): drop
  # them; podman keeps an image that a container still uses.
  find "$CACHE_DIR" -maxdepth 1 -name "$release-systemd-*.tar.zst" ! -name "${tarball##*/}" -delete
  podman images --format '{{.Repository}}:{{.Tag}}' \
    | grep -E "^($image|$IMAGE_PREFIX):" | grep -v -E ":($KEY|latest)\$" \
    | xargs -r podman rmi >/dev/null 2>&1 || true
}

releases=("$@")
[ ${#releases[@]} -gt 0 ] || releases=("${SUPPORTED_RELEASES[@]}")
for release in "${releases[@]}"; do
  case " ${SUPPORTED_RELEASES[*]} " in
    *" $release "*) build_release "$release" ;;
    *) echo "unsupported test-host release $release (supported: ${SUPPORTED_RELEASES[*]})" >&2; exit 2 ;;
  esac
done
