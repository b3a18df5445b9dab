#!/usr/bin/env bash
# Make a local Python 3.11 base image for hosts that cannot pull python:3.11-slim-bookworm
# (no registry access): Debian bookworm minbase by debootstrap, Python 3.11 with a venv at
# /usr/local (so `pip install` and `python3` behave as in the python:slim images), imported
# into the container engine. Needs root, debootstrap and a Debian mirror.
#
#   scripts/make_base_image.sh [TAG]      # default localhost/dptune-base:bookworm-py3.11
#   ENGINE=docker DEBIAN_MIRROR=http://deb.debian.org/debian scripts/make_base_image.sh
set -euo pipefail
tag=${1:-localhost/dptune-base:bookworm-py3.11}
engine=${ENGINE:-$(command -v podman >/dev/null && echo podman || echo docker)}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
work=$(mktemp -d /var/tmp/dptune-base.XXXXXX)
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs

debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
chroot "$rootfs" python3 -m venv /usr/local
chroot "$rootfs" /usr/local/bin/python3 -m pip --version
# what the image never uses: apt's downloads and lists, documentation, man pages
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
tar -C "$rootfs" -c . | "$engine" import \
    --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    - "$tag" >/dev/null
echo "base image $tag ($("$engine" run --rm "$tag" python3 --version))"
