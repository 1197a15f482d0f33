"""The whole page (seven tabs over a shared session), logins, the queue, warm-up and launch.

Only light modules are imported here, so the page serves within seconds of starting; torch, FAISS and
the models are imported by the first request or by the warm-up thread started after launch.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import gradio as gr

from clibd_core.access import LOOPBACK, authenticator
from clibd_core.ui import batch_tab, explore_tab, identify_tab, libraries_tab, projects_tab, review_tab, train_tab
from clibd_core.ui.libraries_tab import library_tables
from clibd_core.ui.session import open_pair, pair_banner, workspace
from clibd_core.ui.train_tab import training_progress

TITLE = "CLIBD insect identification"
MAX_UPLOAD = "500mb"
# Gradio's queue rebuilds a pandas summary of up to 10,000 past events after every event it finishes, for
# its monitoring page (which this app never opens): 5-15 ms of CPU each, as much as half an identify.
# Rebuilt every 10,000 events instead (a setting the user gives still wins).
os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "10000")


def build_app() -> gr.Blocks:
    with gr.Blocks(title=TITLE) as app:
        pair = gr.State(None)
        identify_state = gr.State({})
        gr.Markdown(f"# {TITLE}\nName an insect from a photo, a COI barcode, or both (CLIBD, ICLR 2025).")
        banner = gr.Markdown()
        with gr.Tabs() as tabs:
            with gr.Tab("Identify", id="identify") as identify:
                way_forward = identify_tab.build(pair, identify_state, banner)
            with gr.Tab("Batch", id="batch") as batch:
                batch_tab.build(pair)
            with gr.Tab("Explore", id="explore") as explore:
                explore_tab.build(pair, identify_state)
            with gr.Tab("Train", id="train") as train:
                training = train_tab.build(app, pair, banner)
            with gr.Tab("Libraries", id="libraries") as libraries:
                library_parts = libraries_tab.build(pair, banner)
            with gr.Tab("Projects", id="projects") as projects:
                project = projects_tab.build(pair)
            with gr.Tab("Review", id="review") as review:
                review_project = review_tab.build(pair)
        way_forward["train"].click(lambda: gr.Tabs(selected="train"), None, tabs, api_name=False)
        way_forward["official"].click(lambda: gr.Tabs(selected="libraries"), None, tabs, api_name=False)
        review.select(
            lambda chosen: gr.update(choices=projects_tab.project_names(), value=chosen), project, review_project,
            api_name=False,
        )
        projects.select(lambda: gr.update(choices=projects_tab.project_names()), None, project, api_name=False)

        for tab in (identify, batch, explore, train, libraries, projects, review):
            tab.select(lambda active=tab is train: gr.Timer(active=active), None, training.timer, api_name=False)

        def on_load():
            models = [m["path"] for m in workspace().models()]
            return (
                pair_banner(None),
                *library_tables(),
                gr.update(choices=models),
                gr.update(choices=models),
                gr.update(choices=models, value=libraries_tab.newest_official_model()),
                *training_progress(),
            )

        app.load(
            on_load,
            None,
            [
                banner, *library_parts.tables, training.init_from, library_parts.library_model,
                library_parts.build_model, *training.progress,
            ],  # fmt: skip
            api_name=False,
        )
    return app


def warm_up() -> None:
    """Import the heavy modules and load the active model and library before the first click."""
    import clibd_core.models.official  # noqa: F401
    from clibd_core.library.projection import is_drawn, map_views, projection  # torch, FAISS, the engine

    try:
        library, _ = open_pair(None)
        for view in map_views(library.modalities)[:1]:  # a library built before maps were a build stage
            if not is_drawn(library, view):
                print(f"drawing the {view} map of {library.name} once (Explore opens at once after it)", flush=True)
                projection(library, view)
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


def server_app(host: str):
    """The JSON API (ui/api.py) with the page mounted on it: one server, one set of logins."""
    from clibd_core.ui.api import api_app

    blocks = configure_queue(build_app())
    return gr.mount_gradio_app(
        api_app(),
        blocks,
        path="",
        auth=login_for(host),
        auth_message="CLIBD: log in with the name and password your lab's operator gave you",
        max_file_size=MAX_UPLOAD,
        theme=gr.themes.Soft(),
        head=review_tab.KEYBOARD,
    )


def main() -> None:
    import uvicorn

    host = os.environ.get("CLIBD_HOST", "127.0.0.1")
    app = server_app(host)
    threading.Timer(1.0, warm_up).start()  # after the server is up
    print(f"CLIBD app on http://{host}:{os.environ.get('CLIBD_PORT', '7860')} (JSON API: /api/v1, docs: /docs)")
    uvicorn.run(app, host=host, port=int(os.environ.get("CLIBD_PORT", "7860")), log_level="warning")
