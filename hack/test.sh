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
# With no arguments, three pytest sessions run at once: the cluster tests as two (tests/reliability
# in the second, log $SEARCHRUN_CACHE/test-logs/reliability-tests.log) on one cluster brought up
# here first, and tests/unit (log unit-tests.log). SEARCHRUN_CLUSTER_SESSIONS=1: the cluster tests
# in one session; SEARCHRUN_UNIT_ALONGSIDE=0: everything in one session.
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
# A pytest session whose output goes to a log; its summary (and any failure) is printed at the end.
#   side_session NAME LOG ENV... -- PYTEST_ARGS...   (runs in the background; sets $! )
side_session() {
  local name="$1" log="$2"
  shift 2
  local envs=()
  while [[ "$1" != -- ]]; do envs+=("$1"); shift; done
  shift
  mkdir -p "$(dirname "$log")"
  (
    progress_start "$name (log $log)"
    env "${envs[@]}" .venv/bin/python -m pytest -q -p no:cacheprovider "$@" >"$log" 2>&1
    r=$?
    progress_end "$name (log $log)" "finished (exit $r): $(tail -1 "$log")"
    exit $r
  ) &
}
# side_result RC LOG NAME: print a failed side session's end; fold its exit code into $rc
side_result() {
  local r="$1" log="$2" name="$3"
  if [[ $r -ne 0 ]]; then
    echo "---- $name failed (exit $r); the end of $log:" >&2
    tail -80 "$log" >&2
    [[ $rc -ne 0 && $rc -ne 5 ]] || rc=$r
  fi
}
logs="$SEARCHRUN_CACHE/test-logs"
if [[ $# -eq 0 && "${SEARCHRUN_UNIT_ALONGSIDE:-1}" == 1 ]]; then
  # The cluster tests mostly wait on the cluster (a warm run used about a third of the CPU), so
  # they run as two sessions at once, tests/reliability beside the rest, on one cluster: each
  # session's operators watch their own namespaces and their webhooks judge only those
  # (tests/support/session.py). The unit tests (no cluster; about 2 min of one core) run in a
  # third session beside them. SEARCHRUN_CLUSTER_SESSIONS=1: the cluster tests in one session.
  side_session "unit tests (tests/unit, a pytest session beside the cluster tests)" "$logs/unit-tests.log" \
    SEARCHRUN_TEST_SESSION=unit -- tests/unit
  unit=$!
  cluster_started=""
  if [[ "${SEARCHRUN_CLUSTER_SESSIONS:-2}" == 2 && -z "${SEARCHRUN_TEST_KUBECONFIG:-}" && -z "${SEARCHRUN_USE_EXISTING_CLUSTER:-}" ]]; then
    # Up once, before both sessions (each then finds it up and leaves it up); down at the end.
    if ! hack/local-cluster.sh status >/dev/null 2>&1; then cluster_started=1; fi
    mkdir -p "$logs"
    # (its stderr to the log, its "==> " lines to the console; the daemons it starts log to files)
    hack/local-cluster.sh up >/dev/null 2> >(tee "$logs/local-cluster-up.log" | grep --line-buffered '^==> ' >&2) \
      || progress_note "hack/local-cluster.sh up failed: the sessions will say why (log $logs/local-cluster-up.log)"
  fi
  reliability=""
  if [[ "${SEARCHRUN_CLUSTER_SESSIONS:-2}" == 2 ]]; then
    side_session "cluster tests, second session (tests/reliability)" "$logs/reliability-tests.log" \
      SEARCHRUN_TEST_SESSION=b SEARCHRUN_KEEP_CLUSTER=1 -- --basetemp=/tmp/searchrun-pytest-b tests/reliability
    reliability=$!
    SEARCHRUN_TEST_SESSION=a SEARCHRUN_KEEP_CLUSTER=1 .venv/bin/python -m pytest -q -p no:cacheprovider \
      --basetemp=/tmp/searchrun-pytest-a --ignore=tests/unit --ignore=tests/reliability  # every other test dir, a new one too
  else
    .venv/bin/python -m pytest -q -p no:cacheprovider --ignore=tests/unit  # every other test dir, a new one too
  fi
  rc=$?
  if [[ -n "$reliability" ]]; then
    wait "$reliability"
    side_result $? "$logs/reliability-tests.log" "cluster tests, second session (tests/reliability)"
  fi
  wait "$unit"
  side_result $? "$logs/unit-tests.log" "unit tests"
  if [[ -n "$cluster_started" && "${SEARCHRUN_KEEP_CLUSTER:-}" != 1 ]]; then
    hack/local-cluster.sh down >/dev/null 2>&1 || progress_note "hack/local-cluster.sh down failed"
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
