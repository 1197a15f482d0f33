"""Processes the app starts that must outlive the page (a training run, a library build): started in a
session of their own, found again by their pid, and asked to stop with SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


def launch(arguments: list[str], log: Path) -> int:
    """``clibd ARGUMENTS`` in its own session (not killed with the app's group), output appended to
    ``log``; its pid."""
    with open(log, "a") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "clibd_core.cli", *arguments],
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return process.pid


def process_alive(pid: int) -> bool:
    """Whether a job's process still runs (a finished child is reaped, not counted)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a finished child of this process is a zombie until reaped
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return True


def stop(job: dict | None) -> bool:
    """SIGTERM to a running job (``job["running"]``, ``job["pid"]``); False if there is none."""
    if not job or not job["running"]:
        return False
    os.kill(job["pid"], signal.SIGTERM)
    return True
