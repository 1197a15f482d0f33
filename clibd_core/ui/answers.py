"""How one answer is shown: its headline, lineage and neighbour rows, reference thumbnails, barcode stripe."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from PIL import Image

from clibd_core.taxonomy import RANKS
from clibd_core.ui.figures import barcode_stripe, stripe_html

if TYPE_CHECKING:
    from clibd_core.library.identification import Identification

LINEAGE_HEADERS = ["rank", "name", "confidence", "vote share"]
NEIGHBOUR_HEADERS = ["#", "id", *RANKS, "similarity", "identity %"]


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
    from clibd_core.library.naming import CONFIDENT, NOVEL_MESSAGE

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
