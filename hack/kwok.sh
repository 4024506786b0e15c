#!/usr/bin/env bash
# Build (or take from the cache) kwok, the simulator of nodes and pods used by bench/bench_scale.py.
#
#   hack/kwok.sh          build sigs.k8s.io/kwok/cmd/kwok at $KWOK_VERSION (hack/versions.env) into
#                         $SEARCHRUN_CACHE/bin/kwok-$KWOK_VERSION/ unless it is there; prints the binary path
#
# kwok's own node stages (initialize, heartbeat with a lease) are copied from the module beside the
# binary, into stages/: a --config that names pod stages must name node stages too.
#
# Idempotent: a second call prints the cached path at once. Go's own caches stay at their defaults.
set -euo pipefail

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HACK_DIR/.." && pwd)"
# shellcheck source=versions.env
source "$HACK_DIR/versions.env"
# shellcheck source=lib/progress.sh
source "$HACK_DIR/lib/progress.sh"
CACHE="${SEARCHRUN_CACHE:-$HOME/.cache/searchrun}"
out="$CACHE/bin/kwok-$KWOK_VERSION"

if [[ ! -f "$out/.complete" ]]; then
  command -v go >/dev/null 2>&1 || { echo "go is not installed (need go >= 1.25 on PATH)" >&2; exit 3; }
  mkdir -p "$out"
  exec 9>"$CACHE/bin/.kwok-build.lock"
  flock 9
  if [[ ! -f "$out/.complete" ]]; then
    progress_start "Go build: kwok $KWOK_VERSION"
    CGO_ENABLED=0 GOFLAGS="-buildvcs=false" GOTOOLCHAIN="${GOTOOLCHAIN:-local}" GOBIN="$out" \
      go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
    mod="$(GOFLAGS=-mod=mod go env GOMODCACHE)/sigs.k8s.io/kwok@$KWOK_VERSION"
    mkdir -p "$out/stages"
    cp "$mod/kustomize/stage/node/fast/node-initialize.yaml" \
       "$mod/kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml" "$out/stages/"
    chmod u+w "$out/stages/"*.yaml
    touch "$out/.complete"
    progress_end "Go build: kwok $KWOK_VERSION"
  fi
fi
echo "$out/kwok"
