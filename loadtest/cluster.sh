#!/usr/bin/env bash
# Load test of `[cluster]`: what sharing rate limits through Redis costs a request,
# against the same node without `[cluster]`, in the same run, at two request rates;
# and how many commands a second the node sends Redis at each (issue 19: CPU per
# request at most 1.03x, Redis commands a second independent of the request rate).
# ringgate runs with one worker pinned to core 0 (its cluster sync thread with it: it
# is a thread of the same process) in front of an nginx origin on core 1; wrk and the
# redis-server this script starts run on core 1 too. See loadtest/README.md.
# Usage: loadtest/cluster.sh [--quick]
#
#   plain:   the catch-all route, callers authenticated by API key (KEYS of them),
#            with the route's own limit per API key, high enough that nothing is
#            refused (60,000,000 a minute per key)
#   cluster: the same configuration plus [cluster] (redis_url = that Redis,
#            sync_interval_ms = 100, the default)
# wrk spreads its requests over the KEYS API keys (X-API-Key: lt-key-0 ... in turn),
# at full speed and paced (each connection waits PACE_MS between requests).
# Rounds alternate which of plain and cluster goes first; verdict per rate: the median
# of the rounds' cluster/plain ratios of CPU per request at most MAX_RATIO (1.03).
set -euo pipefail

LT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$LT_DIR/lib.sh"

usage() {
    cat <<EOF
usage: loadtest/cluster.sh [--quick]

  --quick       smoke run: DURATION=3, WARMUP=1, REPEAT=1

environment (defaults in brackets):
  DURATION      seconds of each measured wrk run [6]
  WARMUP        seconds of the unmeasured wrk run before it [1]
  REPEAT        rounds, interleaved; the report gives medians [5]
  CONNS         wrk connections [64]
  KEYS          API keys the requests are spread over, in turn [256]
  KEY_BY        api_key: one bucket per API key (KEYS buckets);
                ip: no auth, the route keyed by IP, one bucket for all [api_key]
  PACE_MS       the paced rate: each wrk connection waits this long between
                requests (wrk's delay()): about a quarter of full speed [4]
  RATES         which rates, in this order: full paced [full paced]
  SYNC_MS       cluster.sync_interval_ms [100]
  MAX_RATIO     the verdict's bound on CPU per request cluster/plain [1.03]
  IDLE_S        seconds each configuration is measured idle after the rounds (every
                key used once first): what it costs a second with no requests, for
                the worker thread and the sync thread; 0 = skip [5]
  SAME          1: an A/A control, "cluster" is the plain configuration too, so the
                rounds' ratios show the spread when nothing differs [0]
  RINGGATE_BIN  use this binary instead of running cargo build --release
  PROXY_CPU     core for ringgate [0];  LOAD_CPU  core for origin, wrk, Redis [1]
EOF
}

lt_rounds 5 64 "$@"
KEYS=${KEYS:-256}
KEY_BY=${KEY_BY:-api_key}
PACE_MS=${PACE_MS:-4}
RATES=${RATES:-full paced}
SYNC_MS=${SYNC_MS:-100}
SAME=${SAME:-0}
IDLE_S=${IDLE_S:-5}
MAX_RATIO=${MAX_RATIO:-1.03}
case $KEY_BY in
api_key) ROUTE_KEY=api_key ;;
ip) ROUTE_KEY=ip ;;
*) die "KEY_BY must be api_key or ip, not $KEY_BY" ;;
esac
((KEYS >= 1)) || die "KEYS must be at least 1"

ensure_tools wrk=wrk nginx=nginx curl=curl taskset=util-linux python3=python3 \
    redis-server=redis-server redis-cli=redis-tools
resolve_ringgate
lt_init
lt_results cluster
io_uring_note
# The machine may be shared: the load average says how quiet it was.
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

read -r ORIGIN_PORT RG_PORT RG_ADMIN REDIS_PORT < <("${LT_PY[@]}" ports 4)

start_origin "$ORIGIN_PORT" "$LOAD_CPU"
log "origin: nginx pid $ORIGIN_PID on 127.0.0.1:$ORIGIN_PORT, core $LOAD_CPU"

