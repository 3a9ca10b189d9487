#!/bin/sh
# Builds a local Python base image from Debian's packages, for machines that reach a
# Debian mirror and the package index but no container registry (python:3.11-slim
# cannot be pulled). Bookworm's python3 is 3.11, the version the public image has.
#   k8s/images/base-image.sh [TAG]          (make base-image; default kubetune-base:bookworm)
# The mirror is the one apt on this machine uses; the host's CA bundle and pip settings
# go into the image so pip inside a build reaches the index as pip on the host does.
set -eu
TAG=${1:-kubetune-base:bookworm}
ENGINE=${ENGINE:-$(command -v podman || command -v docker)}
SOURCES=/etc/apt/sources.list.d/debian.sources
[ -f "$SOURCES" ] || SOURCES=/etc/apt/sources.list
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# pip settings that name no file on this machine (local wheel folders, file:// indexes)
# would point at nothing inside the image: carry only the ones that hold there.
PIP_CONF="$WORK/pip.conf"
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > "$PIP_CONF"
for key in global.index-url global.extra-index-url global.trusted-host; do
  value=$(pip config get "$key" 2>/dev/null | tr ' ' '\n' | grep -v '^file:' | tr '\n' ' ' || true)
  [ -n "${value% }" ] && printf '%s = %s\n' "${key#global.}" "${value% }" >> "$PIP_CONF"
done

# minbase: essential packages + apt; passwd for useradd; no docs, man pages or locales.
# The merged-usr hook makes /usr merged itself, so the usrmerge package, and the full
# perl it needs (about 50 MB in every image), is not installed.
mmdebstrap --variant=minbase --quiet --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  --include=python3,python3-venv,python-is-python3,ca-certificates,passwd \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  --customize-hook="cp /etc/ssl/certs/ca-certificates.crt \"\$1/etc/ssl/certs/ca-certificates.crt\"" \
  --customize-hook="cp $PIP_CONF \"\$1/etc/pip.conf\"" \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
  bookworm "$WORK/rootfs.tar" "$SOURCES"

"$ENGINE" import --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["python3"]' "$WORK/rootfs.tar" "$TAG"
echo "built $TAG from $SOURCES"
