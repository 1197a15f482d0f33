"""The Projects tab: create or open a project, check then import a sample sheet with its barcodes and
photos, identify it with progress and cancel, and browse its specimens."""

from __future__ import annotations

import threading
from pathlib import Path

import gradio as gr

from clibd_core.projects.browse import COLUMNS, specimen_rows
from clibd_core.projects.db import session_scope
from clibd_core.projects.identify import identify_project
from clibd_core.projects.intake import ImportRefused, find_sheet, import_files
from clibd_core.projects.registry import create_project, get_project, list_projects
from clibd_core.projects.review import get_specimen, project_status, specimen_view
from clibd_core.ui.session import USER_ERRORS, active_pair, server_path, workspace

STATUSES = ["", "new", "machine", "verified", "not_identifiable"]
_CANCELS: dict[str, threading.Event] = {}  # project → its running identification's stop flag


def project_names() -> list[str]:
    try:
        with session_scope() as session:
            return [p["name"] for p in list_projects(session)]
    except USER_ERRORS:
        return []


def create(name: str):
    try:
        with session_scope() as session:
            create_project(session, name or "")
    except USER_ERRORS as error:
        raise gr.Error(str(error)) from error
    names = project_names()
    return gr.update(choices=names, value=name.strip()), f"created project **{name.strip()}**"


def _gathered(uploads, folder) -> tuple:
    paths = [*(uploads or [])]
    if folder and folder.strip():
        paths.append(server_path(folder))
    if not paths:
        raise gr.Error("Upload a sample sheet and its barcodes / photos, or name a server folder.")
    return find_sheet(paths)


def run_import(project, uploads, folder, skip_unmatched, check_only):
    """Check (nothing written) or import (all or nothing): the row report either way."""
    if not project:
        raise gr.Error("Choose or create a project first.")
    sheet, files = _gathered(uploads, folder)
    try:
        plan = import_files(project, sheet, files, skip_unmatched=skip_unmatched, check_only=check_only)
    except ImportRefused as refused:
        return _report_markdown(refused.plan.report(), "**Nothing was imported.** Fix these rows or files:")
    except USER_ERRORS as error:
        raise gr.Error(str(error)) from error
    verdict = "**Checked**: nothing written yet; press Import." if check_only else "**Imported.**"
    return _report_markdown(plan.report(), verdict)


def _report_markdown(report: str, verdict: str) -> str:
    lines = report.splitlines()
    shown = "\n".join(f"- {line.strip()}" for line in lines[1:201])
    more = f"\n- … and {len(lines) - 201} more" if len(lines) > 201 else ""
    return f"{verdict}\n\n{lines[0]}\n\n{shown}{more}"


def run_identify(project, pair, progress=gr.Progress()):  # noqa: B008 - how Gradio injects progress
    if not project:
        raise gr.Error("Choose a project first.")
    library, model = active_pair(pair)
    stop = _CANCELS[project] = threading.Event()
    progress(0, desc="opening the library and model")
    try:
        summary = identify_project(
            project, library, model, progress=lambda done, total: progress((done, total), desc="identifying"),
            should_stop=stop.is_set,
        )  # fmt: skip
    except USER_ERRORS as error:
        raise gr.Error(str(error)) from error
    finally:
        _CANCELS.pop(project, None)
    left = "\n".join(f"- {item}" for item in summary["left_out"][:50])
    return (
        f"Identified **{summary['identified']}** of {summary['to_identify']} specimens not yet identified by "
        f"{summary['library']} ({summary['state']}).\n\n{left}"
    )


def cancel_identify(project) -> str:
    flag = _CANCELS.get(project or "")
    if flag is None:
        return "nothing is being identified in this project"
    flag.set()
    return "cancelling after the batch in hand (what is stored stays stored)"


