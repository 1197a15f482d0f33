"""The Train tab: labelled photos read and checked, a training job started, watched, aborted, resumed,
and its best model turned into a library."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pandas as pd

from clibd_core.data.uploads import data_root, unpack_tree
from clibd_core.presets import preset_names
from clibd_core.train.config import TrainConfig
from clibd_core.train.jobs import abort_job, command_preview, current_job, resume_job, start_job
from clibd_core.train.sizing import describe_photo_set
from clibd_core.ui.figures import loss_figure
from clibd_core.ui.libraries_tab import activate, import_into_library
from clibd_core.ui.session import USER_ERRORS, server_path, workspace
from clibd_core.workspace import safe_name


def train_settings(data, preset, modalities, epochs, batch_size, lr, freeze, init_from) -> dict:
    return {
        "data": (data or "").strip(),
        "preset": preset,
        "modalities": list(modalities or []),
        "epochs": int(epochs) if epochs else None,
        "batch_size": int(batch_size) if batch_size else None,
        "lr": float(lr) if lr else None,
        "freeze": list(freeze or []),
        "init_from": init_from or None,
    }


def preview(name, *form) -> str:
    return f"```bash\n{command_preview(train_settings(*form), workspace(), name)}\n```"


def start_training(name, *form) -> str:
    settings = train_settings(*form)
    settings.update(data=server_path(settings["data"]) or "", init_from=server_path(settings["init_from"]))
    try:
        job = start_job(workspace(), settings, name)
    except USER_ERRORS as error:
        raise gr.Error(str(error)) from error
    return f"started **{job['name']}** (process {job['pid']})"


def read_photos(upload, path):
    """A zip of labelled photos (unpacked into the workspace) or a server folder: what was read, per
    species, and what was left out and why, before anything is trained."""
    from clibd_core.data.sources import read_source

    left_out = []
    try:
        if upload:
            target = workspace().root / "uploads" / f"{safe_name(Path(upload).stem)}-{time.strftime('%Y%m%d-%H%M%S')}"
            left_out = unpack_tree(Path(upload), target)
            source = data_root(target)
        elif folder := server_path(path):
            source = Path(folder)
        else:
            raise gr.Error("upload a zip of labelled photos, or give a folder on this machine")
        result = read_source(source)
    except USER_ERRORS as error:
        raise gr.Error(str(error)) from error
    photos = pd.Series([r.taxonomy.species for r in result.records if r.has_image], dtype=object)
    table = photos.value_counts().rename_axis("species").reset_index(name="photos")
    skipped = [f"{item.row}: {item.reason}" for item in result.skipped] + left_out
    recipe = TrainConfig(data=str(source), out="", modalities=["image", "text"]).resolved()
    allows = describe_photo_set(dict(zip(table["species"], table["photos"], strict=True)), recipe)
    note = (
        f"read **{len(photos):,} photos of {len(table):,} species** from `{source}` ({result.format}); "
        f"{len(skipped):,} left out"
        + "".join(f"\n- {line}" for line in skipped[:20])
        + ("\n\n**What this set allows with the photo recipe:**" if allows else "")
        + "".join(f"\n- {line}" for line in allows)
    )
    return note, table, str(source), ["image", "text"]


def resume_training() -> str:
    try:
        job = resume_job(workspace())
    except USER_ERRORS as error:
        raise gr.Error(str(error)) from error
    return f"resumed **{job['name']}** from its last checkpoint (process {job['pid']})"


def abort_training() -> str:
    return "abort requested: the job saves a checkpoint and stops" if abort_job(workspace()) else "no job is running"


def training_progress():
    """Re-read the job's files (any session, any reload): state, progress, loss plot, log, results."""
    job = current_job(workspace())
    if job is None:
        return "No training job yet.", None, "", "", ""
    status = job["status"]
    percent = 100 * float(status.get("progress") or 0)
    eta = f", about {status['eta_s']:.0f} s left" if status.get("eta_s") else ""
    error = f"\n\n⚠️ {status['last_error']}" if status.get("last_error") else ""
    text = (
        f"**{job['name']}**: {status.get('state')} — step {status.get('step', 0)} of {status.get('total_steps', '?')} "
        f"({percent:.0f} %{eta})\n\n<progress value='{percent:.0f}' max='100' style='width:100%'></progress>{error}"
    )
    results = Path(job["run_dir"]) / "results.md"
    return (
        text,
        loss_figure(job["metrics"]),
        job["log_tail"],
        results.read_text() if results.is_file() else "",
        job["run_dir"],
    )


