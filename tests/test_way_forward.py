"""No dead end for a first photo: on the real barcode-only default library a photo gets the way forward in
words (served endpoint and CLI); once the workspace holds a library that can take photos, the photo is
answered from it and the answer says which library answered."""

from __future__ import annotations

import subprocess
import sys

import pytest
from gradio_client import Client, handle_file

from clibd_core.data.synthetic import WorldConfig, generate_world
from clibd_core.reference import DEFAULT_LIBRARY, DEMO_MODEL
from clibd_core.workspace import Workspace

pytestmark = pytest.mark.skipif(
    not (DEFAULT_LIBRARY / "CURRENT").exists(), reason="the default library is not built (make test builds it)"
)


@pytest.fixture()
def fresh_home(tmp_path, monkeypatch, home):
    """A new user's workspace (nothing imported, the real BOLD library active), for the served app too."""
    root = tmp_path / "new_workspace"
    monkeypatch.setenv("CLIBD_HOME", str(root))
    return root


@pytest.fixture()
def photo(tmp_path):
    world = tmp_path / "world"
    generate_world(world, WorldConfig(n_records=60, n_orders=2, seed=4))
    return world, sorted(world.rglob("*.jpg"))[0]


def identify_photo(url: str, path) -> tuple:
    return Client(url, verbose=False).predict([handle_file(str(path))], "", None, 10, "", "", "auto",
                                              api_name="/identify")  # fmt: skip


def test_a_photo_on_the_barcode_library_gets_the_way_forward_then_a_photo_library_answers(
    app_url, fresh_home, photo, tmp_path
):
    world, image = photo
    answer = identify_photo(app_url, image)
    assert "holds DNA barcodes only" in answer[0] and "train a model on your own labelled photos" in answer[0]
    assert "image tower" not in answer[0]  # our code's words never reach the user

    result = subprocess.run([sys.executable, "-m", "clibd_core.cli", "identify", "--images", str(image), "--out",
                             str(tmp_path / "r.csv")], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0 and "photos not named" in result.stderr and "Train tab" in result.stderr

    Workspace(fresh_home).import_library(world, "our photos", model=DEMO_MODEL)  # a lab's own photo library
    answer = identify_photo(app_url, image)
    assert "holds DNA barcodes only" not in answer[0]
    assert "photos answered by your library “our photos”" in answer[0]
