"""The pictures the app draws: the barcode stripe, the embedding map and the training loss (Plotly)."""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from PIL import Image

from clibd_core.dna import to_acgtn

BASE_COLOURS = {"A": (46, 160, 67), "C": (31, 111, 235), "G": (240, 160, 30), "T": (210, 50, 50)}
_COLOUR_OF_BYTE = np.full((256, 3), 170, dtype=np.uint8)  # anything else grey
_COLOUR_OF_BYTE[[ord(base) for base in BASE_COLOURS]] = list(BASE_COLOURS.values())


def barcode_stripe(sequence: str, width: int | None = None, height: int = 1) -> Image.Image:
    """The barcode as a coloured stripe: A green, C blue, G orange, T red, anything else grey; one pixel a
    base unless ``width`` says otherwise (the page stretches it)."""
    colours = _COLOUR_OF_BYTE[np.frombuffer(to_acgtn(sequence).encode("ascii", "replace"), dtype=np.uint8)]
    stripe = Image.fromarray(np.repeat(colours[None, :, :], height, axis=0))
    return stripe if width is None else stripe.resize((width, height), Image.NEAREST)


def stripe_html(stripe: Image.Image) -> str:
    """The stripe inline (a PNG data URI): no file to write, cache and fetch per answer (30 % of the
    app's time per barcode answer went there, bench/app_concurrency.py), one pixel a base, stretched by the
    browser without blurring (encoding it at 900 × 28 took 1.5 ms an answer)."""
    buffer = io.BytesIO()
    stripe.save(buffer, format="PNG")
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return (
        '<div class="barcode-stripe" title="barcode: A green, C blue, G orange, T red">'
        f'<img alt="barcode stripe" src="data:image/png;base64,{encoded}" '
        'style="width:100%;height:28px;image-rendering:pixelated"></div>'
    )


def embedding_map(
    table: pd.DataFrame,
    colour_by: str,
    title: str,
    highlighted: pd.DataFrame | None = None,
    highlight_label: str = "",
    query: tuple[float, float, str, str] | None = None,
    neighbour_points: list[tuple[float, float]] = (),
) -> go.Figure:
    """The UMAP map of a library's references coloured by a rank; optionally a highlighted taxon (rings),
    and the last query (a star at ``query`` = x, y, name, hover text) with lines to its neighbours."""
    figure = go.Figure()
    hover = table["id"] + "<br>" + table["order"] + " › " + table["family"] + " › " + table["genus"]
    hover = hover + " › " + table["species"]
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
    if highlighted is not None:
        figure.add_trace(
            go.Scattergl(
                x=highlighted["x"],
                y=highlighted["y"],
                mode="markers",
                name=f"{highlight_label} ({len(highlighted)})",
                marker={"size": 11, "color": "rgba(0,0,0,0)", "line": {"width": 2, "color": "black"}},
            )
        )
    if query is not None:
        x, y, name, text = query
        for neighbour_x, neighbour_y in neighbour_points:
            figure.add_trace(
                go.Scattergl(
                    x=[x, neighbour_x],
                    y=[y, neighbour_y],
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
                name=name,
                text=[text],
                hoverinfo="text",
                marker={"symbol": "star", "size": 20, "color": "gold", "line": {"width": 1.5, "color": "black"}},
            )
        )
    figure.update_layout(
        height=640,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        title=title,
        xaxis={"visible": False},
        yaxis={"visible": False},
        legend={"itemsizing": "constant"},
    )
    return figure


def loss_figure(metrics: list[dict]) -> go.Figure | None:
    """Training loss per step with each validation marked; None before the first step."""
    steps = [m for m in metrics if m.get("type") == "train"]
    if not steps:
        return None
    figure = go.Figure(go.Scatter(x=[m["step"] for m in steps], y=[m["loss"] for m in steps], name="loss"))
    for m in (m for m in metrics if m.get("type") == "val"):
        figure.add_vline(x=m["step"], line_dash="dot", annotation_text=f"val {m['score']:.3f}")
    figure.update_layout(height=300, margin={"l": 10, "r": 10, "t": 30, "b": 10}, title="training loss")
    return figure
