#!/usr/bin/env python3
"""Parse `wrk --latency` and `h2load` output and summarise benchmark rounds.

    wrk_report.py line FILE                    one-line summary of one run (progress)
    wrk_report.py table RUNS_TSV OUT_DIR [key=value...]
        RUNS_TSV rows: scenario, server, round, expect (ok|rejected), raw output file (wrk's,
        or h2load's with its per-request `--log-file` next to it as FILE.log).
        FILE.cpu next to each wrk output holds the CPU seconds used during the run by the
        server, by wrk and by the whole machine (written by edge-vs-nginx.sh).
        Writes OUT_DIR/results.json (every run, parsed, plus the key=value metadata) and
        OUT_DIR/table.md, and prints the tables.

Only the standard library: the bench must run on a bare Debian with python3.
"""

import json
import re
import statistics
import sys
from pathlib import Path

# wrk prints latencies with these units (stats.c, format_time) ...
TIME_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
# ... and byte counts in binary multiples (format_binary).
BYTE_UNITS = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}

SERVERS = ("nginx", "edge")
# A run during which other processes used more than this share of a core is "contended": it
# measures the neighbours as much as the server, and is left out of the medians when at least
# one clean round of the same scenario and server exists.
CONTENDED_CORES = 0.15


def to_ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError(f"unparsable latency {text!r}")
    return float(m.group(1)) * TIME_UNITS[m.group(2)]


def to_bytes(text):
    m = re.fullmatch(r"([\d.]+)(B|KB|MB|GB|TB)", text)
    if not m:
        raise ValueError(f"unparsable size {text!r}")
    return float(m.group(1)) * BYTE_UNITS[m.group(2)]


