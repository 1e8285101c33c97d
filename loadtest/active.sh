#!/usr/bin/env bash
# Many busy connections: wrk with C connections (default 4,000) through nginx and
# ringgate (io_uring, epoll) in the same run, one worker each, pinned to core 0, in
# front of an nginx origin that shares core 1 with wrk. Per target: req/s, p50, p99,
# errors, the proxy's CPU per request and its resident set (VmRSS) near the end of the
# run, with ratios to nginx. Issue 14's "active run with many connections".
# Usage: loadtest/active.sh   (see loadtest/README.md)
set -euo pipefail

LT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$LT_DIR/lib.sh"

usage() {
    cat <<EOF
usage: loadtest/active.sh

environment (defaults in brackets):
  C             wrk connections, all busy [4000]
  T             wrk threads (they share LOAD_CPU with the origin) [1]
  DURATION      seconds of each measured wrk run [10]
  WARMUP        seconds of the unmeasured wrk run (same C) before it [2]
  WRK_TIMEOUT   wrk --timeout: a slower response counts as a timeout error [2s]
  REPEAT        rounds of all TARGETS, interleaved; the table gives medians [1]
  TARGETS       subset of: nginx ringgate-uring ringgate-epoll ringgate-base
                [nginx ringgate-uring ringgate-epoll]
                (ringgate-base is ringgate-uring run with RINGGATE_BASE_BIN)
  UPSTREAM_KEEPALIVE  idle upstream connections kept per proxy worker: nginx's
                keepalive, ringgate's max_idle_per_worker [unset: as run.sh, 64 / 128]
  RINGGATE_LOG=1  ringgate writes its access log (out/.../TARGET-rN.access.log) and
                logs each failed request's reason (level debug); the script counts
                statuses and reasons. Costs CPU: for finding what errors are, not for
                the numbers
  RINGGATE_SERVER  extra [server] lines for ringgate, e.g. "uring_entries = 8192"
  RINGGATE_BIN  use this binary instead of running cargo build --release
  RINGGATE_BASE_BIN  the binary of the ringgate-base target
  PROXY_CPU [0], LOAD_CPU [1]   cores for the proxy and for origin + wrk
EOF
}
case ${1:-} in -h | --help) usage; exit 0 ;; "") ;; *) usage >&2; exit 2 ;; esac

C=${C:-4000}
T=${T:-1}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
WRK_TIMEOUT=${WRK_TIMEOUT:-2s}
REPEAT=${REPEAT:-1}
UPSTREAM_KEEPALIVE=${UPSTREAM_KEEPALIVE:-}
RINGGATE_LOG=${RINGGATE_LOG:-0}
RINGGATE_SERVER=${RINGGATE_SERVER:-}
TARGETS=${TARGETS:-nginx ringgate-uring ringgate-epoll}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
for n in "$C" "$T" "$DURATION" "$WARMUP" "$REPEAT" "${UPSTREAM_KEEPALIVE:-1}"; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || die "C, T, DURATION, WARMUP, REPEAT and UPSTREAM_KEEPALIVE must be positive integers"
done
((T <= C)) || die "T=$T threads for C=$C connections: wrk needs at least one per thread"
seen=""
for t in $TARGETS; do
    [[ " $seen " != *" $t "* ]] || die "target '$t' is twice in TARGETS (use REPEAT)"
    seen+=" $t"
    case $t in nginx | ringgate-uring | ringgate-epoll | ringgate-base) ;;
    *) die "unknown target '$t' in TARGETS (nginx ringgate-uring ringgate-epoll ringgate-base)" ;;
    esac
done
if (($(nproc) < 2)) && [[ $PROXY_CPU != "$LOAD_CPU" ]]; then
    log "warning: $(nproc) core(s): proxy and load share core 0; ratios still compare, absolute numbers do not"
    PROXY_CPU=0 LOAD_CPU=0
fi

