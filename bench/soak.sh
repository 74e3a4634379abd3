#!/usr/bin/env bash
# Soak benchmark (not run in CI): one Switchboard host under a long mixed load, to see that its
# memory and its open file descriptors stay flat (see docs/performance.md, "Soak").
#
#   bench/soak.sh [seconds]        default 600 (10 minutes)
#
# It builds a Release binary in build-soak/ (or uses $SB when set), writes a project to a temp
# folder and runs bench/soak.py, which starts the host on 127.0.0.1 and mixes concurrently: rest
# requests with a Lua bot (echo, sb.sleep, sb.http.request to a local stand-in, the bundled HTTP
# bot module against a Rasa stand-in), streamed requests the client cuts at random points, push
# channels (callback, telegram) against stand-ins of their APIs, script rewrites every 3 s (some
# broken on purpose), SIGHUP every 4 s, and requests that fail on purpose. It samples VmRSS and
# the fd count every few seconds and prints a table and a verdict (RSS slope over the second half
# in KiB/min, fds before and after, requests, unexpected answers).
#
# Environment: SB=path/to/switchboard  SOAK_ARGS="--interval 5 --without hup ..." (see
# bench/soak.py --help)  SOAK_CSV=file (every sample)  SOAK_KEEP=1 (keep the temp folder and the
# host's log). Exit status: 0 flat and clean, 1 growth or unexpected answers, 2 set-up failed.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN=${1:-600}
case $SECONDS_TO_RUN in ''|*[!0-9]*) echo "usage: bench/soak.sh [seconds]" >&2; exit 2;; esac
command -v python3 >/dev/null || { echo "soak needs python3 (apt-get install python3)" >&2; exit 2; }

if [ -z "${SB:-}" ]; then
  cmake -S . -B build-soak -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build-soak -j2 --target switchboard >/dev/null
  SB=build-soak/switchboard
fi
[ -x "$SB" ] || { echo "no switchboard binary at $SB" >&2; exit 2; }

WORK=$(mktemp -d /tmp/sb-soak.XXXXXX)
PY_PID=
# shellcheck disable=SC2317  # called by the trap
cleanup() {
  local code=$?
  trap - EXIT INT TERM
  # the helper stops the host and its stand-ins itself on SIGTERM; the pid file covers the case
  # where the helper could not (killed, crashed)
  if [ -n "$PY_PID" ] && kill -0 "$PY_PID" 2>/dev/null; then
    kill -TERM "$PY_PID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$PY_PID" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$PY_PID" 2>/dev/null || true
  fi
  if [ -f "$WORK/host.pid" ]; then
    HOST_PID=$(cat "$WORK/host.pid")
    if kill -0 "$HOST_PID" 2>/dev/null; then
      kill -TERM "$HOST_PID" 2>/dev/null || true
      sleep 1
      kill -KILL "$HOST_PID" 2>/dev/null || true
    fi
  fi
  if [ -n "${SOAK_KEEP:-}" ]; then
    echo "soak: kept $WORK (switchboard.log is the host's log)" >&2
  else
    rm -rf "$WORK"
  fi
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "machine: $(nproc) CPUs, $(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | sed 's/^ *//'), $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "binary: $SB ($("$SB" --version)); soak for ${SECONDS_TO_RUN}s"
# shellcheck disable=SC2086  # SOAK_ARGS is a list of options
python3 bench/soak.py --binary "$SB" --work "$WORK" --seconds "$SECONDS_TO_RUN" \
  --pidfile "$WORK/host.pid" ${SOAK_CSV:+--csv "$SOAK_CSV"} ${SOAK_ARGS:-} &
PY_PID=$!
set +e
wait "$PY_PID"
RC=$?
set -e
PY_PID=
exit "$RC"
