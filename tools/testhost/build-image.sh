#!/bin/bash
# Build (or reuse) localhost/embuffer-testhost:latest: Debian 12 with systemd as PID 1, the
# image every molecule scenario boots. Needs podman, runc, debootstrap, zstd (tools/setup-host.sh).
# Reuse order: image in podman storage -> cached tarball under /var/cache -> fresh debootstrap.
# The cache key is this script's hash, so editing the package list rebuilds everything.
set -euo pipefail
IMAGE=localhost/embuffer-testhost
CACHE_DIR=${EMBUFFER_IMAGE_CACHE:-/var/cache/embuffer/testhost-images}
WORK=${EMBUFFER_IMAGE_WORK:-/var/tmp/embuffer-testhost-rootfs}
KEY=$(sha256sum "$0" | cut -c1-12)
TARBALL=$CACHE_DIR/bookworm-systemd-$KEY.tar.zst

import_tarball() {
  zstd -dc "$TARBALL" | podman import \
    --change 'CMD ["/sbin/init"]' --change 'STOPSIGNAL SIGRTMIN+3' - "$IMAGE:$KEY"
}

if podman image exists "$IMAGE:$KEY"; then
  echo "test-host image $IMAGE:$KEY already present"
elif [ -s "$TARBALL" ]; then
  echo "importing cached test-host image $TARBALL"
  import_tarball
else
  # The machine's own apt mirror, read at run time (deb822 sources first, then one-line form).
  MIRROR=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  [ -n "$MIRROR" ] || MIRROR=$(awk '$1=="deb"{print $2; exit}' /etc/apt/sources.list)
  ROOTFS=$WORK/rootfs
  rm -rf "$ROOTFS"; mkdir -p "$WORK"
  echo "building test-host root filesystem from $MIRROR (about a minute)"
  debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,dbus,python3,python3-apt,python3-venv,python3-packaging,python3-pymysql,sudo,iproute2,procps,ca-certificates,acl \
    bookworm "$ROOTFS" "$MIRROR"
  rm -f "$ROOTFS/etc/apt/sources.list"
  cp /etc/apt/sources.list.d/*.sources "$ROOTFS/etc/apt/sources.list.d/" 2>/dev/null || true
  if [ -f /etc/apt/sources.list ]; then cp /etc/apt/sources.list "$ROOTFS/etc/apt/sources.list"; fi
  grep -l '^Acquire::' /etc/apt/apt.conf.d/* 2>/dev/null | xargs -r cp -t "$ROOTFS/etc/apt/apt.conf.d/"
  chroot "$ROOTFS" apt-get update -qq          # keep the lists: cache_valid_time relies on them
  chroot "$ROOTFS" systemctl mask \
    getty.target console-getty.service systemd-udevd.service systemd-udev-trigger.service \
    systemd-remount-fs.service sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount \
    systemd-firstboot.service systemd-modules-load.service \
    apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer
  : > "$ROOTFS/etc/machine-id"
  chroot "$ROOTFS" apt-get clean
  mkdir -p "$CACHE_DIR"
  tar -C "$ROOTFS" -c . | zstd -q -T0 -3 > "$TARBALL.tmp" && mv "$TARBALL.tmp" "$TARBALL"
  import_tarball
  rm -rf "$ROOTFS"
fi
podman tag "$IMAGE:$KEY" "$IMAGE:latest"
