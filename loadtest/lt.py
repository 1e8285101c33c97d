#!/usr/bin/env python3
"""Helpers for loadtest/run.sh and loadtest/mem.sh (standard library only).

Subcommands:
  ports N                     print N distinct free TCP ports on 127.0.0.1
  body128 FILE                write the 128-byte JSON body the origin serves
  cpu PID...                  print "<schedstat_ns> <stat_ns>": CPU time of the given
                              processes and all their descendants, all threads
  tcpu PID NAME               print the schedstat ns of PID's threads named NAME (as
                              the kernel keeps it: the first 15 bytes)
  record ... [KEY=VALUE...]   parse one wrk --latency output, append a JSON line
                              (with any KEY=VALUE pairs added to it)
  last RESULTS.jsonl          print one line about the last recorded run
  report RESULTS.jsonl OUTDIR print the table, write summary.json and summary.tsv
  rss PID INTERVAL_S OUT STOP sample VmRSS of PID into OUT until file STOP exists
  rssreport FILE              print "baseline_kib peak_kib samples" of an rss file
  activereport RESULTS OUTDIR the table of loadtest/active.sh, summary.{txt,json}
"""

import json
import os
import re
import socket
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


# ----------------------------------------------------------------------------- ports

def cmd_ports(n):
    socks = []
    try:
        for _ in range(int(n)):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        # Bound all at once so the ports are distinct; closed before the servers bind.
        print(" ".join(str(s.getsockname()[1]) for s in socks))
    finally:
        for s in socks:
            s.close()


# ----------------------------------------------------------------------------- body

def cmd_body128(path):
    head = '{"status":"ok","service":"origin","items":[1,2,3],"pad":"'
    tail = '"}\n'
    body = head + "x" * (128 - len(head) - len(tail)) + tail
    data = body.encode()
    assert len(data) == 128, len(data)
    json.loads(data)
    with open(path, "wb") as f:
        f.write(data)


# ----------------------------------------------------------------------------- cpu

def _descendants(roots):
    """roots plus every process whose parent chain leads to one of them."""
    parent = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # Field 2 (comm) may contain spaces and parentheses: split after the last ')'.
        fields = stat[stat.rindex(")") + 2:].split()
        parent[int(name)] = int(fields[1])
    found = set(roots)
    changed = True
    while changed:
        changed = False
        for pid, ppid in parent.items():
            if ppid in found and pid not in found:
                found.add(pid)
                changed = True
    return sorted(found)


def _cpu_of(pid):
    """(schedstat_ns summed over live threads, (utime+stime) of the process in ns).

    schedstat has ns resolution but misses threads that exited (io_uring's io-wq
    workers come and go); utime+stime covers the whole thread group, dead threads
    included, but only in clock ticks. Both are reported; run.sh uses schedstat and
    warns when the two disagree.
    """
    sched = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    sched += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return 0, 0
    fields = stat[stat.rindex(")") + 2:].split()
    # After comm: state(3) ppid(4) ... utime(14) stime(15), i.e. index 11 and 12 here.
    ticks = int(fields[11]) + int(fields[12])
    return sched, ticks * 1_000_000_000 // CLK_TCK


def cmd_cpu(*pids):
    sched = stat = 0
    for pid in _descendants([int(p) for p in pids]):
        s, t = _cpu_of(pid)
        sched += s
        stat += t
    print(sched, stat)


def cmd_tcpu(pid, name):
    """CPU time of one process's threads by name (e.g. ringgate's sync thread)."""
    comm = name[:15]
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        tids = []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                if f.read().strip() != comm:
                    continue
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    print(total)


# ----------------------------------------------------------------------------- wrk

_UNIT_US = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}


def _dur_us(text):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError(f"unparsable wrk duration {text!r}")
    return float(m.group(1)) * _UNIT_US[m.group(2)]