# Descriptors, per process: wrk holds C; a proxy holds C client connections and, with
# every one of them busy, up to C upstream ones (neither nginx nor ringgate caps the
# busy upstream connections, only the idle ones), and the origin up to C.
ulimit -n "$(ulimit -Hn)"
(($(ulimit -n) >= 2 * C + 256)) ||
    die "C=$C needs $((2 * C + 256)) descriptors for the proxy (C clients + up to C upstream), ulimit -Hn is $(ulimit -Hn)"
somaxconn=$(cat /proc/sys/net/core/somaxconn 2>/dev/null || echo 4096)
((somaxconn >= 4096)) ||
    log "warning: net.core.somaxconn=$somaxconn caps the proxies' listen backlog of 4096; C=$C connecting at once may overflow it"
# With C requests in flight and a small idle pool, a proxy closes and reopens
# thousands of upstream connections a second: the closed ones wait in TIME_WAIT, and
# only tcp_tw_reuse (2, the default, = on loopback) lets connect() take their ports.
tw_reuse=$(cat /proc/sys/net/ipv4/tcp_tw_reuse 2>/dev/null || echo 2)
[[ $tw_reuse != 0 || -n $UPSTREAM_KEEPALIVE ]] ||
    log "warning: net.ipv4.tcp_tw_reuse=0: upstream connections closed by the proxies may use up the ephemeral ports (set UPSTREAM_KEEPALIVE=$C to keep them all)"

ensure_tools wrk=wrk nginx=nginx taskset=util-linux python3=python3 curl=curl ss=iproute2
RINGGATE=""
if [[ " $TARGETS " == *" ringgate-"* ]]; then resolve_ringgate; fi
if [[ " $TARGETS " == *" ringgate-base "* ]]; then
    [[ -x ${RINGGATE_BASE_BIN:-} ]] || die "ringgate-base needs RINGGATE_BASE_BIN, an executable ringgate build"
fi

lt_init
ulimit -n "$(ulimit -Hn)" # lt_init may have set it lower
REQ_HEADER=()
OUT=$LT_DIR/out/active-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"
read -r ORIGIN_PORT NGINX_PORT RG_URING_PORT RG_EPOLL_PORT RG_BASE_PORT RG_ADMIN_PORT < <("${LT_PY[@]}" ports 6)

# prefix NAME TEMPLATE PORT: an nginx prefix with the filled-in conf. A worker's
# worker_connections counts client and upstream connections alike: room for C of each.
# worker_rlimit_nofile is the hard limit: above it setrlimit fails without
# CAP_SYS_RESOURCE (nginx logs an alert and keeps the limit it inherited).
prefix() {
    local dir=$LT_TMP/$1
    mkdir -p "$dir/tmp" "$dir/www"
    sed -e "s#@DIR@#$dir#g" -e "s#@PORT@#$3#g" -e "s#@ORIGIN@#$ORIGIN_PORT#g" \
        -e "s#@TEMPFILE@#0#g" -e "s#worker_connections [0-9]*;#worker_connections $((2 * C + 1024));#" \
        -e "s#worker_rlimit_nofile [0-9]*;#worker_rlimit_nofile $(ulimit -Hn);#" \
        "$LT_DIR/$2" >"$dir/nginx.conf"
    cp "$dir/nginx.conf" "$OUT/$1.nginx.conf"
}
prefix origin nginx-origin.conf.in "$ORIGIN_PORT"
"${LT_PY[@]}" body128 "$LT_TMP/origin/www/body.json"
chmod -R a+rX "$LT_TMP/origin"
start_bg nginx-origin "$OUT/origin.log" taskset -c "$LOAD_CPU" \
    nginx -p "$LT_TMP/origin" -c "$LT_TMP/origin/nginx.conf" -e "$LT_TMP/origin/error.log" -g 'daemon off;'
ORIGIN_PID=$LT_LAST_PID
wait_http origin "$ORIGIN_PID" "http://127.0.0.1:$ORIGIN_PORT/" "$LT_TMP/origin/error.log"

status_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

