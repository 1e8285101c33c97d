#!/usr/bin/env bash
# Load test of request mirroring: what copying every request to one mirror costs,
# against plain proxying, for ringgate (`mirror = ["shadow"]`) and for nginx (its
# `mirror` directive) as the reference, in the same run. Each proxy runs with one
# worker pinned to core 0 in front of an nginx origin on core 1, which is also the
# mirror (an upstream "shadow" pointing at it); wrk on core 1. See loadtest/README.md.
# Usage: loadtest/mirror.sh [--quick]
#
#   rg-plain:     ringgate, the catch-all route
#   rg-mirror:    the same route with mirror = ["shadow"]
#   nginx-plain:  nginx proxy_pass (nginx-proxy.conf.in)
#   nginx-mirror: the same with `mirror /_mirror` (nginx-mirror.conf.in)
# Rounds rotate the order; verdict: the median of the rounds' rg-mirror/rg-plain
# ratios of CPU per request at most MAX_RATIO (1.5, issue 18). nginx's ratio is
# printed beside it.
set -euo pipefail

LT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$LT_DIR/lib.sh"

usage() {
    cat <<EOF
usage: loadtest/mirror.sh [--quick]

  --quick       smoke run: DURATION=3, WARMUP=1, REPEAT=1

environment (defaults in brackets):
  DURATION      seconds of each measured wrk run [6]
  WARMUP        seconds of the unmeasured wrk run before it [1]
  REPEAT        rounds, the order rotated; the report gives medians [5]
  CONNS         wrk connections [64]
  REQUEST       get: GET / (128-byte answer); post: the 306-byte IoT reading POSTed
                to /ingest (iot-reading.lua), so the body is mirrored too [get]
  MAX_RATIO     the verdict's bound on CPU per request rg-mirror/rg-plain [1.5]
  MIRROR_MAX_IN_FLIGHT  ringgate's server.mirror_max_in_flight [1024]: high enough
                that no copy is dropped, so that every request is copied, as nginx
                does (dropped copies are reported)
  TARGETS       subset of: rg-plain rg-mirror nginx-plain nginx-mirror [all four]
  RINGGATE_BIN  use this binary instead of running cargo build --release
  PACE_MS       when > 0, each wrk connection waits this long between requests
                (wrk's delay()): a fixed offered rate below saturation, at which
                every copy can be delivered; 0 = as fast as possible [0]
  PROXY_CPU     core for the proxy [0];  LOAD_CPU  core for origin and wrk [1]
EOF
}

lt_rounds 5 64 "$@"
REQUEST=${REQUEST:-get}
MAX_RATIO=${MAX_RATIO:-1.5}
MIRROR_MAX_IN_FLIGHT=${MIRROR_MAX_IN_FLIGHT:-1024}
TARGETS=${TARGETS:-rg-plain rg-mirror nginx-plain nginx-mirror}
PACE_MS=${PACE_MS:-0}

SCRIPT_ARGS=()
case $REQUEST in
get)
    PATH_=/
    BODY_BYTES=128
    ;;
post)
    PATH_=/ingest
    SCRIPT_ARGS=(-s "$LT_DIR/iot-reading.lua")
    BODY_BYTES=306
    ;;
*) die "REQUEST must be get or post, not $REQUEST" ;;
esac

ensure_tools wrk=wrk nginx=nginx curl=curl taskset=util-linux python3=python3
if [[ $TARGETS == *rg-* ]]; then resolve_ringgate; fi
lt_init
if ((PACE_MS > 0)); then
    # The request script (if any) with a pause between a connection's requests.
    PACE=$LT_TMP/pace.lua
    {
        if [[ $REQUEST == post ]]; then echo "dofile(\"$LT_DIR/iot-reading.lua\")"; fi
        echo "function delay() return $PACE_MS end"
    } >"$PACE"
    SCRIPT_ARGS=(-s "$PACE")
fi
lt_results mirror
io_uring_note

read -r ORIGIN_PORT RG_PORT RG_ADMIN NGINX_PORT < <("${LT_PY[@]}" ports 4)

start_origin "$ORIGIN_PORT" "$LOAD_CPU"
log "origin (and mirror): nginx pid $ORIGIN_PID on 127.0.0.1:$ORIGIN_PORT, core $LOAD_CPU"

PLAIN=$OUT/rg-plain.toml
ringgate_config "$PLAIN" "$RG_PORT" "$RG_ADMIN" "$ORIGIN_PORT" io_uring ""
MIRROR=$OUT/rg-mirror.toml
ringgate_config "$MIRROR" "$RG_PORT" "$RG_ADMIN" "$ORIGIN_PORT" io_uring \
    "mirror_max_in_flight = $MIRROR_MAX_IN_FLIGHT"
# The shadow upstream (the same origin) and the catch-all route mirrored to it.
cat >>"$MIRROR" <<EOF
mirror = ["shadow"]

[[upstreams]]
name = "shadow"
servers = ["127.0.0.1:$ORIGIN_PORT"]
max_idle_per_worker = 128
EOF
nginx_prefix nginx-plain nginx-proxy.conf.in "$NGINX_PORT"
nginx_prefix nginx-mirror nginx-mirror.conf.in "$NGINX_PORT"

# start TARGET: start it pinned to the proxy core; sets PID and PORT.
start() {
    local log
    case $1 in
    rg-*)
        log=$OUT/$1.log
        start_bg ringgate "$log" taskset -c "$PROXY_CPU" "$RINGGATE" --config "$OUT/$1.toml"
        PID=$LT_LAST_PID PORT=$RG_PORT
        ;;
    nginx-*)
        start_nginx "$1" "$PROXY_CPU"
        PID=$LT_LAST_PID PORT=$NGINX_PORT log=$LT_TMP/$1/error.log
        ;;
    esac
    wait_http "$1" "$PID" "http://127.0.0.1:$PORT/" "$log"
}

