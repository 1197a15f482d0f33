"""The CLIBD Gradio app: identify insects by image and/or DNA barcode, batch runs, the embedding map,
training and library management. Every tab calls clibd_core; this file only lays out and draws.

    python app.py            # http://127.0.0.1:7860 (CLIBD_HOST / CLIBD_PORT to change)
"""

from __future__ import annotations

# Only light modules are imported here, so the page serves within seconds of starting; torch, FAISS and
# the models are imported by the first request or by the warm-up thread started after launch.
import base64
import io
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import gradio as gr
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from PIL import Image

from clibd_core.access import LOOPBACK, AccessError, allowed_roots, authenticator, confine
from clibd_core.data.sources import READERS
from clibd_core.data.uploads import IMAGE_SUFFIXES, collect_inputs, data_root, unpack_tree
from clibd_core.dna import inspect_barcode, to_acgtn
from clibd_core.models.hub import DEFAULT_RELEASE, RELEASES
from clibd_core.presets import preset_names
from clibd_core.taxonomy import ALL_RANKS, RANKS
from clibd_core.textio import read_text
from clibd_core.train.jobs import abort_job, command_preview, current_job, resume_job, start_job
from clibd_core.workspace import DEMO_LIBRARY, Workspace, load_cached_library, load_cached_model, safe_name

if TYPE_CHECKING:
    from clibd_core.library.search import Identification

TITLE = "CLIBD insect identification"
MAX_UPLOAD = "500mb"
BATCH_CHUNK = 128
BASE_COLOURS = {"A": (46, 160, 67), "C": (31, 111, 235), "G": (240, 160, 30), "T": (210, 50, 50)}
# Shown to the user as a message: bad input (LibraryError, CheckpointError, ...) and files that are
# missing or damaged, a full disk, an offline hub (HubUnavailableError).
USER_ERRORS = (ValueError, OSError)
LINEAGE_HEADERS = ["rank", "name", "confidence", "vote share"]
NEIGHBOUR_HEADERS = ["#", "id", *RANKS, "similarity", "identity %"]
EXAMPLES = Path(__file__).resolve().parent / "assets" / "examples" / "bold_barcodes.fasta"


def barcode_examples() -> list[str]:
    """Real public BOLD barcodes (a full read, a reverse-complemented one, a 313-bp fragment)."""
    return [">" + record.strip() for record in EXAMPLES.read_text().split(">") if record.strip()]


def workspace() -> Workspace:
    return Workspace()


def server_path(path: str | None) -> str | None:
    """A path typed by a user, confined to the folders this server may read (clibd_core/access.py)."""
    if not path or not str(path).strip():
        return None
    try:
        return str(confine(str(path).strip(), allowed_roots(workspace().root)))
    except AccessError as error:
        raise gr.Error(str(error)) from error


def active_pair(pair: list | None) -> tuple[Path, Path]:
    """The session's (library, model) paths; new sessions start from the workspace's active pair."""
    return (Path(pair[0]), Path(pair[1])) if pair else workspace().active()


def open_pair(pair: list | None):
    library_path, model_path = active_pair(pair)
    return load_cached_library(library_path), load_cached_model(str(model_path))


def pair_banner(pair: list | None) -> str:
    """What the active library covers, where its records come from, and what to do for other taxa."""
    library_path, model_path = active_pair(pair)
    try:
        library = load_cached_library(library_path)
    except USER_ERRORS as error:  # a damaged library: the page still opens, and says so
        return f"⚠️ The library `{library_path}` cannot be opened: {error}. Choose another in the Libraries tab."
    summary = library.summary()
    demo = " — **a synthetic demo world, not real insects**" if library_path.resolve() == DEMO_LIBRARY.resolve() else ""
    orders = ", ".join(summary["orders"][:8]) + (" …" if len(summary["orders"]) > 8 else "")
    attribution = "; ".join(s["attribution"] for s in summary["sources"] if s.get("attribution"))
    return "  \n".join(
        line
        for line in (
            f"Library: **{library.name}**{demo} — {summary['records']:,} references of "
            f"{summary['species_count']:,} species ({', '.join(library.modalities)}); orders: {orders}",
            summary["description"],
            f"Records: {attribution}" if attribution else "",
            f"Model: `{model_path}` · switch library in the Libraries tab",
        )
        if line
    )


