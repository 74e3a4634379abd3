#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Switchboard's benchmarks, each printed side by side with a peer measured in the same run on the
# same machine (see docs/performance.md for what the numbers mean and the targets).
#
#   bench/run.sh [rounds]      default 3 rounds of each measurement, interleaved
#
# 1. rest echo: Switchboard's rest channel with bench/echo_bot.lua vs nginx + lua-nginx-module +
#    lua-cjson doing the same echo (bench/nginx.conf); wrk -t1 -c32 for throughput with 1,000
#    senders in turn (bench/post.lua) and with every request from one sender (bench/post_one.lua),
#    -c1 for latency; server CPU time per request from /proc; RSS after the load; Switchboard's
#    instructions per request (bench/instructions.py, callgrind; skipped without valgrind).
#    Also measured: "health", the host's C path alone (GET /webhooks/rest/), and "floor", a second
#    host whose pipeline is bench/floor_pipeline.lua (only what any Lua pipeline must do: decode,
#    UserMessage, bot, encode): how low the rest echo could go without libmicrohttpd or Lua 5.4
#    changing.
# 2. slow bot: 1,000 connections, each request a new sender, against an HTTP bot that answers
#    after 200 ms (nginx's echo module stands in for it); messages/s vs the ideal 5,000/s, errors,
#    and the host's thread count before and after.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
DURATION=${DURATION:-5}
WORK=$(mktemp -d /tmp/sb-bench.XXXXXX)
SB_PORT=18081 NGX_PORT=18082 BOT_PORT=18083 SLOW_PORT=18084 FLOOR_PORT=18085
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  [ -f "$WORK/bot/nginx.pid" ] && kill "$(cat "$WORK/bot/nginx.pid")" 2>/dev/null || true
  sleep 0.3
  rm -rf "$WORK"
}
trap cleanup EXIT

need() { command -v "$1" >/dev/null || { echo "bench needs $1 (apt-get install $2)" >&2; exit 1; }; }
need wrk wrk
need nginx "nginx-light libnginx-mod-http-lua libnginx-mod-http-echo lua-cjson"

cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-bench -j"$(nproc)" >/dev/null
SB=build-bench/switchboard

wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 did not open" >&2; exit 1; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tree_ticks() { local t=0; for p in "$@"; do t=$((t + $(cpu_ticks "$p"))); done; echo $t; }
rss_kib() { local t=0; for p in "$@"; do t=$((t + $(awk '/VmRSS/ {print $2}' "/proc/$p/status"))); done; echo $t; }
threads() { awk '/Threads/ {print $2}' "/proc/$1/status"; }
HZ=$(getconf CLK_TCK)

# --- the two servers -----------------------------------------------------------------------------
printf 'bot:\n  script: %s/bench/echo_bot.lua\nserver:\n  connection_limit: 20000\n' "$PWD" > "$WORK/endpoints.yml"
printf 'rest:\n' > "$WORK/credentials.yml"
$SB run -p $SB_PORT -i 127.0.0.1 --credentials "$WORK/credentials.yml" --endpoints "$WORK/endpoints.yml" \
  --log-level error 2> "$WORK/sb.log" &
SB_PID=$!
PIDS+=("$SB_PID")
mkdir -p "$WORK/floor"
cp -r lua channels "$WORK/floor/"
cp bench/floor_pipeline.lua "$WORK/floor/lua/switchboard/pipeline.lua"
SWITCHBOARD_HOME="$WORK/floor" $SB run -p $FLOOR_PORT -i 127.0.0.1 --credentials "$WORK/credentials.yml" \
  --endpoints "$WORK/endpoints.yml" --log-level error 2> "$WORK/floor.log" &
FLOOR_PID=$!
PIDS+=("$FLOOR_PID")
sed -e "s#@DIR@#$WORK#g" -e "s#@PORT@#$NGX_PORT#g" bench/nginx.conf > "$WORK/nginx.conf"
nginx -c "$WORK/nginx.conf" -p "$WORK" -g 'daemon on;' 2>/dev/null
wait_port $SB_PORT
wait_port $NGX_PORT
wait_port $FLOOR_PORT
sleep 0.3
NGX_PIDS=$(pgrep -P "$(cat "$WORK/nginx.pid")" | tr '\n' ' ')

