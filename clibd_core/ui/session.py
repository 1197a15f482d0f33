"""What every tab shares: the workspace, the session's active (library, model) pair, paths users type,
and which errors are shown to the user as a message."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from clibd_core.access import AccessError, allowed_roots, confine
from clibd_core.workspace import DEMO_LIBRARY, Workspace, load_cached_library, load_cached_model

USER_ERRORS = (ValueError, OSError)


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
