#!/usr/bin/env bash
# TLS termination: ringgate (rustls) next to nginx (OpenSSL), each terminating TLS with
# the same certificate in front of the same plain-HTTP origin, one worker pinned to core
# 0; the origin (nginx) and the clients share core 1. For each certificate, ECDSA P-256
# and RSA 2048 (made with openssl at start, in a temp dir):
#   ka128, ka1m  keep-alive HTTPS requests, 128 B and 1 MiB bodies (wrk https://)
#   full         a new connection and a full handshake per request (tlsload, no session store)
#   resume       a new connection and a resumed handshake per request (tlsload, tickets)
#   idle         memory per idle keep-alive TLS connection (tlsload idle, N connections)
# Prints req/s, latency, errors, the proxy's CPU per request (= per handshake for full
# and resume) and its memory per idle connection, with ratios to nginx in the same run.
#
# Needs (apt-get install, done here when missing): nginx wrk openssl curl python3
# util-linux (taskset) iproute2 (ss); and cargo, to build loadtest/tlsload (a crate of
# its own) and, unless RINGGATE or RINGGATE_BIN names a binary, ringgate itself.
# Usage: loadtest/tls.sh [--quick]   (see loadtest/README.md, "tls.sh")
set -euo pipefail

LT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$LT_DIR/lib.sh"

usage() {
    cat <<EOF
usage: loadtest/tls.sh [--quick]

  --quick       smoke run: DURATION=3, WARMUP=1, N=1000, IDLE_S=1

environment (defaults in brackets):
  TARGETS       subset of: nginx ringgate-uring ringgate-epoll [all three]
  CERT          ecdsa | rsa | both [both]
  TESTS         subset of: ka128 ka1m full resume idle [all]
  DURATION      seconds of each measured run [10]
  WARMUP        seconds of the unmeasured run just before it [2]
  CONNS         wrk connections, keep-alive 128 B [64]
  CONNS_1M      wrk connections, keep-alive 1 MiB [16]
  HS_CONNS      tlsload threads (connections in flight) for full / resume [16]
  N             idle TLS connections per proxy [8000]
  IDLE_S        seconds they idle before memory is read [3]
  REPEAT        rounds of everything, interleaved; the tables give medians [1]
  TLS           1.3 | 1.2: the only version the clients offer [1.3]
  SUITE         one TLS 1.3 suite the clients offer, e.g. TLS_AES_128_GCM_SHA256
                [unset: each client's default list, the servers pick]
  NGINX_SESSION_CACHE  nginx's ssl_session_cache [none, nginx's default]
  VERIFY        1 = before measuring, check with nginx's access log
                (\$ssl_session_reused) what each client mode really does [1]
  RINGGATE      (or RINGGATE_BIN) use this ringgate binary, no cargo build
  RINGGATE_TLS  ringgate's [server.tls] lines besides listen
                [min_version = "1.2" and session_tickets = true, one a line]
  PROXY_CPU [0], LOAD_CPU [1]   cores of the proxy / of origin and clients
  OTHER_MAX [10], RETRIES [2], RETRY_WAIT [300]: a measured run during which other
                work took more than OTHER_MAX % of the proxy's core is made again (at
                most RETRIES times), once the machine was quiet for 5 s (waiting at
                most RETRY_WAIT seconds)
  STRICT=1      exit 3 when ringgate misses a target
EOF
}
for arg in "$@"; do
    case $arg in
    --quick) DURATION=3 WARMUP=1 N=${N:-1000} IDLE_S=${IDLE_S:-1} ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
done

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-64}
CONNS_1M=${CONNS_1M:-16}
HS_CONNS=${HS_CONNS:-16}
N=${N:-8000}
IDLE_S=${IDLE_S:-3}
REPEAT=${REPEAT:-1}
ALL_TARGETS="nginx ringgate-uring ringgate-epoll"
TARGETS=${TARGETS:-$ALL_TARGETS}
ALL_TESTS="ka128 ka1m full resume idle"
TESTS=${TESTS:-$ALL_TESTS}
CERT=${CERT:-both}
TLS=${TLS:-1.3}
SUITE=${SUITE:-}
NGINX_SESSION_CACHE=${NGINX_SESSION_CACHE:-none}
VERIFY=${VERIFY:-1}
OTHER_MAX=${OTHER_MAX:-10}
RETRIES=${RETRIES:-2}
RETRY_WAIT=${RETRY_WAIT:-300}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
[[ -n ${RINGGATE:-} ]] && RINGGATE_BIN=$RINGGATE
# (Set through a variable: quotes inside ${VAR-default} would be removed.)
RINGGATE_TLS_DEFAULT='min_version = "1.2"
session_tickets = true'
RINGGATE_TLS=${RINGGATE_TLS-$RINGGATE_TLS_DEFAULT}

