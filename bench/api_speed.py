"""The JSON API's speed on the served app (the default BOLD library, real barcodes, 2 cores): one barcode
per request (p50, p95) and batches of 500 (barcodes/s). Results: docs/BENCHMARKS.md, bench_api_speed.json.

    .venv/bin/python bench/api_speed.py
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.plates import bold_rows  # noqa: E402
from tests.test_api import serve  # noqa: E402


def post(url: str, barcodes: list[dict]) -> dict:
    body = json.dumps({"barcodes": barcodes}).encode()
    request = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.loads(response.read())


def main() -> None:
    import os

    os.environ["CLIBD_HOME"] = tempfile.mkdtemp(prefix="clibd-api-bench-")
    base, server = serve()
    url = base + "/api/v1/identify/barcodes"
    rows = bold_rows(2300, seed=31)
    barcodes = [{"id": r["processid"], "sequence": r["nucleotides"]} for r in rows]
    post(url, barcodes[:5])  # warm: model and library loaded
    single = []
    for barcode in barcodes[:200]:
        begun = time.perf_counter()
        post(url, [barcode])
        single.append(1000 * (time.perf_counter() - begun))
    begun = time.perf_counter()
    answered = sum(len(post(url, barcodes[start : start + 500])["results"]) for start in range(200, 2200, 500))
    batch_rate = answered / (time.perf_counter() - begun)
    results = {
        "single_barcode_ms_p50": round(statistics.median(single), 1),
        "single_barcode_ms_p95": round(sorted(single)[int(0.95 * len(single))], 1),
        "batch_of_500_barcodes_per_s": round(batch_rate, 1),
        "batched_barcodes": answered,
    }
    server.should_exit = True
    Path("docs/bench_api_speed.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