# -- drawing -------------------------------------------------------------------------------------
def barcode_stripe(sequence: str, width: int = 900, height: int = 28) -> Image.Image:
    """The barcode as a coloured stripe: A green, C blue, G orange, T red, anything else grey."""
    colours = np.array([BASE_COLOURS.get(base, (170, 170, 170)) for base in to_acgtn(sequence)], dtype=np.uint8)
    stripe = np.repeat(colours[None, :, :], height, axis=0)
    return Image.fromarray(stripe).resize((width, height), Image.NEAREST)


def stripe_html(stripe: Image.Image) -> str:
    """The stripe inline (a PNG data URI): no file to write, cache and fetch per answer (30 % of the
    app's time per barcode answer went there, bench/app_concurrency.py)."""
    buffer = io.BytesIO()
    stripe.save(buffer, format="PNG")
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return (
        '<div class="barcode-stripe" title="barcode: A green, C blue, G orange, T red">'
        f'<img alt="barcode stripe" src="data:image/png;base64,{encoded}" style="width:100%;height:28px"></div>'
    )


def lineage_rows(result: Identification) -> list[list]:
    return [
        [rank, call.name, round(call.confidence, 3), round(call.vote_share, 3)]
        for rank in RANKS
        if (call := result.ranks.get(rank))
    ]


def neighbour_rows(result: Identification) -> list[list]:
    return [
        [
            position + 1,
            n.id,
            *(n.lineage[rank] for rank in RANKS),
            round(n.similarity, 3),
            None if n.identity is None else round(n.identity, 2),
        ]
        for position, n in enumerate(result.neighbours)
    ]


def headline_markdown(result: Identification) -> str:
    from clibd_core.library.search import CONFIDENT, NOVEL_MESSAGE

    if result.error:
        return f"### ⚠️ {result.query_id}: {result.error}"
    text = f"## {result.query_id}: {result.headline}"
    if result.deepest_rank:
        text = f"## {result.query_id}: *{result.ranks[result.deepest_rank].name}*"
        text += f" ({result.deepest_rank}, confidence {result.ranks[result.deepest_rank].confidence:.2f})"
        text += " — species not in this library" if result.novel and result.deepest_rank != "species" else ""
    notes = []
    if result.novel:
        notes.append(f"🔎 **{NOVEL_MESSAGE[0].upper() + NOVEL_MESSAGE[1:]}** (novelty {result.novelty:.2f}).")
    if result.agreement:
        notes.append(f"Image and barcode: {result.agreement}.")
    if result.bin:
        where = "inside it" if result.bin.inside else "outside it (more than 2.2 % divergent)"
        notes.append(f"Nearest BIN: **{result.bin.name}** ({result.bin.identity:.1f} % identity: {where}).")
    notes += [f"⚠️ {warning}" for warning in result.warnings if warning != NOVEL_MESSAGE]
    notes.append(f"Ranks are stated down to the deepest with confidence ≥ {CONFIDENT}.")
    return text + "\n\n" + "\n\n".join(notes)


def gallery_items(result: Identification, library) -> list[tuple[Image.Image, str]]:
    thumbnails = library.thumbnails([n.row for n in result.neighbours])
    items = []
    for n in result.neighbours:
        if n.row in thumbnails:
            caption = f"{n.id}: {n.lineage['species']} ({n.similarity:.2f})"
            items.append((Image.open(io.BytesIO(thumbnails[n.row])), caption))
    return items


def detail_outputs(result: Identification | None, library, barcodes: dict[str, str]) -> tuple:
    if result is None:
        return "", [], [], [], ""
    sequence = barcodes.get(result.query_id)
    stripe = stripe_html(barcode_stripe(sequence)) if sequence else ""
    return (
        headline_markdown(result),
        lineage_rows(result),
        neighbour_rows(result),
        gallery_items(result, library),
        stripe,
    )