for t in $TARGETS; do
    [[ " $ALL_TARGETS " == *" $t "* ]] || die "unknown target '$t' in TARGETS ($ALL_TARGETS)"
done
for t in $TESTS; do
    [[ " $ALL_TESTS " == *" $t "* ]] || die "unknown test '$t' in TESTS ($ALL_TESTS)"
done
case $CERT in ecdsa | rsa) CERTS=$CERT ;; both) CERTS="ecdsa rsa" ;; *) die "CERT must be ecdsa, rsa or both" ;; esac
case $TLS in 1.2 | 1.3) ;; *) die "TLS must be 1.2 or 1.3" ;; esac
[[ -z $SUITE || $TLS == 1.3 ]] || die "SUITE names a TLS 1.3 suite; with TLS=1.2 leave it unset"
for n in "$DURATION" "$WARMUP" "$CONNS" "$CONNS_1M" "$HS_CONNS" "$N" "$IDLE_S" "$REPEAT" "$OTHER_MAX" "$RETRIES" "$RETRY_WAIT"; do
    [[ $n =~ ^[0-9]+$ ]] || die "DURATION, WARMUP, CONNS, CONNS_1M, HS_CONNS, N, IDLE_S, REPEAT, OTHER_MAX, RETRIES and RETRY_WAIT must be integers"
done
((REPEAT >= 1)) || die "REPEAT must be at least 1"

ensure_tools wrk=wrk nginx=nginx openssl=openssl curl=curl taskset=util-linux python3=python3 ss=iproute2
# Another load test on the same cores would be measured with this one.
pgrep -f 'loadtest/(run|mem|conns|active|tls)\.sh' >"/tmp/tls.sh.$$.pgrep" || true
others=$(grep -vx -e "$$" -e "$PPID" "/tmp/tls.sh.$$.pgrep" | tr '\n' ' ' || true)
rm -f "/tmp/tls.sh.$$.pgrep"
[[ -z $others ]] || log "warning: another load test is running (pids $others): it disturbs this one (the 'other %' column shows how much)"
if (($(nproc) < 2)) && [[ $PROXY_CPU != "$LOAD_CPU" ]]; then
    log "warning: $(nproc) core(s): proxy and load share core 0; ratios still compare, absolute numbers do not"
    PROXY_CPU=0 LOAD_CPU=0
fi
# The idle clients hold N descriptors, the proxy N plus its upstream pool.
ulimit -n "$(ulimit -Hn)"
(($(ulimit -n) > N + 256)) || die "N=$N needs more than $(ulimit -n) descriptors (ulimit -Hn)"

# Everything is built before anything is measured.
RINGGATE=""
if [[ " $TARGETS " == *" ringgate-"* ]]; then resolve_ringgate; fi
command -v cargo >/dev/null || die "cargo not found: it builds loadtest/tlsload"
log "building: cargo build --release --manifest-path $LT_DIR/tlsload/Cargo.toml"
cargo build --release --manifest-path "$LT_DIR/tlsload/Cargo.toml" >&2 ||
    die "building loadtest/tlsload failed"
TLSLOAD=$LT_DIR/tlsload/target/release/tlsload

lt_init
TLSLT=(python3 "$LT_DIR/tlslt.py")
REQ_HEADER=()
OUT=$LT_DIR/out/tls-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"
read -r ORIGIN_PORT NGINX_PORT VERIFY_PORT RG_PORT RG_PLAIN_PORT RG_ADMIN_PORT < <("${LT_PY[@]}" ports 6)

# ------------------------------------------------------------------ certificates

