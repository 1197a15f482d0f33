"""Answers for a mix of barcodes and photos when the active library cannot take photos: the photos go
to a library of the workspace that can (the user's own, never the synthetic demo), the barcodes stay
with the active one, and a specimen with both gets the combined answer; without such a library each
photo gets the way forward in words (library.search.photo_way_forward). Shared by the app and the CLI."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from clibd_core.library.identification import Identification, Query
from clibd_core.library.naming import combine
from clibd_core.library.search import identify
from clibd_core.library.shared_calls import SharedCalls
from clibd_core.workspace import EMBEDDED_LIBRARIES, Workspace, load_cached_library, load_cached_model

served_identify = SharedCalls(identify)  # a server's concurrent requests, answered in shared engine calls


@dataclass
class Answered:
    results: list[Identification]
    notes: list[str] = field(default_factory=list)  # which library answered what, shown to the user
    photos_refused: bool = False  # photos met a barcode-only library and no other could take them


def photo_pair(workspace: Workspace) -> tuple[Path, Path] | None:
    """The first of the workspace's own libraries whose model has an image tower, if any (models are
    judged by their config.json, never loaded to find out)."""
    embedded = {p.resolve() for p in EMBEDDED_LIBRARIES}
    with_images = {m["path"] for m in workspace.models() if "image" in (m["modalities"] or [])}
    for entry in workspace.libraries():
        path = Path(entry["path"])
        if "error" in entry or path.resolve() in embedded:
            continue
        model = next((m for m in entry.get("models", []) if m in with_images), None)
        if model is not None:
            return path, Path(model)
    return None


def identify_with_photo_fallback(
    library, model, queries: list[Query], workspace: Workspace, engine: Callable = identify, **options
) -> Answered:
    """``engine`` (:func:`identify`, or :data:`served_identify` in a server), with photos routed to a photo
    library when the active model cannot read them."""
    if "image" in model.config.modalities or not any(q.image is not None for q in queries):
        return Answered(engine(library, model, queries, **options))
    route = photo_pair(workspace)
    if route is None:
        results = engine(library, model, queries, **options)
        return Answered(results, photos_refused=any(r.query_type != "barcode" and r.error for r in results))
    photo_library, photo_model = load_cached_library(route[0]), load_cached_model(str(route[1]))
    barcodes = [Query(q.id, barcode=q.barcode) for q in queries if q.barcode is not None]
    photos = [Query(q.id, image=q.image) for q in queries if q.image is not None]
    photo_options = {k: v for k, v in options.items() if k in ("k", "progress", "batch_size")}
    by_barcode = {r.query_id: r for r in engine(library, model, barcodes, **options)} if barcodes else {}
    by_photo = {r.query_id: r for r in engine(photo_library, photo_model, photos, **photo_options)}
    results = []
    for query in queries:
        barcode, photo = by_barcode.get(query.id), by_photo.get(query.id)
        if barcode and photo and not barcode.error and not photo.error:
            results.append(combine(image=photo, barcode=barcode))
        else:
            results.append(next(r for r in (barcode, photo) if r is not None))
    note = (f"photos answered by your library “{photo_library.name}” (the active “{library.name}” holds barcodes "
            "only); barcodes by the active library")  # fmt: skip
    return Answered(results, [note])
