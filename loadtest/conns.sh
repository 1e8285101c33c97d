#!/usr/bin/env bash
# Idle keep-alive connections: what each costs a proxy in user-space memory. For
# nginx and ringgate in the same run: open N connections, one GET each (a 128-byte
# body from an nginx origin), hold them idle for IDLE_S seconds, and read the proxy's
# resident set (VmRSS of its worker process) before and after; the per-connection
# cost is the difference over N. The issue-14 target is <= 1 KiB per idle connection.
# Usage: loadtest/conns.sh   (see loadtest/README.md)
set -euo pipefail

LT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$LT_DIR/lib.sh"

usage() {
    cat <<EOF
usage: loadtest/conns.sh

environment (defaults in brackets):
  N             idle keep-alive connections per proxy [8000]
  IDLE_S        seconds they idle before the measurement [3]
  TARGETS       subset of: nginx ringgate-uring ringgate-epoll [all three]
  RINGGATE_BIN  use this binary instead of running cargo build --release
  RINGGATE_LIMITS  extra [server.limits] lines for ringgate, e.g. "buffer_hold_ms = 0"
  PROXY_CPU [0], LOAD_CPU [1]   cores for the proxy and for origin + clients
EOF
}
case ${1:-} in -h | --help) usage; exit 0 ;; "") ;; *) usage >&2; exit 2 ;; esac

N=${N:-8000}
IDLE_S=${IDLE_S:-3}
TARGETS=${TARGETS:-nginx ringgate-uring ringgate-epoll}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
[[ $N =~ ^[0-9]+$ && $IDLE_S =~ ^[0-9]+$ ]] || die "N and IDLE_S must be integers"
if (($(nproc) < 2)); then PROXY_CPU=0 LOAD_CPU=0; fi
# The clients hold N descriptors, the proxy N plus its upstream pool.
ulimit -n "$(ulimit -Hn)"
(($(ulimit -n) > N + 256)) || die "N=$N needs more than $(ulimit -n) descriptors (ulimit -Hn)"

ensure_tools nginx=nginx taskset=util-linux python3=python3 curl=curl ss=iproute2
RINGGATE=""
if [[ " $TARGETS " == *" ringgate-"* ]]; then resolve_ringgate; fi

lt_init
OUT=$LT_DIR/out/conns-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
read -r ORIGIN_PORT NGINX_PORT RG_PORT RG_ADMIN_PORT < <("${LT_PY[@]}" ports 4)

# prefix NAME TEMPLATE PORT: an nginx prefix with the filled-in conf, room for N.
prefix() {
    local dir=$LT_TMP/$1
    mkdir -p "$dir/tmp" "$dir/www"
    sed -e "s#@DIR@#$dir#g" -e "s#@PORT@#$3#g" -e "s#@ORIGIN@#$ORIGIN_PORT#g" \
        -e "s#@TEMPFILE@#0#g" -e "s#worker_connections [0-9]*;#worker_connections $((N + 1024));#" \
        "$LT_DIR/$2" >"$dir/nginx.conf"
}
prefix origin nginx-origin.conf.in "$ORIGIN_PORT"
"${LT_PY[@]}" body128 "$LT_TMP/origin/www/body.json"
chmod -R a+rX "$LT_TMP/origin"
start_bg nginx-origin "$OUT/origin.log" taskset -c "$LOAD_CPU" \
    nginx -p "$LT_TMP/origin" -c "$LT_TMP/origin/nginx.conf" -e "$LT_TMP/origin/error.log" -g 'daemon off;'
wait_http origin "$LT_LAST_PID" "http://127.0.0.1:$ORIGIN_PORT/" "$LT_TMP/origin/error.log"

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
# The kernel's slab memory (sockets, files, epoll/io_uring poll entries), machine-wide:
# its growth over the connections counts both ends (the clients are on this machine).
slab_kib() { awk '/^Slab:/ {print $2}' /proc/meminfo; }

