"""The Libraries tab: the workspace's libraries and models, the active pair, imports of data into a new
library, and the official CLIBD model (downloaded, or a best.pth imported)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pandas as pd

from clibd_core.data.sources import READERS
from clibd_core.models.hub import DEFAULT_RELEASE, RELEASES
from clibd_core.reference import DEFAULT_SOURCE
from clibd_core.ui.session import USER_ERRORS, pair_banner, server_path, workspace
from clibd_core.workspace import safe_name


def import_into_library(source, name, model, fmt, progress):
    if not source:
        raise gr.Error("give the data: a file path, a folder, or an upload")
    try:
        library, _ = workspace().import_library(
            source,
            name or Path(source).stem,
            model,
            None if fmt in (None, "auto") else fmt,
            progress=lambda stage, done, total: progress(done / max(total, 1), desc=stage),
        )
    except USER_ERRORS as error:
        raise gr.Error(str(error)) from error
    return library


def import_library(upload, path, name, model, fmt, pair, progress=gr.Progress()):  # noqa: B008 - how Gradio injects progress
    source = server_path(path) or upload
    library = import_into_library(source, name, server_path(model), fmt, progress)
    summary = library.summary()
    return (
        f"built **{summary['name']}**: {summary['records']:,} records, {summary['species_count']:,} species",
        *library_tables(),
    )


def checklist_coverage(path: Path) -> str:
    """How much of its checklist a library holds (`clibd checklist LIBRARY FILE` attaches one)."""
    from clibd_core.library.coverage import CHECKLIST_FILE, coverage_summary
    from clibd_core.library.store import Library

    if not (path / CHECKLIST_FILE).is_file():
        return ""
    summary = coverage_summary(Library.open(path, with_indexes=False))
    return (
        f"{summary['species_held']:,} of {summary['species_expected']:,} species; "
        f"{summary['genera_complete']:,} of {summary['genera_expected']:,} genera complete"
    )


def bin_registry(path: Path) -> str:
    """What a library's BIN registry adds (`clibd bins LIBRARY EXPORT…` attaches one)."""
    from clibd_core.library.coverage import BIN_REGISTRY_FILE, registry_summary
    from clibd_core.library.store import Library

    if not (path / BIN_REGISTRY_FILE).is_file():
        return ""
    summary = registry_summary(Library.open(path, with_indexes=False))
    return f"{summary['bins']:,} BINs; {summary['library_bins_with_names_elsewhere']:,} of its own carry other names"


def suspect_labels(records: list[dict], shown: int = 3) -> str:
    """References whose barcode lies nearer another species than their own, as the build found them
    (`clibd inspect LIBRARY` lists them all)."""
    if not records:
        return ""
    named = "; ".join(f"{r['id']} filed as {r['label']}, nearer {r['inside']}" for r in records[:shown])
    return f"{len(records)} not voted with: {named}" + ("; …" if len(records) > shown else "")


def library_tables():
    space = workspace()
    libraries = pd.DataFrame(
        [
            {
                "name": s.get("name"),
                "path": s["path"],
                "records": s.get("records"),
                "species": s.get("species_count"),
                "vectors": ", ".join(f"{m} {n:,}" for m, n in s.get("vectors", {}).items()),
                "index": ", ".join(f"{m} {i['type'].removeprefix('Index')}" for m, i in s.get("index", {}).items()),
                "model": (s.get("model_fingerprint") or "")[:12],
                "created": s.get("created"),
                "sources": "; ".join(src.get("path", "") for src in s.get("sources", [])),
                "checklist": checklist_coverage(Path(s["path"])),
                "BIN registry": bin_registry(Path(s["path"])),
                "suspect labels": suspect_labels(s.get("suspect_labels", [])),
                "error": s.get("error", ""),
            }
            for s in space.libraries()
        ]
    )
    models = pd.DataFrame(
        [
            {
                "path": m["path"],
                "preset": m["preset"],
                "modalities": ", ".join(m["modalities"] or []),
                "fingerprint": m["fingerprint"][:12],
            }
            for m in space.models()
        ]
    )
    return (
        libraries,
        models,
        gr.update(choices=list(libraries.get("path", []))),
        gr.update(choices=list(models.get("path", []))),
    )


