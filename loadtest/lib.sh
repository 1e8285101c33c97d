# shellcheck shell=bash
# Shared by the loadtest scripts: process tracking and cleanup, nginx prefixes,
# readiness polling, tool installation, building ringgate and writing its config.
# Sourced, never run; expects `set -euo pipefail` and LT_DIR (this directory).

REPO_ROOT=$(cd "$LT_DIR/.." && pwd)
# shellcheck disable=SC2034 # used by the scripts that source this file
LT_PY=(python3 "$LT_DIR/lt.py")

log() { printf '%s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# ----------------------------------------------------------------- processes

# pid -> name of every process we started and have not stopped yet.
declare -A LT_PIDS=()
LT_TMP=""
LT_RM=() # more files to remove on exit

# start_bg NAME LOGFILE CMD...: start CMD in the background, remember its pid in
# LT_LAST_PID (not a command substitution: the process must be our child).
start_bg() {
    local name=$1 logfile=$2
    shift 2
    "$@" >"$logfile" 2>&1 &
    LT_LAST_PID=$!
    LT_PIDS[$LT_LAST_PID]=$name
}

# stop_pid PID: SIGTERM, up to 5 s for it to exit, then SIGKILL.
stop_pid() {
    local pid=$1 i
    [[ -n ${LT_PIDS[$pid]:-} ]] || return 0
    unset "LT_PIDS[$pid]"
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "  $pid did not exit within 5 s of SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

lt_cleanup() {
    local pid
    trap - EXIT INT TERM
    for pid in "${!LT_PIDS[@]}"; do
        stop_pid "$pid"
    done
    ((${#LT_RM[@]} == 0)) || rm -f -- "${LT_RM[@]}"
    if [[ -n $LT_TMP && -d $LT_TMP ]]; then
        rm -rf -- "$LT_TMP"
    fi
}

# Install the traps and make the temp dir (world-readable: nginx workers run as
# `nobody` when we are root and must read the files under it).
lt_init() {
    trap lt_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    LT_TMP=$(mktemp -d /tmp/ringgate-loadtest.XXXXXX)
    chmod 755 "$LT_TMP"
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
}

# tail_log FILE: the end of a server's log, indented, for error messages.
tail_log() {
    [[ -s $1 ]] && sed 's/^/    | /' <(tail -n 20 "$1") >&2
    return 0
}

# wait_http NAME PID URL LOGFILE: poll URL (any 2xx) for up to 10 s; fail early and
# show the log if the process exits first.
wait_http() {
    local name=$1 pid=$2 url=$3 logfile=$4 i
    for ((i = 0; i < 200; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "error: $name (pid $pid) exited before it was ready; its log ($logfile):"
            tail_log "$logfile"
            exit 1
        fi
        if curl -sf -o /dev/null --max-time 1 "${REQ_HEADER[@]}" "$url"; then
            return 0
        fi
        sleep 0.05
    done
    log "error: $name (pid $pid) did not answer $url within 10 s; its log:"
    tail_log "$logfile"
    exit 1
}

# ----------------------------------------------------------------- tools

# ensure_tools CMD=PACKAGE...: apt-get install the packages whose command is missing.
ensure_tools() {
    local spec cmd pkgs=()
    for spec in "$@"; do
        cmd=${spec%%=*}
        command -v "$cmd" >/dev/null 2>&1 || pkgs+=("${spec#*=}")
    done
    ((${#pkgs[@]})) || return 0
    command -v apt-get >/dev/null || die "missing ${pkgs[*]} and no apt-get to install them"
    log "installing ${pkgs[*]}"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y "${pkgs[@]}" >&2; then
        apt-get update >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y "${pkgs[@]}" >&2
    fi
}

# ----------------------------------------------------------------- nginx
# (expects LT_TMP, OUT and ORIGIN_PORT)

# nginx_prefix NAME TEMPLATE PORT: make DIR=$LT_TMP/NAME with the filled-in conf.
nginx_prefix() {
    local name=$1 tmpl=$2 port=$3 dir=$LT_TMP/$1 tempfile=0
    [[ ${NGINX_TEMP_FILE:-0} == 1 ]] && tempfile=1024m
    mkdir -p "$dir/tmp" "$dir/www"
    sed -e "s#@DIR@#$dir#g" -e "s#@PORT@#$port#g" -e "s#@ORIGIN@#$ORIGIN_PORT#g" \
        -e "s#@TEMPFILE@#$tempfile#g" "$LT_DIR/$tmpl" >"$dir/nginx.conf"
    cp "$dir/nginx.conf" "$OUT/$name.nginx.conf"
}

# start_nginx NAME CPU: run the prefix made by nginx_prefix, in the foreground (our
# child), pinned with taskset; sets NGINX_PID_<NAME> via LT_LAST_PID.
start_nginx() {
    local name=$1 cpu=$2 dir=$LT_TMP/$1
    nginx -t -q -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" ||
        die "nginx rejected $dir/nginx.conf"
    start_bg "nginx-$name" "$dir/stderr.log" \
        taskset -c "$cpu" nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" -g 'daemon off;'
}

# ----------------------------------------------------------------- ringgate

# resolve_ringgate: set RINGGATE to the binary: $RINGGATE_BIN if set (no build),
# else `cargo build --release` in the repo root.
resolve_ringgate() {
    if [[ -n ${RINGGATE_BIN:-} ]]; then
        RINGGATE=$RINGGATE_BIN
        [[ -x $RINGGATE ]] || die "RINGGATE_BIN=$RINGGATE is not an executable file"
        return 0
    fi
    command -v cargo >/dev/null || die "cargo not found: install Rust or set RINGGATE_BIN"
    log "building: (cd $REPO_ROOT && cargo build --release)"
    if ! (cd "$REPO_ROOT" && cargo build --release >&2); then
        die "cargo build --release failed, so the ringgate targets cannot run. Set RINGGATE_BIN to a built binary, or run only TARGETS='direct nginx'."
    fi
    RINGGATE=$REPO_ROOT/target/release/ringgate
    [[ -x $RINGGATE ]] || die "the build succeeded but $RINGGATE is missing"
}

# resolve_floor: build loadtest/floor (a crate of its own) and set FLOOR to its binary.
resolve_floor() {
    command -v cargo >/dev/null || die "cargo not found: install Rust, or leave floor out of TARGETS"
    log "building: cargo build --release --manifest-path $LT_DIR/floor/Cargo.toml"
    if ! cargo build --release --manifest-path "$LT_DIR/floor/Cargo.toml" >&2; then
        die "building loadtest/floor failed; leave floor out of TARGETS to run without it"
    fi
    FLOOR=$LT_DIR/floor/target/release/floor
    [[ -x $FLOOR ]] || die "the build succeeded but $FLOOR is missing"
}

# ringgate_config FILE PORT ADMIN_PORT ORIGIN_PORT DRIVER [EXTRA_SERVER_TOML]
ringgate_config() {
    local file=$1 port=$2 admin=$3 origin=$4 driver=$5 extra=${6:-}
    cat >"$file" <<EOF
# Written by loadtest ($(basename "$0")): one worker, pinned from outside by taskset.
[server]
listen = ["127.0.0.1:$port"]
workers = 1
pin_workers = false        # taskset does the pinning
io_driver = "$driver"
$extra

[log]
access_log = "off"
level = "warn"

[admin]
listen = "127.0.0.1:$admin"

[[upstreams]]
name = "origin"
servers = ["127.0.0.1:$origin"]
max_idle_per_worker = 128

[[routes]]
id = "all"
path_prefix = "/"
upstream = "origin"
auth = "none"
EOF
}

# lt_rounds REPEAT CONNS "$@": the command line and settings the round-based scripts
# (iot, fanout, mirror, metrics) share: --quick (DURATION=3 WARMUP=1 REPEAT=1),
# -h/--help (the script's `usage`); DURATION [6], WARMUP [1], REPEAT and CONNS (their
# defaults given), PROXY_CPU [0] and LOAD_CPU [1] from the environment.
lt_rounds() {
    local repeat=$1 conns=$2 arg
    shift 2
    for arg in "$@"; do
        case $arg in
        --quick) DURATION=3 WARMUP=1 REPEAT=1 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
        esac
    done
    DURATION=${DURATION:-6}
    WARMUP=${WARMUP:-1}
    REPEAT=${REPEAT:-$repeat}
    CONNS=${CONNS:-$conns}
    PROXY_CPU=${PROXY_CPU:-0}
    LOAD_CPU=${LOAD_CPU:-1}
}

# lt_results NAME: a fresh run directory out/NAME-<time> in OUT (linked as out/latest)
# and an empty RESULTS file in it.
lt_results() {
    OUT=$LT_DIR/out/$1-$(date +%Y%m%d-%H%M%S)
    mkdir -p "$OUT"
    ln -sfn "$(basename "$OUT")" "$LT_DIR/out/latest"
    RESULTS=$OUT/results.jsonl
    : >"$RESULTS"
}

# start_origin PORT CPU: the nginx origin (nginx-origin.conf.in, with its 128-byte
# body) on PORT, pinned to CPU and answering; sets ORIGIN_PID.
start_origin() {
    nginx_prefix origin nginx-origin.conf.in "$1"
    "${LT_PY[@]}" body128 "$LT_TMP/origin/www/body.json"
    chmod -R a+rX "$LT_TMP/origin"
    start_nginx origin "$2"
    ORIGIN_PID=$LT_LAST_PID
    wait_http "origin nginx" "$ORIGIN_PID" "http://127.0.0.1:$1/" "$LT_TMP/origin/error.log"
}

# wrk_measured TARGET ROUND URL PID [WRK_ARGS...]: the unmeasured warm-up wrk run (1
# thread, CONNS connections, WARMUP s), then the measured one (DURATION s, pinned to
# LOAD_CPU) with PID's and the origin's CPU time sampled around it. Sets WRK_RAW (wrk's
# output) and WRK_CPU (PID before, after, origin before, after: `lt.py record`'s
# order). Calls the function named in WRK_BEFORE, if any, with TARGET between the two
# runs. Dies if wrk fails or any answer was not a 2xx.
wrk_measured() {
    local target=$1 round=$2 url=$3 pid=$4 cb ob
    shift 4
    WRK_RAW=$OUT/wrk-$target-r$round.txt
    taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${WARMUP}s" "$@" "$url" >/dev/null 2>&1 ||
        die "$target: warm-up wrk run failed"
    if [[ -n ${WRK_BEFORE:-} ]]; then "$WRK_BEFORE" "$target"; fi
    cb=$("${LT_PY[@]}" cpu "$pid")
    ob=$("${LT_PY[@]}" cpu "$ORIGIN_PID")
    timeout $((DURATION + 30)) taskset -c "$LOAD_CPU" \
        wrk -t1 -c"$CONNS" -d"${DURATION}s" "$@" --latency "$url" >"$WRK_RAW" 2>&1 ||
        die "$target: wrk failed; output in $WRK_RAW"
    # shellcheck disable=SC2034 # read by the scripts that source this file
    WRK_CPU=("$cb" "$("${LT_PY[@]}" cpu "$pid")" "$ob" "$("${LT_PY[@]}" cpu "$ORIGIN_PID")")
    if grep -q "Non-2xx" "$WRK_RAW"; then die "$target: answers other than 2xx, see $WRK_RAW"; fi
}

# io_uring_note: say why an io_uring run may fail before it does.
io_uring_note() {
    local v
    v=$(cat /proc/sys/kernel/io_uring_disabled 2>/dev/null || echo 0)
    if [[ $v != 0 ]]; then
        log "note: /proc/sys/kernel/io_uring_disabled=$v: io_uring is restricted on this kernel"
    fi
}
