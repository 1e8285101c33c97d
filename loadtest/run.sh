#!/usr/bin/env bash
# Load test: ringgate (io_uring and epoll) side by side with nginx as a reverse proxy,
# each with one worker pinned to core 0, in front of an nginx origin on core 1 driven
# by wrk on core 1. Prints req/s, latency, errors and the proxy's CPU per request.
# See loadtest/README.md. Usage: loadtest/run.sh [--quick]
set -euo pipefail

LT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$LT_DIR/lib.sh"

usage() {
    cat <<EOF
usage: loadtest/run.sh [--quick]

  --quick       smoke run: DURATION=3, WARMUP=1

environment (defaults in brackets):
  DURATION      seconds of each measured wrk run [10]
  WARMUP        seconds of the unmeasured wrk run before it [2]
  CONNS         wrk connections for the 128-byte body [64]
  CONNS_1M      wrk connections for the 1 MiB body [16]
  TARGETS       subset of: direct nginx floor ringgate-uring ringgate-epoll
                ringgate-auth nginx-cache ringgate-cache ringgate-q ringgate-miss
                ringgate-base
                [all but ringgate-base]
                (floor is loadtest/floor, a bare io_uring TCP forwarder with no
                HTTP: the least CPU a proxy can spend here; 128-byte body only.
                ringgate-q and ringgate-miss send a new query string every
                request: the first without, the second with the route cached, so
                every request is a miss that is stored; 128-byte body only.
                ringgate-base is ringgate-uring run with RINGGATE_BASE_BIN, another
                build, to compare a change with the build before it in one run)
  BODIES        subset of: 128 1m [both]
  REPEAT        rounds of all TARGETS, interleaved; the report gives medians [1]
  RINGGATE_BIN  use this binary instead of running cargo build --release
  RINGGATE_BASE_BIN  the binary of the ringgate-base target
  PROXY_CPU     core for the proxies [0];  LOAD_CPU  core for origin + wrk [1]
  NGINX_TEMP_FILE=1  let proxying nginx spool large bodies to disk (its default)
  STRICT=1      exit 3 when a ringgate run misses its targets
EOF
}

for arg in "$@"; do
    case $arg in
    --quick) DURATION=3 WARMUP=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
done

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-64}
CONNS_1M=${CONNS_1M:-16}
ALL_TARGETS="direct nginx floor ringgate-uring ringgate-epoll ringgate-auth nginx-cache ringgate-cache ringgate-q ringgate-miss"
TARGETS=${TARGETS:-$ALL_TARGETS}
BODIES=${BODIES:-128 1m}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}

for t in $TARGETS; do
    [[ " $ALL_TARGETS ringgate-base " == *" $t "* ]] || die "unknown target '$t' in TARGETS ($ALL_TARGETS)"
done
for b in $BODIES; do
    case $b in 128 | 1m) ;; *) die "unknown body '$b' in BODIES (128 1m)" ;; esac
done
for n in "$DURATION" "$WARMUP" "$CONNS" "$CONNS_1M"; do
    [[ $n =~ ^[0-9]+$ ]] || die "DURATION, WARMUP, CONNS and CONNS_1M must be integers"
done

ensure_tools wrk=wrk nginx=nginx curl=curl taskset=util-linux python3=python3

if (($(nproc) < 2)) && [[ $PROXY_CPU != "$LOAD_CPU" ]]; then
    log "warning: $(nproc) core(s): proxy and load share core 0; ratios still compare, absolute numbers do not"
    PROXY_CPU=0 LOAD_CPU=0
fi

RINGGATE=""
if [[ " $TARGETS " == *" ringgate-"* ]]; then
    resolve_ringgate
fi
if [[ " $TARGETS " == *" ringgate-base "* ]]; then
    [[ -x ${RINGGATE_BASE_BIN:-} ]] || die "ringgate-base needs RINGGATE_BASE_BIN, an executable ringgate build"
fi
FLOOR=""
if [[ " $TARGETS " == *" floor "* && " $BODIES " == *" 128 "* ]]; then
    resolve_floor
fi

lt_init
REQ_HEADER=()
WRK_SCRIPT=()
OUT=$LT_DIR/out/run-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
ln -sfn "$(basename "$OUT")" "$LT_DIR/out/latest"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"

# ------------------------------------------------------------------ origin

read -r ORIGIN_PORT NGINX_PORT RG_URING_PORT RG_EPOLL_PORT RG_ADMIN_PORT RG_AUTH_PORT NGINX_CACHE_PORT RG_CACHE_PORT RG_Q_PORT RG_MISS_PORT FLOOR_PORT RG_BASE_PORT < <("${LT_PY[@]}" ports 12)

