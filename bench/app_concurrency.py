"""Many users at once: the real app driven through its API (gradio_client), each user with their own barcodes.

The app is started in this process on a free port, on the real default library. Each of U users (a
thread with its own Client) identifies R barcodes one request at a time; every answer is checked to be
that user's own query. Reported per U: median and p95 latency per answer, answers per second in all,
errors, answers that were not the asker's.

    .venv/bin/python bench/app_concurrency.py [--users 1 8 32] [--requests 10]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from gradio_client import Client

from clibd_core.data.bold import read_bold_tsv
from clibd_core.reference import DEFAULT_SOURCE

OUT = Path(__file__).resolve().parents[1] / "docs" / "bench_app_concurrency.json"


def serve() -> tuple[str, subprocess.Popen]:
    """`python app.py` in its own process, as a lab serves it (clients here, in another process)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    home = tempfile.mkdtemp(prefix="clibd-bench-home-")
    server = subprocess.Popen(
        [sys.executable, "app.py"],
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, "CLIBD_HOME": home, "CLIBD_PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    for _ in range(120):
        try:
            Client(url, verbose=False).predict([], ">warm\nACGT" * 1, None, 10, "", "", "auto", api_name="/identify")
            break
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(1)
    return url, server


def user(url: str, barcodes: list[tuple[str, str]], latencies: list, problems: list) -> None:
    client = Client(url, verbose=False)
    for query_id, sequence in barcodes:
        started = time.time()
        try:
            answer = client.predict([], f">{query_id}\n{sequence}", None, 10, "", "", "auto", api_name="/identify")
        except Exception as error:  # noqa: BLE001 - every failure is counted, whatever its kind
            problems.append(f"error: {error}")
            continue
        latencies.append(time.time() - started)
        if not answer[0].startswith(f"## {query_id}"):
            problems.append(f"cross-talk: asked {query_id}, got {answer[0][:40]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=10, help="requests per user")
    args = parser.parse_args()
    records = [r for r in read_bold_tsv(DEFAULT_SOURCE).records if len(r.barcode) >= 500]
    rng = np.random.default_rng(0)
    url, server = serve()
    report = {}
    for users in args.users:
        picked = [records[i] for i in rng.choice(len(records), users * args.requests, replace=False)]
        latencies, problems, threads = [], [], []
        started = time.time()
        for u in range(users):
            mine = [(f"u{u}_{r.id}", r.barcode) for r in picked[u * args.requests : (u + 1) * args.requests]]
            threads.append(threading.Thread(target=user, args=(url, mine, latencies, problems)))
            threads[-1].start()
        for thread in threads:
            thread.join()
        wall = time.time() - started
        report[f"{users}_users"] = {
            "answers": len(latencies),
            "median_s": round(float(np.median(latencies)), 3),
            "p95_s": round(float(np.quantile(latencies, 0.95)), 3),
            "answers_per_s": round(len(latencies) / wall, 1),
            "problems": len(problems),
            "first_problems": problems[:3],
        }
        print(users, report[f"{users}_users"], flush=True)
    server.terminate()
    OUT.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