def use_trained_model(run_dir, data, name, pair, progress=gr.Progress()):  # noqa: B008 - how Gradio injects progress
    """Build a library with the run's best model and make the pair active for this session."""
    model = Path(server_path(run_dir) or "") / "best"
    if not run_dir or not (model / "config.json").is_file():
        raise gr.Error("the run has no best model yet: wait for its first validation")
    source = server_path(data) or (current_job(workspace()) or {}).get("settings", {}).get("data")
    library = import_into_library(source, name or f"{Path(run_dir).name}-library", str(model), "auto", progress)
    return activate(str(library.path), str(model))


def build(app: gr.Blocks, pair: gr.State, banner: gr.Markdown) -> SimpleNamespace:
    """The tab's layout and events (inside an open ``gr.Tab``); returns the parts the page refreshes on load
    (``progress``: the outputs of :func:`training_progress`) and the timer that polls while the tab is open."""
    with gr.Row():
        with gr.Column():
            run_name = gr.Textbox(label="run name", placeholder="run-YYYYmmdd-HHMMSS")
            with gr.Accordion("Labelled photos of your own", open=True):
                photos_upload = gr.File(
                    label="a zip: one folder per species (Genus_species/), or a CSV beside the images",
                    file_types=[".zip"],
                    type="filepath",
                )
                photos_path = gr.Textbox(label="…or a folder on this machine")
                read_button = gr.Button("Read the photos")
                photos_note = gr.Markdown()
                photos_table = gr.Dataframe(label="photos per species", max_height=240)
            data = gr.Textbox(label="training data (path: BOLD TSV, FASTA, BIOSCAN-1M/5M, HDF5, folder)")
            preset = gr.Dropdown(list(preset_names()), value="lite", label="preset")
            modalities = gr.CheckboxGroup(["image", "dna", "text"], value=["image", "dna", "text"], label="modalities")
            with gr.Row():
                epochs = gr.Number(value=None, label="epochs (empty: the recipe's)", precision=0)
                batch_size = gr.Number(value=None, label="batch size (empty: the recipe's)", precision=0)
                lr = gr.Number(value=None, label="learning rate (0 or empty: the preset's)")
            freeze = gr.CheckboxGroup(
                ["image_backbone", "text_backbone"], value=[], label="frozen (none ticked: the recipe's)"
            )
            init_from = gr.Dropdown(
                choices=[],
                label="start from model (empty: the preset's pretrained parts)",
                allow_custom_value=True,
            )
            command = gr.Markdown()
            with gr.Row():
                start = gr.Button("Start", variant="primary")
                abort = gr.Button("Abort")
                resume = gr.Button("Resume")
        with gr.Column():
            job_text = gr.Markdown()
            loss_plot = gr.Plot(label="loss")
            log_tail = gr.Textbox(label="log", lines=10, max_lines=10, autoscroll=True)
    evaluation = gr.Markdown()
    run_dir = gr.Textbox(visible=False)
    with gr.Row():
        use_data = gr.Textbox(label="data for its library (empty: the training data)")
        use_name = gr.Textbox(label="library name")
        use = gr.Button("Use this model")
    form = [data, preset, modalities, epochs, batch_size, lr, freeze, init_from]
    for component in [run_name, *form]:
        component.change(preview, [run_name, *form], command, api_name=False)
    app.load(preview, [run_name, *form], command, api_name=False)
    start.click(start_training, [run_name, *form], job_text, api_name="train_start")
    abort.click(abort_training, None, job_text, api_name="train_abort")
    resume.click(resume_training, None, job_text, api_name="train_resume")
    read_button.click(
        read_photos,
        [photos_upload, photos_path],
        [photos_note, photos_table, data, modalities],
        api_name="read_photos",
    )
    timer = gr.Timer(2.0, active=False)  # polls only while the Train tab is open
    timer.tick(training_progress, None, [job_text, loss_plot, log_tail, evaluation, run_dir], api_name=False)
    gr.Button("Refresh", size="sm").click(
        training_progress,
        None,
        [job_text, loss_plot, log_tail, evaluation, run_dir],
        api_name="train_progress",
    )
    use.click(use_trained_model, [run_dir, use_data, use_name, pair], [pair, banner], api_name="use_model")
    return SimpleNamespace(
        timer=timer, init_from=init_from, progress=[job_text, loss_plot, log_tail, evaluation, run_dir]
    )
