"""The Explore tab: a map of the library's embeddings (UMAP; t-SNE for small libraries), a taxon
highlighted, the last query placed."""

from __future__ import annotations

import gradio as gr
import numpy as np

from clibd_core.taxonomy import ALL_RANKS, RANKS
from clibd_core.ui.answers import NEIGHBOUR_HEADERS, gallery_items, neighbour_rows
from clibd_core.ui.figures import embedding_map
from clibd_core.ui.session import USER_ERRORS, open_pair


def draw_map(view, colour_by, highlight, identify_state, pair, progress=gr.Progress()):  # noqa: B008 - how Gradio injects progress
    from clibd_core.library.projection import TSNE_BELOW, place, projection

    library, _ = open_pair(pair)
    progress(0, desc="loading the map")
    try:
        table = projection(library, view, progress=lambda message: progress(0.1, desc=message))
    except USER_ERRORS as error:
        raise gr.Error(str(error)) from error
    highlighted = None
    if highlight:
        highlighted = table[np.any([table[r].str.lower() == highlight.strip().lower() for r in ALL_RANKS], axis=0)]
        if highlighted.empty:
            gr.Warning(f"no reference of '{highlight}' on this map")
    query, neighbour_points, neighbours, gallery = None, [], [], []
    last = (identify_state or {}).get("objects", [None])[0]
    if last is not None and last.embedding is not None and not last.error:
        x, y = place(table, library, np.asarray(last.embedding), last.key_modality)
        positions = table.drop_duplicates("row").set_index("row")
        neighbour_points = [
            (positions.at[n.row, "x"], positions.at[n.row, "y"]) for n in last.neighbours if n.row in positions.index
        ]
        query = (x, y, f"query {last.query_id}", last.headline)
        neighbours = neighbour_rows(last)
    if last is not None and not last.error:
        gallery = gallery_items(last, library)
    figure = embedding_map(
        table,
        colour_by,
        f"{library.name}: {view} embeddings ({'UMAP' if len(table) >= TSNE_BELOW else 't-SNE'})",
        highlighted,
        highlight or "",
        query,
        neighbour_points,
    )
    return figure, neighbours, gallery


def build(pair: gr.State, identify_state: gr.State) -> None:
    """The tab's layout and events (inside an open ``gr.Tab``)."""
    with gr.Row():
        view = gr.Radio(["dna", "image", "both"], value="dna", label="embeddings")
        colour_by = gr.Dropdown(list(RANKS), value="order", label="colour by")
        highlight = gr.Textbox(label="highlight a taxon (any rank)")
        draw = gr.Button("Draw map", variant="primary")
    plot = gr.Plot(label="map of the library (the last query is the star)")
    map_neighbours = gr.Dataframe(headers=NEIGHBOUR_HEADERS, label="the last query's neighbours")
    map_gallery = gr.Gallery(label="their images", columns=6, height=220)
    draw.click(
        draw_map,
        [view, colour_by, highlight, identify_state, pair],
        [plot, map_neighbours, map_gallery],
        api_name="explore",
    )
