#!/usr/bin/env bash
# Load test of metrics: what recording (with tracing) costs a request, and what
# scraping /metrics of a 1,000-route gateway does to the requests' p99. ringgate runs
# with one worker pinned to core 0 in front of an nginx origin on core 1, driven by wrk
# on core 1, as in run.sh. See loadtest/README.md. Usage: loadtest/metrics.sh [--quick]
#
# 1. CPU per request, in the same run, rounds interleaved:
#      on:  [metrics] enabled = true,  [tracing] traceparent = true   (the defaults)
#      off: [metrics] enabled = false, [tracing] traceparent = false
#    verdict: the median of the rounds' on/off ratios of CPU per request at most
#    MAX_RATIO (1.02).
# 2. p99 under scrapes: the gateway with ROUTES routes (metrics on), wrk alone
#    (quiet), with a client fetching GET /ready every SCRAPE_EVERY seconds (pinged:
#    the control, what a client process on the load core costs by itself), and with
#    one fetching GET /metrics as often (scraped); rounds interleaved. Prints the
#    three p99s and the scrape times.
set -euo pipefail

LT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$LT_DIR/lib.sh"

usage() {
    cat <<EOF
usage: loadtest/metrics.sh [--quick]

  --quick       smoke run: DURATION=3, WARMUP=1, REPEAT=1

environment (defaults in brackets):
  DURATION      seconds of each measured wrk run [6]
  WARMUP        seconds of the unmeasured wrk run before it [1]
  REPEAT        rounds, interleaved; the report gives medians [3]
  CONNS         wrk connections [64]
  ROUTES        routes of the scrape test's configuration [1000]
  SCRAPE_EVERY  seconds between two scrapes [0.2]
  MAX_RATIO     the verdict's bound on CPU per request on/off [1.02]
  RINGGATE_BIN  use this binary instead of running cargo build --release
  PROXY_CPU     core for ringgate [0];  LOAD_CPU  core for origin, wrk, scraper [1]
EOF
}

lt_rounds 3 64 "$@"
ROUTES=${ROUTES:-1000}
SCRAPE_EVERY=${SCRAPE_EVERY:-0.2}
MAX_RATIO=${MAX_RATIO:-1.02}

ensure_tools wrk=wrk nginx=nginx curl=curl taskset=util-linux python3=python3
resolve_ringgate
lt_init
lt_results metrics
REQ_HEADER=()

read -r ORIGIN_PORT RG_PORT RG_ADMIN < <("${LT_PY[@]}" ports 3)

start_origin "$ORIGIN_PORT" "$LOAD_CPU"

# config NAME EXTRA_TOML [ROUTES]: write $OUT/NAME.toml (one worker, io_uring, the
# catch-all route; with ROUTES more routes before it, each to the origin).
config() {
    local name=$1 extra=$2 routes=${3:-0} file=$OUT/$1.toml i
    ringgate_config "$file" "$RG_PORT" "$RG_ADMIN" "$ORIGIN_PORT" io_uring "$extra"
    if ((routes > 0)); then
        # The catch-all stays last: the routes are inserted before it.
        python3 - "$file" "$routes" <<'PY'
import sys
path, n = sys.argv[1], int(sys.argv[2])
text = open(path).read()
more = "".join(
    f'[[routes]]\nid = "svc{i}"\npath_prefix = "/svc{i}"\nupstream = "origin"\nauth = "none"\n\n'
    for i in range(n))
i = text.index("[[routes]]")
open(path, "w").write(text[:i] + more + text[i:])
PY
    fi
    echo "$file"
}

ON=$(config on "")
OFF=$(config off $'\n[metrics]\nenabled = false\n\n[tracing]\ntraceparent = false\n')
MANY=$(config routes "" "$ROUTES")

# start_gw CONFIG: start ringgate pinned to the proxy core; sets GW_PID.
start_gw() {
    start_bg ringgate "$OUT/ringgate-$(basename "$1" .toml).log" \
        taskset -c "$PROXY_CPU" "$RINGGATE" --config "$1"
    GW_PID=$LT_LAST_PID
    wait_http ringgate "$GW_PID" "http://127.0.0.1:$RG_PORT/" "$OUT/ringgate-$(basename "$1" .toml).log"
}

# measure TARGET ROUND: warm-up, then the measured wrk run with ringgate's CPU time
# sampled around it; one line in results.jsonl.
measure() {
    local target=$1 round=$2 url=http://127.0.0.1:$RG_PORT/ raw cb ca ob oa
    raw=$OUT/wrk-$target-r$round.txt
    taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${WARMUP}s" "$url" >/dev/null 2>&1 ||
        die "$target: warm-up wrk run failed"
    cb=$("${LT_PY[@]}" cpu "$GW_PID")
    ob=$("${LT_PY[@]}" cpu "$ORIGIN_PID")
    timeout $((DURATION + 30)) taskset -c "$LOAD_CPU" \
        wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$url" >"$raw" 2>&1 ||
        die "$target: wrk failed; output in $raw"
    ca=$("${LT_PY[@]}" cpu "$GW_PID")
    oa=$("${LT_PY[@]}" cpu "$ORIGIN_PID")
    "${LT_PY[@]}" record "$RESULTS" "$target" 128 "$raw" "wrk -c$CONNS" \
        "$cb" "$ca" "$ob" "$oa" "round=$round"
    log "  $target round $round: $("${LT_PY[@]}" last "$RESULTS")"
}

