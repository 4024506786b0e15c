#!/usr/bin/env bash
# Set up Python and run the deep example SearchRun on this machine (no cluster needed).
#   hack/run-example.sh [MANIFEST] [searchrun run flags...]
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$REPO/hack/setup-python.sh"
manifest="${1:-$REPO/examples/searchrun.yaml}"
shift || true
exec "$REPO/.venv/bin/searchrun" run "$manifest" "$@"