def parse_wrk(text):
    out = {"requests": None, "rps": None, "p50_us": None, "p99_us": None,
           "non2xx": 0, "sock_connect": 0, "sock_read": 0, "sock_write": 0,
           "sock_timeout": 0}
    for line in text.splitlines():
        s = line.strip()
        m = re.match(r"(50|75|90|99)(?:\.0+)?%\s+(\S+)$", s)
        if m and m.group(1) in ("50", "99"):
            out[f"p{m.group(1)}_us"] = _dur_us(m.group(2))
            continue
        m = re.match(r"(\d+) requests in ([0-9.]+\w+), ([0-9.]+\w+) read", s)
        if m:
            out["requests"] = int(m.group(1))
            out["wrk_seconds"] = _dur_us(m.group(2)) / 1e6
            out["bytes_read"] = m.group(3)
            continue
        m = re.match(r"Requests/sec:\s+([0-9.]+)", s)
        if m:
            out["rps"] = float(m.group(1))
            continue
        m = re.match(r"Non-2xx or 3xx responses:\s+(\d+)", s)
        if m:
            out["non2xx"] = int(m.group(1))
            continue
        m = re.match(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                     r"timeout (\d+)", s)
        if m:
            (out["sock_connect"], out["sock_read"], out["sock_write"],
             out["sock_timeout"]) = map(int, m.groups())
    missing = [k for k in ("requests", "rps", "p50_us", "p99_us") if out[k] is None]
    if missing:
        raise ValueError(f"wrk output lacks {missing}")
    out["errors"] = (out["non2xx"] + out["sock_connect"] + out["sock_read"]
                     + out["sock_write"] + out["sock_timeout"])
    return out


def _value(text):
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return None if text in ("", "-") else text


def cmd_record(results, target, body, wrkfile, cmdline, cpu_before, cpu_after,
               origin_before, origin_after, *extra):
    """cpu_* are "<schedstat_ns> <stat_ns>" strings from `cpu`, or "-" (no proxy);
    extra are KEY=VALUE pairs stored as they are (numbers as numbers)."""
    with open(wrkfile) as f:
        rec = parse_wrk(f.read())
    rec.update(target=target, body=body, wrk_cmd=cmdline, wrk_output=wrkfile)
    for kv in extra:
        key, _, val = kv.partition("=")
        rec[key] = _value(val)
    reqs = rec["requests"]

    def per_req(before, after, prefix):
        if before == "-" or after == "-":
            rec[prefix + "cpu_s"] = None
            rec[prefix + "cpu_us_per_req"] = None
            return
        b_sched, b_stat = map(int, before.split())
        a_sched, a_stat = map(int, after.split())
        sched_ns, stat_ns = a_sched - b_sched, a_stat - b_stat
        rec[prefix + "cpu_s_schedstat"] = sched_ns / 1e9
        rec[prefix + "cpu_s_stat"] = stat_ns / 1e9
        # Prefer schedstat (ns); fall back to ticks if threads died in between and
        # schedstat lost their time (stat then exceeds it by more than tick noise).
        tick_ns = 1e9 / CLK_TCK
        use = sched_ns
        rec[prefix + "cpu_source"] = "schedstat"
        if stat_ns - sched_ns > 4 * tick_ns + 0.05 * stat_ns:
            use = stat_ns
            rec[prefix + "cpu_source"] = "stat"
        rec[prefix + "cpu_s"] = use / 1e9
        rec[prefix + "cpu_us_per_req"] = (use / 1e3 / reqs) if reqs else None

    per_req(cpu_before, cpu_after, "proxy_")
    per_req(origin_before, origin_after, "origin_")
    with open(results, "a") as f:
        f.write(json.dumps(rec) + "\n")
    src = rec.get("proxy_cpu_source")
    if src == "stat":
        print(f"  note: CPU from /proc/PID/stat ({rec['proxy_cpu_s_stat']:.3f} s) "
              f"> schedstat ({rec['proxy_cpu_s_schedstat']:.3f} s): threads exited "
              f"during the run; using stat", file=sys.stderr)


def cmd_last(results):
    """One line about the last run in RESULTS, printed while the test goes on."""
    with open(results) as f:
        r = json.loads(f.read().strip().splitlines()[-1])
    line = (f"  {r['rps']:.0f} req/s, p50 {_fmt_lat(r['p50_us'])}, "
            f"p99 {_fmt_lat(r['p99_us'])}, {r['errors']} errors")
    if r["proxy_cpu_us_per_req"] is not None:
        line += (f", proxy CPU {r['proxy_cpu_us_per_req']:.2f} us/req "
                 f"({_core_pct(r)}% of a core)")
    print(line)


def _core_pct(r):
    if r.get("proxy_cpu_s") is None or not r.get("wrk_seconds"):
        return "-"
    return f"{100 * r['proxy_cpu_s'] / r['wrk_seconds']:.0f}"


def _fmt_lat(us):
    if us is None:
        return "-"
    return f"{us:.0f}us" if us < 1000 else f"{us / 1000:.2f}ms"


def _median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


# Counts of failures: over REPEAT rounds, their sum, not their median.
_SUMMED = ("errors", "non2xx", "sock_connect", "sock_read", "sock_write",
           "sock_timeout", "listen_overflows", "listen_drops")


