#!/usr/bin/env bash
# Build the project image without a registry and load it into the local cluster's containerd.
#
#   1. <repo>/.venv/bin/pip wheel -> $CACHE/wheels (offline first, from the wheels already there)
#   2. base image: debootstrap --variant=minbase bookworm (+python3, python3-venv, ca-certificates),
#      `podman import`ed as localhost/debian-python:bookworm (cached: done once per machine)
#   3. podman build --build-arg BASE=localhost/debian-python:bookworm -t localhost/searchrun:0.1.0
#      -f images/searchrun/Dockerfile <prepared context in the cache>
#   4. podman save --format docker-archive, then `ctr -n k8s.io images import` into the cluster's
#      containerd (skipped with --no-import, or when the cluster is not up)
# Steps 3-4 are skipped when the content hash of (wheels, Dockerfile, base image) is unchanged
# and the image is already in containerd.
#
# Usage: hack/build-images.sh [--no-import]
#        hack/build-images.sh --context-only DIR   only prepare the build context in DIR (replaced;
#            no root, no podman), e.g. for `docker build -f images/searchrun/Dockerfile DIR` where
#            Docker runs.  The wheels are built for the python running pip (3.11, linux x86_64 here).
# Env:   SEARCHRUN_CACHE, SEARCHRUN_CLUSTER_STATE (as hack/local-cluster.sh), SEARCHRUN_PYTHON
#        (python with pip to build wheels; default <repo>/.venv/bin/python, else python3)
# Prints the image tag as the last line of stdout.
set -euo pipefail

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HACK_DIR/.." && pwd)"
# shellcheck source=versions.env
source "$HACK_DIR/versions.env"
# shellcheck source=lib/progress.sh
source "$HACK_DIR/lib/progress.sh"
CACHE="${SEARCHRUN_CACHE:-$HOME/.cache/searchrun}"
STATE="${SEARCHRUN_CLUSTER_STATE:-$CACHE/cluster}"
IMAGE="localhost/searchrun:0.1.0"
BASE_IMAGE="localhost/debian-python:$DEBIAN_SUITE"
IMAGES="$CACHE/images"
WHEELS="$CACHE/wheels"
CTRD_SOCK="$STATE/containerd/containerd.sock"

log() { echo "[build-images] $(date +%H:%M:%S) $*" >&2; }
die() { echo "[build-images] ERROR: $*" >&2; exit 1; }

do_import=1
context_only=""
case "${1:-}" in
  "") ;;
  --no-import) do_import=0 ;;
  --context-only) context_only="${2:?--context-only needs a directory}" ;;
  *) die "usage: $0 [--no-import | --context-only DIR]" ;;
esac