# run_wrk NAME PORT CONNS PIDS... -> appends "name conns rps p50_us p99_us cpu_us" to results.
# The name "health" measures GET /webhooks/rest/ instead: the host's C path alone (the floor); a
# name ending in "/1" posts every request from one sender.
run_wrk() {
  local name=$1 port=$2 conns=$3; shift 3
  local before after out reqs rps p50 p99
  local target=(-s bench/post.lua "http://127.0.0.1:$port/")
  [ "$name" = health ] && target=("http://127.0.0.1:$port/webhooks/rest/")
  [ "${name%/1}" != "$name" ] && target=(-s bench/post_one.lua "http://127.0.0.1:$port/")
  before=$(tree_ticks "$@")
  out=$(wrk -t1 -c"$conns" -d"${DURATION}s" --latency "${target[@]}")
  after=$(tree_ticks "$@")
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  if echo "$out" | grep -q "Non-2xx\|Socket errors"; then echo "$name: errors: $(echo "$out" | grep -E 'Non-2xx|Socket errors')" >&2; fi
  echo "$name $conns $rps $p50 $p99 $(awk -v t=$((after - before)) -v n="$reqs" -v hz="$HZ" 'BEGIN {printf "%.2f", t * 1e6 / hz / n}')" >> "$WORK/results"
}

echo "machine: $(nproc) CPUs, $(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | sed 's/^ *//'), $(uname -r)"
echo "rounds: $ROUNDS x ${DURATION}s per measurement, interleaved"
# warm-up
wrk -t1 -c32 -d1s -s bench/post.lua "http://127.0.0.1:$SB_PORT/" >/dev/null
wrk -t1 -c32 -d1s -s bench/post.lua "http://127.0.0.1:$NGX_PORT/" >/dev/null
wrk -t1 -c32 -d1s -s bench/post.lua "http://127.0.0.1:$FLOOR_PORT/" >/dev/null
for r in $(seq "$ROUNDS"); do
  run_wrk switchboard $SB_PORT 32 $SB_PID
  run_wrk nginx+lua $NGX_PORT 32 $NGX_PIDS
  run_wrk switchboard $SB_PORT 1 $SB_PID
  run_wrk nginx+lua $NGX_PORT 1 $NGX_PIDS
  run_wrk health $SB_PORT 32 $SB_PID
  run_wrk floor $FLOOR_PORT 32 $FLOOR_PID
  run_wrk floor $FLOOR_PORT 1 $FLOOR_PID
  run_wrk floor/1 $FLOOR_PORT 32 $FLOOR_PID
  run_wrk switchboard/1 $SB_PORT 32 $SB_PID
  run_wrk nginx+lua/1 $NGX_PORT 32 $NGX_PIDS
done
SB_RSS=$(rss_kib $SB_PID)
NGX_RSS=$(rss_kib "$(cat "$WORK/nginx.pid")" $NGX_PIDS)

# median NAME CONNS FIELD: the median over the rounds of one column (3 req/s, 6 CPU us/req)
median() {
  awk -v n="$1" -v c="$2" '$1==n && $2==c' "$WORK/results" | sort -k"$3" -g |
    awk -v r="$ROUNDS" -v f="$3" 'NR==int((r+1)/2) {print $f}'
}

echo
echo "1. rest echo (median of $ROUNDS rounds)"
printf "%-14s %6s %12s %10s %10s %14s\n" server conns "req/s" "p50" "p99" "CPU us/req"
for conns in 32 1; do
  for name in switchboard nginx+lua health floor switchboard/1 nginx+lua/1 floor/1; do
    awk -v n="$name" -v c="$conns" '$1==n && $2==c' "$WORK/results" | sort -k3 -g |
      awk -v r="$ROUNDS" 'NR==int((r+1)/2) {printf "%-14s %6s %12s %10s %10s %14s\n", $1, $2, $3, $4, $5, $6}'
  done
