"""The CLIBD Gradio app: for now the barcode check (identification comes with the library engine).

Every tab calls clibd_core; the app holds no logic of its own.
"""

from __future__ import annotations

import os

import gradio as gr

from clibd_core.dna import check_barcodes

EXAMPLE = ">example_reversed\n" + (
    "TCCTACTGATCGTATATTAATAATTGTAGTGATAAAATTTACAGCTCCTAAAATTGAGGAAATTCCAGCTAAATGAAGACTAAAAATAGCTAAATCAACCGAGG"
    "CTCCTCTATGGGCAATATTACTAGAAAGGGGGGGGTAAACTGTTCATCCTGTGCCAGTACCTCTTTCAACTATGCTGCTTATAAGGAGCAAGGTCAATGAAGGAGG"
)


def barcode_table(text: str) -> list[list]:
    """One row per record: id, length, % ambiguous, orientation, warnings or the rejection."""
    rows = []
    for report in check_barcodes(text):
        if report.ok:
            strand = "reverse-complemented" if report.reverse_complemented else "as given"
            rows.append(
                [report.id, report.length, round(report.ambiguous_percent, 2), strand, "; ".join(report.warnings)]
            )
        else:
            rows.append([report.id, None, None, "rejected", report.error])
    return rows


def build_app() -> gr.Blocks:
    with gr.Blocks(title="CLIBD insect identification") as app:
        gr.Markdown("# CLIBD insect identification\nPaste barcodes (raw or FASTA) to check them.")
        text = gr.Textbox(label="Barcodes", lines=8, value=EXAMPLE)
        button = gr.Button("Check barcodes", variant="primary")
        table = gr.Dataframe(
            headers=["id", "length (bp)", "% ambiguous", "orientation", "notes"], label="Barcode check"
        )
        button.click(barcode_table, inputs=text, outputs=table, api_name="check_barcodes")
    return app


if __name__ == "__main__":
    build_app().launch(
        server_name=os.environ.get("CLIBD_HOST", "127.0.0.1"), server_port=int(os.environ.get("CLIBD_PORT", "7860"))
    )