if [[ -z "$context_only" ]]; then
  [[ $EUID -eq 0 ]] || die "must run as root (podman, debootstrap, containerd)"
  missing=()
  command -v podman >/dev/null || missing+=(podman)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v ctr >/dev/null || missing+=(containerd)
  if ((${#missing[@]})); then
    progress_start "apt-get install (host packages for the image build): ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    progress_end "apt-get install (host packages for the image build): ${missing[*]}"
  fi
fi
mkdir -p "$IMAGES" "$WHEELS"

# One image build at a time per cache.
exec 9>"$IMAGES/.lock"
flock 9
IMAGE_PHASE="project image $IMAGE (wheels, base image, podman build${context_only:+: context only})"
progress_start "$IMAGE_PHASE"

# ---------------------------------------------------------------- 1. wheels
PY="${SEARCHRUN_PYTHON:-$REPO_ROOT/.venv/bin/python}"
[[ -x "$PY" ]] || PY="$(command -v python3)"
# constraints.txt may come from `pip freeze` (with an editable line for the project itself):
# keep only the pins of other distributions.
CONSTRAINTS="$IMAGES/constraints.txt"
grep -v -E '^[[:space:]]*(-e|--editable)[[:space:]]|^[[:space:]]*searchrun([[:space:]=<>~!;@]|$)' \
  "$REPO_ROOT/constraints.txt" >"$CONSTRAINTS" || true
BUILD_WHEELS="$CACHE/wheels-build"   # setuptools/wheel for building the project's wheel offline
t0=$SECONDS
log "building wheels into $WHEELS"
rm -f "$WHEELS"/searchrun-*.whl
if ! "$PY" -m pip wheel -q --no-index --find-links "$WHEELS" --find-links "$BUILD_WHEELS" \
  --wheel-dir "$WHEELS" -c "$CONSTRAINTS" "$REPO_ROOT" 2>/dev/null; then
  log "wheels not all in the cache yet: fetching from the package index"
  "$PY" -m pip download -q --only-binary=:all: -d "$BUILD_WHEELS" "setuptools>=68" wheel
  "$PY" -m pip wheel -q --wheel-dir "$WHEELS" -c "$CONSTRAINTS" "$REPO_ROOT"
fi
project_wheel="$(ls "$WHEELS"/searchrun-*.whl)"
# exactly the distributions the image needs (the wheel dir may hold older versions too)
"$PY" -m pip install -q --dry-run --ignore-installed --no-index --find-links "$WHEELS" \
  -c "$CONSTRAINTS" --report "$IMAGES/install-report.json" "$project_wheel"
log "wheels ready in $((SECONDS - t0)) s"

# ---------------------------------------------------------------- 2. base image
if [[ -n "$context_only" ]]; then
  base_id="none"
elif ! podman image exists "$BASE_IMAGE"; then
  rootfs="$IMAGES/debian-python-$DEBIAN_SUITE"
  if [[ ! -f "$rootfs.tar" ]]; then
    log "debootstrap $DEBIAN_SUITE (minbase + python3, python3-venv, ca-certificates): about a minute"
    rm -rf "$rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
      "$DEBIAN_SUITE" "$rootfs" >"$IMAGES/debootstrap.log" 2>&1 \
      || { tail -20 "$IMAGES/debootstrap.log" >&2; die "debootstrap failed (log: $IMAGES/debootstrap.log)"; }
    # drop what an image does not need
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc \
      "$rootfs"/usr/share/man "$rootfs"/usr/share/info "$rootfs"/usr/share/locale
    tar --numeric-owner -C "$rootfs" -cf "$rootfs.tar.tmp" .
    mv "$rootfs.tar.tmp" "$rootfs.tar"
    rm -rf "$rootfs"
  fi
  log "podman import $BASE_IMAGE"
  podman import --change 'CMD ["/usr/bin/python3"]' "$rootfs.tar" "$BASE_IMAGE" >/dev/null
fi
[[ -n "$context_only" ]] || base_id="$(podman image inspect --format '{{.Id}}' "$BASE_IMAGE")"

# ---------------------------------------------------------------- 3. build (when changed)
# The context: wheels/deps (every dependency, one layer that podman caches while they stay the
# same) and wheels/project (the project's wheel).  Content hash: the wheels' file names and
# contents (not the zip timestamps), the Dockerfile and the base image id.
ctx="${context_only:-$IMAGES/searchrun-context}"
if [[ -n "$context_only" && -d "$ctx" && -n "$(ls -A "$ctx")" && ! -d "$ctx/wheels" ]]; then
  die "$ctx is not empty and not a build context made by this script: refusing to replace it"
fi
rm -rf "$ctx"; mkdir -p "$ctx/wheels/deps" "$ctx/wheels/project"
hash="$("$PY" - "$IMAGES/install-report.json" "$ctx" "$REPO_ROOT/images/searchrun/Dockerfile" "$base_id" <<'EOF'
import hashlib, json, os, shutil, sys, zipfile
from urllib.parse import unquote, urlparse
report, ctx, dockerfile, base_id = sys.argv[1:]
paths = []
for item in json.load(open(report))["install"]:
    path = unquote(urlparse(item["download_info"]["url"]).path)
    sub = "project" if item["metadata"]["name"].lower() == "searchrun" else "deps"
    paths.append((sub, path))
h = hashlib.sha256()
for sub, path in sorted(paths, key=lambda p: os.path.basename(p[1])):
    name = os.path.basename(path)
    shutil.copy(path, os.path.join(ctx, "wheels", sub, name))
    h.update(sub.encode() + b"/" + name.encode() + b"\0")
    with zipfile.ZipFile(path) as z:
        for info in sorted(z.infolist(), key=lambda i: i.filename):
            h.update(info.filename.encode() + b"\0" + hashlib.sha256(z.read(info)).digest())
with open(dockerfile, "rb") as f:
    h.update(f.read())
h.update(base_id.encode())
print(h.hexdigest()[:16])
EOF
)"
if [[ -n "$context_only" ]]; then
  log "build context ready in $ctx (content hash $hash)"
  progress_end "$IMAGE_PHASE"
  echo "$ctx"
  exit 0
fi
tar="$IMAGES/searchrun-$hash.tar"
if [[ -f "$tar" ]]; then
  log "image unchanged (content hash $hash): $tar"
else
  t0=$SECONDS
  log "podman build $IMAGE (content hash $hash)"
  podman build --pull=never --layers --build-arg "BASE=$BASE_IMAGE" -t "$IMAGE" \
    -f "$REPO_ROOT/images/searchrun/Dockerfile" "$ctx" >"$IMAGES/build.log" 2>&1 \
    || { tail -30 "$IMAGES/build.log" >&2; die "podman build failed (log: $IMAGES/build.log)"; }
  rm -f "$IMAGES"/searchrun-*.tar
  podman save --format docker-archive -o "$tar.tmp" "$IMAGE" >/dev/null 2>&1
  mv "$tar.tmp" "$tar"
  log "built in $((SECONDS - t0)) s: $(du -h "$tar" | cut -f1) $tar"
  # drop dangling layers of builds older than 3 days (younger ones are podman's build cache)
  podman image prune -f --filter until=72h >/dev/null 2>&1 || true
fi
rm -rf "$ctx"
progress_end "$IMAGE_PHASE"

# ---------------------------------------------------------------- 4. load into the cluster
if ((do_import)); then
  if [[ -S "$CTRD_SOCK" ]]; then
    marker="$STATE/containerd/.searchrun-image"
    if [[ "$(cat "$marker" 2>/dev/null)" == "$hash" ]] \
      && ctr --address "$CTRD_SOCK" -n k8s.io images ls -q | grep -qxF "$IMAGE"; then
      log "$IMAGE ($hash) already in the cluster's containerd"
    else
      t0=$SECONDS
      log "importing $IMAGE into the cluster's containerd"
      progress_start "loading $IMAGE into the cluster's containerd"
      ctr --address "$CTRD_SOCK" -n k8s.io images import "$tar" >/dev/null
      echo "$hash" >"$marker"
      progress_end "loading $IMAGE into the cluster's containerd"
      log "imported in $((SECONDS - t0)) s"
    fi
  else
    log "cluster is not up ($CTRD_SOCK missing): image built, not imported"
  fi
fi
echo "$IMAGE"
