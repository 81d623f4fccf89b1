#!/usr/bin/env bash
# Builds a Python base image from Debian packages, for machines that reach Debian's mirror but no
# image registry: debootstrap (minbase) bookworm with python3 and python3-venv (Python 3.11, the
# version of the default python:3.11-slim base), imported into the engine as $TAG.
#   tools/image/debian-base.sh [TAG]     (default rackfit/debian-python:bookworm; needs root)
# `make image` uses it when the engine has no python:3.11-slim and cannot pull it.
set -euo pipefail
tag=${1:-rackfit/debian-python:bookworm}
engine=${ENGINE:-docker}
log() { echo "[debian-base] $*" >&2; }
[ "$(id -u)" = 0 ] || { log "debootstrap needs root"; exit 3; }
command -v debootstrap >/dev/null || {
  log "installing debootstrap"; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
# the mirror apt uses here (deb822 sources or sources.list), else Debian's CDN
mirror=$( (grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/debian.sources \
           | awk '{print $2}' | grep -m1 '/debian/\?$') || true)
[ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $2 ~ /\/debian\/?$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
log "debootstrap bookworm from $mirror"
debootstrap --variant=minbase --include=python3,python3-venv bookworm "$root" "$mirror" >"$root.log" 2>&1 \
  || { tail -n 20 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"
# no package lists, caches, docs or man pages in the image
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/usr/share/doc/* "$root"/usr/share/man/* \
       "$root"/usr/share/info/* "$root"/var/log/*
tar -C "$root" -c . | "$engine" import -c 'CMD ["python3"]' - "$tag" >/dev/null
log "imported $tag"
