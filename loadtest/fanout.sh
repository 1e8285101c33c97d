#!/usr/bin/env bash
# Load test of fan-out: one 1 MiB POST delivered to three destinations at once,
# against one 1 MiB POST proxied to one, in the same run. ringgate (one worker,
# io_uring) and the reference nginx proxy are pinned to core 0; the nginx origin
# (its /upload reads the body and answers {"ok":true}) and wrk (loadtest/fanout-1m.lua)
# share core 1. See loadtest/README.md. Usage: loadtest/fanout.sh [--quick]
#
#   single:  ringgate, the catch-all route: the body streamed to the origin
#   fanout3: ringgate, a route on /upload with fanout = { upstreams = [a, b, c],
#            require = "all" }, the three upstreams being the same origin
#   nginx:   nginx proxying the same POST to the origin (reference, not in the verdict)
# Verdict: the median of the rounds' fanout3/single ratios of the proxy's CPU per
# request at most MAX_RATIO (1.8, issue 18).
set -euo pipefail

LT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$LT_DIR/lib.sh"

usage() {
    cat <<EOF
usage: loadtest/fanout.sh [--quick]

  --quick       smoke run: DURATION=3, WARMUP=1, REPEAT=1

environment (defaults in brackets):
  DURATION      seconds of each measured wrk run [6]
  WARMUP        seconds of the unmeasured wrk run before it [1]
  REPEAT        rounds, interleaved; the report gives medians [3]
  CONNS         wrk connections [16]
  MAX_RATIO     the verdict's bound on CPU per request fanout3/single [1.8]
  RINGGATE_BIN  use this binary instead of running cargo build --release
  PROXY_CPU     core for the proxy [0];  LOAD_CPU  core for origin and wrk [1]
EOF
}

lt_rounds 3 16 "$@"
MAX_RATIO=${MAX_RATIO:-1.8}

ensure_tools wrk=wrk nginx=nginx curl=curl taskset=util-linux python3=python3
resolve_ringgate
lt_init
lt_results fanout
SCRIPT=$LT_DIR/fanout-1m.lua
BODY_BYTES=1048576

read -r ORIGIN_PORT RG_PORT RG_ADMIN NGINX_PORT < <("${LT_PY[@]}" ports 4)
start_origin "$ORIGIN_PORT" "$LOAD_CPU"

SINGLE=$OUT/single.toml
ringgate_config "$SINGLE" "$RG_PORT" "$RG_ADMIN" "$ORIGIN_PORT" io_uring ""
FANOUT=$OUT/fanout3.toml
ringgate_config "$FANOUT" "$RG_PORT" "$RG_ADMIN" "$ORIGIN_PORT" io_uring ""
# Three more upstreams on the same origin, and the fan-out route before the catch-all.
python3 - "$FANOUT" "$ORIGIN_PORT" <<'PY'
import sys
path, port = sys.argv[1], sys.argv[2]
text = open(path).read()
ups = "".join(
    f'[[upstreams]]\nname = "{n}"\nservers = ["127.0.0.1:{port}"]\nmax_idle_per_worker = 128\n\n'
    for n in ("a", "b", "c"))
route = '''[[routes]]
id = "fan"
path_exact = "/upload"
methods = ["POST"]
fanout = { upstreams = ["a", "b", "c"], require = "all" }
auth = "none"

'''
i = text.index("[[routes]]")
text = text[:i] + route + text[i:]
i = text.index("[[upstreams]]")
open(path, "w").write(text[:i] + ups + text[i:])
PY

# start_gw CONFIG: start ringgate pinned to the proxy core; sets GW_PID, PORT.
start_gw() {
    local log
    log=$OUT/ringgate-$(basename "$1" .toml).log
    start_bg ringgate "$log" taskset -c "$PROXY_CPU" "$RINGGATE" --config "$1"
    GW_PID=$LT_LAST_PID
    PORT=$RG_PORT
    wait_http ringgate "$GW_PID" "http://127.0.0.1:$RG_PORT/" "$log"
}

start_nginx_proxy() {
    nginx_prefix proxy nginx-proxy.conf.in "$NGINX_PORT"
    start_nginx proxy "$PROXY_CPU"
    GW_PID=$LT_LAST_PID
    PORT=$NGINX_PORT
    wait_http "nginx proxy" "$GW_PID" "http://127.0.0.1:$NGINX_PORT/" "$LT_TMP/proxy/error.log"
}

# check TARGET: one 1 MiB POST answered 200 (the fan-out: with its summary).
check() {
    local out
    out=$(head -c "$BODY_BYTES" /dev/zero | curl -s -w '\n%{http_code}' --data-binary @- \
        -H 'Content-Type: video/mp2t' "http://127.0.0.1:$PORT/upload")
    [[ ${out##*$'\n'} == 200 ]] || die "$1: a 1 MiB POST got ${out##*$'\n'}: ${out%$'\n'*}"
    if [[ $1 == fanout3 && $out != *'"succeeded":3'* ]]; then die "fanout3: not all three: $out"; fi
}

# measure TARGET ROUND: wrk_measured on /upload, one line in results.jsonl.
measure() {
    wrk_measured "$1" "$2" "http://127.0.0.1:$PORT/upload" "$GW_PID" -s "$SCRIPT"
    "${LT_PY[@]}" record "$RESULTS" "$1" "$BODY_BYTES" "$WRK_RAW" "wrk -c$CONNS POST 1 MiB" \
        "${WRK_CPU[@]}" "round=$2"
    log "  $1 round $2: $("${LT_PY[@]}" last "$RESULTS")"
}

for ((round = 1; round <= REPEAT; round++)); do
    log ""
    log "== round $round of $REPEAT"
    if ((round % 2)); then order="single fanout3 nginx"; else order="nginx fanout3 single"; fi
    for t in $order; do
        case $t in
        single) start_gw "$SINGLE" ;;
        fanout3) start_gw "$FANOUT" ;;
        nginx) start_nginx_proxy ;;
        esac
        check "$t"
        measure "$t" "$round"
        stop_pid "$GW_PID"
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
for t, what in (("single", "ringgate, one destination"), ("fanout3", "ringgate, fan-out to three"),
                ("nginx", "nginx, one destination")):
    print(f"{what:>27}: {med(t, 'proxy_cpu_us_per_req'):.1f} us CPU/request, "
          f"{med(t, 'rps'):.0f} req/s, p50 {med(t, 'p50_us')/1000:.2f} ms, p99 {med(t, 'p99_us')/1000:.2f} ms")
per_round = [a / b for a, b in zip(rounds("fanout3", "proxy_cpu_us_per_req"), rounds("single", "proxy_cpu_us_per_req"))]
ratio = statistics.median(per_round)
print(f"ratio fanout3/single of CPU per request: median of the rounds {ratio:.3f} "
      f"(rounds {', '.join(f'{x:.3f}' for x in per_round)}); "
      f"verdict: {'PASS' if ratio <= max_ratio else 'FAIL'} (at most {max_ratio})")
PY
log "results: $OUT"