def activate(library, model):
    try:
        pair = workspace().set_active(server_path(library) or "", server_path(model))
    except USER_ERRORS as error:
        raise gr.Error(str(error)) from error
    pair = [str(pair[0]), str(pair[1])]
    return pair, pair_banner(pair)


def import_checkpoint(upload, path, name):
    from clibd_core.models.official import import_official_checkpoint

    source = server_path(path) or upload
    if not source:
        raise gr.Error("give the official best.pth (upload or path)")
    target = workspace().models_dir / safe_name(name or Path(source).stem)
    try:
        out = import_official_checkpoint(source, target)
    except USER_ERRORS as error:
        raise gr.Error(str(error)) from error
    return f"imported into `{out}`: build a library with it below", *library_tables()


def newest_official_model() -> str | None:
    models = [m for m in workspace().models() if Path(m["path"]).name.startswith("clibd-")]
    return max(models, key=lambda m: Path(m["path"]).stat().st_mtime)["path"] if models else None


def fetch_official(release, progress=gr.Progress()):  # noqa: B008 - how Gradio injects progress
    """Libraries → "Get the official CLIBD model": download, verify, import; offline, the manual steps."""
    from clibd_core.models.hub import fetch_official_model

    target = workspace().models_dir / safe_name(f"clibd-{release}")
    try:
        out = fetch_official_model(release, target, progress=lambda message: progress(0.5, desc=message))
    except USER_ERRORS as error:  # HubUnavailableError is an OSError: offline, it says what to do by hand
        raise gr.Error(str(error)) from error
    return f"imported the official CLIBD model into `{out}`: build a library with it below", *library_tables()


def start_bold_build(model, name):
    """ "Build the BOLD library with this model": the shipped BOLD barcodes embedded by ``model`` in a
    background job (hours on a CPU with the official model; the page can be closed meanwhile)."""
    from clibd_core.build_jobs import describe, start_build

    model = server_path(model)
    if not model:
        raise gr.Error("choose the model to build with (e.g. the official CLIBD model, fetched above)")
    try:
        job = start_build(workspace(), model, DEFAULT_SOURCE, name or f"bold-{Path(model).name}")
    except USER_ERRORS as error:
        raise gr.Error(str(error)) from error
    return describe({**job, "status": {"state": "starting"}})


def build_progress() -> str:
    from clibd_core.build_jobs import current_build, describe

    return describe(current_build(workspace()))


def cancel_bold_build() -> str:
    from clibd_core.build_jobs import cancel_build

    if cancel_build(workspace()):
        return "stopping the build: Resume goes on from what was embedded"
    return build_progress()


def resume_bold_build() -> str:
    from clibd_core.build_jobs import describe, resume_build

    try:
        job = resume_build(workspace())
    except USER_ERRORS as error:
        raise gr.Error(str(error)) from error
    return describe({**job, "status": {"state": "starting"}})


def use_built_library():
    """Make the finished build's library active with the model that built it."""
    from clibd_core.build_jobs import current_build

    job = current_build(workspace())
    if not job or job["status"]["state"] != "finished":
        raise gr.Error("no finished library build to use yet")
    return activate(job["out"], job["model"])