# The scraper: GET $3 every SCRAPE_EVERY s on the load core, each one's status, time
# (seconds) and size appended to $1, until the file $2 exists.
scraper() {
    local times=$1 stop=$2 path=$3
    while [[ ! -e $stop ]]; do
        curl -s -o /dev/null -w '%{http_code} %{time_total} %{size_download}\n' \
            "http://127.0.0.1:$RG_ADMIN$path" >>"$times" || true
        sleep "$SCRAPE_EVERY"
    done
}

# scraped TARGET ROUND PATH: measure TARGET while a scraper fetches PATH.
scraped() {
    local target=$1 round=$2 path=$3 stop=$OUT/scraper-stop-$1-$2 pid
    start_bg scraper "$OUT/scraper-$target-$round.log" \
        taskset -c "$LOAD_CPU" bash -c "$(declare -f scraper); RG_ADMIN=$RG_ADMIN SCRAPE_EVERY=$SCRAPE_EVERY scraper $OUT/$target-$round.times $stop $path"
    pid=$LT_LAST_PID
    measure "$target" "$round"
    touch "$stop"
    stop_pid "$pid"
}

for ((round = 1; round <= REPEAT; round++)); do
    log ""
    log "== round $round of $REPEAT"
    # Alternate which goes first, so drift on the machine falls on both.
    if ((round % 2)); then order="on off"; else order="off on"; fi
    for t in $order; do
        if [[ $t == on ]]; then start_gw "$ON"; else start_gw "$OFF"; fi
        measure "metrics-$t" "$round"
        stop_pid "$GW_PID"
    done
    start_gw "$MANY"
    measure "routes-quiet" "$round"
    scraped "routes-pinged" "$round" /ready
    scraped "routes-scraped" "$round" /metrics
    stop_pid "$GW_PID"
done

python3 - "$RESULTS" "$OUT" "$MAX_RATIO" "$ROUTES" <<'PY' | tee "$OUT/summary.txt"
import glob, json, statistics, sys
results, out, max_ratio, routes = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
rows = [json.loads(l) for l in open(results)]
def med(target, key):
    return statistics.median(r[key] for r in rows if r["target"] == target)
def rounds(target, key):
    return [r[key] for r in rows if r["target"] == target]
on, off = med("metrics-on", "proxy_cpu_us_per_req"), med("metrics-off", "proxy_cpu_us_per_req")
per_round = [a / b for a, b in zip(rounds("metrics-on", "proxy_cpu_us_per_req"),
                                   rounds("metrics-off", "proxy_cpu_us_per_req"))]
# The verdict is on the median of the rounds' own ratios: on and off run back to back
# in each round, so a round's ratio is not moved by the machine's drift between
# rounds, and the median drops a round disturbed by other work.
ratio = statistics.median(per_round)
print(f"CPU per request, metrics+tracing on:  {on:.2f} us  ({med('metrics-on', 'rps'):.0f} req/s)")
print(f"CPU per request, metrics+tracing off: {off:.2f} us  ({med('metrics-off', 'rps'):.0f} req/s)")
print(f"ratio on/off: median of the rounds {ratio:.3f} (rounds {', '.join(f'{x:.3f}' for x in per_round)}; "
      f"ratio of the medians {on / off:.3f}); verdict: {'PASS' if ratio <= max_ratio else 'FAIL'} (at most {max_ratio})")
names = ("routes-quiet", "routes-pinged", "routes-scraped")
q, p, s = (med(n, "p99_us") for n in names)
per = zip(*(rounds(n, "p99_us") for n in names))
print(f"{routes} routes, p99: wrk alone {q/1000:.2f} ms, with GET /ready polled {p/1000:.2f} ms, "
      f"with GET /metrics scraped {s/1000:.2f} ms (rounds {', '.join('/'.join(f'{x/1000:.2f}' for x in r) for r in per)})")
cpu = [med(n, "proxy_cpu_us_per_req") for n in names]
print(f"CPU per request, same three: {', '.join(f'{c:.2f} us' for c in cpu)}")
times, sizes, codes = [], [], []
for f in glob.glob(f"{out}/routes-scraped-*.times"):
    for line in open(f):
        c, t, n = line.split()
        codes.append(c); times.append(float(t)); sizes.append(int(n))
if times:
    times.sort()
    print(f"scrapes: {len(times)}, all 200: {all(c == '200' for c in codes)}, "
          f"{statistics.median(sizes)/1024:.0f} KiB each, time median {statistics.median(times)*1000:.1f} ms, "
          f"max {times[-1]*1000:.1f} ms")
PY