# Self-signed, CN and SAN localhost (every client sends SNI localhost); the key in
# PKCS#8, which both servers read.
CERT_DIR=$LT_TMP/certs
mkdir -p "$CERT_DIR"
for c in $CERTS; do
    case $c in
    ecdsa) newkey=(-newkey ec -pkeyopt ec_paramgen_curve:P-256) ;;
    rsa) newkey=(-newkey rsa:2048) ;;
    esac
    openssl req -x509 "${newkey[@]}" -nodes -days 7 -subj /CN=localhost \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$CERT_DIR/$c.key" -out "$CERT_DIR/$c.crt" 2>"$OUT/openssl-$c.log" ||
        die "openssl could not make the $c certificate: $(cat "$OUT/openssl-$c.log")"
    log "certificate $c: $(openssl x509 -in "$CERT_DIR/$c.crt" -noout -text |
        grep -m1 -E 'Public-Key:|ASN1 OID' | sed 's/^ *//')"
done
chmod -R a+rX "$CERT_DIR"

# The OpenSSL clients (wrk, s_client) offer what tlsload offers: only TLS $TLS, and
# only SUITE when it is set.
TLSLOAD_OPTS=(--tls "$TLS")
cat >"$LT_TMP/client-openssl.cnf" <<EOF
openssl_conf = default_conf
[default_conf]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
MinProtocol = TLSv$TLS
MaxProtocol = TLSv$TLS
${SUITE:+Ciphersuites = $SUITE}
EOF
CLIENT_ENV=(env "OPENSSL_CONF=$LT_TMP/client-openssl.cnf")
cp "$LT_TMP/client-openssl.cnf" "$OUT/client-openssl.cnf"
[[ -n $SUITE ]] && TLSLOAD_OPTS+=(--suite "TLS13_${SUITE#TLS_}")

# ------------------------------------------------------------------ origin

# prefix NAME TEMPLATE PORT [SED_ARGS...]: an nginx prefix dir with the filled-in conf.
prefix() {
    local name=$1 tmpl=$2 port=$3 dir=$LT_TMP/$1
    shift 3
    mkdir -p "$dir/tmp" "$dir/www"
    sed -e "s#@DIR@#$dir#g" -e "s#@PORT@#$port#g" -e "s#@ORIGIN@#$ORIGIN_PORT#g" \
        -e "s#@TEMPFILE@#0#g" "$@" "$LT_DIR/$tmpl" >"$dir/nginx.conf"
    nginx -t -q -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" ||
        die "nginx rejected $dir/nginx.conf"
}

# start_nginx NAME CPU: run that prefix in the foreground (our child), pinned.
start_nginx() {
    local dir=$LT_TMP/$1
    start_bg "nginx-$1" "$dir/stderr.log" \
        taskset -c "$2" nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" -g 'daemon off;'
}

prefix origin nginx-origin.conf.in "$ORIGIN_PORT"
"${LT_PY[@]}" body128 "$LT_TMP/origin/www/body.json"
head -c 1048576 /dev/urandom >"$LT_TMP/origin/www/1m.bin"
chmod -R a+rX "$LT_TMP/origin"
start_nginx origin "$LOAD_CPU"
ORIGIN_PID=$LT_LAST_PID
wait_http "origin nginx" "$ORIGIN_PID" "http://127.0.0.1:$ORIGIN_PORT/" "$LT_TMP/origin/error.log"
log "origin: nginx pid $ORIGIN_PID on 127.0.0.1:$ORIGIN_PORT, core $LOAD_CPU"

# ------------------------------------------------------------------ proxies

# nginx_tls NAME PORT CERT ACCESS_LOG: the prefix of an nginx terminating TLS.
nginx_tls() {
    local name=$1 port=$2 c=$3 alog=$4
    prefix "$name" nginx-tls.conf.in "$port" \
        -e "s#@CERT@#$CERT_DIR/$c.crt#g" -e "s#@KEY@#$CERT_DIR/$c.key#g" \
        -e "s#@CONNS@#$((N + 1024))#g" -e "s#@ACCESS_LOG@#$alog#g" \
        -e "s#@SESSION_CACHE@#$NGINX_SESSION_CACHE#g"
}