nginx_prefix origin nginx-origin.conf.in "$ORIGIN_PORT"
"${LT_PY[@]}" body128 "$LT_TMP/origin/www/body.json"
head -c 1048576 /dev/urandom >"$LT_TMP/origin/www/1m.bin"
chmod -R a+rX "$LT_TMP/origin"
start_nginx origin "$LOAD_CPU"
ORIGIN_PID=$LT_LAST_PID
wait_http "origin nginx" "$ORIGIN_PID" "http://127.0.0.1:$ORIGIN_PORT/" "$LT_TMP/origin/error.log"
log "origin: nginx pid $ORIGIN_PID on 127.0.0.1:$ORIGIN_PORT, core $LOAD_CPU"

# ------------------------------------------------------------------ checks

# check_bodies NAME PORT: the target must return both bodies byte for byte, 200,
# with the right Content-Type (the 128-byte one must be exactly 128 bytes).
check_bodies() {
    local name=$1 port=$2 b path file want got code size ctype
    for b in $BODIES; do
        if [[ $b == 128 ]]; then
            path=/ file=body.json want="200 128 application/json"
        else
            path=/1m file=1m.bin want="200 1048576 application/octet-stream"
        fi
        got=$(curl -s --max-time 10 -o "$LT_TMP/check.out" "${REQ_HEADER[@]}" \
            -w '%{http_code} %{size_download} %{content_type}' "http://127.0.0.1:$port$path") || true
        read -r code size ctype <<<"$got"
        got="${code:-} ${size:-} ${ctype%%;*}"
        if [[ $got != "$want" ]] || ! cmp -s "$LT_TMP/check.out" "$LT_TMP/origin/www/$file"; then
            die "$name: GET $path returned '$got', wanted '$want' and the origin's exact bytes"
        fi
        log "  check $name GET $path: $got, body identical to the origin's"
    done
}

# ------------------------------------------------------------------ measuring

