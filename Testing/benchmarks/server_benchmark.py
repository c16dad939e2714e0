"""Latency (p50/p95) and throughput of contour requests, remote (``synthlab serve`` on loopback) vs local.

Each level runs ``--requests`` requests from 1, 4 and 16 concurrent clients on one
phantom pair. Local: each client starts its own ``synthlab contour`` subprocess
(LocalBackend), all at once. Remote: the clients upload to one server that runs
one job at a time (one worker, as on a one-GPU machine) and queues the rest.

    .venv/bin/python Testing/benchmarks/server_benchmark.py --datalist D/datalist.json \
        --registry Resources/Models.json --requests 16
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from synthlab.client import Backend, LocalBackend, RemoteBackend
from synthlab.datalist import read_datalist

TOKEN = "benchmark"


def start_server(registry: Path, queue: int) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "SYNTHLAB_MODELS": str(registry), "SYNTHLAB_TOKEN": TOKEN}
    process = subprocess.Popen([sys.executable, "-m", "synthlab", "serve", "--port", str(port), "--queue",
                                str(queue)], env=env, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if requests.get(url + "/health", timeout=1).ok:
                return process, url
        except requests.ConnectionError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the server did not start")


def run_level(backend: Backend, inputs: dict, clients: int, total: int, folder: Path) -> dict:
    """``total`` requests from ``clients`` concurrent clients: latency percentiles and throughput."""
    def one(index: int) -> float:
        started = time.perf_counter()
        backend.run("contour", inputs, {"out_labels": folder / f"out{index}.seg.nrrd"})
        return time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = sorted(pool.map(one, range(total)))
    wall = time.perf_counter() - started
    return {"clients": clients, "requests": total, "p50_s": round(statistics.median(latencies), 2),
            "p95_s": round(latencies[min(len(latencies) - 1, int(round(0.95 * (len(latencies) - 1))))], 2),
            "throughput_per_min": round(60 * total / wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datalist", type=Path, required=True)
    parser.add_argument("--registry", type=Path, required=True, help="Models.json with a contour model")
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16], help="concurrency levels")
    parser.add_argument("--report", type=Path)
    args = parser.parse_args()
    entry = read_datalist(args.datalist)["test"][0]
    inputs = {key: entry[key] for key in ("fixed", "moving", "moving_labels")}
    levels = args.clients
    server, url = start_server(args.registry, queue=max(levels))
    results = []
    try:
        backends = {"local": LocalBackend(env={"SYNTHLAB_MODELS": str(args.registry)}),
                    "remote": RemoteBackend(url, TOKEN, poll_seconds=0.1)}
        with tempfile.TemporaryDirectory() as folder:
            for clients in levels:
                for where, backend in backends.items():
                    level = {"backend": where, **run_level(backend, inputs, clients, args.requests, Path(folder))}
                    print(json.dumps(level), flush=True)
                    results.append(level)
    finally:
        server.terminate()
        server.wait(30)
    if args.report:
        args.report.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
