#!/usr/bin/env bash
# Load test of fan-out routes: what streaming a 1 MiB POST to three destinations costs,
# against proxying the same POST to one, in the same run. ringgate runs with one worker
# pinned to core 0 in front of an nginx origin on core 1 (its /ingest reads the body
# and answers {"ok":true}; the three destinations are three upstreams on that one
# nginx), driven by wrk on core 1 (loadtest/fanout-1m.lua). See loadtest/README.md.
# Usage: loadtest/fanout.sh [--quick]
#
#   plain:  the catch-all route, the 1 MiB body proxied to one upstream
#   fanout: a route on /ingest with fanout = { upstreams = [a, b, c], require = "all" }
# Rounds alternate which goes first; verdict: the median of the rounds' fanout/plain
# ratios of CPU per request at most MAX_RATIO (1.8, issue 18).
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
  REPEAT        rounds, interleaved; the report gives medians [5]
  CONNS         wrk connections [16]
  MAX_RATIO     the verdict's bound on CPU per request fanout/plain [1.8]
  RINGGATE_BIN  use this binary instead of running cargo build --release
  PROXY_CPU     core for ringgate [0];  LOAD_CPU  core for origin and wrk [1]
EOF
}

for arg in "$@"; do
    case $arg in
    --quick) DURATION=3 WARMUP=1 REPEAT=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
done
DURATION=${DURATION:-6}
WARMUP=${WARMUP:-1}
REPEAT=${REPEAT:-5}
CONNS=${CONNS:-16}
MAX_RATIO=${MAX_RATIO:-1.8}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}

ensure_tools wrk=wrk nginx=nginx curl=curl taskset=util-linux python3=python3
resolve_ringgate
lt_init
lt_results fanout
SCRIPT=$LT_DIR/fanout-1m.lua
BODY_BYTES=1048576

read -r ORIGIN_PORT RG_PORT RG_ADMIN < <("${LT_PY[@]}" ports 3)

start_origin "$ORIGIN_PORT" "$LOAD_CPU"

PLAIN=$OUT/plain.toml
ringgate_config "$PLAIN" "$RG_PORT" "$RG_ADMIN" "$ORIGIN_PORT" io_uring ""
FANOUT=$OUT/fanout.toml
ringgate_config "$FANOUT" "$RG_PORT" "$RG_ADMIN" "$ORIGIN_PORT" io_uring ""
# Two more upstreams on the same origin, and the fan-out route before the catch-all.
python3 - "$FANOUT" "$ORIGIN_PORT" <<'PY'
import sys
path, port = sys.argv[1], sys.argv[2]
text = open(path).read()
extra = "".join(
    f'[[upstreams]]\nname = "{n}"\nservers = ["127.0.0.1:{port}"]\nmax_idle_per_worker = 128\n\n'
    for n in ("cdn", "live")
)
route = '''[[routes]]
id = "fanout"
path_exact = "/ingest"
methods = ["POST"]
fanout = { upstreams = ["origin", "cdn", "live"], require = "all" }
auth = "none"

'''
i = text.index("[[routes]]")
open(path, "w").write(text[:i] + extra + route + text[i:])
PY

# start_gw CONFIG: start ringgate pinned to the proxy core; sets GW_PID.
start_gw() {
    local log
    log=$OUT/ringgate-$(basename "$1" .toml).log
    start_bg ringgate "$log" taskset -c "$PROXY_CPU" "$RINGGATE" --config "$1"
    GW_PID=$LT_LAST_PID
    wait_http ringgate "$GW_PID" "http://127.0.0.1:$RG_PORT/" "$log"
}

# check TARGET: one 1 MiB POST through the gateway, answered 200 (on fanout, with all
# three destinations' 200 in the summary).
check() {
    local out
    out=$(head -c 1048576 /dev/zero | curl -s -w '\n%{http_code}' -H 'Content-Type: video/mp4' \
        --data-binary @- "http://127.0.0.1:$RG_PORT/ingest")
    [[ ${out##*$'\n'} == 200 ]] || die "$1: a 1 MiB POST got ${out##*$'\n'}, not 200: $out"
    if [[ $1 == fanout && $out != *'"succeeded":3'* ]]; then die "fanout: not all three: $out"; fi
}

# measure TARGET ROUND: warm-up, then the measured wrk run with both processes' CPU
# time sampled around it; one line in results.jsonl. Every answer must be a 200.
measure() {
    local target=$1 round=$2 url=http://127.0.0.1:$RG_PORT/ingest raw cb ca ob oa
    raw=$OUT/wrk-$target-r$round.txt
    taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${WARMUP}s" -s "$SCRIPT" "$url" >/dev/null 2>&1 ||
        die "$target: warm-up wrk run failed"
    cb=$("${LT_PY[@]}" cpu "$GW_PID")
    ob=$("${LT_PY[@]}" cpu "$ORIGIN_PID")
    timeout $((DURATION + 30)) taskset -c "$LOAD_CPU" \
        wrk -t1 -c"$CONNS" -d"${DURATION}s" -s "$SCRIPT" --latency "$url" >"$raw" 2>&1 ||
        die "$target: wrk failed; output in $raw"
    ca=$("${LT_PY[@]}" cpu "$GW_PID")
    oa=$("${LT_PY[@]}" cpu "$ORIGIN_PID")
    if grep -q "Non-2xx" "$raw"; then die "$target: answers other than 2xx, see $raw"; fi
    "${LT_PY[@]}" record "$RESULTS" "$target" "$BODY_BYTES" "$raw" "wrk -c$CONNS POST 1 MiB" \
        "$cb" "$ca" "$ob" "$oa" "round=$round"
    log "  $target round $round: $("${LT_PY[@]}" last "$RESULTS")"
}

for ((round = 1; round <= REPEAT; round++)); do
    log ""
    log "== round $round of $REPEAT"
    if ((round % 2)); then order="plain fanout"; else order="fanout plain"; fi
    for t in $order; do
        if [[ $t == plain ]]; then start_gw "$PLAIN"; else start_gw "$FANOUT"; fi
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
for t, what in (("plain", "1 MiB proxied to one"), ("fanout", "1 MiB fanned out to three")):
    print(f"{what:>26}: {med(t, 'proxy_cpu_us_per_req'):.2f} us CPU/request, "
          f"{med(t, 'rps'):.0f} req/s, p50 {med(t, 'p50_us')/1000:.2f} ms, p99 {med(t, 'p99_us')/1000:.2f} ms")
per_round = [a / b for a, b in zip(rounds("fanout", "proxy_cpu_us_per_req"), rounds("plain", "proxy_cpu_us_per_req"))]
ratio = statistics.median(per_round)
print(f"ratio fanout/plain of CPU per request: median of the rounds {ratio:.3f} "
      f"(rounds {', '.join(f'{x:.3f}' for x in per_round)}); "
      f"verdict: {'PASS' if ratio <= max_ratio else 'FAIL'} (at most {max_ratio})")
PY
log "results: $OUT"
