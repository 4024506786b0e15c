#!/usr/bin/env bash
# Make sure Prometheus and promtool are installed (Debian's `prometheus` package), idempotently.
#
#   hack/prometheus/install.sh     prints the directory holding `prometheus` and `promtool`
#
# The package's service is not started: tests run their own Prometheus on 127.0.0.1 with a
# random port and a temporary storage folder (tests/integration/test_prometheus.py).
# Needs root for apt-get (only when something is missing).
set -euo pipefail

if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
  dirname "$(command -v prometheus)"
  exit 0
fi
[[ $EUID -eq 0 ]] || { echo "install.sh: prometheus is missing and installing it needs root" >&2; exit 1; }
# shellcheck source=../lib/progress.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/progress.sh"
phase="apt-get install (host package for the Prometheus tests): prometheus (with promtool)"
progress_start "$phase"
# Keep the package's postinst from starting the service (an init system may be running).
policy=/usr/sbin/policy-rc.d
own_policy=0
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; own_policy=1
fi
trap '[[ $own_policy == 1 ]] && rm -f "$policy"' EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 || {
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null
}
progress_end "$phase"
dirname "$(command -v prometheus)"
