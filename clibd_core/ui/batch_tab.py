"""The Batch tab: a zip or folder of images or a multi-FASTA of thousands of barcodes, identified in chunks,
with the same result bundle `clibd identify` writes offered for download."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import gradio as gr

from clibd_core.data.uploads import collect_inputs
from clibd_core.ui.session import USER_ERRORS, open_pair

if TYPE_CHECKING:
    from clibd_core.library.identification import Identification

BATCH_CHUNK = 128


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


def build(pair: gr.State) -> None:
    """The tab's layout and events (inside an open ``gr.Tab``)."""
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