def train_from_verified(project) -> str:
    """The Train tab's job, on the project's verified records; the run keeps which records it learned from."""
    from clibd_core.fileio import write_json
    from clibd_core.projects.training import write_training_set
    from clibd_core.train.jobs import start_job

    if not project:
        raise gr.Error("Choose a project first.")
    try:
        source, learned = write_training_set(project)
        settings = {"data": str(source), "preset": "lite", "modalities": learned["modalities"], "epochs": None,
                    "batch_size": None, "lr": None, "freeze": [], "init_from": None}  # fmt: skip
        job = start_job(workspace(), settings, f"{project}-verified")
    except USER_ERRORS as error:
        raise gr.Error(str(error)) from error
    write_json(Path(job["run_dir"]) / "learned_from.json", learned)
    return (f"started **{job['name']}** on {learned['verified_specimens']} verified specimens "
            f"({', '.join(learned['modalities'])}): watch it in the Train tab")  # fmt: skip


def browse(project, status):
    if not project:
        return "", []
    try:
        with session_scope() as session:
            chosen = get_project(session, project)
            counts = project_status(session, chosen)
            rows = specimen_rows(session, chosen, status or None)
    except USER_ERRORS as error:
        raise gr.Error(str(error)) from error
    summary = (
        f"**{counts['specimens']}** specimens ({counts['controls']} controls): {counts['with_barcodes']} with "
        f"barcodes, {counts['with_photos']} with photos; identified {counts['identified']}, verified "
        f"{counts['verified']}, not identifiable {counts['not_identifiable']}, "
        f"needing review {counts['needing_review']}"
    )
    return summary, rows


def show_specimen(project, rows, event: gr.SelectData):
    if not project or event is None or event.index is None:
        return {}
    sample = rows.iloc[event.index[0], 0] if hasattr(rows, "iloc") else rows[event.index[0]][0]
    with session_scope() as session:
        return specimen_view(get_specimen(session, get_project(session, project), str(sample)))


def build(pair: gr.State) -> gr.Dropdown:
    """The tab's layout and events (inside an open ``gr.Tab``); returns its project chooser."""
    with gr.Row():
        project = gr.Dropdown(label="project", choices=project_names(), scale=3)
        new_name = gr.Textbox(label="new project", placeholder="e.g. Malaise 2026, site 3", scale=3)
        create_button = gr.Button("Create", scale=1)
    created = gr.Markdown()
    with gr.Accordion("Import a sample sheet, barcodes and photos", open=True):
        uploads = gr.File(
            label="sample sheet (CSV/XLSX, BOLD or Darwin Core columns), FASTA / BOLD TSV, photos, zips, plate maps",
            file_count="multiple",
            type="filepath",
        )
        folder = gr.Textbox(label="…or a folder on this server (inside the workspace or CLIBD_DATA_ROOTS)")
        skip = gr.Checkbox(label="import the rest when some files match no specimen", value=False)
        with gr.Row():
            check_button = gr.Button("Check import")
            import_button = gr.Button("Import", variant="primary")
        report = gr.Markdown()
    with gr.Row():
        identify_button = gr.Button("Identify the project with the active library", variant="primary")
        cancel_button = gr.Button("Cancel")
    identified = gr.Markdown()
    with gr.Row():
        train_button = gr.Button("Train the next model on this project's verified records")
    trained = gr.Markdown()
    with gr.Row():
        status = gr.Dropdown(STATUSES, value="", label="show specimens", scale=1)
        refresh = gr.Button("Refresh", scale=1)
    summary = gr.Markdown()
    table = gr.Dataframe(headers=COLUMNS, label="specimens (click one for its record)", interactive=False)
    detail = gr.JSON(label="the specimen: field data, evidence, every identification")

    create_button.click(create, [new_name], [project, created], api_name="project_create")
    form = [project, uploads, folder, skip]
    check_button.click(lambda *a: run_import(*a, True), form, report, api_name="project_check_import")
    imported = import_button.click(lambda *a: run_import(*a, False), form, report, api_name="project_import")
    imported.then(browse, [project, status], [summary, table], api_name=False)
    identify_button.click(run_identify, [project, pair], identified, api_name="project_identify").then(
        browse, [project, status], [summary, table], api_name=False
    )
    train_button.click(train_from_verified, [project], trained, api_name="project_train_verified")
    cancel_button.click(cancel_identify, [project], identified, api_name="project_cancel", queue=False)
    for trigger in (refresh.click, status.change, project.change):
        trigger(browse, [project, status], [summary, table], api_name=False)
    table.select(show_specimen, [project, table], detail, api_name=False)
    return project