def build(pair: gr.State, banner: gr.Markdown) -> SimpleNamespace:
    """The tab's layout and events (inside an open ``gr.Tab``); returns the parts the page refreshes on load:
    ``tables`` (the outputs of :func:`library_tables`) and the model chooser for imports."""
    libraries_table = gr.Dataframe(label="libraries")
    models_table = gr.Dataframe(label="models")
    with gr.Row():
        choose_library = gr.Dropdown(label="library", choices=[], allow_custom_value=True)
        choose_model = gr.Dropdown(label="model (empty: the library's own)", choices=[], allow_custom_value=True)
        make_active = gr.Button("Make active", variant="primary")
    gr.Markdown("### Import data into a new library")
    with gr.Row():
        source_upload = gr.File(label="upload (BOLD TSV, FASTA, CLIBD HDF5, …)", type="filepath")
        source_path = gr.Textbox(label="…or a path on this machine (folders: BIOSCAN-1M/5M, image folders)")
    with gr.Row():
        source_format = gr.Dropdown(["auto", *READERS], value="auto", label="format")
        library_name = gr.Textbox(label="library name")
        library_model = gr.Dropdown(label="model (empty: the active one)", choices=[], allow_custom_value=True)
        import_button = gr.Button("Import")
    import_note = gr.Markdown()
    gr.Markdown("### Get the official CLIBD model (Hugging Face `bioscan-ml/clibd`, needs internet)")
    with gr.Row():
        release = gr.Dropdown(list(RELEASES), value=DEFAULT_RELEASE, label="release")
        fetch = gr.Button("Get the official CLIBD model")
    gr.Markdown(
        "### Build the BOLD library with a model\n"
        "The shipped real BOLD barcodes, embedded by the model you choose (e.g. the official CLIBD model above), "
        "so that photos are matched to real barcodes. It runs in the background: on a GPU in minutes, on this "
        "CPU for hours (Refresh shows where it stands; Cancel, then Resume, goes on from what was embedded)."
    )
    with gr.Row():
        build_model = gr.Dropdown(label="model", choices=[], allow_custom_value=True)
        build_name = gr.Textbox(label="library name (default: bold-MODEL)")
        build_go = gr.Button("Build the BOLD library with this model")
    with gr.Row():
        build_refresh = gr.Button("Refresh", size="sm")
        build_cancel = gr.Button("Cancel", size="sm")
        build_resume = gr.Button("Resume", size="sm")
        build_use = gr.Button("Use it (make active)", size="sm")
    build_note = gr.Markdown()
    gr.Markdown("### Import an official CLIBD checkpoint (best.pth)")
    with gr.Row():
        checkpoint_upload = gr.File(label="best.pth", type="filepath")
        checkpoint_path = gr.Textbox(label="…or its path")
        checkpoint_name = gr.Textbox(label="model name")
        checkpoint_go = gr.Button("Import checkpoint")
    tables = [libraries_table, models_table, choose_library, choose_model]
    make_active.click(activate, [choose_library, choose_model], [pair, banner], api_name="activate")
    import_button.click(
        import_library,
        [source_upload, source_path, library_name, library_model, source_format, pair],
        [import_note, *tables],
        api_name="import_library",
    ).then(
        lambda: gr.update(choices=[m["path"] for m in workspace().models()]),
        None,
        library_model,
        api_name=False,
    )
    fetch.click(fetch_official, [release], [import_note, *tables], api_name="fetch_official").then(
        lambda: gr.update(choices=[m["path"] for m in workspace().models()], value=newest_official_model()),
        None,
        build_model,
        api_name=False,
    )
    build_go.click(start_bold_build, [build_model, build_name], build_note, api_name="build_bold")
    build_refresh.click(build_progress, None, build_note, api_name="build_progress")
    build_cancel.click(cancel_bold_build, None, build_note, api_name="build_cancel")
    build_resume.click(resume_bold_build, None, build_note, api_name="build_resume")
    build_use.click(use_built_library, None, [pair, banner], api_name="build_use")
    checkpoint_go.click(
        import_checkpoint,
        [checkpoint_upload, checkpoint_path, checkpoint_name],
        [import_note, *tables],
        api_name="import_checkpoint",
    )
    return SimpleNamespace(tables=tables, library_model=library_model, build_model=build_model)