# mirror_counts: ringgate's ok/failed/dropped copies so far, from /metrics.
mirror_counts() {
    curl -sf "http://127.0.0.1:$RG_ADMIN/metrics" | python3 -c '
import sys
c = {"ok": 0, "failed": 0, "dropped": 0}
for line in sys.stdin:
    if line.startswith("ringgate_mirror_requests_total{"):
        labels, value = line.rsplit(" ", 1)
        for k in c:
            if f"result=\"{k}\"" in labels:
                c[k] = int(float(value))
print(c["ok"], c["failed"], c["dropped"])'
}

# check TARGET: one request through the proxy, answered 200.
check() {
    local code
    if [[ $REQUEST == post ]]; then
        code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
            --data '{"sensor_type":"t","value":1,"timestamp":1}' "http://127.0.0.1:$PORT$PATH_")
    else
        code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT$PATH_")
    fi
    [[ $code == 200 ]] || die "$1: a request got $code, not 200"
}

# mirror_before TARGET: the copies' counts before the measured run (rg-mirror only).
mirror_before() {
    MIRROR_BEFORE=(0 0 0)
    if [[ $1 == rg-mirror ]]; then read -r -a MIRROR_BEFORE < <(mirror_counts); fi
}
WRK_BEFORE=mirror_before

# measure TARGET ROUND: wrk_measured, one line in results.jsonl; for rg-mirror the
# copies' outcomes during the run are recorded with it.
measure() {
    local target=$1 round=$2 extra=() after
    wrk_measured "$target" "$round" "http://127.0.0.1:$PORT$PATH_" "$PID" "${SCRIPT_ARGS[@]}"
    if [[ $target == rg-mirror ]]; then
        # Copies still under way when wrk stopped finish within a moment.
        sleep 0.5
        read -r -a after < <(mirror_counts)
        extra=("mirror_ok=$((after[0] - MIRROR_BEFORE[0]))"
            "mirror_failed=$((after[1] - MIRROR_BEFORE[1]))"
            "mirror_dropped=$((after[2] - MIRROR_BEFORE[2]))")
    fi
    "${LT_PY[@]}" record "$RESULTS" "$target" "$BODY_BYTES" "$WRK_RAW" "wrk -c$CONNS $REQUEST" \
        "${WRK_CPU[@]}" "round=$round" "${extra[@]}"
    log "  $target round $round: $("${LT_PY[@]}" last "$RESULTS") ${extra[*]}"
}

read -r -a targets <<<"$TARGETS"
n=${#targets[@]}
for ((round = 1; round <= REPEAT; round++)); do
    log ""
    log "== round $round of $REPEAT"
    for ((i = 0; i < n; i++)); do
        t=${targets[$(((i + round - 1) % n))]}
        start "$t"
        check "$t"
        measure "$t" "$round"
        stop_pid "$PID"
    done
done

python3 - "$RESULTS" "$MAX_RATIO" <<'PY' | tee "$OUT/summary.txt"
import json, statistics, sys
results, max_ratio = sys.argv[1], float(sys.argv[2])
rows = [json.loads(l) for l in open(results)]
def rounds(target, key):
    return [r[key] for r in rows if r["target"] == target]
def med(target, key):
    return statistics.median(rounds(target, key))
names = {"rg-plain": "ringgate plain", "rg-mirror": "ringgate mirror",
         "nginx-plain": "nginx plain", "nginx-mirror": "nginx mirror"}
for t, what in names.items():
    if not rounds(t, "proxy_cpu_us_per_req"):
        continue
    line = (f"{what:>16}: {med(t, 'proxy_cpu_us_per_req'):.2f} us CPU/request, "
            f"{med(t, 'rps'):.0f} req/s, p50 {med(t, 'p50_us')/1000:.2f} ms, "
            f"p99 {med(t, 'p99_us')/1000:.2f} ms")
    if t == "rg-mirror":
        ok, failed, dropped = (sum(rounds(t, k)) for k in ("mirror_ok", "mirror_failed", "mirror_dropped"))
        sent = sum(r["requests"] for r in rows if r["target"] == t)
        line += f"; copies ok {ok}, failed {failed}, dropped {dropped} (requests {sent})"
    print(line)
verdict = None
for who, m, p in (("ringgate", "rg-mirror", "rg-plain"), ("nginx", "nginx-mirror", "nginx-plain")):
    a, b = rounds(m, "proxy_cpu_us_per_req"), rounds(p, "proxy_cpu_us_per_req")
    if not a or not b:
        continue
    per_round = [x / y for x, y in zip(a, b)]
    ratio = statistics.median(per_round)
    line = (f"{who} mirror/plain of CPU per request: median of the rounds {ratio:.3f} "
            f"(rounds {', '.join(f'{x:.3f}' for x in per_round)})")
    if who == "ringgate":
        verdict = ratio <= max_ratio
        line += f"; verdict: {'PASS' if verdict else 'FAIL'} (at most {max_ratio})"
    print(line)
a, b = rounds("rg-mirror", "proxy_cpu_us_per_req"), rounds("nginx-mirror", "proxy_cpu_us_per_req")
if a and b:
    print(f"ringgate mirror / nginx mirror of CPU per request: "
          f"{statistics.median(x / y for x, y in zip(a, b)):.3f}")
PY
log "results: $OUT"
