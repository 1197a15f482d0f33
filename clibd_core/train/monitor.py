"""What a running job tells the outside world: ``metrics.jsonl`` (append-only) and ``status.json``.

The app's training tab and ``clibd train`` users read these files; they are the whole interface, so
a job can be watched and re-attached to from any process.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from clibd_core.fileio import write_json

METRICS_FILE = "metrics.jsonl"
STATUS_FILE = "status.json"


class RunMonitor:
    """Appends metric lines and keeps ``status.json`` current (atomically rewritten)."""

    def __init__(self, run_dir: Path, total_steps: int, first_step: int = 0) -> None:
        self.run_dir = run_dir
        self.total_steps = total_steps
        self.started = time.time()
        self.first_step = first_step
        self.status = {"state": "starting", "pid": os.getpid(), "run_dir": str(run_dir), "last_error": None}

    def log(self, entry: dict) -> None:
        with open(self.run_dir / METRICS_FILE, "a") as handle:
            handle.write(json.dumps({"time": round(time.time(), 3), **entry}) + "\n")

    def update(self, **fields: object) -> None:
        self.status.update(fields)
        step = int(self.status.get("step", 0))
        done = step - self.first_step
        elapsed = time.time() - self.started
        self.status["progress"] = step / self.total_steps if self.total_steps else 1.0
        self.status["eta_s"] = round(elapsed / done * (self.total_steps - step), 1) if done > 0 else None
        self.status["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        write_json(self.run_dir / STATUS_FILE, self.status)


def read_status(run_dir: str | Path) -> dict | None:
    """The last status a job wrote, or None before it wrote one."""
    path = Path(run_dir) / STATUS_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def read_metrics(run_dir: str | Path) -> list[dict]:
    """Every metric line written so far (a partly written last line is ignored)."""
    path = Path(run_dir) / METRICS_FILE
    entries = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return entries
