#!/usr/bin/env bash
# Install kubeconform (pinned) into the cache, idempotently, and print its path.
#
#   hack/kubeconform.sh            -> <cache>/bin/kubeconform-<version>/kubeconform
#
# Built with `go install` through the Go module proxy (no prebuilt binary download).
# kubeconform fetches Kubernetes JSON schemas from the internet by default; this project's
# tests never let it: they generate schemas from the real API server's OpenAPI instead
# (see hack/prometheus/openapi2schemas.py and tests/integration/test_chart.py).
set -euo pipefail

KUBECONFORM_VERSION="${KUBECONFORM_VERSION:-v0.8.0}"
HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HACK_DIR/.." && pwd)"
CACHE="${SEARCHRUN_CACHE:-$HOME/.cache/searchrun}"
# shellcheck source=lib/progress.sh
source "$HACK_DIR/lib/progress.sh"

DEST="$CACHE/bin/kubeconform-$KUBECONFORM_VERSION"

if [[ -x "$DEST/kubeconform" ]]; then
  echo "$DEST/kubeconform"
  exit 0
fi
command -v go >/dev/null || { echo "kubeconform.sh: go is not installed" >&2; exit 1; }
mkdir -p "$DEST"
progress_start "Go build: kubeconform $KUBECONFORM_VERSION"
GOBIN="$DEST.tmp" CGO_ENABLED=0 go install "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION" >&2
progress_end "Go build: kubeconform $KUBECONFORM_VERSION"
mv "$DEST.tmp/kubeconform" "$DEST/kubeconform"
rmdir "$DEST.tmp" 2>/dev/null || true
echo "$DEST/kubeconform"
