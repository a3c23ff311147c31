#!/usr/bin/env bash
# Builds a small Debian image that boots systemd as PID 1, for
# crates/cli/tests/systemd.rs, which runs deploy/README.md's systemd commands in it
# for real (the test machines have no systemd as PID 1 of their own). No registry
# is needed, only Debian's package mirror: debootstrap makes the root filesystem and
# `docker import` turns it into an image. procps is there for /bin/kill, which the
# unit's ExecReload runs (a minbase system lacks it; any standard install has it).
#
#   deploy/systemd-image.sh [TAG]
#
# TAG: default accord-systemd-base:bookworm. Does nothing if the image exists (a
# cold build takes about a minute and a half). Needs root and debootstrap
# (tests/setup installs it). Prints the image's tag on its last line.
set -euo pipefail

tag=${1:-accord-systemd-base:bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if docker image inspect "$tag" >/dev/null 2>&1; then
    echo "$tag"
    exit 0
fi
if ! command -v debootstrap >/dev/null 2>&1; then
    echo "deploy/systemd-image.sh: debootstrap is missing (tests/setup installs it: apt-get install debootstrap)" >&2
    exit 1
fi
if [[ $(id -u) -ne 0 ]]; then
    echo "deploy/systemd-image.sh: debootstrap needs root to build $tag" >&2
    exit 1
fi

rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
echo "deploy/systemd-image.sh: debootstrap bookworm from $mirror (about a minute and a half)" >&2
if ! debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,procps \
    bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1; then
    tail -n 20 "$rootfs.log" >&2
    rm -f "$rootfs.log"
    echo "deploy/systemd-image.sh: debootstrap failed (is $mirror reachable?)" >&2
    exit 1
fi
rm -f "$rootfs.log"
# The downloaded packages and the package lists are not needed to boot: a smaller
# image imports faster.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
# Boots systemd, which `container` tells it runs in a container. (`docker import`
# cannot set STOPSIGNAL: run it with `--stop-signal SIGRTMIN+3`, or `docker stop`
# waits for its timeout, since systemd as PID 1 ignores SIGTERM.)
tar -C "$rootfs" -c . | docker import \
    --change 'CMD ["/lib/systemd/systemd"]' \
    --change 'ENV container=docker' \
    - "$tag" >&2
echo "$tag"
