#!/usr/bin/env bash
# Memory under large bodies: ringgate's resident set (VmRSS, sampled every 100 ms)
# while 1 GiB goes down through it and 1 GiB goes up through it (once with
# Content-Length, once chunked), against loadtest/sink_origin.py. A streaming proxy
# stays flat; one that collects bodies grows by about the body size.
# Usage: loadtest/mem.sh [--quick]   (see loadtest/README.md)
set -euo pipefail

LT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$LT_DIR/lib.sh"

usage() {
    cat <<EOF
usage: loadtest/mem.sh [--quick]

  --quick       SIZE=134217728 (128 MiB) instead of 1 GiB

environment (defaults in brackets):
  SIZE          bytes per transfer [1073741824]
  DRIVER        ringgate io_driver: io_uring | epoll | auto [io_uring]
  RINGGATE_BIN  use this binary instead of running cargo build --release
  MEM_VIA=direct  no proxy: measure the origin itself (checks this script)
  PROXY_CPU [0], LOAD_CPU [1]   cores for ringgate and for origin + curl
EOF
}

for arg in "$@"; do
    case $arg in
    --quick) SIZE=134217728 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
done

SIZE=${SIZE:-1073741824}
DRIVER=${DRIVER:-io_uring}
MEM_VIA=${MEM_VIA:-ringgate}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
[[ $SIZE =~ ^[0-9]+$ ]] || die "SIZE must be a number of bytes"
case $MEM_VIA in ringgate | direct) ;; *) die "MEM_VIA must be ringgate or direct" ;; esac
if (($(nproc) < 2)); then PROXY_CPU=0 LOAD_CPU=0; fi

ensure_tools curl=curl taskset=util-linux python3=python3
RINGGATE=""
[[ $MEM_VIA == ringgate ]] && resolve_ringgate

lt_init
OUT=$LT_DIR/out/mem-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
read -r ORIGIN_PORT RG_PORT RG_ADMIN_PORT < <("${LT_PY[@]}" ports 3)

start_bg sink-origin "$OUT/origin.log" taskset -c "$LOAD_CPU" \
    python3 "$LT_DIR/sink_origin.py" --port "$ORIGIN_PORT" --size "$SIZE"
ORIGIN_PID=$LT_LAST_PID
wait_http "sink origin" "$ORIGIN_PID" "http://127.0.0.1:$ORIGIN_PORT/health" "$OUT/origin.log"

if [[ $MEM_VIA == ringgate ]]; then
    [[ $DRIVER == io_uring ]] && io_uring_note
    ringgate_config "$OUT/ringgate.toml" "$RG_PORT" "$RG_ADMIN_PORT" "$ORIGIN_PORT" "$DRIVER" \
        "$(printf '%s\n' '' '[server.limits]' 'max_body_bytes = 2147483648' \
            'request_timeout_ms = 600000     # a slow 1 GiB transfer must not hit 504')"
    start_bg ringgate "$OUT/ringgate.log" \
        taskset -c "$PROXY_CPU" "$RINGGATE" --config "$OUT/ringgate.toml"
    PID=$LT_LAST_PID PORT=$RG_PORT
    wait_http ringgate "$PID" "http://127.0.0.1:$PORT/health" "$OUT/ringgate.log"
    WHAT="ringgate (pid $PID, io_driver=$DRIVER)"
else
    PID=$ORIGIN_PID PORT=$ORIGIN_PORT
    WHAT="the origin itself (MEM_VIA=direct, pid $PID)"
fi
BASE_URL=http://127.0.0.1:$PORT

kib() { awk '/^'"$1"':/ {print $2}' "/proc/$PID/status"; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }

# The Content-Length upload reads a sparse file (curl sends Content-Length for a
# file, chunked for a pipe). On tmpfs its holes read as zeros at memory speed and
# use no memory; on a disk the first read would be slow and fill the page cache.
if UPLOAD_FILE=$(mktemp /dev/shm/ringgate-upload.XXXXXX 2>/dev/null); then
    LT_RM+=("$UPLOAD_FILE")
else
    UPLOAD_FILE=$LT_TMP/upload.bin
fi
truncate -s "$SIZE" "$UPLOAD_FILE"

printf 'measuring the RSS of %s, %s bytes per transfer; output in %s\n\n' "$WHAT" "$SIZE" "$OUT" >&2
printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' transfer status bytes MiB/s \
    baseline_MiB peak_MiB delta_MiB samples >"$OUT/summary.tsv"

