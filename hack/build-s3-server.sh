#!/usr/bin/env bash
# Build (or take from the cache) SeaweedFS's `weed`, the S3 server the tests start
# (tests/support/s3server.py).
#
#   hack/build-s3-server.sh   build github.com/seaweedfs/seaweedfs/weed at $SEAWEEDFS_VERSION
#                             (hack/versions.env) into $SEARCHRUN_CACHE/bin/seaweedfs-$SEAWEEDFS_VERSION/
#                             unless it is there (.complete); prints the binary's path on stdout
#
# `go install mod@version` refuses seaweedfs: its go.mod has a replace line. So the module is
# downloaded through the Go module proxy and built in place, as its own main module: exactly the
# dependency set (and replace) upstream builds with. Go's caches stay at their defaults, as in
# hack/build-binaries.sh. Cold: see README ("Cache"); the module graph is large (~2 GB of modules).
set -euo pipefail

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$HACK_DIR/versions.env"
# shellcheck source=lib/progress.sh
source "$HACK_DIR/lib/progress.sh"
CACHE="${SEARCHRUN_CACHE:-$HOME/.cache/searchrun}"
out="$CACHE/bin/seaweedfs-$SEAWEEDFS_VERSION"

if [[ ! -f "$out/.complete" ]]; then
  command -v go >/dev/null 2>&1 || { echo "go is not installed (need go >= 1.26.6 on PATH)" >&2; exit 3; }
  mkdir -p "$out"
  exec 9>"$CACHE/bin/.seaweedfs-build.lock"
  flock 9
  if [[ ! -f "$out/.complete" ]]; then
    export CGO_ENABLED=0 GOFLAGS="-buildvcs=false" GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
    phase="Go build: seaweedfs (S3 server) $SEAWEEDFS_VERSION"
    progress_start "$phase"
    log="$CACHE/test-logs/build-s3-server.log"  # go's own output (hundreds of "downloading" lines)
    mkdir -p "$(dirname "$log")"
    echo "== $(date -u +%FT%TZ) building seaweedfs $SEAWEEDFS_VERSION" >>"$log"
    if ! dir="$(go mod download -json "github.com/seaweedfs/seaweedfs@$SEAWEEDFS_VERSION" 2>>"$log" \
        | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')" || [[ ! -f "$dir/go.mod" ]]; then
      progress_end "$phase" FAILED; tail -n 20 "$log" >&2
      echo "go mod download gave no module directory for seaweedfs (log: $log)" >&2; exit 1
    fi
    if ! (cd "$dir" && go build -trimpath -ldflags "-s -w" -o "$out/weed.tmp" ./weed) >>"$log" 2>&1; then
      progress_end "$phase" FAILED; tail -n 20 "$log" >&2
      echo "go build of seaweedfs failed (log: $log)" >&2; exit 1
    fi
    mv "$out/weed.tmp" "$out/weed"
    echo "$SEAWEEDFS_VERSION" >"$out/.complete"
    progress_end "$phase"
  fi
fi
echo "$out/weed"