# wait_https NAME PID PORT LOG: poll https://localhost:PORT/ (certificate checked).
wait_https() {
    local name=$1 pid=$2 port=$3 logfile=$4 i
    for ((i = 0; i < 200; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "error: $name (pid $pid) exited before it was ready; its log ($logfile):"
            tail_log "$logfile"
            exit 1
        fi
        curl -sf -o /dev/null --max-time 1 --cacert "$CERT_DIR/$CUR_CERT.crt" \
            --resolve "localhost:$port:127.0.0.1" "https://localhost:$port/" && return 0
        sleep 0.05
    done
    log "error: $name (pid $pid) did not answer https://localhost:$port/ within 10 s; its log:"
    tail_log "$logfile"
    exit 1
}

# start_proxy TARGET CERT: start it pinned to the proxy core, wait until it serves
# HTTPS. Sets PORT, CPU_PID (whose process tree is measured for CPU) and MEM_PID
# (the process that holds the connections: nginx's worker, ringgate itself).
start_proxy() {
    local target=$1 c=$2 driver cfg i
    case $target in
    nginx)
        nginx_tls proxy "$NGINX_PORT" "$c" off
        cp "$LT_TMP/proxy/nginx.conf" "$OUT/nginx-$c.nginx.conf"
        start_nginx proxy "$PROXY_CPU"
        CPU_PID=$LT_LAST_PID PORT=$NGINX_PORT
        wait_https nginx "$CPU_PID" "$PORT" "$LT_TMP/proxy/error.log"
        MEM_PID=""
        for ((i = 0; i < 100; i++)); do
            MEM_PID=$(pgrep -P "$CPU_PID" | head -n 1) && [[ -n $MEM_PID ]] && break
            sleep 0.05
        done
        [[ -n $MEM_PID ]] || die "nginx (pid $CPU_PID) has no worker process"
        ;;
    ringgate-uring | ringgate-epoll)
        driver=${target#ringgate-}
        [[ $driver == uring ]] && driver=io_uring && io_uring_note
        cfg=$OUT/$target-$c.toml
        ringgate_tls_config "$cfg" "$driver" "$c"
        start_bg "$target" "$OUT/$target-$c.log" env "GATEWAY_ADMIN_TOKEN=$ADMIN_TOKEN" \
            taskset -c "$PROXY_CPU" "$RINGGATE" --config "$cfg"
        CPU_PID=$LT_LAST_PID MEM_PID=$LT_LAST_PID PORT=$RG_PORT
        wait_https "$target" "$CPU_PID" "$PORT" "$OUT/$target-$c.log"
        ;;
    esac
}

ADMIN_TOKEN=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')

# ringgate_tls_config FILE DRIVER CERT: run.sh's configuration (one worker, access
# log off, one route to the origin) plus the TLS listener; the plain one stays.
ringgate_tls_config() {
    local file=$1 driver=$2 c=$3
    ringgate_config "$file" "$RG_PLAIN_PORT" "$RG_ADMIN_PORT" "$ORIGIN_PORT" "$driver" \
        "max_connections = $((N + 1024))

[server.tls]
listen = [\"127.0.0.1:$RG_PORT\"]
$RINGGATE_TLS

[[server.tls.certificates]]
server_names = [\"localhost\"]
cert_file = \"$CERT_DIR/$c.crt\"
key_file = \"$CERT_DIR/$c.key\""
}

# ------------------------------------------------------------------ checks

# check_bodies NAME PORT: both bodies over HTTPS, 200, byte for byte the origin's.
check_bodies() {
    local name=$1 port=$2 path file want got code size ctype
    for path in / /1m; do
        if [[ $path == / ]]; then
            file=body.json want="200 128 application/json"
        else
            file=1m.bin want="200 1048576 application/octet-stream"
        fi
        got=$(curl -s --max-time 10 -o "$LT_TMP/check.out" --cacert "$CERT_DIR/$CUR_CERT.crt" \
            --resolve "localhost:$port:127.0.0.1" -w '%{http_code} %{size_download} %{content_type}' \
            "https://localhost:$port$path") || true
        read -r code size ctype <<<"$got"
        got="${code:-} ${size:-} ${ctype%%;*}"
        if [[ $got != "$want" ]] || ! cmp -s "$LT_TMP/check.out" "$LT_TMP/origin/www/$file"; then
            die "$name: GET https://localhost:$port$path returned '$got', wanted '$want' and the origin's exact bytes"
        fi
    done
    log "  check $name: GET / and /1m over HTTPS: 200, bodies identical to the origin's"
}

# probe NAME PORT: what an OpenSSL client (as wrk) and tlsload negotiate with it, and
# whether tlsload's second connection resumes. Sets SCLIENT[NAME-CERT] and PROBE.
declare -A SCLIENT=()
probe() {
    local name=$1 port=$2 f=$OUT/probe-$1-$CUR_CERT
    "${CLIENT_ENV[@]}" openssl s_client -brief -connect "127.0.0.1:$port" -servername localhost \
        </dev/null >"$f.sclient.txt" 2>&1 || true
    SCLIENT[$name-$CUR_CERT]=$("${TLSLT[@]}" sclient "$f.sclient.txt")
    "$TLSLOAD" probe --addr "127.0.0.1:$port" "${TLSLOAD_OPTS[@]}" >"$f.tlsload.txt" 2>&1 ||
        die "$name: tlsload probe failed: $(cat "$f.tlsload.txt")"
    PROBE=$(tr '\n' ' ' <"$f.tlsload.txt")
    log "  negotiated with $name: openssl s_client: ${SCLIENT[$name-$CUR_CERT]}"
    log "  tlsload: $PROBE"
    printf '%s %s\nopenssl s_client: %s\ntlsload: %s\n' "$name" "$CUR_CERT" "${SCLIENT[$name-$CUR_CERT]}" "$PROBE" >>"$OUT/negotiated.txt"
}

# ------------------------------------------------------------------ verification

# verify CERT: on an nginx with an access log of $ssl_session_reused (its own instance,
# never the measured one), what each client mode does: tlsload full must never resume,
# tlsload resume must (almost) always, and wrk with "Connection: close" is shown for
# reference (it keeps the OpenSSL session between its reconnections).
verify() {
    local c=$1 alog=$LT_TMP/verify/access.log mode reqs reused pct rest
    nginx_tls verify "$VERIFY_PORT" "$c" "$alog tls"
    start_nginx verify "$PROXY_CPU"
    local pid=$LT_LAST_PID
    wait_https "nginx (verify)" "$pid" "$VERIFY_PORT" "$LT_TMP/verify/error.log"
    for mode in full resume wrk-close; do
        : >"$alog" # nginx appends (O_APPEND): truncating starts the count afresh
        if [[ $mode == wrk-close ]]; then
            taskset -c "$LOAD_CPU" "${CLIENT_ENV[@]}" wrk -t1 -c"$HS_CONNS" -d2s -H "Connection: close" \
                "https://localhost:$VERIFY_PORT/" >"$OUT/verify-$c-$mode.txt" 2>&1 || true
        else
            taskset -c "$LOAD_CPU" "$TLSLOAD" run --addr "127.0.0.1:$VERIFY_PORT" --mode "$mode" \
                --conns "$HS_CONNS" --duration 2 "${TLSLOAD_OPTS[@]}" >"$OUT/verify-$c-$mode.txt" 2>&1 ||
                die "tlsload $mode failed against nginx: $(tail -n 3 "$OUT/verify-$c-$mode.txt")"
        fi
        sleep 0.3 # nginx writes the access log unbuffered, but let the last requests land
        cp "$alog" "$OUT/verify-$c-$mode.access.log"
        read -r reqs reused pct rest < <("${TLSLT[@]}" nginxlog "$alog")
        local client="" cfull="" cres=""
        if [[ $mode != wrk-close ]]; then
            read -r _ cfull cres < <("${TLSLT[@]}" hsline "$OUT/verify-$c-$mode.txt")
            client="; tlsload counted $cfull full, $cres resumed"
        fi
        printf 'verify %-5s %-9s nginx access log: %6d requests, %6d resumed (%6.2f%%, %s)%s\n' \
            "$c" "$mode" "$reqs" "$reused" "$pct" "$rest" "$client" | tee -a "$OUT/verify.txt" >&2
        # Client and server must agree handshake by handshake; full mode never resumes;
        # resume mode makes full handshakes only on each thread's first connection.
        case $mode in
        full) ((reused == 0 && cres == 0 && cfull == reqs)) ||
            die "verification: tlsload --mode full: nginx saw $reused of $reqs handshakes resumed, tlsload $cres" ;;
        resume) ((cres == reused && cfull + cres == reqs && reqs - reused <= HS_CONNS)) ||
            die "verification: tlsload --mode resume: nginx saw $reused of $reqs resumed, tlsload $cres (at most $HS_CONNS full ones expected)" ;;
        esac
    done
    stop_pid "$pid"
}

# ------------------------------------------------------------------ measuring

# measure TARGET CERT TEST: warm-up, then the measured run, the proxy's CPU time
# (CPU_PID and its descendants, all threads) read just before and after it.
measure() {
    local target=$1 c=$2 test=$3 raw=$OUT/$3-$1-$2-r$round.txt cb ca ob oa neg hs hfull hres
    local kb kt ks ka kta ksa attempt other
    local -a cmd warm extra=()
    case $test in
    ka128 | ka1m)
        local path=/ conns=$CONNS
        [[ $test == ka1m ]] && path=/1m conns=$CONNS_1M
        warm=(taskset -c "$LOAD_CPU" "${CLIENT_ENV[@]}" wrk -t1 -c"$conns" -d"${WARMUP}s" "https://localhost:$PORT$path")
        cmd=(taskset -c "$LOAD_CPU" "${CLIENT_ENV[@]}" wrk -t1 -c"$conns" -d"${DURATION}s" --latency "https://localhost:$PORT$path")
        ;;
    full | resume)
        warm=(taskset -c "$LOAD_CPU" "$TLSLOAD" run --addr "127.0.0.1:$PORT" --mode "$test"
            --conns "$HS_CONNS" --duration "$WARMUP" "${TLSLOAD_OPTS[@]}")
        cmd=(taskset -c "$LOAD_CPU" "$TLSLOAD" run --addr "127.0.0.1:$PORT" --mode "$test"
            --conns "$HS_CONNS" --duration "$DURATION" "${TLSLOAD_OPTS[@]}")
        ;;
    esac
    if ((WARMUP > 0)); then
        timeout $((WARMUP + 30)) "${warm[@]}" >"$OUT/warmup.txt" 2>&1 ||
            die "$target $c $test: warm-up run failed: $(tail -n 3 "$OUT/warmup.txt")"
    fi
    log "+ ${cmd[*]}"
    for ((attempt = 1; ; attempt++)); do
        metrics_snapshot "$target" before
        read -r kb kt ks < <("${TLSLT[@]}" corestat "$PROXY_CPU")
        cb=$("${LT_PY[@]}" cpu "$CPU_PID")
        ob=$("${LT_PY[@]}" cpu "$ORIGIN_PID")
        timeout $((DURATION + 30)) "${cmd[@]}" >"$raw" 2>&1 ||
            die "$target $c $test: the client failed or timed out; output in $raw"
        ca=$("${LT_PY[@]}" cpu "$CPU_PID")
        oa=$("${LT_PY[@]}" cpu "$ORIGIN_PID")
        read -r ka kta ksa < <("${TLSLT[@]}" corestat "$PROXY_CPU")
        # What else ran on the proxy's core: its busy time less the proxy's own.
        other=$(awk -v b=$((ka - kb)) -v t=$((kta - kt)) -v c0="${cb%% *}" -v c1="${ca%% *}" \
            -v hz="$(getconf CLK_TCK)" 'BEGIN { o = t ? 100 * (b / hz - (c1 - c0) / 1e9) / (t / hz) : 0; printf "%d", o < 0 ? 0 : o }')
        ((other > OTHER_MAX && attempt <= RETRIES)) || break
        log "  disturbed: other work took $other% of the proxy's core; again once the machine is quiet ($attempt of $RETRIES)"
        mv "$raw" "$raw.disturbed-$attempt"
        metrics_diff "$target"
        wait_quiet
    done
    extra=("core_busy_ticks=$((ka - kb))" "core_total_ticks=$((kta - kt))" "core_steal_ticks=$((ksa - ks))" "attempts=$attempt")
    metrics_snapshot "$target" after
    { echo "# ${cmd[*]}"; cat "$raw"; } >"$raw.tmp" && mv "$raw.tmp" "$raw"
    if [[ $test == full || $test == resume ]]; then
        read -r hs hfull hres < <("${TLSLT[@]}" hsline "$raw")
        neg=$("${TLSLT[@]}" negotiated "$raw")
        extra+=("resumed_pct=$hs" "hs_full=$hfull" "hs_resumed=$hres" "hs_conns=$HS_CONNS" "negotiated=tlsload: $neg")
    else
        extra+=("negotiated=openssl: ${SCLIENT[$target-$c]:-not probed}")
    fi
    "${LT_PY[@]}" record "$RESULTS" "$target" "$test" "$raw" "${cmd[*]}" "$cb" "$ca" "$ob" "$oa" \
        "test=$test" "cert=$c" "round=$round" "${extra[@]}"
    "${LT_PY[@]}" last "$RESULTS" >&2
    [[ $test == full || $test == resume ]] && log "  $(grep '^Handshakes:' "$raw")"
    metrics_diff "$target"
}

