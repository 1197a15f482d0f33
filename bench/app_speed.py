"""The app's speed on these cores: page interactive after start, barcode → answer and image → answer,
through the HTTP API (gradio_client) as the page calls it, with the lite demo model and a library of
every real BOLD dev barcode (86k; images are matched against the barcodes, CLIBD's cross-modal case).

    .venv/bin/python bench/app_speed.py
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
from gradio_client import Client, handle_file

from clibd_core.data.bold import read_bold_tsv
from clibd_core.fileio import write_json
from clibd_core.library.build import build_library
from clibd_core.models.clibd import load_model
from clibd_core.workspace import DEMO_MODEL

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
BOLD = SHARED / "bold" / "bold_insects_dev.tsv.gz"
PHOTOS = SHARED / "bioscan_images"
WORK = Path("runs/app_speed")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    if not BOLD.exists() or not PHOTOS.exists():
        raise SystemExit("../shared/data is absent")
    records = read_bold_tsv(BOLD).records
    library_dir = WORK / "workspace" / "libraries" / "bold_all"
    build_seconds = None
    if not (library_dir / "CURRENT").exists():
        started = time.time()
        build_library(load_model(DEMO_MODEL, device="cpu"), records, library_dir, name="BOLD dev, all barcodes")
        build_seconds = time.time() - started
    write_json(WORK / "workspace" / "active.json", {"library": str(library_dir.resolve()), "model": str(DEMO_MODEL)})

    port = free_port()
    environment = {**os.environ, "CLIBD_HOME": str((WORK / "workspace").resolve()), "CLIBD_PORT": str(port)}
    started = time.time()
    server = subprocess.Popen(
        [sys.executable, "app.py"], env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.05)
            if time.time() - started > 120:
                raise SystemExit("the app did not come up in 2 minutes")
        interactive = time.time() - started
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        rng = np.random.default_rng(0)
        barcodes = [records[i].barcode for i in rng.choice(len(records), 21, replace=False)]
        photos = sorted(PHOTOS.glob("*.jpg"))[:11]
        timings = {}
        for name, calls in (
            ("barcode", [([], barcode) for barcode in barcodes]),
            ("image", [([handle_file(str(photo))], "") for photo in photos]),
        ):
            seconds = []
            for images, text in calls:
                begun = time.time()
                client.predict(images, text, None, 10, "", "", "auto", api_name="/identify")
                seconds.append(time.time() - begun)
            timings[name] = {
                "first_s": seconds[0],
                "p50_s": float(np.median(seconds[1:])),
                "max_s": float(np.max(seconds[1:])),
            }
    finally:
        server.terminate()
        server.wait()
    report = {
        "library_records": len(records),
        "library_build_s": build_seconds,
        "page_interactive_s": interactive,
        **timings,
    }
    Path("docs/bench_app_speed.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