# Redis on the load core, no persistence, answering PING before anything uses it.
rcli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
start_bg redis "$OUT/redis.log" taskset -c "$LOAD_CPU" redis-server --port "$REDIS_PORT" \
    --bind 127.0.0.1 --save "" --appendonly no
REDIS_PID=$LT_LAST_PID
for ((i = 0; i < 200; i++)); do
    kill -0 "$REDIS_PID" 2>/dev/null || { tail_log "$OUT/redis.log"; die "redis-server exited"; }
    [[ $(rcli ping 2>/dev/null) == PONG ]] && break
    sleep 0.05
done
[[ $(rcli ping 2>/dev/null) == PONG ]] || die "redis-server did not answer PING within 10 s"
log "redis: pid $REDIS_PID on 127.0.0.1:$REDIS_PORT, core $LOAD_CPU ($(redis-server --version | cut -d' ' -f3))"

# The two configurations: the same route with its own limit; cluster adds [cluster].
PLAIN=$OUT/plain.toml
ringgate_config "$PLAIN" "$RG_PORT" "$RG_ADMIN" "$ORIGIN_PORT" io_uring ""
cat >>"$PLAIN" <<EOF
rate_limit = { requests_per_minute = 60000000, key_by = "$ROUTE_KEY" }
EOF
# A bucket per caller needs callers: KEYS API keys (their SHA-256 in the file).
if [[ $KEY_BY == api_key ]]; then
    sed -i 's/^auth = "none"$/auth = "required"/' "$PLAIN"
    python3 - "$KEYS" >>"$PLAIN" <<'PY'
import hashlib, sys
print('\n[auth.api_keys]\nheader = "X-API-Key"')
for k in range(int(sys.argv[1])):
    digest = hashlib.sha256(f"lt-key-{k}".encode()).hexdigest()
    print(f'[[auth.api_keys.keys]]\nid = "k{k}"\nsha256 = "{digest}"\nuser = "u{k}"')
PY
fi
CLUSTER=$OUT/cluster.toml
cp "$PLAIN" "$CLUSTER"
if [[ $SAME == 1 ]]; then
    log "SAME=1: an A/A control, the \"cluster\" runs have no [cluster] either"
else
    cat >>"$CLUSTER" <<EOF

[cluster]
redis_url = "redis://127.0.0.1:$REDIS_PORT/0"
node_id = "loadtest"
sync_interval_ms = $SYNC_MS
name = "loadtest"
EOF
fi

# One wrk script per rate: the KEYS requests built once, sent in turn; paced adds a
# pause between a connection's requests.
for rate in $RATES; do
    case $rate in full | paced) ;; *) die "RATES: full or paced, not $rate" ;; esac
    {
        echo "-- written by loadtest/cluster.sh: $KEYS API keys in turn ($rate)"
        echo "local reqs, i = {}, 0"
        echo "function init(args)"
        echo "  for k = 0, $KEYS - 1 do"
        echo "    reqs[k + 1] = wrk.format(nil, nil, { [\"X-API-Key\"] = \"lt-key-\" .. k })"
        echo "  end"
        echo "end"
        echo "function request()"
        echo "  i = i % #reqs + 1"
        echo "  return reqs[i]"
        echo "end"
        if [[ $rate == paced ]]; then echo "function delay() return $PACE_MS end"; fi
    } >"$LT_TMP/$rate.lua"
    cp "$LT_TMP/$rate.lua" "$OUT/$rate.lua"
done

# wait_http's readiness requests need a key too.
REQ_HEADER=()
if [[ $KEY_BY == api_key ]]; then REQ_HEADER=(-H "X-API-Key: lt-key-0"); fi

# start_gw CONFIG: ringgate pinned to the proxy core; sets GW_PID.
start_gw() {
    local log
    log=$OUT/ringgate-$(basename "$1" .toml).log
    start_bg ringgate "$log" taskset -c "$PROXY_CPU" "$RINGGATE" --config "$1"
    GW_PID=$LT_LAST_PID
    wait_http ringgate "$GW_PID" "http://127.0.0.1:$RG_PORT/" "$log"
}