# tcp_counters: the kernel's "ListenOverflows ListenDrops ActiveOpens", all sockets
# of the host: connections dropped because an accept queue was full, and connect()s.
tcp_counters() {
    awk '$1 == "TcpExt:" || $1 == "Tcp:" {
             if (!seen[$1]++) { for (i = 2; i <= NF; i++) col[$1 $i] = i }
             else for (k in col) if (index(k, $1) == 1) v[substr(k, length($1) + 1)] = $col[k] }
         END { print v["ListenOverflows"], v["ListenDrops"], v["ActiveOpens"] }' /proc/net/netstat /proc/net/snmp
}

# check_body NAME PORT: GET / through the proxy is 200 with the origin's 128 bytes.
check_body() {
    local got
    got=$(curl -s --max-time 5 -o "$LT_TMP/check.out" -w '%{http_code} %{size_download}' \
        "http://127.0.0.1:$2/") || true
    if [[ $got != "200 128" ]] || ! cmp -s "$LT_TMP/check.out" "$LT_TMP/origin/www/body.json"; then
        die "$1: GET / returned '$got', wanted '200 128' and the origin's bytes"
    fi
}

# bench TARGET PORT CPU_PID RSS_PID: warm-up wrk run, then the measured one with the
# proxy's CPU time (CPU_PID and its descendants) read around it, and RSS_PID's VmRSS
# and the proxy's established client and upstream connections read at 90 % of it.
bench() {
    local target=$1 port=$2 cpu_pid=$3 rss_pid=$4 raw cb ca ob oa lb la wrk_pid
    local rss hwm open up lb1 lb2 lb3 la1 la2 la3 aq aq_pid aq_max aq_s url=http://127.0.0.1:$2/
    local -a cmd
    check_body "$target" "$port"
    timeout $((WARMUP + 60)) taskset -c "$LOAD_CPU" \
        wrk -t"$T" -c"$C" -d"${WARMUP}s" --timeout "$WRK_TIMEOUT" "$url" >"$OUT/warmup-$target-r$round.txt" 2>&1 ||
        die "$target: warm-up wrk run failed: $(tail -n 3 "$OUT/warmup-$target-r$round.txt")"
    raw=$OUT/wrk-$target-r$round.txt
    aq=$OUT/acceptq-$target-r$round.txt
    cmd=(taskset -c "$LOAD_CPU" wrk -t"$T" -c"$C" -d"${DURATION}s" --timeout "$WRK_TIMEOUT" --latency "$url")
    log "+ ${cmd[*]}"
    cb=$("${LT_PY[@]}" cpu "$cpu_pid")
    ob=$("${LT_PY[@]}" cpu "$ORIGIN_PID")
    lb=$(tcp_counters)
    start_bg "wrk-$target" "$raw" timeout $((DURATION + 60)) "${cmd[@]}"
    wrk_pid=$LT_LAST_PID
    # The proxy's accept queue (connections the kernel completed that the proxy has
    # not accepted yet; wrk's first request on them waits), every 0.2 s.
    # shellcheck disable=SC2016 # expanded by the inner bash
    start_bg "acceptq-$target" "$aq" taskset -c "$LOAD_CPU" bash -c \
        'while :; do echo "$(date +%s.%N) $(ss -Hltn "( sport = :$0 )" | awk "{print \$2}")"; sleep 0.2; done' "$port"
    aq_pid=$LT_LAST_PID
    sleep "$(awk -v d="$DURATION" 'BEGIN {print d * 0.9}')"
    kill -0 "$wrk_pid" 2>/dev/null || log "  warning: wrk ended before the RSS sample"
    rss=$(status_kib "$rss_pid" VmRSS)
    hwm=$(status_kib "$rss_pid" VmHWM)
    open=$(ss -Htn state established "( sport = :$port )" | wc -l)
    up=$(ss -Htn state established "( dport = :$ORIGIN_PORT )" | wc -l)
    unset "LT_PIDS[$wrk_pid]"
    wait "$wrk_pid" || die "$target: wrk failed or timed out; output in $raw"
    stop_pid "$aq_pid"
    # max queue, and seconds from the first sample to the last with a queue
    read -r aq_max aq_s < <(awk 'NF == 2 { if (!t0) t0 = $1; if ($2 > m) m = $2; if ($2 > 0) last = $1 - t0 }
                                 END { printf "%d %.1f\n", m, last }' "$aq")
    ca=$("${LT_PY[@]}" cpu "$cpu_pid")
    oa=$("${LT_PY[@]}" cpu "$ORIGIN_PID")
    la=$(tcp_counters)
    { echo "# ${cmd[*]}"; cat "$raw"; } >"$raw.tmp" && mv "$raw.tmp" "$raw"
    read -r lb1 lb2 lb3 <<<"$lb"
    read -r la1 la2 la3 <<<"$la"
    "${LT_PY[@]}" record "$RESULTS" "$target" 128 "$raw" "${cmd[*]}" "$cb" "$ca" "$ob" "$oa" \
        "conns=$C" "threads=$T" "round=$round" "rss_kib=$rss" "hwm_kib=$hwm" "open_conns=$open" \
        "listen_overflows=$((la1 - lb1))" "listen_drops=$((la2 - lb2))" \
        "upstream_open=$up" "connects=$((la3 - lb3))" "acceptq_max=$aq_max" "acceptq_s=$aq_s"
    "${LT_PY[@]}" last "$RESULTS" >&2
    if ((aq_max > 0)); then
        log "  accept queue: up to $aq_max connections waiting; not empty until ${aq_s} s after the start"
    else
        log "  accept queue: empty at every sample"
    fi
    log "  at 90 % of the run: RSS $((rss / 1024)) MiB (peak $((hwm / 1024)) MiB), $open client and $up upstream connections open; $((la3 - lb3)) connect()s on the host during the run"
}

# nginx_errors NAME ERROR_LOG: show what nginx logged at error level or worse (for
# example "worker_connections are not enough", "Too many open files"), then clear it.
nginx_errors() {
    if grep -q '\[\(error\|crit\|alert\|emerg\)\]' "$2" 2>/dev/null; then
        log "  warning: $1 logged errors (copied to $OUT):"
        grep '\[\(error\|crit\|alert\|emerg\)\]' "$2" | tail -n 5 | sed 's/^/    | /' >&2
        cat "$2" >>"$OUT/$(basename "$(dirname "$2")")-error.log"
        : >"$2"
    fi
    return 0
}

run_target() {
    local target=$1 master worker pid port driver bin=$RINGGATE
    log ""
    log "== $target"
    case $target in
    nginx)
        prefix proxy nginx-proxy.conf.in "$NGINX_PORT"
        if [[ -n $UPSTREAM_KEEPALIVE ]]; then
            sed -i "s#^\( *\)keepalive [0-9]*;#\1keepalive $UPSTREAM_KEEPALIVE;#" "$LT_TMP/proxy/nginx.conf"
            cp "$LT_TMP/proxy/nginx.conf" "$OUT/proxy.nginx.conf"
        fi
        start_bg nginx-proxy "$OUT/nginx.log" taskset -c "$PROXY_CPU" \
            nginx -p "$LT_TMP/proxy" -c "$LT_TMP/proxy/nginx.conf" -e "$LT_TMP/proxy/error.log" -g 'daemon off;'
        master=$LT_LAST_PID
        wait_http "nginx proxy" "$master" "http://127.0.0.1:$NGINX_PORT/" "$LT_TMP/proxy/error.log"
        worker=$(pgrep -P "$master" | head -n 1)
        # CPU: master and worker; RSS: the worker's (the one holding the connections).
        bench nginx "$NGINX_PORT" "$master" "$worker"
        stop_pid "$master"
        nginx_errors "nginx proxy" "$LT_TMP/proxy/error.log"
        ;;
    ringgate-uring | ringgate-epoll | ringgate-base)
        case $target in
        ringgate-uring) driver=io_uring port=$RG_URING_PORT ;;
        ringgate-epoll) driver=epoll port=$RG_EPOLL_PORT ;;
        ringgate-base) driver=io_uring port=$RG_BASE_PORT bin=$RINGGATE_BASE_BIN ;;
        esac
        [[ $driver == io_uring ]] && io_uring_note
        ringgate_config "$OUT/$target.toml" "$port" "$RG_ADMIN_PORT" "$ORIGIN_PORT" "$driver" \
            "max_connections = $((C + 1024))${RINGGATE_SERVER:+$'\n'$RINGGATE_SERVER}"
        if [[ -n $UPSTREAM_KEEPALIVE ]]; then
            sed -i "s#^max_idle_per_worker = [0-9]*#max_idle_per_worker = $UPSTREAM_KEEPALIVE#" "$OUT/$target.toml"
        fi
        if [[ $RINGGATE_LOG == 1 ]]; then
            sed -i -e "s#^access_log = \"off\"#access_log = \"$OUT/$target-r$round.access.log\"#" \
                -e 's#^level = "warn"#level = "debug"#' "$OUT/$target.toml"
        fi
        start_bg "$target" "$OUT/$target-r$round.log" taskset -c "$PROXY_CPU" "$bin" --config "$OUT/$target.toml"
        pid=$LT_LAST_PID
        wait_http "$target" "$pid" "http://127.0.0.1:$port/" "$OUT/$target-r$round.log"
        bench "$target" "$port" "$pid" "$pid"
        stop_pid "$pid"
        if [[ $RINGGATE_LOG == 1 ]]; then
            log "  $target statuses (access log): $(grep -o '"status":[0-9]*' "$OUT/$target-r$round.access.log" |
                sort | uniq -c | awk '{sub(/"status":/, "", $2); printf "%s%s x%s", sep, $2, $1; sep = ", "}')"
            grep 'failed: ' "$OUT/$target-r$round.log" | sed 's/.*failed: //' | sort | uniq -c | sort -rn |
                head -n 5 | sed 's/^/    | /' >&2 || true
        fi
        # Anything but the lines of every start and stop (accept failures, for one).
        if grep -v -e ', listening on ' -e 'not yet active' -e ': draining in-flight' \
            -e '^ringgate: stopped$' -e 'failed: ' "$OUT/$target-r$round.log" >"$LT_TMP/rg.log"; then
            log "  warning: $target logged (in $OUT/$target-r$round.log):"
            tail_log "$LT_TMP/rg.log"
        fi
        ;;
    esac
}