# measure NAME PORT PID: the idle-connection cost of process PID, which serves PORT.
measure() {
    local name=$1 port=$2 pid=$3 before after client i open slab_before slab_after
    curl -s -o /dev/null "http://127.0.0.1:$port/" # warm: pools, buffers, allocator
    before=$(rss_kib "$pid")
    slab_before=$(slab_kib)
    # The clients hold their connections until they are stopped.
    start_bg "clients-$name" "$OUT/$name.clients.log" \
        taskset -c "$LOAD_CPU" python3 "$LT_DIR/idle_clients.py" 127.0.0.1 "$port" "$N"
    client=$LT_LAST_PID
    for ((i = 0; i < 1200; i++)); do
        grep -q '^ready' "$OUT/$name.clients.log" 2>/dev/null && break
        kill -0 "$client" 2>/dev/null || die "$name: clients failed: $(tail -n 3 "$OUT/$name.clients.log")"
        sleep 0.1
    done
    grep -q '^ready' "$OUT/$name.clients.log" || die "$name: the $N connections did not all get a response"
    sleep "$IDLE_S" # the measured condition: every connection idle this long
    after=$(rss_kib "$pid")
    slab_after=$(slab_kib)
    # Count them: a measurement of connections that were closed would prove nothing.
    open=$(ss -Htn state established "( dport = :$port )" | wc -l)
    ((open >= N)) || die "$name: only $open of the $N connections are still open"
    stop_pid "$client"
    awk -v n="$N" -v b="$before" -v a="$after" -v t="$name" -v sb="$slab_before" -v sa="$slab_after" \
        'BEGIN {printf "%-16s %6d idle conns  RSS %8.1f -> %8.1f MiB  %7.2f KiB per connection  (kernel slab, both ends: %.2f KiB)\n", t, n, b/1024, a/1024, (a-b)/n, (sa-sb)/n}' |
        tee -a "$OUT/summary.txt"
}

for t in $TARGETS; do
    case $t in
    nginx)
        prefix proxy nginx-proxy.conf.in "$NGINX_PORT"
        start_bg nginx-proxy "$OUT/nginx.log" taskset -c "$PROXY_CPU" \
            nginx -p "$LT_TMP/proxy" -c "$LT_TMP/proxy/nginx.conf" -e "$LT_TMP/proxy/error.log" -g 'daemon off;'
        master=$LT_LAST_PID
        wait_http "nginx proxy" "$master" "http://127.0.0.1:$NGINX_PORT/" "$LT_TMP/proxy/error.log"
        worker=$(pgrep -P "$master" | head -n 1)
        measure nginx "$NGINX_PORT" "$worker"
        stop_pid "$master"
        ;;
    ringgate-uring | ringgate-epoll)
        driver=${t#ringgate-}
        if [[ $driver == uring ]]; then
            driver=io_uring
            io_uring_note
        fi
        ringgate_config "$OUT/$t.toml" "$RG_PORT" "$RG_ADMIN_PORT" "$ORIGIN_PORT" "$driver" \
            "max_connections = $((N + 1024))${RINGGATE_LIMITS:+$'\n\n[server.limits]\n'$RINGGATE_LIMITS}"
        start_bg "$t" "$OUT/$t.log" taskset -c "$PROXY_CPU" "$RINGGATE" --config "$OUT/$t.toml"
        pid=$LT_LAST_PID
        wait_http "$t" "$pid" "http://127.0.0.1:$RG_PORT/" "$OUT/$t.log"
        measure "$t" "$RG_PORT" "$pid"
        stop_pid "$pid"
        ;;
    *) die "unknown target $t" ;;
    esac
done
if [[ -n $RINGGATE ]]; then
    "$RINGGATE" check --config "$OUT/$(echo "$TARGETS" | grep -o 'ringgate-[a-z]*' | head -n 1).toml" |
        sed -n 's/^memory *//p' | tee -a "$OUT/summary.txt"
fi
log "summary in $OUT/summary.txt"