def _merge_rounds(runs):
    """REPEAT rounds of one target and body: the median of each number (errors are
    summed), so one noisy round does not decide a ratio."""
    if len(runs) == 1:
        runs[0]["rounds"] = 1
        return runs[0]
    out = dict(runs[-1])
    for k, v in runs[-1].items():
        if k in _SUMMED:
            out[k] = sum(r.get(k) or 0 for r in runs)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            vals = [r[k] for r in runs if isinstance(r.get(k), (int, float))]
            out[k] = _median(vals) if vals else None
    out["rounds"] = len(runs)
    out["round_cpu_us_per_req"] = [r.get("proxy_cpu_us_per_req") for r in runs]
    return out


def _print_table(rows, left, out):
    """rows[0] is the header; the first `left` columns are left-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        cells = [c.ljust(w) if j < left else c.rjust(w)
                 for j, (c, w) in enumerate(zip(row, widths))]
        print(" | ".join(cells).rstrip(), file=out)
        if i == 0:
            print("-+-".join("-" * w for w in widths), file=out)


def cmd_report(results, outdir):
    raw = []
    with open(results) as f:
        for line in f:
            if line.strip():
                raw.append(json.loads(line))
    groups = {}
    for r in raw:
        groups.setdefault((r["target"], r["body"]), []).append(r)
    recs = [_merge_rounds(runs) for runs in groups.values()]
    if any(r["rounds"] > 1 for r in recs):
        print(f"medians over {max(r['rounds'] for r in recs)} rounds "
              "(per-round CPU us/req in summary.json)")
    nginx = {r["body"]: r for r in recs if r["target"] == "nginx"}
    rows = [("target", "body", "req/s", "p50", "p99", "errors",
             "proxy CPU us/req", "CPU vs nginx", "proxy core %")]
    for r in recs:
        n = nginx.get(r["body"])
        ratio = None
        if (n and r["target"] != "direct" and r["proxy_cpu_us_per_req"]
                and n["proxy_cpu_us_per_req"]):
            ratio = r["proxy_cpu_us_per_req"] / n["proxy_cpu_us_per_req"]
        r["cpu_ratio_vs_nginx"] = ratio
        r["p99_ratio_vs_nginx"] = (r["p99_us"] / n["p99_us"]
                                   if n and r["target"] != "direct" else None)
        cpu = r["proxy_cpu_us_per_req"]
        rows.append((r["target"], r["body"], f"{r['rps']:.0f}", _fmt_lat(r["p50_us"]),
                     _fmt_lat(r["p99_us"]), str(r["errors"]),
                     "-" if cpu is None else f"{cpu:.2f}",
                     "-" if ratio is None else f"{ratio:.2f}x", _core_pct(r)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        cells = [c.ljust(w) if j < 2 else c.rjust(w)
                 for j, (c, w) in enumerate(zip(row, widths))]
        print(" | ".join(cells))
        if i == 0:
            print("-+-".join("-" * w for w in widths))

    # Verdicts against the targets in loadtest/README.md. Plain proxying is judged
    # against nginx proxying; the gateway's stages against their baselines.
    verdicts = []
    by = {(r["target"], r["body"]): r for r in recs}
    pairs = [("ringgate-auth", "ringgate-uring", 1.15, "plain ringgate"),
             ("ringgate-cache", "nginx-cache", 0.5, "nginx proxy_cache hit"),
             ("ringgate-miss", "ringgate-q", 1.05, "plain ringgate, same URIs"),
             ("ringgate-uring", "ringgate-base", 1.05, "the base build (RINGGATE_BASE_BIN)")]
    for target, base, limit, what in pairs:
        for (t, body), r in by.items():
            b = by.get((base, body))
            if t != target or b is None:
                continue
            ratio = None
            if r["proxy_cpu_us_per_req"] and b["proxy_cpu_us_per_req"]:
                ratio = r["proxy_cpu_us_per_req"] / b["proxy_cpu_us_per_req"]
            r["cpu_ratio_vs_" + base] = ratio
            ok = ratio is not None and ratio <= limit and not r["errors"]
            verdicts.append(ok)
            print(f"{'PASS' if ok else 'MISS'} {t} {body}: CPU/request "
                  + ("?" if ratio is None else f"{ratio:.2f}x")
                  + f" {what} (target <= {limit}x)"
                  + (f"; {r['errors']} errors" if r["errors"] else ""))
    for r in recs:
        if r["target"] not in ("ringgate-uring", "ringgate-epoll"):
            continue
        n = nginx.get(r["body"])
        problems = []
        if r["errors"]:
            problems.append(f"{r['errors']} errors")
        if n is None:
            problems.append("no nginx run to compare with")
        else:
            if r["cpu_ratio_vs_nginx"] is None or r["cpu_ratio_vs_nginx"] > 0.7:
                problems.append("CPU/request {} > 0.7x nginx".format(
                    "?" if r["cpu_ratio_vs_nginx"] is None
                    else f"{r['cpu_ratio_vs_nginx']:.2f}x"))
            if r["p99_us"] > n["p99_us"]:
                problems.append(f"p99 {_fmt_lat(r['p99_us'])} > nginx "
                                f"{_fmt_lat(n['p99_us'])}")
        ok = not problems
        r["meets_targets"] = ok
        verdicts.append(ok)
        print(f"{'PASS' if ok else 'MISS'} {r['target']} {r['body']}"
              + ("" if ok else ": " + "; ".join(problems)))
    # The floor: what a proxy with no HTTP work at all costs here (loadtest/floor).
    for (t, body), fl in by.items():
        n = nginx.get(body)
        if t != "floor" or n is None or not fl["proxy_cpu_us_per_req"]:
            continue
        line = (f"FLOOR {body}: a bare io_uring forwarder with no HTTP costs "
                f"{fl['proxy_cpu_us_per_req']:.2f} us/req, "
                f"{fl['cpu_ratio_vs_nginx']:.2f}x nginx")
        for g in ("ringgate-uring", "ringgate-epoll"):
            r = by.get((g, body))
            if r and r["proxy_cpu_us_per_req"]:
                r["cpu_ratio_vs_floor"] = r["proxy_cpu_us_per_req"] / fl["proxy_cpu_us_per_req"]
                line += f"; {g} {r['cpu_ratio_vs_floor']:.2f}x the floor"
        print(line)
    for r in recs:
        if r["target"] in ("direct", "nginx") and r["errors"]:
            print(f"WARN {r['target']} {r['body']}: {r['errors']} errors")

    with open(os.path.join(outdir, "summary.json"), "w") as f:
        json.dump(recs, f, indent=2)
        f.write("\n")
    cols = ["target", "body", "rps", "p50_us", "p99_us", "errors", "requests",
            "proxy_cpu_s", "proxy_cpu_us_per_req", "cpu_ratio_vs_nginx",
            "origin_cpu_us_per_req", "wrk_cmd"]
    with open(os.path.join(outdir, "summary.tsv"), "w") as f:
        f.write("\t".join(cols) + "\n")
        for r in recs:
            f.write("\t".join("" if r.get(c) is None else str(r.get(c))
                              for c in cols) + "\n")
    # Exit status 3 = ran fine but a ringgate target missed; run.sh decides (STRICT).
    return 3 if verdicts and not all(verdicts) else 0


# ----------------------------------------------------------------------------- active

def cmd_activereport(results, outdir):
    """loadtest/active.sh: one row per target (medians over rounds, failures summed),
    CPU per request and RSS against nginx's in the same run. Prints the table and
    writes it, with the notes, to OUTDIR/summary.txt; every number to summary.json."""
    groups = {}
    with open(results) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                groups.setdefault(r["target"], []).append(r)
    recs = [_merge_rounds(runs) for runs in groups.values()]
    nginx = next((r for r in recs if r["target"] == "nginx"), None)

    def ratio(r, key):
        if not nginx or r is nginx or not r.get(key) or not nginx.get(key):
            return None
        return r[key] / nginx[key]

    def mib(kib):
        return "-" if kib is None else f"{kib / 1024:.1f}"

    def x(v):
        return "-" if v is None else f"{v:.2f}x"

    rows = [("target", "open", "req/s", "p50", "p99", "errors",
             "conn/read/write/timeout/non2xx", "CPU us/req", "vs nginx", "core %",
             "RSS MiB", "vs nginx", "peak MiB", "upstream", "new upstream/s",
             "acceptq max", "acceptq s")]
    for r in recs:
        r["cpu_ratio_vs_nginx"] = ratio(r, "proxy_cpu_us_per_req")
        r["rss_ratio_vs_nginx"] = ratio(r, "rss_kib")
        r["p99_ratio_vs_nginx"] = ratio(r, "p99_us")
        # connect()s on the whole host during the run, less wrk's own: the proxy's new
        # upstream connections (approximate: anything else connecting counts too).
        if r.get("connects") is not None and r.get("conns") and r.get("wrk_seconds"):
            r["upstream_new_per_s"] = max(0, r["connects"] - r["conns"]) / r["wrk_seconds"]
        cpu = r.get("proxy_cpu_us_per_req")
        rows.append((
            r["target"],
            "-" if r.get("open_conns") is None else f"{r['open_conns']:.0f}",
            f"{r['rps']:.0f}", _fmt_lat(r["p50_us"]), _fmt_lat(r["p99_us"]),
            str(r["errors"]),
            "/".join(str(r[k]) for k in ("sock_connect", "sock_read", "sock_write",
                                          "sock_timeout", "non2xx")),
            "-" if cpu is None else f"{cpu:.2f}", x(r["cpu_ratio_vs_nginx"]),
            _core_pct(r), mib(r.get("rss_kib")), x(r["rss_ratio_vs_nginx"]),
            mib(r.get("hwm_kib")),
            "-" if r.get("upstream_open") is None else f"{r['upstream_open']:.0f}",
            "-" if r.get("upstream_new_per_s") is None else f"{r['upstream_new_per_s']:.0f}",
            "-" if r.get("acceptq_max") is None else f"{r['acceptq_max']:.0f}",
            "-" if r.get("acceptq_s") is None else f"{r['acceptq_s']:.1f}"))
    notes = []
    rounds = max(r["rounds"] for r in recs)
    if rounds > 1:
        notes.append(f"medians over {rounds} rounds, failures summed "
                     "(per-round CPU us/req in summary.json)")
    for r in recs:
        if r["errors"]:
            notes.append(f"ERRORS {r['target']}: {r['errors']} (see {r['wrk_output']})")
        if r.get("listen_overflows") or r.get("listen_drops"):
            notes.append(f"WARN {r['target']}: the host counted "
                         f"{r.get('listen_overflows', 0)} listen-queue overflows and "
                         f"{r.get('listen_drops', 0)} drops during the run: a full "
                         "accept queue (the proxy's, if nothing else on the host was "
                         "accepting connections)")
        if r.get("open_conns") is not None and r.get("conns") \
                and r["open_conns"] < r["conns"]:
            notes.append(f"WARN {r['target']}: {r['open_conns']:.0f} of "
                         f"{r['conns']} connections open when RSS was sampled")
        if r.get("proxy_cpu_source") == "stat":
            notes.append(f"note {r['target']}: CPU from /proc/PID/stat (threads "
                         "exited during the run)")
    by = {r["target"]: r for r in recs}
    base = by.get("ringgate-base")
    if base:
        for t in ("ringgate-uring", "ringgate-epoll"):
            r = by.get(t)
            if not r:
                continue
            parts = []
            for key, what in (("proxy_cpu_us_per_req", "CPU/request"),
                              ("rss_kib", "RSS"), ("p99_us", "p99")):
                if r.get(key) and base.get(key):
                    r[f"{key}_vs_base"] = r[key] / base[key]
                    parts.append(f"{what} {r[key] / base[key]:.2f}x")
            notes.append(f"{t} vs ringgate-base (RINGGATE_BASE_BIN): " + ", ".join(parts))
    with open(os.path.join(outdir, "summary.txt"), "a") as f:
        for out in (sys.stdout, f):
            _print_table(rows, 1, out)
            for n in notes:
                print(n, file=out)
    with open(os.path.join(outdir, "summary.json"), "w") as f:
        json.dump(recs, f, indent=2)
        f.write("\n")
    return 0


# ----------------------------------------------------------------------------- rss

def _rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cmd_rss(pid, interval, out, stop):
    interval = float(interval)
    with open(out, "w") as f:
        while not os.path.exists(stop):
            try:
                f.write(f"{time.monotonic():.3f} {_rss_kib(pid)}\n")
            except OSError:
                break  # process gone
            f.flush()
            time.sleep(interval)


def cmd_rssreport(path):
    vals = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2:
                vals.append(int(parts[1]))
    if not vals:
        print("0 0 0")
        return
    print(vals[0], max(vals), len(vals))


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    fn = {"ports": cmd_ports, "body128": cmd_body128, "cpu": cmd_cpu, "tcpu": cmd_tcpu,
          "record": cmd_record, "report": cmd_report, "last": cmd_last, "rss": cmd_rss,
          "rssreport": cmd_rssreport, "activereport": cmd_activereport}.get(cmd)
    if fn is None:
        sys.exit(f"unknown subcommand {cmd!r}\n{__doc__}")
    rc = fn(*args)
    sys.exit(rc or 0)


if __name__ == "__main__":
    main()