# bench TARGET PORT CPU_PIDS: warm up, then the measured wrk run per body, with the
# proxy's CPU time (all processes and threads of CPU_PIDS) sampled around it.
bench() {
    local target=$1 port=$2 pids=$3 b path conns url raw cb ca ob oa
    local -a cmd
    for b in $BODIES; do
        if [[ $b == 128 ]]; then path=/ conns=$CONNS; else path=/1m conns=$CONNS_1M; fi
        # The unique-query runs compare the cache stage on small responses only.
        [[ ${#WRK_SCRIPT[@]} -gt 0 && $b != 128 ]] && continue
        url=http://127.0.0.1:$port$path
        raw=$OUT/wrk-$target-$b-r${round:-1}.txt
        timeout $((WARMUP + 30)) taskset -c "$LOAD_CPU" \
            wrk -t1 -c"$conns" -d"${WARMUP}s" "${REQ_HEADER[@]}" "${WRK_SCRIPT[@]}" "$url" >"$OUT/warmup-$target-$b.txt" 2>&1 ||
            die "$target: warm-up wrk run failed: $(tail -n 3 "$OUT/warmup-$target-$b.txt")"
        cmd=(taskset -c "$LOAD_CPU" wrk -t1 -c"$conns" -d"${DURATION}s" --latency "${REQ_HEADER[@]}" "${WRK_SCRIPT[@]}" "$url")
        log "+ ${cmd[*]}"
        cb=- ca=-
        # shellcheck disable=SC2086 # $pids is a list of pids
        [[ -n $pids ]] && cb=$("${LT_PY[@]}" cpu $pids)
        ob=$("${LT_PY[@]}" cpu "$ORIGIN_PID")
        timeout $((DURATION + 30)) "${cmd[@]}" >"$raw" 2>&1 ||
            die "$target: wrk failed or timed out; output in $raw"
        # shellcheck disable=SC2086
        [[ -n $pids ]] && ca=$("${LT_PY[@]}" cpu $pids)
        oa=$("${LT_PY[@]}" cpu "$ORIGIN_PID")
        { echo "# ${cmd[*]}"; cat "$raw"; } >"$raw.tmp" && mv "$raw.tmp" "$raw"
        "${LT_PY[@]}" record "$RESULTS" "$target" "$b" "$raw" "${cmd[*]}" \
            "$cb" "$ca" "$ob" "$oa"
        "${LT_PY[@]}" last "$RESULTS" >&2
    done
}

# measure_ringgate TARGET PORT CFG LABEL [BINARY]: start ringgate (or BINARY) with CFG
# pinned to the proxy core, wait for it, check the bodies, measure, stop.
measure_ringgate() {
    local target=$1 port=$2 cfg=$3 label=$4 bin=${5:-$RINGGATE} pid
    start_bg "$target" "$OUT/$target.log" \
        taskset -c "$PROXY_CPU" "$bin" --config "$cfg"
    pid=$LT_LAST_PID
    wait_http "$target" "$pid" "http://127.0.0.1:$port/" "$OUT/$target.log"
    log "  ringgate pid $pid ($label) on 127.0.0.1:$port, core $PROXY_CPU"
    check_bodies "$target" "$port"
    bench "$target" "$port" "$pid"
    stop_pid "$pid"
}

run_target() {
    local target=$1 dir pid port driver cfg conf token
    log ""
    log "== $target"
    case $target in
    direct)
        check_bodies direct "$ORIGIN_PORT"
        bench direct "$ORIGIN_PORT" ""
        ;;
    nginx)
        nginx_prefix proxy nginx-proxy.conf.in "$NGINX_PORT"
        start_nginx proxy "$PROXY_CPU"
        pid=$LT_LAST_PID
        wait_http "nginx proxy" "$pid" "http://127.0.0.1:$NGINX_PORT/" "$LT_TMP/proxy/error.log"
        log "  nginx proxy pid $pid on 127.0.0.1:$NGINX_PORT, core $PROXY_CPU"
        check_bodies nginx "$NGINX_PORT"
        bench nginx "$NGINX_PORT" "$pid"
        stop_pid "$pid"
        ;;
    floor)
        # No HTTP: bytes copied each way on one io_uring with multishot receives into
        # provided buffers (loadtest/floor/src/main.rs). Small bodies only: it sends
        # each buffer as it comes, which keeps order only while one is in flight.
        [[ -n $FLOOR ]] || return 0
        local BODIES=128
        start_bg floor "$OUT/floor.log" \
            taskset -c "$PROXY_CPU" "$FLOOR" "127.0.0.1:$FLOOR_PORT" "127.0.0.1:$ORIGIN_PORT"
        pid=$LT_LAST_PID
        wait_http floor "$pid" "http://127.0.0.1:$FLOOR_PORT/" "$OUT/floor.log"
        log "  floor pid $pid on 127.0.0.1:$FLOOR_PORT, core $PROXY_CPU"
        check_bodies floor "$FLOOR_PORT"
        bench floor "$FLOOR_PORT" "$pid"
        stop_pid "$pid"
        ;;
    ringgate-uring | ringgate-epoll)
        if [[ $target == ringgate-uring ]]; then
            driver=io_uring port=$RG_URING_PORT
            io_uring_note
        else
            driver=epoll port=$RG_EPOLL_PORT
        fi
        cfg=$OUT/$target.toml
        ringgate_config "$cfg" "$port" "$RG_ADMIN_PORT" "$ORIGIN_PORT" "$driver"
        measure_ringgate "$target" "$port" "$cfg" "$driver"
        ;;
    ringgate-base)
        # ringgate-uring's run, with another build: a change's cost against the build
        # before it, measured in the same run.
        port=$RG_BASE_PORT cfg=$OUT/$target.toml
        io_uring_note
        ringgate_config "$cfg" "$port" "$RG_ADMIN_PORT" "$ORIGIN_PORT" io_uring
        measure_ringgate "$target" "$port" "$cfg" "io_uring, $RINGGATE_BASE_BIN" "$RINGGATE_BASE_BIN"
        ;;
    ringgate-auth)
        # The plain io_uring run plus the gateway's work: every request carries a valid
        # HS256 token (verified once, then served from the identity cache) and passes a
        # generous plan's rate limit, with the RateLimit headers on every response.
        driver=io_uring port=$RG_AUTH_PORT
        cfg=$OUT/$target.toml
        ringgate_config "$cfg" "$port" "$RG_ADMIN_PORT" "$ORIGIN_PORT" "$driver"
        sed -i 's/^auth = "none"$/auth = "required"/' "$cfg"
        cat >>"$cfg" <<EOF

[auth.jwt]
issuer = "loadtest"

[[auth.jwt.keys]]
kid = "lt"
algorithm = "HS256"
secret_env = "LT_JWT_SECRET"

[rate_limit]
default_plan = "bench"
key = "user"