# wait_quiet: until the whole machine was under 5 % busy for 5 s (our idle servers
# included), at most RETRY_WAIT seconds.
wait_quiet() {
    local i b1 t1 b2 t2
    for ((i = 0; i < RETRY_WAIT; i += 5)); do
        read -r b1 t1 < <(awk '/^cpu / {print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
        sleep 5
        read -r b2 t2 < <(awk '/^cpu / {print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
        ((t2 > t1 && 100 * (b2 - b1) / (t2 - t1) < 5)) && return 0
    done
    log "  the machine stayed busy for ${RETRY_WAIT}s; measuring anyway"
}

# ringgate's own counters, if its admin listener serves /metrics: the lines about TLS
# that changed during a run (server-side evidence of full / resumed handshakes).
metrics_snapshot() {
    [[ $1 == ringgate-* ]] || return 0
    curl -sf --max-time 2 -H "Authorization: Bearer $ADMIN_TOKEN" \
        "http://127.0.0.1:$RG_ADMIN_PORT/metrics" 2>/dev/null | grep -i tls >"$LT_TMP/metrics.$2" || : >"$LT_TMP/metrics.$2"
}
metrics_diff() {
    [[ $1 == ringgate-* && -s $LT_TMP/metrics.after ]] || return 0
    diff "$LT_TMP/metrics.before" "$LT_TMP/metrics.after" | sed -n 's/^> /  ringgate metric after: /p' >&2 || true
}

# measure_idle TARGET CERT: on a freshly started proxy, after one warm-up request, N
# idle keep-alive TLS connections (full handshake and one GET each), held IDLE_S
# seconds; the proxy's memory (RSS, PSS) before and after, over N.
measure_idle() {
    local target=$1 c=$2 before after sb sa client i open clog=$OUT/idle-$1-$2-r$round.clients.log
    curl -sf -o /dev/null --cacert "$CERT_DIR/$c.crt" --resolve "localhost:$PORT:127.0.0.1" \
        "https://localhost:$PORT/" || die "$target: warm-up request failed"
    sleep 1
    before=$("${TLSLT[@]}" mem "$MEM_PID")
    sb=$("${TLSLT[@]}" slab)
    start_bg "idle-clients" "$clog" taskset -c "$LOAD_CPU" \
        "$TLSLOAD" idle --addr "127.0.0.1:$PORT" --n "$N" --threads 8 "${TLSLOAD_OPTS[@]}"
    client=$LT_LAST_PID
    for ((i = 0; i < 1200; i++)); do
        grep -q '^ready' "$clog" 2>/dev/null && break
        kill -0 "$client" 2>/dev/null || die "$target: idle clients failed: $(tail -n 3 "$clog")"
        sleep 0.1
    done
    grep -q '^ready' "$clog" || die "$target: the $N TLS connections did not all get a response within 120 s"
    sleep "$IDLE_S"
    after=$("${TLSLT[@]}" mem "$MEM_PID")
    sa=$("${TLSLT[@]}" slab)
    open=$(ss -Htn state established "( dport = :$PORT )" | wc -l)
    ((open >= N)) || die "$target: only $open of the $N TLS connections are still open"
    stop_pid "$client"
    read -r rb pb <<<"$before"
    read -r ra pa <<<"$after"
    "${TLSLT[@]}" idle "$RESULTS" "target=$target" "cert=$c" "round=$round" "n=$N" "open=$open" \
        "rss_before=$rb" "rss_after=$ra" "pss_before=$pb" "pss_after=$pa" \
        "slab_before=$sb" "slab_after=$sa" "idle_s=$IDLE_S" >&2
}

# ------------------------------------------------------------------ main

# A ringgate that cannot serve this configuration fails here, before any measurement.
if [[ -n $RINGGATE ]]; then
    CUR_CERT=${CERTS%% *}
    ringgate_tls_config "$OUT/check.toml" epoll "$CUR_CERT"
    "$RINGGATE" check --config "$OUT/check.toml" >"$OUT/check.txt" 2>&1 ||
        die "ringgate check refuses the TLS configuration ($OUT/check.toml): $(tail -n 5 "$OUT/check.txt")"
fi

log ""
log "proxies on core $PROXY_CPU (one worker); origin and clients on core $LOAD_CPU"
log "certificates: $CERTS; tests: $TESTS; TLS $TLS${SUITE:+, suite $SUITE}; ${DURATION}s runs after ${WARMUP}s warm-up"
log "wrk connections: $CONNS (128 B), $CONNS_1M (1 MiB); handshakes: $HS_CONNS in flight; idle: N=$N for ${IDLE_S}s"
log "nginx: ssl_session_tickets on, ssl_session_cache $NGINX_SESSION_CACHE; ringgate [server.tls]: ${RINGGATE_TLS//$'\n'/, }"
log "output in $OUT"
{
    echo "loadtest/tls.sh $(date '+%Y-%m-%d %H:%M:%S'): TARGETS=\"$TARGETS\" CERT=$CERT TESTS=\"$TESTS\" DURATION=${DURATION}s WARMUP=${WARMUP}s REPEAT=$REPEAT"
    echo "TLS $TLS${SUITE:+ suite $SUITE}; wrk -c$CONNS (128 B) / -c$CONNS_1M (1 MiB); tlsload $HS_CONNS connections in flight; idle N=$N for ${IDLE_S}s"
    echo "proxy on core $PROXY_CPU (one worker); origin (nginx) and clients on core $LOAD_CPU"
    echo "nginx $(nginx -v 2>&1 | sed 's#.*/##') ($(openssl version | cut -d' ' -f1-2)): ssl_session_tickets on, ssl_session_cache $NGINX_SESSION_CACHE"
    if [[ -n $RINGGATE ]]; then
        if [[ -n ${RINGGATE_BIN:-} ]]; then
            echo "ringgate: $RINGGATE (prebuilt, $("$RINGGATE" --version 2>/dev/null | head -n 1)); [server.tls]: ${RINGGATE_TLS//$'\n'/, }"
        else
            echo "ringgate: $RINGGATE (built from the repo at $(git -C "$REPO_ROOT" describe --always --dirty 2>/dev/null || echo '?')); [server.tls]: ${RINGGATE_TLS//$'\n'/, }"
        fi
    fi
} >"$OUT/summary.txt"

HS_TESTS=" $TESTS "
for ((round = 1; round <= REPEAT; round++)); do
    ((REPEAT > 1)) && log "" && log "=== round $round of $REPEAT"
    for c in $CERTS; do
        CUR_CERT=$c
        if ((round == 1)) && [[ $VERIFY == 1 && ($HS_TESTS == *" full "* || $HS_TESTS == *" resume "*) ]]; then
            log ""
            log "== verification, $c certificate (nginx with an access log of \$ssl_session_reused)"
            verify "$c"
        fi
        for t in $TARGETS; do
            log ""
            log "== $t, $c certificate"
            busy=0
            for test in $TESTS; do [[ $test != idle ]] && busy=1; done
            if ((busy)); then
                start_proxy "$t" "$c"
                log "  $t: pid $CPU_PID on 127.0.0.1:$PORT, core $PROXY_CPU"
                check_bodies "$t" "$PORT"
                ((round == 1)) && probe "$t" "$PORT"
                for test in $TESTS; do
                    [[ $test == idle ]] || measure "$t" "$c" "$test"
                done
                stop_pid "$CPU_PID"
            fi
            if [[ $HS_TESTS == *" idle "* ]]; then
                start_proxy "$t" "$c" # fresh: no memory left from the runs above
                ((busy)) || ((round > 1)) || probe "$t" "$PORT"
                measure_idle "$t" "$c"
                stop_pid "$CPU_PID"
            fi
        done
    done
done

log ""
rc=0
"${TLSLT[@]}" report "$RESULTS" "$OUT" || rc=$?
log ""
log "raw outputs, configs, negotiated.txt, verify.txt and summary.{txt,json} in $OUT"
if ((rc == 3)) && [[ ${STRICT:-0} != 1 ]]; then
    rc=0
fi
exit "$rc"
