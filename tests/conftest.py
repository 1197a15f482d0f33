"""Shared fixtures: paths to ../shared data (skipping cleanly where absent) and models built once per run."""

from __future__ import annotations

import csv
import gzip
import os
import random
from pathlib import Path

import pytest

from tests.ports import free_port


def share_the_cores() -> None:
    """Each pytest worker, and every process it launches, gets its share of the cores: two workers each
    running torch and FAISS on both cores oversubscribe them, and a training step then takes 2.2 x as
    long as with one thread each (EfficientNet-Lite0, batch 16, measured on 2 cores)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))


share_the_cores()  # before anything imports torch, which reads OMP_NUM_THREADS once

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
BOLD_DEV = SHARED / "data" / "bold" / "bold_insects_dev.tsv.gz"
IMAGES = SHARED / "data" / "bioscan_images"
OFFICIAL_KEYS = SHARED / "design" / "clibd_official_state_dict_keys.json"


def require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared is not laid beside this checkout)")
    return path


@pytest.fixture(scope="session")
def bold_sample() -> list[dict]:
    """2,000 real BOLD records drawn with a fixed seed."""
    with gzip.open(require(BOLD_DEV), "rt", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return random.Random(0).sample(rows, 2000)


@pytest.fixture(scope="session")
def photo_dir() -> Path:
    return require(IMAGES)


@pytest.fixture(scope="session")
def lite_model():
    from clibd_core import build_model

    return build_model("lite")


@pytest.fixture(scope="session")
def home(tmp_path_factory) -> Path:
    """A fresh CLIBD_HOME workspace for the app under test, on the synthetic demo pair (images and
    barcodes of one world; the real default library has barcodes only)."""
    from clibd_core.reference import DEMO_LIBRARY
    from clibd_core.workspace import Workspace

    root = tmp_path_factory.mktemp("workspace")
    previous = os.environ.get("CLIBD_HOME")
    os.environ["CLIBD_HOME"] = str(root)
    # The tests' own folders are a data root, as an operator lists the lab's data folders.
    os.environ["CLIBD_DATA_ROOTS"] = str(tmp_path_factory.getbasetemp())
    if (DEMO_LIBRARY / "CURRENT").exists():
        Workspace(root).set_active(DEMO_LIBRARY)
    yield root
    os.environ.pop("CLIBD_DATA_ROOTS")
    if previous is None:
        os.environ.pop("CLIBD_HOME")
    else:
        os.environ["CLIBD_HOME"] = previous


@pytest.fixture(scope="session")
def app_url(home) -> str:
    """The real app, served on a free local port for the duration of the session."""
    from clibd_core.ui.server import build_app

    port = free_port()
    app = build_app()
    app.queue().launch(prevent_thread_lock=True, server_port=port, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    app.close()


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server of the test run's own (tests/postgres.py); skips with the reason where it cannot run."""
    from tests.postgres import PostgresUnavailable, start_server, stop_server

    try:
        server = start_server()
    except PostgresUnavailable as why:
        pytest.skip(str(why))
    yield server
    stop_server(server)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path, monkeypatch) -> str:
    """A fresh, empty project database (an SQLite file, or a new database on the test PostgreSQL server),
    with CLIBD_DATABASE and CLIBD_HOME set so that the CLI and the app use it too."""
    import uuid

    monkeypatch.setenv("CLIBD_HOME", str(tmp_path / "workspace"))
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'projects.db'}"
    else:
        from tests.postgres import new_database

        url = new_database(request.getfixturevalue("postgres_server"), f"t_{uuid.uuid4().hex[:12]}")
    monkeypatch.setenv("CLIBD_DATABASE", url)
    return url
