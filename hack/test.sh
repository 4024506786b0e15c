#!/usr/bin/env bash
# Set up everything the tests need on a fresh machine and run them all.
#   - Python deps (pinned) into .venv
#   - the local Kubernetes cluster and the project image: the pytest session brings them up
#     (hack/local-cluster.sh up, hack/build-images.sh) and stops the cluster it started
#   - the S3 server (SeaweedFS over HTTP, built from its Go module by hack/build-s3-server.sh and
#     cached; moto only if it cannot be built) and Prometheus are started by the tests that need them
#   - the model server (llama.cpp via llama-cpp-python, SmolLM2-135M): hack/model-server.sh builds
#     its wheel once (about 6 min on 2 idle cores) or takes it from the cache; started here in the
#     background at nice 19 for a whole run, waited for by the session's fixture
#   - chromium (headless) for the report's browser test, installed here when missing (as root)
# Builds are cached in $SEARCHRUN_CACHE (default ~/.cache/searchrun, the same as .ci/run).
# Long phases print "==> " lines (start, every minute, end with the duration) on the console.
# With no arguments, tests/unit runs in a second pytest session beside the cluster tests (log in
# $SEARCHRUN_CACHE/test-logs/unit-tests.log; SEARCHRUN_UNIT_ALONGSIDE=0: one session).
# Extra arguments go to pytest (one session), e.g. `hack/test.sh tests/unit -x`.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
# shellcheck source=lib/progress.sh
source hack/lib/progress.sh
export SEARCHRUN_CACHE="${SEARCHRUN_CACHE:-$HOME/.cache/searchrun}"
hack/setup-python.sh
# The model server's wheel (a C++ build of about 10 CPU-minutes, once) starts now, in the
# background at the lowest CPU priority: it gets only what the other phases leave idle. The tests
# that need it run last (tests/conftest.py); their fixture waits for it (a lock) if still building.
prebuild=""
if [[ $# -eq 0 && "${SEARCHRUN_MODEL_PREBUILD:-1}" == 1 ]]; then
  mkdir -p "$SEARCHRUN_CACHE/test-logs"
  setsid nice -n 19 hack/model-server.sh >/dev/null 2>"$SEARCHRUN_CACHE/test-logs/model-server-prebuild.log" &
  prebuild=$!
  progress_note "model server (llama-cpp-python wheel, SmolLM2 model): built or taken from the cache in the background, at nice 19 (log $SEARCHRUN_CACHE/test-logs/model-server-prebuild.log)"
fi
if [[ -x hack/prometheus/install.sh ]]; then hack/prometheus/install.sh >/dev/null; fi
if ! command -v chromium >/dev/null && [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null; then
  phase="apt-get install (host package for the report's browser test): chromium"
  progress_start "$phase"
  export DEBIAN_FRONTEND=noninteractive
  if apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends chromium >/dev/null; }; then
    progress_end "$phase"
  else
    progress_end "$phase" "FAILED (the browser test will say so)"
  fi
fi
# Built here so that its phase shows on the console before pytest starts (the session would
# build it too, on first use); a failure leaves the tests on moto, and the session says so.
if command -v go >/dev/null && [[ "${SEARCHRUN_S3_SERVER:-seaweedfs}" == seaweedfs ]]; then
  if ! hack/build-s3-server.sh >/dev/null; then
    progress_note "S3 server: SeaweedFS build failed; the tests fall back to moto"
    export SEARCHRUN_S3_SERVER=moto  # the session would only try the same build again
    export SEARCHRUN_S3_MOTO_WHY="hack/build-s3-server.sh failed (log: $SEARCHRUN_CACHE/test-logs/build-s3-server.log)"
  fi
fi
progress_start "pytest session"
set +e
if [[ $# -eq 0 && "${SEARCHRUN_UNIT_ALONGSIDE:-1}" == 1 ]]; then
  # The unit tests (no cluster; about 2 min of one core) run in a second session beside the
  # cluster tests, which mostly wait on the cluster: the whole run is shorter by about their
  # length. Their output goes to a log; its summary (and any failure) is printed at the end.
  unit_log="$SEARCHRUN_CACHE/test-logs/unit-tests.log"
  mkdir -p "$(dirname "$unit_log")"
  (
    uphase="unit tests (tests/unit, a second pytest session beside the cluster tests; log $unit_log)"
    progress_start "$uphase"
    .venv/bin/python -m pytest -q -p no:cacheprovider tests/unit >"$unit_log" 2>&1
    u=$?
    progress_end "$uphase" "finished (exit $u): $(tail -1 "$unit_log")"
    exit $u
  ) &
  unit=$!
  .venv/bin/python -m pytest -q -p no:cacheprovider --ignore=tests/unit  # every other test dir, a new one too
  rc=$?
  wait "$unit"
  urc=$?
  if [[ $urc -ne 0 ]]; then
    echo "---- unit tests failed (exit $urc); the end of $unit_log:" >&2
    tail -60 "$unit_log" >&2
    [[ $rc -ne 0 && $rc -ne 5 ]] || rc=$urc
  fi
else
  .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
  rc=$?
fi
set -e
if [[ -n "$prebuild" ]] && kill -0 "$prebuild" 2>/dev/null; then kill -- "-$prebuild" 2>/dev/null || true; fi  # its own process group
progress_end "pytest session" "finished (exit $rc)"
if [[ $rc -eq 5 ]]; then
  echo "no tests were collected" >&2
  exit 1
fi
exit $rc