# The three clients, each printing "status bytes seconds". Exported and run as
# `taskset -c LOAD_CPU bash -c NAME`; each shows its command line first.
# For uploads, bytes is what the origin says it received ({"received": N, ...}):
# curl's size_upload would include the chunked framing.
# shellcheck disable=SC2317 # invoked indirectly
dl() {
    local cmd=(curl -s --max-time 850 -o /dev/null
        -w '%{http_code} %{size_download} %{time_total}' "$BASE_URL/big")
    printf '+ %s\n' "${cmd[*]@Q}" >&2
    "${cmd[@]}"
}
# shellcheck disable=SC2317
upload() {
    local framing=$1 resp=$LT_TMP/resp-$1 res code secs got
    local cmd=(curl -s --max-time 850 -X POST -H 'Expect:'
        -H 'Content-Type: application/octet-stream' -o "$resp"
        -w '%{http_code} %{time_total}' "$BASE_URL/sink")
    if [[ $framing == length ]]; then
        cmd+=(-T "$UPLOAD_FILE") # a file: curl sends Content-Length
        printf '+ %s\n' "${cmd[*]@Q}" >&2
        res=$("${cmd[@]}")
    else
        cmd+=(-T -) # a pipe: curl sends Transfer-Encoding: chunked
        printf '+ head -c %s /dev/zero | %s\n' "$SIZE" "${cmd[*]@Q}" >&2
        res=$(head -c "$SIZE" /dev/zero | "${cmd[@]}")
    fi
    read -r code secs <<<"$res"
    got=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["received"], r["framing"])' \
        "$resp" 2>/dev/null) || got="0 ?"
    # A proxy may re-frame a chunked body with Content-Length (or the reverse);
    # only the byte count has to survive.
    [[ $code != 200 || ${got#* } == "$framing" ]] ||
        printf '  note: sent %s, the origin received %s\n' "$framing" "${got#* }" >&2
    echo "$code ${got%% *} $secs"
}
export BASE_URL LT_TMP SIZE UPLOAD_FILE
export -f dl upload

# measure NAME CMD...: run CMD (prints "status bytes seconds") while sampling
# VmRSS every 100 ms; baseline is VmRSS just before CMD starts, peak the largest
# value seen. Appends a row to summary.tsv.
FAILED=0
measure() {
    local name=$1 stop=$LT_TMP/stop-$1 samples=$OUT/rss-$1.txt sampler res
    local code bytes secs base peak n rate i
    shift
    rm -f "$stop"
    base=$(kib VmRSS)
    start_bg "rss-$name" /dev/null "${LT_PY[@]}" rss "$PID" 0.1 "$samples" "$stop"
    sampler=$LT_LAST_PID
    for ((i = 0; i < 100; i++)); do # until the sampler has taken its first sample
        [[ -s $samples ]] && break
        sleep 0.02
    done
    res=$(timeout 900 "$@") || res="000 0 0"
    touch "$stop"
    wait "$sampler" 2>/dev/null || true
    unset "LT_PIDS[$sampler]"
    read -r code bytes secs <<<"$res"
    read -r _ peak n < <("${LT_PY[@]}" rssreport "$samples")
    ((peak > base)) || peak=$base
    rate=$(awk -v b="$bytes" -v s="$secs" 'BEGIN { r = 0; if (s > 0) r = b / s / 1048576; printf "%.0f", r }')
    log "  status $code, $bytes bytes in ${secs}s ($rate MiB/s); RSS $(mib "$base") -> peak $(mib "$peak") MiB"
    if [[ $code != 200 || $bytes != "$SIZE" ]]; then
        log "  FAILED: wanted status 200 and $SIZE bytes"
        FAILED=1
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$code" "$bytes" "$rate" \
        "$(mib "$base")" "$(mib "$peak")" "$(mib $((peak - base)))" "$n" >>"$OUT/summary.tsv"
}

measure download taskset -c "$LOAD_CPU" bash -c dl
measure upload-length taskset -c "$LOAD_CPU" bash -c 'upload length'
measure upload-chunked taskset -c "$LOAD_CPU" bash -c 'upload chunked'

echo
column -t -s $'\t' "$OUT/summary.tsv"
echo "VmHWM (peak RSS since start) of the measured process: $(mib "$(kib VmHWM)") MiB"
log ""
log "RSS samples (time, KiB) in $OUT/rss-*.txt"
exit "$FAILED"
