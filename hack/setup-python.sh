#!/usr/bin/env bash
# Create (or refresh) the project's virtualenv at .venv with pinned dependencies.
# Idempotent: a stamp keyed by constraints.txt and pyproject.toml skips the work when nothing changed.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=lib/progress.sh
source "$REPO/hack/lib/progress.sh"
PY="${PYTHON:-python3}"
VENV="$REPO/.venv"
STAMP="$VENV/.searchrun-stamp"
want="$(cat "$REPO/constraints.txt" "$REPO/pyproject.toml" | sha256sum | cut -c1-16)"
if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
  exit 0
fi
phase="Python setup: pinned dependencies into $VENV (about a minute)"
progress_start "$phase"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade "pip>=23" >&2
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -c "$REPO/constraints.txt" -e "${REPO}[test]" >&2
echo "$want" > "$STAMP"
progress_end "$phase"
