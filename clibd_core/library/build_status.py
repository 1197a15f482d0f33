"""Where a library build stands, written to a JSON file as it goes (stage, count, elapsed, ETA): what
the app shows while a build it started runs in another process (clibd_core/build_jobs.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from clibd_core.fileio import write_json

Progress = Callable[[str, int, int], None]  # (stage, done, total): what every stage of a build reports


def no_progress(stage: str, done: int, total: int) -> None:  # noqa: ARG001 - the Progress signature
    """The Progress of a build nobody watches."""


class StatusWriter:
    """A library Progress callback that also records where the build stands in a JSON file (at most
    once a second, and at every new stage): what the page shows while a build runs in the background."""

    def __init__(self, path: Path, also=None) -> None:
        self.path, self.also = Path(path), also
        self.started = time.time()
        self.stage, self.stage_started, self.written = "", self.started, 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.also is not None:
            self.also(stage, done, total)
        now = time.time()
        if stage != self.stage:
            self.stage, self.stage_started = stage, now
        elif now - self.written < 1.0 and done < total:
            return
        rate = done / max(now - self.stage_started, 1e-9)
        eta = (total - done) / rate if total and 0 < done < total else None
        self.write("running", stage=stage, done=done, total=total, eta_s=eta)
        self.written = now

    def write(self, state: str, **fields) -> None:
        write_json(self.path, {"state": state, "elapsed_s": round(time.time() - self.started, 1), **fields})
