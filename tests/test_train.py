"""The training job end to end on a tiny synthetic world: a run, its files, kill and resume, cancel,
a crash, and a 2-process run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from clibd_core import build_model, load_model
from clibd_core.data.synthetic import WorldConfig, generate_world
from clibd_core.train.monitor import read_metrics, read_status
from tests.ports import free_port

pytestmark = pytest.mark.slow
TRAIN = [sys.executable, "-m", "clibd_core.cli", "train"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("world")
    generate_world(root / "world", WorldConfig(n_records=240, n_orders=3, species_per_genus=2.0, seed=11))
    return root / "world"


def train_args(world: Path, out: Path, *extra: str) -> list[str]:
    return [*TRAIN, "--data", str(world), "--out", str(out), "--batch-size", "16", "--seed", "1", *extra]


def wait_for_step(run: Path, step: int, process: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = read_status(run)
        if status and status.get("step", 0) >= step:
            return
        assert process.poll() is None, "the run ended before it was interrupted"
        time.sleep(0.05)
    raise AssertionError(f"{run} did not reach step {step}")


def test_one_epoch_run_writes_everything(world, tmp_path):
    out = tmp_path / "run"
    result = subprocess.run(train_args(world, out, "--epochs", "1"), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    status = read_status(out)
    assert status["state"] == "finished" and status["progress"] == 1.0 and status["step"] == status["total_steps"]
    metrics = read_metrics(out)
    steps = [m for m in metrics if m["type"] == "train"]
    assert [m["step"] for m in steps] == list(range(1, status["step"] + 1))
    assert set(steps[0]["pairs"]) == {
        "image->dna",
        "image->text",
        "dna->image",
        "dna->text",
        "text->image",
        "text->dna",
    }
    assert all(m["lr"] > 0 and m["samples_per_s"] > 0 and m["loss"] > 0 for m in steps)
    validation = [m for m in metrics if m["type"] == "val"]
    assert len(validation) == 1 and "dna->dna" in validation[0]["results"]
    config = json.loads((out / "train_config.json").read_text())
    assert config["freeze"] == ["image_backbone", "text_backbone"] and config["lr"] == 1e-3
    results = json.loads((out / "results.json").read_text())
    assert {"dna->dna", "image->image", "image->dna", "image->text"} <= set(results)
    for name in ("best", "last"):
        model = load_model(out / name, device="cpu")
        assert model.config.preset == "lite"
    untrained = build_model("lite")
    trained = load_model(out / "last", device="cpu")
    assert not torch.equal(trained.dna_encoder.proj.weight, untrained.dna_encoder.proj.weight)
    # frozen backbones are exactly the pretrained ones
    assert torch.equal(
        trained.image_encoder.backbone.conv_stem.weight, untrained.image_encoder.backbone.conv_stem.weight
    )
    again = subprocess.run(train_args(world, out, "--epochs", "1"), capture_output=True, text=True, timeout=600)
    assert again.returncode == 2 and "--resume" in again.stderr


def test_killed_run_resumes_to_the_same_weights(world, tmp_path):
    """Barcodes and taxonomy only: a photo run's resume has its own test (tests/test_photos.py)."""
    common = ("--epochs", "2", "--checkpoint-every", "3", "--modalities", "dna,text")
    reference = tmp_path / "reference"
    subprocess.run(train_args(world, reference, *common), check=True, capture_output=True, timeout=600)
    interrupted = tmp_path / "interrupted"
    process = subprocess.Popen(
        train_args(world, interrupted, *common), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_for_step(interrupted, 5, process)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert read_status(interrupted)["state"] == "running"  # nothing ran to record the kill
    resumed = subprocess.run(
        train_args(world, interrupted, *common, "--resume"), capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert read_status(interrupted)["state"] == "finished"
    expected = load_file(str(reference / "last" / "model.safetensors"))
    actual = load_file(str(interrupted / "last" / "model.safetensors"))
    assert expected.keys() == actual.keys()
    for name, tensor in expected.items():
        assert torch.allclose(tensor, actual[name], atol=1e-5), name


def test_sigterm_saves_and_exits_cleanly(world, tmp_path):
    out = tmp_path / "cancel"
    process = subprocess.Popen(
        train_args(world, out, "--epochs", "3"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    wait_for_step(out, 2, process)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 0
    status = read_status(out)
    assert status["state"] == "cancelled"
    state = torch.load(out / "last" / "training_state.pt", weights_only=True)
    assert state["step"] == status["step"] >= 2


def test_crash_is_recorded_in_status(world, tmp_path):
    two_towers = build_model("lite", modalities=["image", "dna"]).save(tmp_path / "image_dna")
    out = tmp_path / "crash"
    result = subprocess.run(
        train_args(world, out, "--init-from", str(two_towers)), capture_output=True, text=True, timeout=600
    )
    assert result.returncode != 0
    status = read_status(out)
    assert status["state"] == "failed" and "this run asks for lite" in status["last_error"]
    assert (out / "error.log").read_text().strip()


def test_two_processes_with_accelerate(world, tmp_path):
    out = tmp_path / "ddp"
    launch = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",  # two processes (torch.distributed.run); without a GPU they run on the CPU
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--main_process_port",
        str(free_port()),
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "clibd_core.cli",
        "train",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # No random barcode windows: each process draws its own, so only the batch's items can be compared.
    (tmp_path / "run.yaml").write_text("dna_crop: 0.0\n")
    args = ["--data", str(world), "--out", str(out), "--batch-size", "16", "--max-steps", "4", "--seed", "1"]
    args += ["--config", str(tmp_path / "run.yaml"), "--modalities", "dna,text"]  # no photo features to cache
    result = subprocess.run([*launch, *args], capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert read_status(out)["state"] == "finished"
    steps = [m for m in read_metrics(out) if m["type"] == "train"]
    assert [m["step"] for m in steps] == [1, 2, 3, 4]  # one metrics stream, written by the main process
    single = tmp_path / "single"
    subprocess.run(
        train_args(
            world, single, "--max-steps", "1", "--config", str(tmp_path / "run.yaml"), "--modalities", "dna,text"
        ),
        check=True,
        capture_output=True,
        timeout=600,
    )
    first_single = [m for m in read_metrics(single) if m["type"] == "train"][0]["loss"]
    assert steps[0]["loss"] == pytest.approx(first_single, abs=1e-4)  # the gathered loss sees the global batch
