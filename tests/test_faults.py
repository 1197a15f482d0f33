"""Faults: a disk that fills up during a library write, a damaged library file."""

from __future__ import annotations

import json
import resource
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from clibd_core.data.sources import read_source
from clibd_core.data.synthetic import WorldConfig, generate_world
from clibd_core.library.build import build_library
from clibd_core.library.identification import Query
from clibd_core.library.search import identify
from clibd_core.library.store import Library, LibraryError
from clibd_core.models.clibd import load_model
from clibd_core.reference import DEMO_MODEL
from clibd_core.workspace import Workspace

pytestmark = pytest.mark.skipif(not DEMO_MODEL.is_dir(), reason="reference_db/demo is not built")


@pytest.fixture(scope="module")
def model():
    return load_model(DEMO_MODEL, device="cpu")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("faultworld") / "world"
    generate_world(root, WorldConfig(n_records=120, n_orders=2, species_per_genus=2.0, seed=6))
    return root


@pytest.fixture(scope="module")
def records(world):
    return [r for r in read_source(world).records if r.barcode]


@pytest.fixture(scope="module")
def small_library(model, records, tmp_path_factory):
    return build_library(model, records[:60], tmp_path_factory.mktemp("lib") / "lib")


def limited_to(max_bytes: int):
    """A child process that may write files of at most ``max_bytes`` (a full disk, as a write error)."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return limit


def test_a_full_disk_during_an_append_leaves_the_previous_library_and_a_clear_error(
    small_library,
    world,
    tmp_path,
):
    library_dir = tmp_path / "lib"
    shutil.copytree(small_library.path, library_dir)
    before = (library_dir / "CURRENT").read_text()
    appended = subprocess.run(
        [sys.executable, "-m", "clibd_core.cli", "add-to-library", str(library_dir), "--data", str(world)],
        capture_output=True,
        text=True,
        preexec_fn=limited_to(32 * 1024),
    )
    assert appended.returncode == 2
    assert "error: could not write" in appended.stderr
    assert "Traceback" not in appended.stderr
    assert "File too large" in appended.stderr
    assert (library_dir / "CURRENT").read_text() == before
    assert not [p for p in library_dir.iterdir() if p.name.startswith(".tmp")]  # the staging space is freed
    assert len(Library.open(library_dir).metadata) == 60


def test_a_damaged_library_file_is_named_and_other_libraries_still_work(small_library, model, records, tmp_path):
    damaged = tmp_path / "libraries" / "damaged"
    shutil.copytree(small_library.path, damaged)
    index = next(damaged.glob("v*/dna.faiss"))
    index.write_bytes(index.read_bytes()[:1000])
    with pytest.raises(LibraryError, match="dna.faiss cannot be read"):
        Library.open(damaged)
    (next(damaged.glob("v*/metadata.parquet"))).write_bytes(b"PAR1 garbage")
    with pytest.raises(LibraryError, match="metadata.parquet cannot be read"):
        Library.open(damaged)
    listed = {item["path"]: item for item in Workspace(tmp_path).libraries()}
    assert "cannot be read" in listed[str(damaged)]["error"]
    answer = identify(Library.open(small_library.path), model, [Query("q", barcode=records[0].barcode)])[0]
    assert answer.error is None and answer.ranks


def test_the_page_opens_with_a_damaged_active_library_and_says_so(small_library, tmp_path):
    from clibd_core.ui.session import pair_banner

    damaged = tmp_path / "damaged"
    shutil.copytree(small_library.path, damaged)
    next(damaged.glob("v*/library.json")).write_text("{ truncated")
    banner = pair_banner([str(damaged), str(DEMO_MODEL)])
    assert "cannot be opened" in banner and "library.json" in banner


def test_a_full_disk_at_a_training_checkpoint_keeps_the_last_one_resumable(world, tmp_path):
    run = tmp_path / "run"
    train = [sys.executable, "-m", "clibd_core.cli", "train", "--data", str(world), "--out", str(run)]
    train += ["--modalities", "dna,text", "--batch-size", "8", "--max-steps", "6", "--checkpoint-every", "2"]
    first = subprocess.Popen(train, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not (run / "status.json").exists() or json.loads((run / "status.json").read_text()).get("step", 0) < 2:
        assert first.poll() is None, "the run ended before it was stopped"
        time.sleep(0.05)
    first.send_signal(signal.SIGTERM)  # stopped with a checkpoint, as Abort does
    assert first.wait(timeout=120) == 0
    saved = torch.load(run / "last" / "training_state.pt", weights_only=True)["step"]
    failed = subprocess.run([*train, "--resume"], capture_output=True, text=True, preexec_fn=limited_to(256 * 1024))
    assert failed.returncode == 2 and "error:" in failed.stderr and "Traceback" not in failed.stderr
    assert json.loads((run / "status.json").read_text())["state"] == "failed"
    assert torch.load(run / "last" / "training_state.pt", weights_only=True)["step"] == saved  # intact
    resumed = subprocess.run([*train, "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-500:]
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
