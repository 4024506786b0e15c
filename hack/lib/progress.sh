# shellcheck shell=bash
# Progress a person can follow: a long phase prints a line when it starts, one at least every
# minute while it runs, and one when it ends, with its duration.  Source this file, then
#   progress_start "building kubelet"; ...; progress_end "building kubelet"
#   progress_note "installing host packages with apt-get: podman debootstrap"
# Lines start with "==> " and go to stderr, and also to $SEARCHRUN_CONSOLE when it is set: the
# pytest session sets it to its own console, which a script's captured stderr never reaches.
# SEARCHRUN_PROGRESS_TICK: seconds between "still running" lines (default 60).

_progress_line() {
  local line
  line="==> $(date -u +%H:%M:%S) $*"
  echo "$line" >&2
  if [[ -n "${SEARCHRUN_CONSOLE:-}" ]]; then
    { echo "$line" >>"$SEARCHRUN_CONSOLE"; } 2>/dev/null || true
  fi
}

progress_duration() {  # progress_duration SECONDS -> "42 s" or "3 min 05 s"
  local s="$1"
  if ((s < 60)); then echo "$s s"; else printf '%d min %02d s\n' $((s / 60)) $((s % 60)); fi
}

progress_note() { _progress_line "$*"; }

declare -A _PROGRESS_T0=() _PROGRESS_TICKER=()

# alive and not a zombie: a caller that reads our stderr to its end reaps us only after the
# ticker (which holds that stderr) has gone, so a zombie parent counts as gone
_progress_alive() {
  local stat
  [[ -d /proc/self ]] || { kill -0 "$1" 2>/dev/null; return; }
  { read -r stat </proc/"$1"/stat; } 2>/dev/null || return 1
  stat="${stat##*) }"
  [[ "${stat%% *}" != Z ]]
}

progress_start() {  # progress_start NAME: start line, and a ticker line every minute until _end
  local name="$1" t0
  t0="$(date +%s)"
  _PROGRESS_T0["$name"]="$t0"
  _progress_line "$name: started"
  # The ticker watches this script's pid: if the script dies (set -e) it says so and stops.
  # Its stdout and its sleeps' descriptors are /dev/null, so a reader of the script's stdout
  # or stderr never waits on it for long.
  (
    parent=$$ last="$t0"
    while :; do
      sleep 1 </dev/null >/dev/null 2>&1
      now="$(date +%s)"
      if ! _progress_alive "$parent"; then
        _progress_line "$name: ended without finishing after $(progress_duration $((now - t0)))"
        exit 0
      fi
      if ((now - last >= ${SEARCHRUN_PROGRESS_TICK:-60})); then
        last="$now"
        _progress_line "$name: still running ($(progress_duration $((now - t0))) so far)"
      fi
    done
  ) </dev/null >/dev/null &
  _PROGRESS_TICKER["$name"]=$!
}

progress_end() {  # progress_end NAME [WORD]: stop the ticker, print "NAME: WORD in DURATION"
  local name="$1" word="${2:-done}" pid="${_PROGRESS_TICKER[$1]:-}" t0="${_PROGRESS_T0[$1]:-}"
  if [[ -n "$pid" ]]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  unset '_PROGRESS_TICKER[$name]' '_PROGRESS_T0[$name]'
  _progress_line "$name: $word in $(progress_duration $(($(date +%s) - ${t0:-$(date +%s)})))"
}