# -- Identify ------------------------------------------------------------------------------------
def run_identify(images, barcode_text, fasta_file, k, taxon, country, image_keys, pair):
    """One or more specimens → answers; details of the first, a table of all."""
    from clibd_core.library.search import identify, queries_from, results_table

    library, model = open_pair(pair)
    text = barcode_text or ""
    if fasta_file:
        text += "\n" + read_text(fasta_file)
    inputs = collect_inputs([*(images or [])])
    text = text.strip() + ("\n" + inputs.barcode_text if inputs.barcode_text else "")
    queries = queries_from(text.strip(), inputs.images)
    if not queries:
        raise gr.Error("Give an image, a barcode (raw or FASTA), or both.")
    try:
        results = identify(
            library, model, queries, k=int(k), image_keys=image_keys, taxon=taxon or None, country=country or None
        )
    except USER_ERRORS as error:
        raise gr.Error(str(error)) from error
    reports = [inspect_barcode(q.id, q.barcode) for q in queries if q.barcode]
    barcodes = {report.id: report.sequence for report in reports if report.ok}
    table = results_table(results)[["query_id", "query_type", "headline", "novel", "agreement", "error"]]
    state = {"results": [r.to_dict() for r in results], "objects": results, "barcodes": barcodes}
    skipped = "\n".join(f"- left out {item}" for item in inputs.skipped)
    headline, lineage, neighbours, gallery, stripe = detail_outputs(results[0], library, barcodes)
    return (
        headline + (f"\n\n{skipped}" if skipped else ""),
        lineage,
        neighbours,
        gallery,
        stripe,
        table,
        gr.update(choices=[r.query_id for r in results], value=results[0].query_id),
        state,
    )


def show_query(query_id, state, pair):
    library, _ = open_pair(pair)
    results = {r.query_id: r for r in (state or {}).get("objects", [])}
    return detail_outputs(results.get(query_id), library, (state or {}).get("barcodes", {}))


# -- Batch ---------------------------------------------------------------------------------------
def run_batch(files, k, taxon, country, pair, progress=gr.Progress()):  # noqa: B008 - how Gradio injects progress
    """A zip/folder of images or a multi-FASTA of thousands of sequences, in chunks (Cancel stops
    between chunks); the table grows as chunks finish; downloads carry provenance."""
    from clibd_core.library.results import write_bundle, write_results
    from clibd_core.library.search import identify, queries_from, results_table

    library, model = open_pair(pair)
    if not files:
        raise gr.Error("Upload a zip of images, images, or a (multi-)FASTA file.")
    work = Path(tempfile.mkdtemp(prefix="clibd-batch-"))
    inputs = collect_inputs(files, unpack_to=work / "unpacked")
    queries = queries_from(inputs.barcode_text, inputs.images)
    if not queries:
        raise gr.Error("Nothing to identify in these files: " + "; ".join(inputs.skipped[:5]))
    results: list[Identification] = []
    notes = "\n".join(f"- left out {item}" for item in inputs.skipped[:50])
    for start in range(0, len(queries), BATCH_CHUNK):
        progress(start / len(queries), desc=f"identified {start:,} of {len(queries):,}")
        try:
            results += identify(
                library,
                model,
                queries[start : start + BATCH_CHUNK],
                k=int(k),
                taxon=taxon or None,
                country=country or None,
            )
        except USER_ERRORS as error:
            raise gr.Error(str(error)) from error
        yield results_table(results), None, f"{len(results):,} of {len(queries):,} identified\n{notes}"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    written = write_bundle(results, work / f"clibd-results-{stamp}.csv", library, model)  # as `clibd identify`
    written += write_results(results, work / f"clibd-results-{stamp}.parquet", library, model)
    failed = sum(bool(r.error) for r in results)
    summary = f"done: {len(results) - failed:,} identified, {failed:,} with errors (see the error column)\n{notes}"
    yield results_table(results), [str(p) for p in written], summary


