"""Library builds started from the app: `clibd build-library` in its own process, one at a time per
workspace. A build of the shipped BOLD barcodes with the official CLIBD model takes hours on a CPU, so
it must outlive the page: the job writes its progress (stage, count, elapsed, ETA) to a status file
the page re-reads (library/build_status.py); Cancel stops the process, and Resume runs the same
command again, which keeps every shard already embedded (library/shards.py) and goes on from there.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from clibd_core.background import launch, process_alive, stop
from clibd_core.fileio import write_json
from clibd_core.workspace import Workspace, WorkspaceError, safe_name

JOB_FILE = "build_job.json"
STATUS_FILE = "build_status.json"  # in the job's work folder, beside its log
FINAL_STATES = ("finished", "failed")


def start_build(workspace: Workspace, model: str | Path, data: str | Path, name: str) -> dict:
    """Start (or, with the same name, resume) building library ``name`` from ``data`` with ``model``."""
    job = current_build(workspace)
    if job and job["running"]:
        raise WorkspaceError(f"a library build is already running ({job['name']}): cancel it or wait for it")
    name = safe_name(name)
    out = workspace.libraries_dir / name
    if (out / "CURRENT").exists():
        raise WorkspaceError(f"a library named {name} exists: choose another name")
    work = workspace.root / "builds" / name
    work.mkdir(parents=True, exist_ok=True)
    arguments = [
        "build-library", "--model", str(model), "--data", str(data), "--out", str(out), "--name", name,
        "--status", str(work / STATUS_FILE),
    ]  # fmt: skip
    pid = launch(arguments, work / "build.log")
    job = {"name": name, "pid": pid, "out": str(out), "work": str(work), "model": str(model),
           "data": str(data), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}  # fmt: skip
    write_json(workspace.root / JOB_FILE, job)
    return job


def current_build(workspace: Workspace) -> dict | None:
    """The last build: its settings, whether it runs, and its status (``stopped`` if it ended midway)."""
    path = workspace.root / JOB_FILE
    if not path.is_file():
        return None
    job = json.loads(path.read_text())
    status_file = Path(job["work"]) / STATUS_FILE
    job["status"] = json.loads(status_file.read_text()) if status_file.is_file() else {"state": "starting"}
    job["running"] = process_alive(job["pid"]) and job["status"]["state"] not in FINAL_STATES
    if not job["running"] and job["status"]["state"] in ("starting", "running"):
        job["status"]["state"] = "stopped"  # cancelled or crashed: Resume goes on from the embedded shards
    return job


def cancel_build(workspace: Workspace) -> bool:
    """Stop the running build (its embedded shards are kept for Resume); False if none runs."""
    return stop(current_build(workspace))


def resume_build(workspace: Workspace) -> dict:
    job = current_build(workspace)
    if job is None:
        raise WorkspaceError("there is no library build to resume")
    if job["running"] or job["status"]["state"] == "finished":
        raise WorkspaceError(f"{job['name']} is {'running' if job['running'] else 'finished'}: nothing to resume")
    return start_build(workspace, job["model"], job["data"], job["name"])


def describe(job: dict | None) -> str:
    """The build in a sentence or two, for the page."""
    if job is None:
        return "No library build yet."
    status = job["status"]
    line = f"**{job['name']}**: {status['state']}"
    if status.get("stage"):
        done, total = status.get("done", 0), status.get("total", 0)
        line += f" — {status['stage']} {done:,}" + (f" of {total:,}" if total else "")
    line += f", {status.get('elapsed_s', 0):.0f} s so far"
    if status.get("eta_s"):
        line += f", about {status['eta_s'] / 60:.0f} min left in this stage"
    if status.get("error"):
        line += f"\n\n⚠️ {status['error']}"
    if status["state"] == "stopped":
        line += "\n\nStopped: Resume goes on from what was embedded."
    return line
