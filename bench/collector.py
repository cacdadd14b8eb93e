"""Collector-alone bench: the collector vs a bare ASGI app, each on one core, interleaved.

    .venv/bin/python bench/collector.py [--seconds 5] [--rounds 3] [--connections 64]

The bare app (bench/bare_app.py: read the body, parse it with orjson, answer 204) and
`driftnet collector` (embedded log, synchronous=FULL: every 2xx is fsync'd) both run pinned
to core 0 (``taskset``); wrk (bench/wrk/post.lua) runs pinned to core 1. Each round loads
bare, collector, then collector, bare (A/B/B/A, so drift in a shared machine's load
falls on both), for one-event Segment bodies and for 50-event batches. The figure is the
ratio collector / bare of the summed requests/s; the per-round figures are kept to show
the spread. Beside req/s, the server's CPU time per request (/proc) is measured: the ratio
bare / collector of it is what the req/s ratio would be with a core to each, and it moves
far less than req/s when other work shares the machine. Prints JSON and writes
bench/results/collector.json. Needs wrk and taskset.

``--baseline DIR`` also serves the collector of another source tree (e.g. ``git archive
<commit> | tar -x -C DIR``) in the same run, interleaved the same way: before/after figures
of a change measured under the same load.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import TENANTS, event, free_port, stop, wait_port, wrk  # noqa: E402

SERVER_CPU = 0
WRK_CPU = 1


def serve(args: list[str], port: int, workdir: Path,
          env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    log = open(workdir / f"server-{port}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(["taskset", "-c", str(SERVER_CPU), *args], stdout=log,
                            stderr=subprocess.STDOUT, cwd=workdir,
                            env={**os.environ, **(env or {})})
    wait_port(port)
    return proc


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=5, help="wrk duration per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--out", default="collector.json", help="file in bench/results/")
    parser.add_argument("--baseline", type=Path, help="source tree of a collector to compare")
    args = parser.parse_args()
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        sys.exit("bench needs wrk and taskset: apt-get install wrk util-linux")
    workdir = Path(tempfile.mkdtemp(prefix="driftnet-bench-"))
    bodies = {"single": ("/v1/track", orjson.dumps(event(1))),
              "batch": ("/v1/batch", orjson.dumps({"batch": [event(i) for i in range(50)]}))}
    ports = {"bare": free_port(), "collector": free_port()}
    if args.baseline:
        ports["baseline"] = free_port()
    servers = {"bare": serve([sys.executable, "-m", "uvicorn", "--app-dir", str(ROOT / "bench"),
                              "bare_app:app", "--port", str(ports["bare"]), "--loop", "uvloop",
                              "--http", "httptools", "--no-access-log", "--log-level",
                              "warning"], ports["bare"], workdir)}
    for name, tree in (("collector", ROOT), ("baseline", args.baseline)):
        if name in ports:
            servers[name] = serve(
                [sys.executable, "-m", "driftnet", "collector", "--tenants", str(TENANTS),
                 "--port", str(ports[name]), "--log", str(workdir / f"{name}-log.sqlite")],
                ports[name], workdir, env={"PYTHONPATH": str(tree)})
    order = [*servers, *reversed(servers)]  # A/B/B/A (A/B/C/C/B/A with a baseline)
    runs: dict[str, list[float]] = {f"{s}_{b}": [] for s in servers for b in bodies}
    cpu: dict[str, list[float]] = {key: [] for key in runs}  # CPU µs per request
    try:
        for path, body in bodies.values():  # warm-up: imports, caches, the log file
            for server in servers:
                wrk(f"http://127.0.0.1:{ports[server]}{path}", body, 1, args.connections,
                    workdir, cpu=WRK_CPU)
        for _ in range(args.rounds):
            for name, (path, body) in bodies.items():
                for server in order:
                    before = cpu_seconds(servers[server].pid)
                    rps = wrk(f"http://127.0.0.1:{ports[server]}{path}", body, args.seconds,
                              args.connections, workdir, cpu=WRK_CPU)
                    used = cpu_seconds(servers[server].pid) - before
                    runs[f"{server}_{name}"].append(rps)
                    cpu[f"{server}_{name}"].append(used / (rps * args.seconds) * 1e6)
    finally:
        for proc in servers.values():
            stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)
    results: dict[str, object] = {"seconds": args.seconds, "rounds": args.rounds,
                                  "connections": args.connections,
                                  "single_body_bytes": len(bodies["single"][1]),
                                  "batch_body_bytes": len(bodies["batch"][1])}
    for name in bodies:
        bare = runs[f"bare_{name}"]
        results[f"bare_{name}_rps"] = [round(r) for r in bare]
        bare_cpu = sorted(cpu[f"bare_{name}"])[len(bare) // 2]
        results[f"bare_{name}_cpu_us"] = round(bare_cpu, 1)
        for server in servers:
            if server == "bare":
                continue
            rps = runs[f"{server}_{name}"]
            results[f"{server}_{name}_ratio"] = round(sum(rps) / sum(bare), 3)
            # Per run: each collector run against the bare run at the same place in the order.
            results[f"{server}_{name}_ratio_runs"] = [round(c / b, 3)
                                                      for c, b in zip(rps, bare, strict=True)]
            results[f"{server}_{name}_rps"] = [round(r) for r in rps]
            # CPU per request (median), bare / collector: what the req/s ratio would be on a
            # core of its own when both are CPU-bound; far steadier on a shared machine.
            server_cpu = sorted(cpu[f"{server}_{name}"])[len(rps) // 2]
            results[f"{server}_{name}_cpu_us"] = round(server_cpu, 1)
            results[f"{server}_{name}_cpu_ratio"] = round(bare_cpu / server_cpu, 3)
    print(json.dumps(results, indent=2))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
