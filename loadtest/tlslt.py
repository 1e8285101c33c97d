#!/usr/bin/env python3
"""Helpers for loadtest/tls.sh (standard library only; wrk parsing and CPU sampling
come from lt.py).

Subcommands:
  mem PID                        print "<VmRSS kib> <Pss kib>" of PID
  slab                           print the kernel's Slab (kib), machine-wide
  corestat CPU                   print "<busy> <total> <steal>" ticks of that core
  hsline FILE                    print "<resumed_pct> <full> <resumed>" from tlsload's output
  negotiated FILE                print tlsload's "Negotiated:" line (without the label)
  sclient FILE                   print "version cipher group signature" from openssl
                                 s_client -brief output
  nginxlog FILE                  print "<requests> <resumed> <resumed_pct> <protocol cipher>..." of
                                 an access log in tls.sh's `tls` format
  idle RESULTS KEY=VALUE...      append one idle-memory measurement as a JSON line
  report RESULTS OUTDIR          the tables and verdicts; summary.txt and summary.json
"""

import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lt  # noqa: E402


def cmd_mem(pid):
    rss = pss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pss = 0
    print(rss, pss)


def cmd_corestat(cpu):
    """"<busy_ticks> <total_ticks> <steal_ticks>" of core CPU since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        for line in f:
            parts = line.split()
            if parts[0] == f"cpu{cpu}":
                v = [int(x) for x in parts[1:9]]
                user, nice, system, idle, iowait, irq, softirq, steal = v
                print(user + nice + system + irq + softirq, sum(v), steal)
                return
    print("0 0 0")


def cmd_slab():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("Slab:"):
                print(line.split()[1])
                return
    print(0)


def cmd_hsline(path):
    with open(path) as f:
        for line in f:
            m = re.match(r"Handshakes: (\d+) full, (\d+) full with HelloRetryRequest, "
                         r"(\d+) resumed \(([0-9.]+)% resumed\)", line)
            if m:
                full = int(m.group(1)) + int(m.group(2))
                print(m.group(4), full, m.group(3))
                return
    print("- - -")


def cmd_negotiated(path):
    with open(path) as f:
        for line in f:
            if line.startswith("Negotiated: "):
                print(line[len("Negotiated: "):].strip())
                return
    print("-")


def cmd_sclient(path):
    got = {}
    with open(path, errors="replace") as f:
        for line in f:
            k, _, v = line.partition(":")
            got[k.strip()] = v.strip()
    group = got.get("Server Temp Key", got.get("Negotiated TLS1.3 group", "-"))
    print(got.get("Protocol version", "-"), got.get("Ciphersuite", "-"),
          group.split(",")[0],
          got.get("Peer signature type", got.get("Signature type", "-")))


def cmd_nginxlog(path):
    n = reused = 0
    kinds = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) < 3:
                continue
            n += 1
            reused += parts[2] == "r"
            kinds[f"{parts[0]} {parts[1]}"] = kinds.get(f"{parts[0]} {parts[1]}", 0) + 1
    pct = 100.0 * reused / n if n else 0.0
    print(n, reused, f"{pct:.2f}",
          " / ".join(f"{k} ({v})" for k, v in sorted(kinds.items())) or "-")


def cmd_idle(results, *kvs):
    rec = {"test": "idle"}
    for kv in kvs:
        k, _, v = kv.partition("=")
        rec[k] = lt._value(v)
    n = rec["n"]
    rec["rss_kib_per_conn"] = (rec["rss_after"] - rec["rss_before"]) / n
    rec["pss_kib_per_conn"] = ((rec["pss_after"] - rec["pss_before"]) / n
                               if rec.get("pss_after") else None)
    rec["slab_kib_per_conn"] = (rec["slab_after"] - rec["slab_before"]) / n
    with open(results, "a") as f:
        f.write(json.dumps(rec) + "\n")
    print(f"  {rec['target']} {rec['cert']}: {n} idle TLS connections, RSS "
          f"{rec['rss_before'] / 1024:.1f} -> {rec['rss_after'] / 1024:.1f} MiB = "
          f"{rec['rss_kib_per_conn']:.2f} KiB per connection, PSS "
          + ("-" if rec["pss_kib_per_conn"] is None
             else f"{rec['pss_kib_per_conn']:.2f} KiB")
          + f" per connection (kernel slab, both ends: {rec['slab_kib_per_conn']:.2f} KiB)")


# Targets of issue 15: the ringgate figure over nginx's, in the same run.
LIMITS = {"ka128": 1.0, "ka1m": 1.0, "full": 0.8, "resume": 0.8, "idle": 1.0}
TEST_ORDER = ["ka128", "ka1m", "full", "resume", "idle"]
TEST_WHAT = {"ka128": "keep-alive, 128 B", "ka1m": "keep-alive, 1 MiB",
             "full": "full handshake per request", "resume": "resumed handshake per request",
             "idle": "idle TLS connection"}


def _merge(runs):
    out = lt._merge_rounds(runs)
    if len(runs) > 1 and runs[0].get("test") == "idle":
        out["round_rss_kib_per_conn"] = [r["rss_kib_per_conn"] for r in runs]
    return out


def cmd_report(results, outdir):
    groups = {}
    with open(results) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                groups.setdefault((r["cert"], r["test"], r["target"]), []).append(r)
    recs = [_merge(runs) for runs in groups.values()]
    certs = [c for c in ("ecdsa", "rsa") if any(r["cert"] == c for r in recs)]
    targets = []
    for r in recs:
        if r["target"] not in targets:
            targets.append(r["target"])
    by = {(r["cert"], r["test"], r["target"]): r for r in recs}
    lines = []
    verdicts = []

    def emit(s=""):
        lines.append(s)

    rounds = max(r["rounds"] for r in recs) if recs else 0
    if rounds > 1:
        emit(f"medians over {rounds} rounds, errors summed (per-round values in summary.json)")
    for cert in certs:
        rows = [("cert", "test", "target", "req/s", "p50", "p99", "errors",
                 "CPU us/req", "vs nginx", "core %", "other %", "resumed", "negotiated")]
        for test in TEST_ORDER[:4]:
            for t in targets:
                r = by.get((cert, test, t))
                if not r:
                    continue
                n = by.get((cert, test, "nginx"))
                cpu = r.get("proxy_cpu_us_per_req")
                ratio = None
                if n and r is not n and cpu and n.get("proxy_cpu_us_per_req"):
                    ratio = cpu / n["proxy_cpu_us_per_req"]
                r["cpu_ratio_vs_nginx"] = ratio
                res = r.get("resumed_pct")
                rows.append((cert, test, t, f"{r['rps']:.0f}", lt._fmt_lat(r["p50_us"]),
                             lt._fmt_lat(r["p99_us"]), str(r["errors"]),
                             "-" if cpu is None else f"{cpu:.2f}",
                             "-" if ratio is None else f"{ratio:.2f}x", lt._core_pct(r),
                             _other_pct(r),
                             "-" if not isinstance(res, (int, float)) else f"{res:.1f}%",
                             str(r.get("negotiated", "-"))))
        if len(rows) > 1:
            _table(rows, 3, emit)
            emit()
        rows = [("cert", "target", "idle conns", "open", "RSS before -> after MiB",
                 "RSS KiB/conn", "vs nginx", "PSS KiB/conn", "vs nginx",
                 "kernel slab KiB/conn (both ends)")]
        for t in targets:
            r = by.get((cert, "idle", t))
            if not r:
                continue
            n = by.get((cert, "idle", "nginx"))
            rr = pr = None
            if n and r is not n:
                if n["rss_kib_per_conn"] > 0:
                    rr = r["rss_kib_per_conn"] / n["rss_kib_per_conn"]
                if n.get("pss_kib_per_conn") and r.get("pss_kib_per_conn") is not None:
                    pr = r["pss_kib_per_conn"] / n["pss_kib_per_conn"]
            r["rss_ratio_vs_nginx"], r["pss_ratio_vs_nginx"] = rr, pr
            rows.append((cert, t, f"{r['n']:.0f}", f"{r['open']:.0f}",
                         f"{r['rss_before'] / 1024:.1f} -> {r['rss_after'] / 1024:.1f}",
                         f"{r['rss_kib_per_conn']:.2f}",
                         "-" if rr is None else f"{rr:.2f}x",
                         "-" if r.get("pss_kib_per_conn") is None
                         else f"{r['pss_kib_per_conn']:.2f}",
                         "-" if pr is None else f"{pr:.2f}x",
                         f"{r['slab_kib_per_conn']:.2f}"))
        if len(rows) > 1:
            _table(rows, 2, emit)
            emit()

    # Verdicts: every ringgate target against nginx, per certificate and test.
    for cert in certs:
        for test in TEST_ORDER:
            n = by.get((cert, test, "nginx"))
            for t in targets:
                r = by.get((cert, test, t))
                if not r or not t.startswith("ringgate") or not n:
                    continue
                limit = LIMITS[test]
                if test == "idle":
                    a, b, what = r["rss_kib_per_conn"], n["rss_kib_per_conn"], "RSS per idle connection"
                    ok = a <= limit * b
                    ratio = a / b if b > 0 else None
                else:
                    a, b, what = r.get("proxy_cpu_us_per_req"), n.get("proxy_cpu_us_per_req"), "CPU per request"
                    ratio = a / b if a and b else None
                    ok = ratio is not None and ratio <= limit and not r["errors"]
                verdicts.append(ok)
                emit(f"{'PASS' if ok else 'MISS'} {t} {cert} {TEST_WHAT[test]}: {what} "
                     + ("?" if ratio is None else f"{ratio:.2f}x")
                     + f" nginx's (target <= {limit}x)"
                     + (f"; {r['errors']} errors" if r.get("errors") else ""))
    # Same protocol and cipher on every target, or the comparison is not like for like.
    for cert in certs:
        for test in ("full", "resume"):
            seen = {by[(cert, test, t)].get("negotiated") for t in targets
                    if (cert, test, t) in by}
            if len(seen) > 1:
                emit(f"WARN {cert} {test}: the targets negotiated different parameters: "
                     + " | ".join(sorted(str(s) for s in seen)))
        for t in targets:
            f = by.get((cert, "full", t))
            if f and isinstance(f.get("resumed_pct"), (int, float)) and f["resumed_pct"] > 0:
                emit(f"WARN {t} {cert}: {f['resumed_pct']:.2f}% of the 'full' handshakes resumed")
            s = by.get((cert, "resume", t))
            # Each client thread's first connection has no ticket yet: hs_conns full
            # handshakes are expected, any more means tickets were refused or ran out.
            if s and isinstance(s.get("hs_full"), (int, float)) and s["hs_full"] > s["hs_conns"]:
                emit(f"WARN {t} {cert}: {s['hs_full']:.0f} of the 'resume' handshakes were "
                     f"full (only the first of each of the {s['hs_conns']} connections should "
                     f"be); {s['resumed_pct']:.2f}% resumed")
        for t in targets:
            for test in TEST_ORDER[:4]:
                r = by.get((cert, test, t))
                if r and r.get("errors") and t == "nginx":
                    emit(f"WARN nginx {cert} {test}: {r['errors']} errors")
    busy = [f"{r['cert']} {r['test']} {r['target']} ({r['other_on_proxy_core_pct']:.0f}%)"
            for r in recs if (r.get("other_on_proxy_core_pct") or 0) > 10]
    if busy:
        emit("WARN other work used more than 10% of the proxy's core during: "
             + ", ".join(busy) + ": those rows (and their ratios) are not reliable")
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(outdir, "summary.txt"), "a") as f:
        f.write(text + "\n")
    with open(os.path.join(outdir, "summary.json"), "w") as f:
        json.dump(recs, f, indent=2)
        f.write("\n")
    return 3 if verdicts and not all(verdicts) else 0


def _other_pct(r):
    """What else ran on the proxy's core during the run (other processes, interrupts
    and softirqs not charged to the proxy), in % of the core: a few % is the floor;
    more means the run was disturbed."""
    busy, total = r.get("core_busy_ticks"), r.get("core_total_ticks")
    if not isinstance(busy, (int, float)) or not total or r.get("proxy_cpu_s") is None:
        return "-"
    r["other_on_proxy_core_pct"] = max(0.0, 100 * (busy / lt.CLK_TCK - r["proxy_cpu_s"])
                                       / (total / lt.CLK_TCK))
    return f"{r['other_on_proxy_core_pct']:.0f}"


def _table(rows, left, emit):
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        cells = [c.ljust(w) if j < left else c.rjust(w)
                 for j, (c, w) in enumerate(zip(row, widths))]
        emit(" | ".join(cells).rstrip())
        if i == 0:
            emit("-+-".join("-" * w for w in widths))


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    fn = {"mem": cmd_mem, "slab": cmd_slab, "hsline": cmd_hsline,
          "negotiated": cmd_negotiated, "corestat": cmd_corestat, "sclient": cmd_sclient, "nginxlog": cmd_nginxlog,
          "idle": cmd_idle, "report": cmd_report}.get(cmd)
    if fn is None:
        sys.exit(f"unknown subcommand {cmd!r}\n{__doc__}")
    sys.exit(fn(*args) or 0)


if __name__ == "__main__":
    main()