# -- Explore -------------------------------------------------------------------------------------
def draw_map(view, colour_by, highlight, identify_state, pair, progress=gr.Progress()):  # noqa: B008 - how Gradio injects progress
    from clibd_core.library.projection import place, projection

    library, _ = open_pair(pair)
    progress(0, desc="loading the map")
    try:
        table = projection(library, view, progress=lambda message: progress(0.1, desc=message))
    except USER_ERRORS as error:
        raise gr.Error(str(error)) from error
    figure = go.Figure()
    hover = (
        table["id"]
        + "<br>"
        + table["order"]
        + " › "
        + table["family"]
        + " › "
        + table["genus"]
        + " › "
        + table["species"]
    )
    for name, group in table.groupby(colour_by, sort=True):
        figure.add_trace(
            go.Scattergl(
                x=group["x"],
                y=group["y"],
                mode="markers",
                name=str(name),
                text=hover[group.index],
                hoverinfo="text",
                marker={"size": 5, "opacity": 0.75},
                showlegend=table[colour_by].nunique() <= 40,
            )
        )
    if highlight:
        wanted = table[np.any([table[r].str.lower() == highlight.strip().lower() for r in ALL_RANKS], axis=0)]
        if wanted.empty:
            gr.Warning(f"no reference of '{highlight}' on this map")
        figure.add_trace(
            go.Scattergl(
                x=wanted["x"],
                y=wanted["y"],
                mode="markers",
                name=f"{highlight} ({len(wanted)})",
                marker={"size": 11, "color": "rgba(0,0,0,0)", "line": {"width": 2, "color": "black"}},
            )
        )
    neighbours = []
    last = (identify_state or {}).get("objects", [None])[0]
    if last is not None and last.embedding is not None and not last.error:
        x, y = place(table, library, np.asarray(last.embedding), last.key_modality)
        positions = table.drop_duplicates("row").set_index("row")
        for n in last.neighbours:
            if n.row in positions.index:
                figure.add_trace(
                    go.Scattergl(
                        x=[x, positions.at[n.row, "x"]],
                        y=[y, positions.at[n.row, "y"]],
                        mode="lines",
                        line={"width": 1, "color": "grey"},
                        showlegend=False,
                        hoverinfo="skip",
                    )
                )
        figure.add_trace(
            go.Scattergl(
                x=[x],
                y=[y],
                mode="markers",
                name=f"query {last.query_id}",
                text=[last.headline],
                hoverinfo="text",
                marker={"symbol": "star", "size": 20, "color": "gold", "line": {"width": 1.5, "color": "black"}},
            )
        )
        neighbours = neighbour_rows(last)
    figure.update_layout(
        height=640,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        title=f"{library.name}: {view} embeddings (UMAP)",
        xaxis={"visible": False},
        yaxis={"visible": False},
        legend={"itemsizing": "constant"},
    )
    gallery = gallery_items(last, library) if last is not None and not last.error else []
    return figure, neighbours, gallery


