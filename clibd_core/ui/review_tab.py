"""The Review tab: the specimen that most needs a person, with its evidence (photos, lineage and
confidence, nearest references, the barcode's identity), and agree / correct / not identifiable /
withdraw, by keyboard too (a, c, n, w; j for the next). Who reviews is who is logged in, or on loopback
the name set once for the workspace."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import gradio as gr

from clibd_core.projects.db import session_scope
from clibd_core.projects.intake import media_dir
from clibd_core.projects.registry import get_project
from clibd_core.projects.review import (
    StaleEdit,
    TaxonIndex,
    local_reviewer,
    next_for_review,
    project_status,
    review_specimen,
    set_local_reviewer,
    specimen_view,
)
from clibd_core.taxonomy import RANKS
from clibd_core.ui.session import USER_ERRORS, active_pair
from clibd_core.workspace import load_cached_library

NEIGHBOUR_COLUMNS = ["reference", *RANKS, "identity %", "similarity"]
KEYBOARD = """
<script>
document.addEventListener("keydown", (event) => {
  const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement?.tagName);
  const keys = {a: "review-agree", n: "review-not-identifiable", w: "review-withdraw", j: "review-next"};
  if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.key === "c") { document.querySelector("#review-taxon input")?.focus(); event.preventDefault(); return; }
  const target = keys[event.key] && document.getElementById(keys[event.key]);
  if (target && target.offsetParent !== null) { target.click(); event.preventDefault(); }
});
</script>
"""


@lru_cache(maxsize=4)
def _taxa(path: str, version: str) -> TaxonIndex:
    return TaxonIndex(load_cached_library(Path(path)))


def taxon_index(pair) -> TaxonIndex:
    library, _ = active_pair(pair)
    return _taxa(str(library), (library / "CURRENT").read_text().strip())


def reviewer_of(request: gr.Request | None) -> str:
    return (request.username if request is not None and request.username else None) or local_reviewer()


def _evidence(project: str, view: dict | None):
    """Markdown, photos, lineage rows and neighbour rows of a specimen view."""
    if view is None:
        return "Nothing left to review in this project: every identified specimen has a person's word.", [], [], []
    machine = next((i for i in reversed(view["identifications"]) if i["kind"] == "machine"), None)
    event = view["event"] or {}
    place = ", ".join(str(event[k]) for k in ("site", "locality", "country") if event.get(k))
    where = f"{event.get('latitude')}, {event.get('longitude')}" if event.get("latitude") is not None else ""
    current = view["determination"] or {}
    lines = [
        f"### {view['sample_id']}" + (f" · plate {view['plate']} {view['well']}" if view["well"] else ""),
        f"{event.get('event_date', '')} {place} {where}".strip(),
        f"**Now:** {current.get('rank', '')} *{current.get('taxon') or 'no rank stated'}* ({view['status']})",
        *(f"- needs a person: {reason}" for reason in view["review_reasons"]),
    ]
    if machine:
        if machine["bin"]:
            lines.append(f"- nearest BIN {machine['bin']} at {machine['bin_identity']} % identity")
        if machine["top_identity"] is not None:
            lines.append(f"- closest reference barcode: {machine['top_identity']} % identity")
        lines.append(f"- answered by {machine['library']} ({machine['query_type']})")
    humans = [i for i in view["identifications"] if i["kind"] == "human"]
    lines += [f"- {h['reviewer']}: {h['action']} {h['taxon']}" + (" (withdrawn)" if h["withdrawn"] else "")
              for h in humans]  # fmt: skip
    photos = [str(media_dir(project) / p) for p in view["photos"]]
    ranks = (machine or {}).get("ranks", {})
    lineage = [[rank, ranks[rank]["name"], ranks[rank]["confidence"]] for rank in RANKS if rank in ranks]
    neighbours = [
        [n["id"], *(n.get(rank, "") for rank in RANKS), n.get("identity"), n.get("similarity")]
        for n in (machine or {}).get("neighbours", [])
    ]
    return "\n".join(line for line in lines if line), photos, lineage, neighbours


def _progress(project: str) -> tuple[str, list]:
    with session_scope() as session:
        status = project_status(session, get_project(session, project))
    agreement = [
        [rank, counts["compared"], "" if counts["rate"] is None else f"{100 * counts['rate']:.1f} %"]
        for rank, counts in status["agreement"].items()
    ]
    text = (f"verified **{status['reviewed']}** of {status['identified']} identified "
            f"({status['needing_review']} flagged as needing a person)")  # fmt: skip
    return text, agreement


def next_specimen(project, request: gr.Request = None):
    if not project:
        raise gr.Error("Choose a project in the Projects tab (or above) first.")
    try:
        with session_scope() as session:
            specimen = next_for_review(session, get_project(session, project))
            view = specimen_view(specimen) if specimen is not None else None
        progress, agreement = _progress(project)
    except USER_ERRORS as error:
        raise gr.Error(str(error)) from error
    text, photos, lineage, neighbours = _evidence(project, view)
    current = {"sample_id": view["sample_id"], "version": view["version"]} if view else {}
    return text, photos, lineage, neighbours, progress, agreement, current, f"reviewing as **{reviewer_of(request)}**"


def act(action, project, current, taxon, rank, remarks, pair, request: gr.Request = None):
    """One action on the specimen on screen, refused if someone changed it meanwhile; then the next."""
    if not current:
        raise gr.Error("Press Next to load a specimen first.")
    try:
        review_specimen(
            project, current["sample_id"], reviewer_of(request), action, taxon or None, rank or None, remarks or "",
            seen_version=current["version"], taxa=taxon_index(pair) if action == "correct" else None,
        )  # fmt: skip
    except StaleEdit as error:
        raise gr.Error(str(error)) from error
    except USER_ERRORS as error:
        raise gr.Error(str(error)) from error
    gr.Info(f"{current['sample_id']}: {action.replace('_', ' ')} saved")
    return next_specimen(project, request)


def _handler(action: str):
    """A click handler for one action (Gradio passes the login as the ``gr.Request`` parameter)."""

    def handle(project, current, taxon, rank, remarks, pair, request: gr.Request):
        return act(action, project, current, taxon, rank, remarks, pair, request)

    return handle


def taxon_choices(pair):
    return gr.update(choices=taxon_index(pair).names())


def save_reviewer(name: str) -> str:
    try:
        return f"reviewing as **{set_local_reviewer(name or '')}**"
    except USER_ERRORS as error:
        raise gr.Error(str(error)) from error


def build(pair: gr.State) -> gr.Dropdown:
    """The tab's layout and events (inside an open ``gr.Tab``); returns its project chooser."""
    current = gr.State({})
    project = gr.Dropdown(label="project", choices=[], allow_custom_value=False)
    with gr.Row():
        who = gr.Markdown()
        name = gr.Textbox(label="your name (on this computer; logins name you when served)", scale=2)
        save = gr.Button("Save name", scale=1)
    progress = gr.Markdown()
    with gr.Row():
        with gr.Column(scale=3):
            evidence = gr.Markdown()
            photos = gr.Gallery(label="photos of this specimen", columns=4, height=240)
            lineage = gr.Dataframe(headers=["rank", "name", "confidence"], label="machine lineage and confidence")
        with gr.Column(scale=2):
            next_button = gr.Button("Next (j)", elem_id="review-next")
            agree = gr.Button("Agree (a)", variant="primary", elem_id="review-agree")
            taxon = gr.Dropdown(label="correct to (c): any taxon of the library", choices=[], filterable=True,
                                elem_id="review-taxon")  # fmt: skip
            rank = gr.Dropdown(["", *RANKS], value="", label="rank (found from the library when empty)")
            correct = gr.Button("Correct", elem_id="review-correct")
            unidentifiable = gr.Button("Not identifiable (n)", elem_id="review-not-identifiable")
            withdraw = gr.Button("Withdraw my identification (w)", elem_id="review-withdraw")
            remarks = gr.Textbox(label="remarks (kept with your identification)")
    neighbours = gr.Dataframe(headers=NEIGHBOUR_COLUMNS, label="nearest references")
    agreement = gr.Dataframe(headers=["rank", "verified compared", "human–machine agreement"], label="agreement")

    outputs = [evidence, photos, lineage, neighbours, progress, agreement, current, who]
    next_button.click(next_specimen, [project], outputs, api_name="review_next")
    inputs = [project, current, taxon, rank, remarks, pair]
    for button, action in ((agree, "agree"), (correct, "correct"), (unidentifiable, "not_identifiable"),
                           (withdraw, "withdraw")):  # fmt: skip
        button.click(_handler(action), inputs, outputs, api_name=f"review_{action}")
    save.click(save_reviewer, [name], who, api_name=False)
    for trigger in (next_button.click, project.input):
        trigger(taxon_choices, [pair], taxon, api_name=False)
    project.input(next_specimen, [project], outputs, api_name=False)
    return project
