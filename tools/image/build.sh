#!/usr/bin/env bash
# `make image`: the operator image rackfit:<package version>, built from the Dockerfile.
#   1. a container engine (tools/image/engine.sh: docker or podman; as root, Debian's docker.io is
#      installed and started when none answers);
#   2. the wheelhouse: `pip wheel` of '.[operator]' on this host into .rackfit/wheelhouse (the only
#      place the build installs from; this host's pip settings and index apply);
#   3. the base: $BASE_IMAGE if set; else python:3.11-slim when the engine has it or can pull it;
#      else the Debian-made base of tools/image/debian-base.sh (built once).
# Prints the image reference on its last line; its size goes to stderr.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
log() { echo "[image] $*" >&2; }
engine=$(tools/image/engine.sh start)
version=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
image=${IMAGE:-rackfit:$version}
wheels=.rackfit/wheelhouse

log "wheelhouse: pip wheel '.[operator]' -> $wheels"
mkdir -p "$wheels"
rm -f "$wheels"/rackfit-*.whl  # the same version rebuilt from this checkout
python3 -m pip wheel -q --disable-pip-version-check -w "$wheels" '.[operator]' >&2
rm -rf build  # setuptools' in-tree build directory

debian_base=rackfit/debian-python:bookworm
base=${BASE_IMAGE:-}
if [ -z "$base" ]; then
  if "$engine" image inspect python:3.11-slim >/dev/null 2>&1 || timeout 60 "$engine" pull -q python:3.11-slim >/dev/null 2>&1; then
    base=python:3.11-slim
  else
    log "python:3.11-slim cannot be pulled here: using the Debian-made base $debian_base"
    base=$debian_base
  fi
fi
if [ "$base" = "$debian_base" ] && ! "$engine" image inspect "$base" >/dev/null 2>&1; then
  ENGINE=$engine tools/image/debian-base.sh "$base"
fi

log "$engine build -t $image (BASE_IMAGE=$base)"
# the legacy builder: Debian's docker.io ships no buildx plugin
DOCKER_BUILDKIT=0 "$engine" build -q --build-arg "BASE_IMAGE=$base" -t "$image" . >/dev/null
size=$("$engine" image inspect -f '{{.Size}}' "$image")
log "$image: $((size / 1000000)) MB ($size bytes) on $base"
echo "$image"