{
    echo "loadtest/active.sh $(date '+%Y-%m-%d %H:%M:%S'): C=$C T=$T DURATION=${DURATION}s WARMUP=${WARMUP}s REPEAT=$REPEAT"
    echo "proxy on core $PROXY_CPU (one worker); origin (nginx) and wrk on core $LOAD_CPU; 128-byte body"
    echo "idle upstream connections kept: ${UPSTREAM_KEEPALIVE:-64 (nginx keepalive), 128 (ringgate max_idle_per_worker)}"
    if [[ -n $RINGGATE ]]; then echo "ringgate: $RINGGATE"; fi
    if [[ -n $RINGGATE_SERVER ]]; then echo "ringgate [server] extra: $RINGGATE_SERVER"; fi
    if [[ " $TARGETS " == *" ringgate-base "* ]]; then echo "ringgate-base: $RINGGATE_BASE_BIN"; fi
    echo
} | tee "$OUT/summary.txt" >&2
for ((round = 1; round <= REPEAT; round++)); do
    ((REPEAT > 1)) && log "" && log "=== round $round of $REPEAT"
    for t in $TARGETS; do
        run_target "$t"
        nginx_errors "origin" "$LT_TMP/origin/error.log"
    done
done
log ""
"${LT_PY[@]}" activereport "$RESULTS" "$OUT"
log ""
log "summary in $OUT/summary.txt; raw wrk outputs, configs and summary.json beside it"
