#!/usr/bin/env bash
# Build the edgewasm serving image offline (no registry): a Debian bookworm base made with debootstrap and
# imported into podman (cached outside the checkout), then deploy/Containerfile on it with the project's wheel,
# its pinned dependencies (constraints.txt) and the model store baked in. See docs/deploy.md.
#   deploy/build-image.sh [IMAGE]        IMAGE defaults to localhost/edgewasm:latest
# Environment: BASE (below), PYTHON (the venv's python, for the wheels), EXTRAS (serve,onnx), EDGEWASM_MODELS (the model store),
# IMAGE_CACHE (where the base tarball is kept), DEBIAN_MIRROR (default: the first URI of /etc/apt/sources*).
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${1:-localhost/edgewasm:latest}
# BASE: the image to build on. The default is made here with debootstrap; where a registry is reachable any
# Debian bookworm image works as it is, e.g. BASE=docker.io/library/debian:bookworm-slim.
LOCAL_BASE=localhost/edgewasm-base:bookworm
BASE=${BASE:-$LOCAL_BASE}
PYTHON=${PYTHON:-python3}
EXTRAS=${EXTRAS:-serve,onnx}
IMAGE_CACHE=${IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edgewasm-image}
TARBALL=$IMAGE_CACHE/debian-bookworm-minbase.tar
PODMAN=${PODMAN:-podman}

mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
  local uri
  uri=$(grep -hE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
        | grep -v security | head -n1 | sed -E 's/^URIs: *//; s/^deb (\[[^]]*\] )?//; s/ .*//')
  echo "${uri:-http://deb.debian.org/debian}"
}

# 1. The base: debootstrap once (about a minute and a half), keep the tarball, import it when podman lacks it.
if [ "$BASE" = "$LOCAL_BASE" ] && ! "$PODMAN" image exists "$BASE"; then
  if [ ! -s "$TARBALL" ]; then
    command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install debootstrap" >&2; exit 2; }
    mkdir -p "$IMAGE_CACHE"
    root=$(mktemp -d "$IMAGE_CACHE/rootfs.XXXXXX")
    trap 'rm -rf "$root"' EXIT
    echo "== debootstrap bookworm into $root ($(mirror))"
    debootstrap --variant=minbase --include=python3-venv,ca-certificates bookworm "$root" "$(mirror)" >/dev/null
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar --numeric-owner -C "$root" -cf "$TARBALL.tmp" . && mv "$TARBALL.tmp" "$TARBALL"
    rm -rf "$root"; trap - EXIT
  fi
  echo "== import $TARBALL as $BASE"
  "$PODMAN" import --change 'CMD ["/bin/bash"]' "$TARBALL" "$BASE" >/dev/null
fi

# 2. The build context: the project's wheel and its pinned dependencies, the guests, the model store.
ctx=build/image
rm -rf "$ctx"; mkdir -p "$ctx/wheels" "$ctx/wasm" "$ctx/models"
echo "== wheels (edgewasm[$EXTRAS], pinned by constraints.txt)"
# The last commit's time in the wheel's entries: the same source gives the same wheel, so the layer caches.
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || echo 315532800) \
  "$PYTHON" -m pip wheel -q --no-deps --no-build-isolation -w "$ctx/wheels" .
"$PYTHON" -m pip download -q -c constraints.txt -d "$ctx/wheels" --only-binary=:all: \
  "$(ls "$ctx"/wheels/edgewasm-*.whl)[$EXTRAS]"
cp constraints.txt "$ctx/"
# What the install layer is built from: a changed wheel changes this file, so the layer is never a stale cache hit.
(cd "$ctx/wheels" && sha256sum -- *.whl) > "$ctx/wheels.sha256"
cp wasm/classifier.wasm wasm/wasinn_classifier.wasm "$ctx/wasm/"
store=$("$PYTHON" -c 'from edgewasm._paths import models_dir; print(models_dir())')
entry=$store/efficientnet-lite0
[ -f "$entry/manifest.json" ] || { echo "no model store at $entry: run \`edgewasm models install\` first" >&2; exit 2; }
cp -r "$entry" "$ctx/models/"

# 3. The image.
echo "== build $IMAGE"
pull=never; [ "$BASE" = "$LOCAL_BASE" ] || pull=missing
"$PODMAN" build --format docker --pull=$pull --build-arg BASE="$BASE" --build-arg EXTRAS="$EXTRAS" \
  -f deploy/Containerfile -t "$IMAGE" "$ctx"
"$PODMAN" image inspect --format '{{.Size}}' "$IMAGE" | awk -v i="$IMAGE" '{printf "== %s: %.1f MB\n", i, $1/1e6}'