# check CONFIG: a request answered 200 and held to the route's own limit; with
# [cluster], /health says Redis is up (the sync thread has had a round).
check() {
    local h i
    h=$(curl -s -D - -o /dev/null -H 'X-API-Key: lt-key-0' "http://127.0.0.1:$RG_PORT/")
    [[ $h == *" 200 "* ]] || die "$1: a request did not get 200"
    grep -qi '^ratelimit-policy: "route:all"' <<<"$h" ||
        die "$1: the answer lacks RateLimit-Policy \"route:all\": is the route limited?"
    if [[ $1 == cluster && $SAME != 1 ]]; then
        for ((i = 0; i < 100; i++)); do
            curl -s "http://127.0.0.1:$RG_ADMIN/health" | grep -q '"redis": *"up"' && return 0
            sleep 0.05
        done
        die "cluster: /health did not report Redis up within 5 s"
    fi
}

# redis_stats: the time just before asking, "total_commands_processed", then the calls
# of each command but INFO, as "name=calls" words, from INFO commandstats.
redis_stats() {
    local t
    t=$(date +%s.%N)
    rcli info all | tr -d '\r' | python3 -c '
import re, sys
total, calls = 0, []
for line in sys.stdin:
    if line.startswith("total_commands_processed:"):
        total = int(line.split(":")[1])
    m = re.match(r"cmdstat_(\w+):calls=(\d+)", line)
    if m and m.group(1) != "info":
        calls.append(f"{m.group(1)}={m.group(2)}")
print(sys.argv[1], total, *calls)' "$t"
}

# Just before the measured run (wrk_measured's WRK_BEFORE): the sync thread's CPU
# time, Redis's CPU time, Redis's counts and the time, the last two together (the
# rate is their ratio; starting python takes a while on the busy load core).
before_run() {
    SYNC_BEFORE=$("${LT_PY[@]}" tcpu "$GW_PID" ringgate-cluster)
    REDIS_CPU_BEFORE=$("${LT_PY[@]}" cpu "$REDIS_PID")
    read -r -a REDIS_BEFORE < <(redis_stats)
}
WRK_BEFORE=before_run

# measure TARGET RATE ROUND: wrk_measured, one line in results.jsonl with Redis's
# commands during the run (all, per second, per command), the sync rounds (ZADD, one
# per round), the counters in Redis after it and the sync thread's CPU time.
measure() {
    local target=$1 rate=$2 round=$3 after sync_after redis_cpu extra
    wrk_measured "$target-$rate" "$round" "http://127.0.0.1:$RG_PORT/" "$GW_PID" \
        -s "$LT_TMP/$rate.lua"
    read -r -a after < <(redis_stats)
    sync_after=$("${LT_PY[@]}" tcpu "$GW_PID" ringgate-cluster)
    redis_cpu=$("${LT_PY[@]}" cpu "$REDIS_PID")
    extra=$(python3 - "$SYNC_BEFORE" "$sync_after" \
        "$REDIS_CPU_BEFORE" "$redis_cpu" "${REDIS_BEFORE[*]}" "${after[*]}" <<'PY'
import sys
s0, s1 = int(sys.argv[1]), int(sys.argv[2])
r0, r1 = int(sys.argv[3].split()[0]), int(sys.argv[4].split()[0])
b, a = sys.argv[5].split(), sys.argv[6].split()
t0, t1 = float(b.pop(0)), float(a.pop(0))
def calls(words):
    return dict((k, int(v)) for k, v in (w.split("=") for w in words[1:]))
cb, ca = calls(b), calls(a)
per = {k: ca[k] - cb.get(k, 0) for k in ca if ca[k] - cb.get(k, 0)}
# total_commands_processed counts the INFO that read the first snapshot: one less.
total = int(a[0]) - int(b[0]) - 1
secs = t1 - t0
out = [f"secs={secs:.3f}", f"redis_cmds={total}", f"redis_cmds_per_s={total / secs:.1f}",
       f"sync_rounds={per.get('zadd', 0)}", f"sync_cpu_s={(s1 - s0) / 1e9:.6f}",
       f"redis_cpu_s={(r1 - r0) / 1e9:.6f}"]
out += [f"cmd_{k}={v}" for k, v in sorted(per.items())]
print(" ".join(out))
PY
    )
    # shellcheck disable=SC2086 # KEY=VALUE words
    "${LT_PY[@]}" record "$RESULTS" "$target-$rate" 128 "$WRK_RAW" \
        "wrk -c$CONNS $rate keys=$KEYS" "${WRK_CPU[@]}" "round=$round" "rate=$rate" \
        "config=$target" "keys=$KEYS" "redis_keys=$(rcli dbsize)" $extra
    log "  $target $rate round $round: $("${LT_PY[@]}" last "$RESULTS")"
    log "    redis: $extra, $(rcli dbsize) keys in Redis"
}

