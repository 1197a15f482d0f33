"""Many users at once: the real app driven through its Gradio endpoint, each user with their own barcodes.

`python app.py` runs in its own process on a free port, on the real default library. Each of U users (a
thread) keeps one session, as an open page does, and identifies R barcodes one request at a time through
the page's own event (`/identify`, by Gradio's plain HTTP route: POST the inputs, read the answer's event
stream). Every answer is checked to be that user's own query. Reported per U: median and p95 latency per
answer, answers per second in all, errors, answers that were not the asker's, and the CPU time the server
and the users spent per answer.

The users are plain HTTP clients, not gradio_client: gradio_client builds a new SSL context for every
request (38 % of its process's CPU, profiled), about 190 ms of CPU an answer on these 2 cores, which the
server then has to share them with. A lab's users sit at their own machines.

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

import httpx
import numpy as np
import psutil

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
    for _ in range(180):
        try:
            with httpx.Client(base_url=url, timeout=60) as client:
                ask(client, "warm", ">warm\nACGT")
            break
        except (httpx.HTTPError, KeyError):  # not up yet
            time.sleep(1)
    return url, server


def ask(client: httpx.Client, session: str, fasta: str) -> tuple[str, object]:
    """One Identify press: the event's final message, ("complete", outputs) or ("error", message)."""
    posted = client.post(
        "gradio_api/call/identify", json={"data": [[], fasta, None, 10, "", "", "auto"], "session_hash": session}
    )
    event_id = posted.json()["event_id"]
    with client.stream("GET", f"gradio_api/call/identify/{event_id}") as stream:
        event = None
        for line in stream.iter_lines():
            if line.startswith("event:"):
                event = line.removeprefix("event:").strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                return event, json.loads(line.removeprefix("data:"))
    return "error", "the stream ended without an answer"


def user(url: str, barcodes: list[tuple[str, str]], latencies: list, problems: list) -> None:
    session = os.urandom(8).hex()
    with httpx.Client(base_url=url, timeout=120) as client:
        for query_id, sequence in barcodes:
            started = time.time()
            try:
                event, answer = ask(client, session, f">{query_id}\n{sequence}")
            except (httpx.HTTPError, ValueError, KeyError) as error:
                problems.append(f"error: {error!r}")
                continue
            if event != "complete":
                problems.append(f"error: {answer}")
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
    server_process, report = psutil.Process(server.pid), {}
    for users in args.users:
        picked = [records[i] for i in rng.choice(len(records), users * args.requests, replace=False)]
        latencies, problems, threads = [], [], []
        server_cpu, users_cpu, started = server_process.cpu_times(), os.times(), time.time()
        for u in range(users):
            mine = [(f"u{u}_{r.id}", r.barcode) for r in picked[u * args.requests : (u + 1) * args.requests]]
            threads.append(threading.Thread(target=user, args=(url, mine, latencies, problems)))
            threads[-1].start()
        for thread in threads:
            thread.join()
        wall = time.time() - started
        server_used = sum(server_process.cpu_times()[:2]) - sum(server_cpu[:2])
        users_used = sum(os.times()[:2]) - sum(users_cpu[:2])
        report[f"{users}_users"] = {
            "answers": len(latencies),
            "median_s": round(float(np.median(latencies)), 3),
            "p95_s": round(float(np.quantile(latencies, 0.95)), 3),
            "answers_per_s": round(len(latencies) / wall, 1),
            "server_cpu_ms_per_answer": round(1000 * server_used / max(len(latencies), 1), 1),
            "users_cpu_ms_per_answer": round(1000 * users_used / max(len(latencies), 1), 1),
            "problems": len(problems),
            "first_problems": problems[:3],
        }
        print(users, report[f"{users}_users"], flush=True)
    server.terminate()
    OUT.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