def parse_wrk(text):
    """The numbers of one `wrk --latency` run. Raises ValueError if the run did not complete."""
    result = {
        "requests": None,
        "duration_s": None,
        "bytes_read": None,
        "requests_per_s": None,
        "bytes_per_s": None,
        "latency_ms": {},
        # wrk omits these two lines when they are all zero.
        "socket_errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0},
        "non_2xx_3xx": 0,
    }
    for line in text.splitlines():
        line = line.strip()
        if m := re.fullmatch(r"(50|75|90|99)%\s+(\S+)", line):
            result["latency_ms"]["p" + m.group(1)] = to_ms(m.group(2))
        elif m := re.fullmatch(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)\s+\S+", line):
            result["latency_ms"]["avg"] = to_ms(m.group(1))
            result["latency_ms"]["max"] = to_ms(m.group(3))
        elif m := re.fullmatch(r"(\d+) requests in ([\d.]+\w+), (\S+) read", line):
            result["requests"] = int(m.group(1))
            result["duration_s"] = to_ms(m.group(2)) / 1e3
            result["bytes_read"] = to_bytes(m.group(3))
        elif m := re.fullmatch(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", line):
            result["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups())))
        elif m := re.fullmatch(r"Non-2xx or 3xx responses: (\d+)", line):
            result["non_2xx_3xx"] = int(m.group(1))
        elif m := re.fullmatch(r"Requests/sec:\s+([\d.]+)", line):
            result["requests_per_s"] = float(m.group(1))
        elif m := re.fullmatch(r"Transfer/sec:\s+(\S+)", line):
            result["bytes_per_s"] = to_bytes(m.group(1))
    missing = [k for k in ("requests", "requests_per_s") if result[k] is None]
    if missing or "p99" not in result["latency_ms"]:
        raise ValueError(f"incomplete wrk output (missing {missing or 'p99'})")
    return result


def parse_h2load(text, log_path):
    """The numbers of one h2load run, in parse_wrk's shape. h2load prints no percentiles: they
    come from its per-request log (start time, status, duration in microseconds)."""
    result = {
        "requests": None,
        "duration_s": None,
        "bytes_read": None,
        "requests_per_s": None,
        "bytes_per_s": None,
        "latency_ms": {},
        "socket_errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0},
        "non_2xx_3xx": 0,
    }
    for line in text.splitlines():
        line = line.strip()
        if m := re.fullmatch(r"finished in ([\d.]+)(\w+), ([\d.]+) req/s, (\S+)/s", line):
            result["duration_s"] = to_ms(m.group(1) + m.group(2)) / 1e3
            result["requests_per_s"] = float(m.group(3))
            result["bytes_per_s"] = to_bytes(m.group(4).replace("i", ""))
        elif m := re.fullmatch(r"requests: \d+ total, \d+ started, (\d+) done, \d+ succeeded, "
                                r"(\d+) failed, (\d+) errored, (\d+) timeout", line):
            result["requests"] = int(m.group(1))
            # "failed" counts 4xx/5xx answers too (the 403 scenario's whole point); "errored"
            # are reset streams and broken connections: reported as read errors.
            result["socket_errors"]["read"] = int(m.group(3))
            result["socket_errors"]["timeout"] = int(m.group(4))
        elif m := re.fullmatch(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", line):
            result["non_2xx_3xx"] = int(m.group(3)) + int(m.group(4))
        elif m := re.fullmatch(r"traffic: \S+ \((\d+)\) total.*", line):
            result["bytes_read"] = float(m.group(1))
    durations = []
    try:
        for row in Path(log_path).read_text().splitlines():
            fields = row.split("\t")
            if len(fields) == 3:
                durations.append(int(fields[2]) / 1e3)
    except OSError:
        pass
    if durations:
        durations.sort()
        for p in (50, 75, 90, 99):
            result["latency_ms"][f"p{p}"] = durations[min(len(durations) - 1, len(durations) * p // 100)]
        result["latency_ms"]["avg"] = sum(durations) / len(durations)
        result["latency_ms"]["max"] = durations[-1]
    missing = [k for k in ("requests", "requests_per_s") if result[k] is None]
    if missing or "p99" not in result["latency_ms"]:
        raise ValueError(f"incomplete h2load output (missing {missing or 'the per-request log'})")
    return result


def parse_run(path):
    """One run's numbers, from wrk's or h2load's output."""
    text = Path(path).read_text()
    if re.search(r"^finished in ", text, re.M):
        return parse_h2load(text, str(path) + ".log")
    return parse_wrk(text)


def problems(run, expect):
    """Human-readable anomalies: socket errors, or statuses other than the scenario expects."""
    found = [f"{n} {kind} errors" for kind, n in run["socket_errors"].items() if n]
    if expect == "ok" and run["non_2xx_3xx"]:
        found.append(f"{run['non_2xx_3xx']} non-2xx/3xx responses")
    if expect == "rejected" and run["non_2xx_3xx"] != run["requests"]:
        found.append(f"{run['requests'] - run['non_2xx_3xx']} of {run['requests']} requests NOT rejected")
    if run["requests"] == 0:
        found.append("no request completed")
    return found


def fmt_rate(x):
    return "-" if x is None else f"{x:,.0f}"


def fmt_ms(x):
    return "-" if x is None else (f"{x:.2f} ms" if x < 10 else f"{x:.1f} ms")


def fmt_us(x):
    return "-" if x is None else f"{x:.0f} us"


def fmt_pct(x):
    return "-" if x is None else f"{x:.0%}"


def fmt_ratio(a, b):
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}"


def add_cpu(run, cpu_file):
    """CPU use during the run, in cores (1.0 = one core busy for the whole run): the server's,
    wrk's and everything else's (other processes competing for the 2 cores), plus the server's
    CPU time per request."""
    server, client, machine = (float(x) for x in cpu_file.read_text().split())
    duration = run["duration_s"] or float("nan")
    run["server_cpu_s"] = server
    run["server_busy_cores"] = server / duration
    run["client_busy_cores"] = client / duration
    run["other_busy_cores"] = max(0.0, machine - server - client) / duration
    run["server_cpu_us_per_request"] = server / run["requests"] * 1e6 if run["requests"] else None


def cmd_line(path):
    run = parse_run(path)
    cpu_file = Path(path + ".cpu")
    cpu = ""
    if cpu_file.exists():
        add_cpu(run, cpu_file)
        cpu = (f", CPU server {run['server_busy_cores']:.0%} ({fmt_us(run['server_cpu_us_per_request'])}/req)"
               f" client {run['client_busy_cores']:.0%} other {run['other_busy_cores']:.0%}")
    extra = problems(run, "any")
    mib_s = (run["bytes_per_s"] or 0) / (1 << 20)
    print(
        f"{run['requests_per_s']:,.0f} req/s, {mib_s:,.0f} MiB/s, p99 {fmt_ms(run['latency_ms']['p99'])}, "
        f"non-2xx {run['non_2xx_3xx']}{cpu}" + (f", {'; '.join(extra)}" if extra else "")
    )


def cmd_table(runs_tsv, out_dir, meta_args):
    out_dir = Path(out_dir)
    meta = dict(arg.split("=", 1) for arg in meta_args)
    runs, order = [], []
    for row in Path(runs_tsv).read_text().splitlines():
        scenario, server, rnd, expect, raw = row.split("\t")
        if scenario not in order:
            order.append(scenario)
        entry = {"scenario": scenario, "server": server, "round": int(rnd), "expect": expect,
                 "raw_file": Path(raw).name}
        try:
            entry.update(parse_run(raw))
            add_cpu(entry, Path(raw + ".cpu"))
            entry["problems"] = problems(entry, expect)
        except (OSError, ValueError) as err:
            entry["problems"] = [f"unusable run: {err}"]
        runs.append(entry)

    # Medians over rounds: robust to one noisy round, which on a shared 2-core box happens.
    summary, excluded = [], []
    for scenario in order:
        row = {"scenario": scenario}
        for server in SERVERS:
            done = [r for r in runs if r["scenario"] == scenario and r["server"] == server
                    and r.get("requests_per_s") is not None]
            clean = [r for r in done if (r.get("other_busy_cores") or 0) <= CONTENDED_CORES]
            if clean and len(clean) < len(done):
                excluded += [f"{scenario} {server} round {r['round']} "
                             f"(other load {r['other_busy_cores']:.0%})" for r in done if r not in clean]
                done = clean

            def median(get):
                values = [get(r) for r in done if get(r) is not None]
                return statistics.median(values) if values else None

            row[server] = {
                "rounds": len(done),
                "rounds_contended": sum((r.get("other_busy_cores") or 0) > CONTENDED_CORES for r in done),
                "requests_per_s_median": median(lambda r: r["requests_per_s"]),
                "p99_ms_median": median(lambda r: r["latency_ms"]["p99"]),
                "bytes_per_s_median": median(lambda r: r["bytes_per_s"]),
                "server_busy_cores_median": median(lambda r: r["server_busy_cores"]),
                "server_cpu_us_per_request_median": median(lambda r: r["server_cpu_us_per_request"]),
                "client_busy_cores_median": median(lambda r: r["client_busy_cores"]),
                "other_busy_cores_max": max((r["other_busy_cores"] for r in done), default=None),
            }
        summary.append(row)

    speed = render(
        ["scenario", "nginx req/s", "edge req/s", "edge/nginx", "nginx p99", "edge p99", "p99 edge/nginx"],
        [[
            row["scenario"],
            fmt_rate(row["nginx"]["requests_per_s_median"]), fmt_rate(row["edge"]["requests_per_s_median"]),
            fmt_ratio(row["edge"]["requests_per_s_median"], row["nginx"]["requests_per_s_median"]),
            fmt_ms(row["nginx"]["p99_ms_median"]), fmt_ms(row["edge"]["p99_ms_median"]),
            fmt_ratio(row["edge"]["p99_ms_median"], row["nginx"]["p99_ms_median"]),
        ] for row in summary],
    )
    # A server well under 100% busy was not the bottleneck (wrk or loopback was): then its
    # req/s says little, and CPU per request is the fairer comparison. "other max" is the
    # worst run's load from other processes: above ~10% that scenario's numbers are suspect.
    cpu = render(
        ["scenario", "nginx CPU busy", "edge CPU busy", "client busy (n/e)", "other max (n/e)",
         "nginx CPU/req", "edge CPU/req", "edge/nginx"],
        [[
            row["scenario"],
            fmt_pct(row["nginx"]["server_busy_cores_median"]), fmt_pct(row["edge"]["server_busy_cores_median"]),
            f"{fmt_pct(row['nginx']['client_busy_cores_median'])} / {fmt_pct(row['edge']['client_busy_cores_median'])}",
            f"{fmt_pct(row['nginx']['other_busy_cores_max'])} / {fmt_pct(row['edge']['other_busy_cores_max'])}",
            fmt_us(row["nginx"]["server_cpu_us_per_request_median"]),
            fmt_us(row["edge"]["server_cpu_us_per_request_median"]),
            fmt_ratio(row["edge"]["server_cpu_us_per_request_median"],
                      row["nginx"]["server_cpu_us_per_request_median"]),
        ] for row in summary],
    )

    issues = [f"{r['scenario']} {r['server']} round {r['round']}: {'; '.join(r['problems'])}"
              for r in runs if r["problems"]]
    notes = "\n".join(["", "Problems seen:"] + ["  " + i for i in issues]) if issues else ""
    if excluded:
        notes += "\n".join(["", f"Left out of the medians (other processes > {CONTENDED_CORES:.0%} of a core):"]
                           + ["  " + e for e in excluded])
    still = [f"{row['scenario']} {server}" for row in summary for server in SERVERS
             if row[server]["rounds_contended"]]
    if still:
        notes += "\n".join(["", "Every round contended, medians unreliable:"] + ["  " + x for x in still])
    settings = ", ".join(f"{k}={v}" for k, v in meta.items())

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(
        {"meta": meta, "summary": summary, "runs": runs}, indent=2) + "\n")
    (out_dir / "table.md").write_text(
        f"{speed[1]}\n\n{cpu[1]}\n\nMedians over rounds; {settings}\n{notes}\n")
    print(f"{speed[0]}\n\n{cpu[0]}\n\nMedians over rounds (CPU busy: 100% = one core); {settings}{notes}")
    return 1 if issues else 0


def render(header, lines):
    """The same table as aligned text (terminal) and as Markdown (README)."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    text = "\n".join(
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths)))
        for r in [header, ["-" * w for w in widths]] + lines
    )
    md = "\n".join("| " + " | ".join(r) + " |" for r in [header, ["---"] * len(header)] + lines)
    return text, md


def main(argv):
    if len(argv) == 3 and argv[1] == "line":
        cmd_line(argv[2])
        return 0
    if len(argv) >= 4 and argv[1] == "table":
        return cmd_table(argv[2], argv[3], argv[4:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