for ((round = 1; round <= REPEAT; round++)); do
    log ""
    log "== round $round of $REPEAT"
    if ((round % 2)); then order="plain cluster"; else order="cluster plain"; fi
    for rate in $RATES; do
        for t in $order; do
            # Each cluster run starts from an empty Redis: the keys counted after it
            # are its own.
            rcli flushall >/dev/null
            if [[ $t == plain ]]; then start_gw "$PLAIN"; else start_gw "$CLUSTER"; fi
            check "$t"
            measure "$t" "$rate" "$round"
            stop_pid "$GW_PID"
        done
    done
done

# Idle: the CPU a second each configuration spends with no requests (after one wrk
# second has used every key): the per-second costs, without the requests' noise. The
# worker's gossip round, which with one worker runs only with [cluster], wakes it 50
# times a second; the sync thread has its rounds.
if ((IDLE_S > 0)); then
    log ""
    log "== idle, $IDLE_S s each"
    for t in plain cluster; do
        if [[ $t == plain ]]; then start_gw "$PLAIN"; else start_gw "$CLUSTER"; fi
        check "$t"
        taskset -c "$LOAD_CPU" wrk -t1 -c8 -d1s -s "$LT_TMP/full.lua" "http://127.0.0.1:$RG_PORT/" \
            >/dev/null 2>&1 || die "$t: the idle run's wrk failed"
        sleep 0.5
        w0=$("${LT_PY[@]}" tcpu "$GW_PID" ringgate-w0)
        s0=$("${LT_PY[@]}" tcpu "$GW_PID" ringgate-cluster)
        read -r p0 _ < <("${LT_PY[@]}" cpu "$GW_PID")
        sleep "$IDLE_S"
        w1=$("${LT_PY[@]}" tcpu "$GW_PID" ringgate-w0)
        s1=$("${LT_PY[@]}" tcpu "$GW_PID" ringgate-cluster)
        read -r p1 _ < <("${LT_PY[@]}" cpu "$GW_PID")
        stop_pid "$GW_PID"
        echo "{\"idle\": \"$t\", \"secs\": $IDLE_S, \"process_ns\": $((p1 - p0)), \"worker_ns\": $((w1 - w0)), \"sync_ns\": $((s1 - s0))}" >>"$OUT/idle.jsonl"
        log "  $t: process $(((p1 - p0) / 1000 / IDLE_S)) us/s, worker $(((w1 - w0) / 1000 / IDLE_S)) us/s, sync thread $(((s1 - s0) / 1000 / IDLE_S)) us/s"
    done
fi

python3 - "$RESULTS" "$MAX_RATIO" "$KEYS" "$KEY_BY" "$SYNC_MS" "$LOAD_BEFORE" \
    "$(cut -d' ' -f1-3 /proc/loadavg)" <<'PY' | tee "$OUT/summary.txt"
import json, statistics, sys
results, max_ratio, keys, key_by, sync_ms = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
print(f"load average (1, 5, 15 min) before: {sys.argv[6]}; after: {sys.argv[7]}")
rows = [json.loads(l) for l in open(results)]
med = statistics.median
def runs(config, rate):
    return sorted((r for r in rows if r["config"] == config and r["rate"] == rate),
                  key=lambda r: r["round"])
