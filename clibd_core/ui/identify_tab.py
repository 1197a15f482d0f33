"""The Identify tab: images and/or barcodes (raw, FASTA, a FASTA file) → answers, the first in detail."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from clibd_core.data.uploads import IMAGE_SUFFIXES, collect_inputs
from clibd_core.dna import inspect_barcode
from clibd_core.reference import DEMO_LIBRARY, DEMO_MODEL
from clibd_core.textio import read_text
from clibd_core.ui.answers import LINEAGE_HEADERS, NEIGHBOUR_HEADERS, detail_outputs
from clibd_core.ui.session import USER_ERRORS, open_pair, pair_banner, workspace

EXAMPLES = Path(__file__).resolve().parents[2] / "assets" / "examples" / "bold_barcodes.fasta"


def barcode_examples() -> list[str]:
    """Real public BOLD barcodes (a full read, a reverse-complemented one, a 313-bp fragment)."""
    return [">" + record.strip() for record in EXAMPLES.read_text().split(">") if record.strip()]


# Identify requests the server takes in at once. Their engine work is shared (answering.served_identify):
# while one call runs, the others wait to be answered together, so taking in more than the queue's
# default of 2 is what lets them share.
SHARED_USERS = 16
SUMMARY_COLUMNS = ["query_id", "query_type", "headline", "novel", "agreement", "error"]

WAY_FORWARD = (
    "### This photo cannot be named by the active library\n"
    "The active library holds DNA barcodes only: its model was never shown insect photos. Choose a way forward:"
)


def run_identify(images, barcode_text, fasta_file, k, taxon, country, image_keys, pair):
    """One or more specimens → answers; details of the first, a table of all. Photos that the active
    library cannot take go to a photo library of the workspace, or get the way forward."""
    from clibd_core.answering import identify_with_photo_fallback, served_identify
    from clibd_core.library.search import queries_from

    library, model = open_pair(pair)
    text = barcode_text or ""
    try:  # a binary file uploaded as FASTA, a damaged zip: said in words, like every other refusal
        if fasta_file:
            text += "\n" + read_text(fasta_file)
        inputs = collect_inputs([*(images or [])])
        text = text.strip() + ("\n" + inputs.barcode_text if inputs.barcode_text else "")
        queries = queries_from(text.strip(), inputs.images)
    except USER_ERRORS as error:
        raise gr.Error(str(error)) from error
    if not queries:
        raise gr.Error("Give an image, a barcode (raw or FASTA), or both.")
    try:
        answered = identify_with_photo_fallback(
            library, model, queries, workspace(), served_identify, k=int(k), image_keys=image_keys,
            taxon=taxon or None, country=country or None,
        )  # fmt: skip
        results = answered.results
    except USER_ERRORS as error:
        raise gr.Error(str(error)) from error
    reports = [inspect_barcode(q.id, q.barcode) for q in queries if q.barcode]
    barcodes = {report.id: report.sequence for report in reports if report.ok}
    # Rows as they are, not a pandas frame: building one per answer was an eighth of a served answer's CPU.
    rows = [result.row() for result in results]
    table = {"headers": SUMMARY_COLUMNS, "data": [[row[c] for c in SUMMARY_COLUMNS] for row in rows]}
    state = {"results": [r.to_dict() for r in results], "objects": results, "barcodes": barcodes}
    skipped = "\n".join(f"- left out {item}" for item in inputs.skipped)
    headline, lineage, neighbours, gallery, stripe = detail_outputs(results[0], library, barcodes)
    notes = "\n".join(f"- {note}" for note in answered.notes)
    return (
        headline + (f"\n\n{notes}" if notes else "") + (f"\n\n{skipped}" if skipped else ""),
        lineage,
        neighbours,
        gallery,
        stripe,
        table,
        gr.update(choices=[r.query_id for r in results], value=results[0].query_id),
        state,
        gr.update(visible=answered.photos_refused),
    )


def show_query(query_id, state, pair):
    library, _ = open_pair(pair)
    results = {r.query_id: r for r in (state or {}).get("objects", [])}
    return detail_outputs(results.get(query_id), library, (state or {}).get("barcodes", {}))


def open_demo():
    """The way forward's first button: the synthetic demo for this session (labelled so on every page)."""
    pair = [str(DEMO_LIBRARY), str(DEMO_MODEL)]
    return pair, pair_banner(pair), gr.update(visible=False)


def build(pair: gr.State, identify_state: gr.State, banner: gr.Markdown) -> dict[str, gr.Button]:
    """The tab's layout and events (inside an open ``gr.Tab``); returns the way-forward buttons that lead to
    other tabs (the page wires them)."""
    with gr.Row():
        with gr.Column():
            images = gr.File(
                label="Images (JPEG, PNG, TIFF, WebP; one or more)",
                file_count="multiple",
                file_types=list(IMAGE_SUFFIXES),
                type="filepath",
            )
            barcodes = gr.Textbox(label="Barcodes (raw or FASTA)", lines=6, placeholder=">my_specimen\nAACATTATATTT…")
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
            with gr.Group(visible=False) as way_forward:
                gr.Markdown(WAY_FORWARD)
                demo_button = gr.Button("See it on the demo library (synthetic insects)")
                train_button = gr.Button("Train on my own labelled photos (Train tab)")
                official_button = gr.Button("Get the official CLIBD model (Libraries tab, needs internet once)")
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
        [headline, lineage, neighbours, gallery, stripe, all_results, chooser, identify_state, way_forward],
        api_name="identify",
        concurrency_limit=SHARED_USERS,
    )
    demo_button.click(open_demo, None, [pair, banner, way_forward], api_name=False)
    chooser.input(
        show_query,
        [chooser, identify_state, pair],
        [headline, lineage, neighbours, gallery, stripe],
        api_name=False,
    )
    return {"train": train_button, "official": official_button}
