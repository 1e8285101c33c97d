#!/usr/bin/env bash
# Load test of the IoT route: what validating (JSON Schema), enriching and wrapping a
# reading costs, against plain proxying of the same POST, in the same run. ringgate
# runs with one worker pinned to core 0 in front of an nginx origin on core 1 (its
# /ingest reads the body and answers {"ok":true}), driven by wrk on core 1 POSTing a
# 306-byte reading (loadtest/iot-reading.lua). See loadtest/README.md.
# Usage: loadtest/iot.sh [--quick]
#
#   plain: the catch-all route, the body streamed through untouched
#   iot:   a route on /ingest with validate = config/schemas/sensor.json and
#          json_body { set edge_pop/received_at/device_id, wrap "reading" }, as
#          config/gateway.toml's IoT example
# Rounds alternate which goes first; verdict: the median of the rounds' iot/plain
# ratios of CPU per request at most MAX_RATIO (1.3, issue 17).
set -euo pipefail

LT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$LT_DIR/lib.sh"

usage() {
    cat <<EOF
usage: loadtest/iot.sh [--quick]

  --quick       smoke run: DURATION=3, WARMUP=1, REPEAT=1

environment (defaults in brackets):
  DURATION      seconds of each measured wrk run [6]
  WARMUP        seconds of the unmeasured wrk run before it [1]
  REPEAT        rounds, interleaved; the report gives medians [5]
  CONNS         wrk connections [64]
  MAX_RATIO     the verdict's bound on CPU per request iot/plain [1.3]
  RINGGATE_BIN  use this binary instead of running cargo build --release
  PROXY_CPU     core for ringgate [0];  LOAD_CPU  core for origin and wrk [1]
EOF
}

lt_rounds 5 64 "$@"
MAX_RATIO=${MAX_RATIO:-1.3}

ensure_tools wrk=wrk nginx=nginx curl=curl taskset=util-linux python3=python3
resolve_ringgate
lt_init
lt_results iot
SCRIPT=$LT_DIR/iot-reading.lua
BODY_BYTES=$(python3 -c 'import re,sys; s=open(sys.argv[1]).read().split("wrk.body =")[1]; print(len("".join(re.findall(r"'"'"'([^'"'"']*)'"'"'", s))))' "$SCRIPT")

read -r ORIGIN_PORT RG_PORT RG_ADMIN < <("${LT_PY[@]}" ports 3)

start_origin "$ORIGIN_PORT" "$LOAD_CPU"

PLAIN=$OUT/plain.toml
ringgate_config "$PLAIN" "$RG_PORT" "$RG_ADMIN" "$ORIGIN_PORT" io_uring ""
IOT=$OUT/iot.toml
ringgate_config "$IOT" "$RG_PORT" "$RG_ADMIN" "$ORIGIN_PORT" io_uring ""
# The IoT route goes before the catch-all.
python3 - "$IOT" "$REPO_ROOT/config/schemas/sensor.json" <<'PY'
import sys
path, schema = sys.argv[1], sys.argv[2]
text = open(path).read()
route = f'''[[routes]]
id = "iot"
path_exact = "/ingest"
methods = ["POST"]
content_type = ["application/json"]
validate = {{ schema_file = "{schema}" }}
json_body = {{ set = {{ edge_pop = "fra-1", received_at = "${{now_ms}}", device_id = "${{header:X-Device-ID}}" }}, wrap = {{ key = "reading", set = {{ edge_pop = "fra-1" }} }} }}
upstream = "origin"
auth = "none"

'''
i = text.index("[[routes]]")
open(path, "w").write(text[:i] + route + text[i:])
PY

# start_gw CONFIG: start ringgate pinned to the proxy core; sets GW_PID.
start_gw() {
    local log
    log=$OUT/ringgate-$(basename "$1" .toml).log
    start_bg ringgate "$log" taskset -c "$PROXY_CPU" "$RINGGATE" --config "$1"
    GW_PID=$LT_LAST_PID
    wait_http ringgate "$GW_PID" "http://127.0.0.1:$RG_PORT/" "$log"
}

# check TARGET: one reading through the gateway, answered 200 by the origin.
check() {
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
        -H 'X-Device-ID: thermo-0042' \
        --data '{"sensor_type":"t","value":1,"timestamp":1}' "http://127.0.0.1:$RG_PORT/ingest")
    [[ $code == 200 ]] || die "$1: a reading got $code, not 200"
    code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
        --data '{"sensor_type":"t","value":"x","timestamp":1}' "http://127.0.0.1:$RG_PORT/ingest")
    if [[ $1 == iot && $code != 400 ]]; then die "iot: an invalid reading got $code, not 400"; fi
}

# measure TARGET ROUND: wrk_measured on /ingest, one line in results.jsonl.
measure() {
    wrk_measured "$1" "$2" "http://127.0.0.1:$RG_PORT/ingest" "$GW_PID" -s "$SCRIPT"
    "${LT_PY[@]}" record "$RESULTS" "$1" "$BODY_BYTES" "$WRK_RAW" "wrk -c$CONNS POST" \
        "${WRK_CPU[@]}" "round=$2"
    log "  $1 round $2: $("${LT_PY[@]}" last "$RESULTS")"
}

for ((round = 1; round <= REPEAT; round++)); do
    log ""
    log "== round $round of $REPEAT"
    if ((round % 2)); then order="plain iot"; else order="iot plain"; fi
    for t in $order; do
        if [[ $t == plain ]]; then start_gw "$PLAIN"; else start_gw "$IOT"; fi
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
for t, what in (("plain", "plain proxying"), ("iot", "validate + enrich + wrap")):
    print(f"{what:>26}: {med(t, 'proxy_cpu_us_per_req'):.2f} us CPU/request, "
          f"{med(t, 'rps'):.0f} req/s, p50 {med(t, 'p50_us')/1000:.2f} ms, p99 {med(t, 'p99_us')/1000:.2f} ms")
per_round = [a / b for a, b in zip(rounds("iot", "proxy_cpu_us_per_req"), rounds("plain", "proxy_cpu_us_per_req"))]
ratio = statistics.median(per_round)
print(f"ratio iot/plain of CPU per request: median of the rounds {ratio:.3f} "
      f"(rounds {', '.join(f'{x:.3f}' for x in per_round)}); "
      f"verdict: {'PASS' if ratio <= max_ratio else 'FAIL'} (at most {max_ratio})")
PY
log "results: $OUT"