done
echo "(health: switchboard's GET /webhooks/rest/, answered in C without Lua: the HTTP floor;"
echo " floor: the echo through bench/floor_pipeline.lua, the least Lua any pipeline must run;"
echo " /1: every request from one sender, so Switchboard runs them one at a time)"
printf "RSS after load: switchboard %.1f MiB, nginx+lua %.1f MiB (master + workers)\n" \
  "$(echo "$SB_RSS / 1024" | bc -l)" "$(echo "$NGX_RSS / 1024" | bc -l)"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
echo "against the targets (medians):"
echo "  throughput, 1,000 senders: $(ratio "$(median switchboard 32 3)" "$(median nginx+lua 32 3)")x nginx+lua (target >= 1.05)"
echo "  CPU per request:           $(ratio "$(median switchboard 32 6)" "$(median nginx+lua 32 6)")x nginx+lua (target <= 1)"
echo "  throughput, one sender:    $(ratio "$(median switchboard/1 32 3)" "$(median nginx+lua/1 32 3)")x nginx+lua (target >= 0.9)"
echo "  the floor pipeline:        $(ratio "$(median floor 32 3)" "$(median nginx+lua 32 3)")x nginx+lua's throughput, CPU per request $(ratio "$(median floor 32 6)" "$(median nginx+lua 32 6)")x, one sender $(ratio "$(median floor/1 32 3)" "$(median nginx+lua/1 32 3)")x"
printf "  RSS:                       %.1f MiB (target <= 10)\n" "$(echo "$SB_RSS / 1024" | bc -l)"
if command -v valgrind >/dev/null; then
  echo "  instructions per request (callgrind, one worker, one connection):"
  python3 bench/instructions.py 2000 rest rest_get | sed 's/^/    /'
  SWITCHBOARD_HOME="$WORK/floor" python3 bench/instructions.py 2000 rest |
    sed 's/^rest /floor/; s/^/    /'
else
  echo "  instructions per request: skipped (apt-get install valgrind)"
fi
kill $SB_PID $FLOOR_PID
wait $SB_PID $FLOOR_PID 2>/dev/null || true

# --- 2. slow bot ---------------------------------------------------------------------------------
mkdir -p "$WORK/bot"
cat > "$WORK/bot/nginx.conf" <<EOF
load_module /usr/lib/nginx/modules/ngx_http_echo_module.so;
worker_processes 1;
pid $WORK/bot/nginx.pid;
error_log $WORK/bot/error.log error;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$BOT_PORT;
    location / {
      default_type application/json;
      echo_sleep 0.2;
      echo '[{"recipient_id": "x", "text": "done"}]';
    }
  }
}
EOF
nginx -c "$WORK/bot/nginx.conf" -p "$WORK/bot" -g 'daemon on;' 2>/dev/null
printf 'bot:\n  url: http://127.0.0.1:%s/webhooks/rest/webhook\n  timeout: 10\nserver:\n  connection_limit: 20000\n' $BOT_PORT > "$WORK/slow.yml"
$SB run -p $SLOW_PORT -i 127.0.0.1 --credentials "$WORK/credentials.yml" --endpoints "$WORK/slow.yml" \
  --log-level error 2> "$WORK/slow.log" &
SLOW_PID=$!
PIDS+=("$SLOW_PID")
wait_port $SLOW_PORT
wait_port $BOT_PORT
THREADS_BEFORE=$(threads $SLOW_PID)
wrk -t2 -c1000 -d2s --timeout 5s -s bench/post_unique.lua "http://127.0.0.1:$SLOW_PORT/" >/dev/null
out=$(wrk -t2 -c1000 -d"${DURATION}s" --timeout 5s --latency -s bench/post_unique.lua "http://127.0.0.1:$SLOW_PORT/")
THREADS_AFTER=$(threads $SLOW_PID)
rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
errors=$(echo "$out" | grep -E 'Non-2xx|Socket errors' || echo "none")
echo
echo "2. slow bot: 1000 connections, a new sender per request, the bot answers after 200 ms"
echo "messages/s: $rps (ideal 5000, $(awk -v r="$rps" 'BEGIN {printf "%.0f", r / 50}')% of ideal)"
echo "p50 / p99: $(echo "$out" | awk '$1=="50%" {print $2}') / $(echo "$out" | awk '$1=="99%" {print $2}')"
echo "errors: $errors"
echo "host threads: $THREADS_BEFORE before, $THREADS_AFTER after"