# -- Train ---------------------------------------------------------------------------------------
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
    note = (
        f"read **{len(photos):,} photos of {len(table):,} species** from `{source}` ({result.format}); "
        f"{len(skipped):,} left out" + "".join(f"\n- {line}" for line in skipped[:20])
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
    steps = [m for m in job["metrics"] if m.get("type") == "train"]
    figure = None
    if steps:
        figure = go.Figure(go.Scatter(x=[m["step"] for m in steps], y=[m["loss"] for m in steps], name="loss"))
        for m in (m for m in job["metrics"] if m.get("type") == "val"):
            figure.add_vline(x=m["step"], line_dash="dot", annotation_text=f"val {m['score']:.3f}")
        figure.update_layout(height=300, margin={"l": 10, "r": 10, "t": 30, "b": 10}, title="training loss")
    results = Path(job["run_dir"]) / "results.md"
    return text, figure, job["log_tail"], results.read_text() if results.is_file() else "", job["run_dir"]


def use_trained_model(run_dir, data, name, pair, progress=gr.Progress()):  # noqa: B008 - how Gradio injects progress
    """Build a library with the run's best model and make the pair active for this session."""
    model = Path(server_path(run_dir) or "") / "best"
    if not run_dir or not (model / "config.json").is_file():
        raise gr.Error("the run has no best model yet: wait for its first validation")
    source = server_path(data) or (current_job(workspace()) or {}).get("settings", {}).get("data")
    library = import_into_library(source, name or f"{Path(run_dir).name}-library", str(model), "auto", progress)
    return activate(str(library.path), str(model))


# -- Libraries -----------------------------------------------------------------------------------
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
                "model": (s.get("model_fingerprint") or "")[:12],
                "created": s.get("created"),
                "sources": "; ".join(src.get("path", "") for src in s.get("sources", [])),
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


def fetch_official(release, progress=gr.Progress()):  # noqa: B008 - how Gradio injects progress
    """Libraries → "Get the official CLIBD model": download, verify, import; offline, the manual steps."""
    from clibd_core.models.hub import fetch_official_model

    target = workspace().models_dir / safe_name(f"clibd-{release}")
    try:
        out = fetch_official_model(release, target, progress=lambda message: progress(0.5, desc=message))
    except USER_ERRORS as error:  # HubUnavailableError is an OSError: offline, it says what to do by hand
        raise gr.Error(str(error)) from error
    return f"imported the official CLIBD model into `{out}`: build a library with it below", *library_tables()


# -- layout --------------------------------------------------------------------------------------
def build_app() -> gr.Blocks:
    with gr.Blocks(title=TITLE) as app:
        pair = gr.State(None)
        identify_state = gr.State({})
        gr.Markdown(f"# {TITLE}\nName an insect from a photo, a COI barcode, or both (CLIBD, ICLR 2025).")
        banner = gr.Markdown()

        with gr.Tab("Identify") as identify_tab:
            with gr.Row():
                with gr.Column():
                    images = gr.File(
                        label="Images (JPEG, PNG, TIFF, WebP; one or more)",
                        file_count="multiple",
                        file_types=list(IMAGE_SUFFIXES),
                        type="filepath",
                    )
                    barcodes = gr.Textbox(
                        label="Barcodes (raw or FASTA)", lines=6, placeholder=">my_specimen\nAACATTATATTT…"
                    )
                    gr.Examples(
                        [[example] for example in barcode_examples()],
                        inputs=[barcodes],
                        label="examples: real BOLD barcodes (public records)",
                    )
                    fasta = gr.File(label="…or a FASTA file", file_types=[".fasta", ".fa", ".fas", ".txt"])
                    with gr.Accordion("Options", open=False):
                        k = gr.Slider(1, 50, value=10, step=1, label="neighbours that vote (k)")
                        taxon = gr.Textbox(label="only references of this taxon (e.g. Diptera)")
                        country = gr.Textbox(label="only references from this country")
                        image_keys = gr.Radio(
                            ["auto", "image", "dna"],
                            value="auto",
                            label="match images against the library's images or its barcodes",
                        )
                    go_button = gr.Button("Identify", variant="primary")
                with gr.Column():
                    headline = gr.Markdown()
                    chooser = gr.Dropdown(label="query", choices=[], interactive=True)
                    lineage = gr.Dataframe(headers=LINEAGE_HEADERS, label="lineage and confidence per rank")
                    stripe = gr.HTML(label="barcode (A green, C blue, G orange, T red)")
            neighbours = gr.Dataframe(headers=NEIGHBOUR_HEADERS, label="nearest references")
            gallery = gr.Gallery(label="nearest reference images", columns=6, height=260)
            all_results = gr.Dataframe(label="all queries")
            go_button.click(
                run_identify,
                [images, barcodes, fasta, k, taxon, country, image_keys, pair],
                [headline, lineage, neighbours, gallery, stripe, all_results, chooser, identify_state],
                api_name="identify",
            )
            chooser.input(
                show_query,
                [chooser, identify_state, pair],
                [headline, lineage, neighbours, gallery, stripe],
                api_name=False,
            )

        with gr.Tab("Batch") as batch_tab:
            batch_files = gr.File(
                label="a zip of images, image files, or (multi-)FASTA files", file_count="multiple", type="filepath"
            )
            with gr.Row():
                batch_k = gr.Slider(1, 50, value=10, step=1, label="k")
                batch_taxon = gr.Textbox(label="only this taxon")
                batch_country = gr.Textbox(label="only this country")
            with gr.Row():
                batch_go = gr.Button("Run batch", variant="primary")
                batch_cancel = gr.Button("Cancel")
            batch_note = gr.Markdown()
            batch_table = gr.Dataframe(label="results")
            batch_downloads = gr.File(label="downloads: results CSV / Parquet (with provenance), embeddings Parquet")
            batch_event = batch_go.click(
                run_batch,
                [batch_files, batch_k, batch_taxon, batch_country, pair],
                [batch_table, batch_downloads, batch_note],
                api_name="batch",
            )
            batch_cancel.click(None, None, None, cancels=[batch_event], api_name=False)

        with gr.Tab("Explore") as explore_tab:
            with gr.Row():
                view = gr.Radio(["dna", "image", "both"], value="dna", label="embeddings")
                colour_by = gr.Dropdown(list(RANKS), value="order", label="colour by")
                highlight = gr.Textbox(label="highlight a taxon (any rank)")
                draw = gr.Button("Draw map", variant="primary")
            plot = gr.Plot(label="UMAP of the library (the last query is the star)")
            map_neighbours = gr.Dataframe(headers=NEIGHBOUR_HEADERS, label="the last query's neighbours")
            map_gallery = gr.Gallery(label="their images", columns=6, height=220)
            draw.click(
                draw_map,
                [view, colour_by, highlight, identify_state, pair],
                [plot, map_neighbours, map_gallery],
                api_name="explore",
            )

        with gr.Tab("Train") as train_tab:
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
                    modalities = gr.CheckboxGroup(
                        ["image", "dna", "text"], value=["image", "dna", "text"], label="modalities"
                    )
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

        with gr.Tab("Libraries") as libraries_tab:
            libraries_table = gr.Dataframe(label="libraries")
            models_table = gr.Dataframe(label="models")
            with gr.Row():
                choose_library = gr.Dropdown(label="library", choices=[], allow_custom_value=True)
                choose_model = gr.Dropdown(
                    label="model (empty: the library's own)", choices=[], allow_custom_value=True
                )
                make_active = gr.Button("Make active", variant="primary")
            gr.Markdown("### Import data into a new library")
            with gr.Row():
                source_upload = gr.File(label="upload (BOLD TSV, FASTA, CLIBD HDF5, …)", type="filepath")
                source_path = gr.Textbox(label="…or a path on this machine (folders: BIOSCAN-1M/5M, image folders)")
            with gr.Row():
                source_format = gr.Dropdown(["auto", *READERS], value="auto", label="format")
                library_name = gr.Textbox(label="library name")
                library_model = gr.Dropdown(label="model (empty: the active one)", choices=[], allow_custom_value=True)
                build = gr.Button("Import")
            import_note = gr.Markdown()
            gr.Markdown("### Get the official CLIBD model (Hugging Face `bioscan-ml/clibd`, needs internet)")
            with gr.Row():
                release = gr.Dropdown(list(RELEASES), value=DEFAULT_RELEASE, label="release")
                fetch = gr.Button("Get the official CLIBD model")
            gr.Markdown("### Import an official CLIBD checkpoint (best.pth)")
            with gr.Row():
                checkpoint_upload = gr.File(label="best.pth", type="filepath")
                checkpoint_path = gr.Textbox(label="…or its path")
                checkpoint_name = gr.Textbox(label="model name")
                checkpoint_go = gr.Button("Import checkpoint")
            tables = [libraries_table, models_table, choose_library, choose_model]
            make_active.click(activate, [choose_library, choose_model], [pair, banner], api_name="activate")
            build.click(
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
            fetch.click(fetch_official, [release], [import_note, *tables], api_name="fetch_official")
            checkpoint_go.click(
                import_checkpoint,
                [checkpoint_upload, checkpoint_path, checkpoint_name],
                [import_note, *tables],
                api_name="import_checkpoint",
            )

        tabs = [identify_tab, batch_tab, explore_tab, train_tab, libraries_tab]
        for tab in tabs:
            tab.select(lambda active=tab is train_tab: gr.Timer(active=active), None, timer, api_name=False)

        def on_load():
            models = [m["path"] for m in workspace().models()]
            return (
                pair_banner(None),
                *library_tables(),
                gr.update(choices=models),
                gr.update(choices=models),
                *training_progress(),
            )

        app.load(
            on_load,
            None,
            [banner, *tables, init_from, library_model, job_text, loss_plot, log_tail, evaluation, run_dir],
            api_name=False,
        )
    return app


def warm_up() -> None:
    """Import the heavy modules and load the active model and library before the first click."""
    import clibd_core.library.projection  # noqa: F401 - imports torch, FAISS, the search engine
    import clibd_core.models.official  # noqa: F401

    try:
        open_pair(None)
    except (OSError, ValueError) as error:
        print(f"could not preload the active library/model: {error}", flush=True)


def login_for(host: str):
    """Gradio's ``auth`` for ``host``: none on loopback, the users file (CLIBD_USERS) beyond it; serving
    a network without users is refused with what to do."""
    users = os.environ.get("CLIBD_USERS")
    if users:
        if not Path(users).is_file():
            raise SystemExit(f"CLIBD_USERS={users}: no such file (create it with: clibd add-user {users} NAME)")
        return authenticator(users)
    if host in LOOPBACK:
        return None
    raise SystemExit(
        f"refusing to serve {host} without a login: create users with `clibd add-user users.txt NAME` "
        "(it asks for the password and stores only its hash), then start with CLIBD_USERS=users.txt"
    )


def configure_queue(app: gr.Blocks) -> gr.Blocks:
    return app.queue(default_concurrency_limit=2)


def main() -> None:
    host = os.environ.get("CLIBD_HOST", "127.0.0.1")
    auth = login_for(host)
    app = configure_queue(build_app())
    threading.Timer(1.0, warm_up).start()  # after the server is up
    app.launch(
        server_name=host,
        server_port=int(os.environ.get("CLIBD_PORT", "7860")),
        max_file_size=MAX_UPLOAD,
        theme=gr.themes.Soft(),
        auth=auth,
        auth_message="CLIBD: log in with the name and password your lab's operator gave you",
    )


if __name__ == "__main__":
    main()