[plans.bench]
requests_per_minute = 600000000
burst = 1000000
EOF
        LT_JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
        export LT_JWT_SECRET
        token=$(python3 "$LT_DIR/mint_jwt.py" bench-user loadtest lt)
        REQ_HEADER=(-H "Authorization: Bearer $token")
        measure_ringgate "$target" "$port" "$cfg" "$driver, JWT + rate limit"
        REQ_HEADER=()
        ;;
    nginx-cache)
        # nginx serving the same requests from proxy_cache (hits after the first).
        nginx_prefix nginx-cache nginx-proxy.conf.in "$NGINX_CACHE_PORT"
        conf=$LT_TMP/nginx-cache/nginx.conf
        # shellcheck disable=SC2016 # $upstream_cache_status is nginx's, not the shell's
        sed -i -e "s#^http {#http {\n    proxy_cache_path $LT_TMP/nginx-cache/cache levels=1 keys_zone=rg:10m max_size=256m inactive=60m use_temp_path=off;#" \
            -e 's#^\( *\)proxy_pass http://origin;#\1proxy_pass http://origin;\n\1proxy_cache rg;\n\1proxy_cache_valid 200 10m;\n\1add_header X-Cache $upstream_cache_status;#' "$conf"
        cp "$conf" "$OUT/nginx-cache.nginx.conf"
        start_nginx nginx-cache "$PROXY_CPU"
        pid=$LT_LAST_PID
        wait_http "nginx-cache" "$pid" "http://127.0.0.1:$NGINX_CACHE_PORT/" "$LT_TMP/nginx-cache/error.log"
        log "  nginx proxy_cache pid $pid on 127.0.0.1:$NGINX_CACHE_PORT, core $PROXY_CPU"
        check_bodies nginx-cache "$NGINX_CACHE_PORT"
        bench nginx-cache "$NGINX_CACHE_PORT" "$pid"
        stop_pid "$pid"
        ;;
    ringgate-cache)
        # ringgate (io_uring) with the route cached: hits after the first request.
        driver=io_uring port=$RG_CACHE_PORT
        cfg=$OUT/$target.toml
        ringgate_config "$cfg" "$port" "$RG_ADMIN_PORT" "$ORIGIN_PORT" "$driver"
        sed -i 's/^auth = "none"$/auth = "none"\ncache = { ttl_s = 600 }/' "$cfg"
        measure_ringgate "$target" "$port" "$cfg" "$driver, route cached"
        ;;
    ringgate-q | ringgate-miss)
        # Every request a URI never asked before: plain proxying (ringgate-q), and the
        # same with the route cached (ringgate-miss: lookup, miss, store, and eviction
        # once the 32 MiB budget is full). Their ratio is the cache stage's cost.
        driver=io_uring
        cfg=$OUT/$target.toml
        if [[ $target == ringgate-q ]]; then
            port=$RG_Q_PORT
            ringgate_config "$cfg" "$port" "$RG_ADMIN_PORT" "$ORIGIN_PORT" "$driver"
        else
            port=$RG_MISS_PORT
            ringgate_config "$cfg" "$port" "$RG_ADMIN_PORT" "$ORIGIN_PORT" "$driver"
            sed -i 's/^auth = "none"$/auth = "none"\ncache = { ttl_s = 600 }/' "$cfg"
            printf '\n[cache]\nmax_bytes = 33554432\n' >>"$cfg"
        fi
        WRK_SCRIPT=(-s "$LT_DIR/unique-query.lua")
        measure_ringgate "$target" "$port" "$cfg" "$driver, a new URI per request"
        WRK_SCRIPT=()
        ;;
    esac


}

log ""
log "proxies on core $PROXY_CPU; origin and wrk on core $LOAD_CPU; ${DURATION}s runs after ${WARMUP}s warm-up"
log "connections: $CONNS for the 128-byte body, $CONNS_1M for 1 MiB; output in $OUT"
REPEAT=${REPEAT:-1}
[[ $REPEAT =~ ^[1-9][0-9]*$ ]] || die "REPEAT must be a positive integer"
for ((round = 1; round <= REPEAT; round++)); do
    ((REPEAT > 1)) && log "" && log "=== round $round of $REPEAT"
    for t in $TARGETS; do
        run_target "$t"
    done
done

log ""
rc=0
"${LT_PY[@]}" report "$RESULTS" "$OUT" || rc=$?
log ""
log "raw wrk outputs, configs and summary.{json,tsv} in $OUT"
if ((rc == 3)) && [[ ${STRICT:-0} != 1 ]]; then
    rc=0
fi
exit "$rc"