print(f"keys: {keys if key_by == 'api_key' else 1} ({key_by}); cluster.sync_interval_ms = {sync_ms}")
ok, redis_rates = True, {}
for rate in ("full", "paced"):
    p, c = runs("plain", rate), runs("cluster", rate)
    if not p or not c:
        continue
    print(f"-- {rate}")
    for what, rs in (("plain", p), ("cluster", c)):
        print(f"  {what:>7}: {med(r['proxy_cpu_us_per_req'] for r in rs):.2f} us CPU/request, "
              f"{med(r['rps'] for r in rs):.0f} req/s, p50 {med(r['p50_us'] for r in rs)/1000:.2f} ms, "
              f"p99 {med(r['p99_us'] for r in rs)/1000:.2f} ms")
    per_round = [b["proxy_cpu_us_per_req"] / a["proxy_cpu_us_per_req"] for a, b in zip(p, c)]
    ratio = med(per_round)
    ok = ok and ratio <= max_ratio
    print(f"  cluster/plain of CPU per request: median of the rounds {ratio:.3f} "
          f"(rounds {', '.join(f'{x:.3f}' for x in per_round)}); ratio of the medians "
          f"{med(r['proxy_cpu_us_per_req'] for r in c) / med(r['proxy_cpu_us_per_req'] for r in p):.3f}; "
          f"verdict: {'PASS' if ratio <= max_ratio else 'FAIL'} (at most {max_ratio})")
    sync_us_s = [r["sync_cpu_s"] / r["secs"] * 1e6 for r in c]
    sync_us_req = [r["sync_cpu_s"] * 1e6 / r["requests"] for r in c]
    # The thread's share of a request's CPU, measured directly: less noisy than the
    # whole process's ratio, whose rounds spread by more than the effect.
    share = med(sync_us_req) / med(r["proxy_cpu_us_per_req"] for r in p)
    print(f"  sync thread (ringgate-cluster) CPU: {med(sync_us_s):.0f} us/s, "
          f"{med(sync_us_req):.3f} us/request (rounds {', '.join(f'{x:.3f}' for x in sync_us_req)}): "
          f"{100 * share:.2f} % of plain's CPU per request")
    cps = [r["redis_cmds_per_s"] for r in c]
    redis_rates[rate] = med(cps)
    per_sync = [r["redis_cmds"] / r["sync_rounds"] for r in c if r["sync_rounds"]]
    print(f"  Redis commands/s during cluster runs: {', '.join(f'{x:.0f}' for x in cps)} "
          f"(median {med(cps):.0f}); sync rounds/s {med(r['sync_rounds'] / r['secs'] for r in c):.2f}; "
          f"commands per round {med(per_sync) if per_sync else 0:.1f}; counters in Redis after a run "
          f"{med(r['redis_keys'] for r in c):.0f}; Redis CPU {med(r['redis_cpu_s'] / r['secs'] * 1e6 for r in c):.0f} us/s")
    cmds = sorted({k for r in c for k in r if k.startswith("cmd_")})
    print("  per command, per run: " + ", ".join(
        f"{k[4:]} {med(r.get(k, 0) for r in c):.0f}" for k in cmds))
    print(f"  Redis commands/s during plain runs: {med(r['redis_cmds_per_s'] for r in p):.1f}")
if len(redis_rates) == 2 and redis_rates["full"] > 0:
    print(f"Redis commands/s, paced/full: {redis_rates['paced'] / redis_rates['full']:.3f} "
          f"({redis_rates['paced']:.0f} against {redis_rates['full']:.0f}) at request rates "
          f"{med(r['rps'] for r in runs('cluster', 'paced')):.0f} and "
          f"{med(r['rps'] for r in runs('cluster', 'full')):.0f} req/s")
import os
idle_file = os.path.join(os.path.dirname(results), "idle.jsonl")
if os.path.exists(idle_file):
    idle = {r["idle"]: r for r in map(json.loads, open(idle_file))}
    if len(idle) == 2:
        us = lambda r, k: r[k] / 1e3 / r["secs"]
        pl, cl = idle["plain"], idle["cluster"]
        extra = us(cl, "process_ns") - us(pl, "process_ns")
        print(f"idle: plain {us(pl, 'process_ns'):.0f} us/s (worker {us(pl, 'worker_ns'):.0f}); "
              f"cluster {us(cl, 'process_ns'):.0f} us/s (worker {us(cl, 'worker_ns'):.0f}, "
              f"sync thread {us(cl, 'sync_ns'):.0f}): [cluster] adds {extra:.0f} us/s with no requests")
        for rate in ("full", "paced"):
            p = runs("plain", rate)
            if p:
                load = med(r["rps"] for r in p) * med(r["proxy_cpu_us_per_req"] for r in p)
                print(f"  that is {100 * extra / load:.2f} % of plain's CPU a second at the {rate} rate")
print(f"verdict (CPU per request): {'PASS' if ok else 'FAIL'}")
PY
log "results: $OUT"
