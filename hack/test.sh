#!/usr/bin/env bash
# Set up everything the tests need on a fresh machine and run them all.
#   - Python deps (pinned) into .venv
#   - the local Kubernetes cluster and the project image: the pytest session brings them up
#     (hack/local-cluster.sh up, hack/build-images.sh) and stops the cluster it started
#   - the S3 server (moto, over HTTP) and Prometheus are started by the tests that need them
# Extra arguments go to pytest, e.g. `hack/test.sh tests/unit -x`.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
hack/setup-python.sh
if [[ -x hack/prometheus/install.sh ]]; then hack/prometheus/install.sh >/dev/null; fi
set +e
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
rc=$?
set -e
if [[ $rc -eq 5 ]]; then
  echo "no tests were collected" >&2
  exit 1
fi
exit $rc
