"""Training jobs started from the app: `clibd train` in its own process, one at a time per workspace.

The job's ``job.json`` (in the workspace) names its process and run directory; the run directory's
status.json and metrics.jsonl (train/monitor.py) say how it goes. Any process (a reloaded page, a
second browser tab) can therefore re-attach to the job, and Abort sends SIGTERM, on which the job
saves a checkpoint and stops cleanly.
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

from clibd_core.background import launch, process_alive, stop
from clibd_core.fileio import write_json
from clibd_core.train.monitor import read_metrics, read_status
from clibd_core.workspace import Workspace, WorkspaceError, safe_name

JOB_FILE = "job.json"
LOG_FILE = "train.log"
FINAL_STATES = ("finished", "cancelled", "failed")
SETTINGS = ("data", "preset", "modalities", "epochs", "batch_size", "lr", "freeze", "init_from")


def train_arguments(settings: dict, run_dir: Path) -> list[str]:
    """`clibd train` arguments for form settings (empty values are left to the defaults)."""
    arguments = ["train", "--out", str(run_dir)]
    for key in SETTINGS:
        value = settings.get(key)
        if value in (None, "", []):
            continue
        if isinstance(value, (list, tuple)):
            value = ",".join(value)
        arguments += [f"--{key.replace('_', '-')}", str(value)]
    return arguments


def command_preview(settings: dict, workspace: Workspace, name: str) -> str:
    """The shell command equivalent to starting this job."""
    return shlex.join(["clibd", *train_arguments(settings, workspace.runs_dir / safe_name(name or "run"))])


def current_job(workspace: Workspace) -> dict | None:
    """The last job: its settings, whether its process runs, its status and metrics so far."""
    path = workspace.root / JOB_FILE
    if not path.is_file():
        return None
    job = json.loads(path.read_text())
    run_dir = Path(job["run_dir"])
    job["status"] = read_status(run_dir) or {"state": "starting"}
    # a job that wrote its final state has saved everything and is only exiting
    job["running"] = process_alive(job["pid"]) and job["status"].get("state") not in FINAL_STATES
    if not job["running"] and job["status"].get("state") in ("starting", "running"):
        job["status"]["state"] = "crashed"
        job["status"]["last_error"] = job["status"].get("last_error") or f"the process ended; see {job['log']}"
    job["metrics"] = read_metrics(run_dir)
    log = Path(job["log"])
    job["log_tail"] = "\n".join(log.read_text(errors="replace").splitlines()[-30:]) if log.is_file() else ""
    return job


def start_job(workspace: Workspace, settings: dict, name: str) -> dict:
    """Start `clibd train` in a new process; refuses while another job of this workspace runs."""
    job = current_job(workspace)
    if job and job["running"]:
        raise WorkspaceError(f"a training job is already running ({job['name']}): abort it or wait for it")
    if not settings.get("data"):
        raise WorkspaceError("choose the training data")
    name = safe_name(name or time.strftime("run-%Y%m%d-%H%M%S"))
    run_dir = workspace.runs_dir / name
    if run_dir.exists():
        raise WorkspaceError(f"a run named {name} exists: choose another name")
    run_dir.mkdir(parents=True)
    return _launch(workspace, settings, name, run_dir, resume=False)


def resume_job(workspace: Workspace) -> dict:
    """Continue the last job from its last checkpoint (after Abort, a crash or a restart of the machine)."""
    job = current_job(workspace)
    if job is None:
        raise WorkspaceError("there is no training job to resume")
    if job["running"]:
        raise WorkspaceError(f"{job['name']} is still running")
    run_dir = Path(job["run_dir"])
    if job["status"].get("state") == "finished" or not (run_dir / "last" / "training_state.pt").is_file():
        raise WorkspaceError(f"{job['name']} has no checkpoint to resume ({job['status'].get('state')})")
    return _launch(workspace, job["settings"], job["name"], run_dir, resume=True)


def _launch(workspace: Workspace, settings: dict, name: str, run_dir: Path, resume: bool) -> dict:
    log = run_dir / LOG_FILE
    pid = launch([*train_arguments(settings, run_dir), *(["--resume"] * resume)], log)
    job = {
        "name": name,
        "pid": pid,
        "run_dir": str(run_dir),
        "log": str(log),
        "settings": settings,
        "command": command_preview(settings, workspace, name) + (" --resume" if resume else ""),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_json(workspace.root / JOB_FILE, job)
    return job


def abort_job(workspace: Workspace) -> bool:
    """Ask the running job to checkpoint and stop (SIGTERM); False if none runs."""
    return stop(current_job(workspace))
