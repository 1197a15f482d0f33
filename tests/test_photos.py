"""A lab's own labelled photos: the species-folder layout, the photo recipe on real photos, the Train tab."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
import zipfile

import pandas as pd
import pytest
import torch
from gradio_client import Client, handle_file
from safetensors.torch import load_file

from clibd_core import build_model, load_model
from clibd_core.data.datasets import balanced_batches
from clibd_core.data.sources import read_source
from clibd_core.data.splits import assign_photo_splits
from clibd_core.data.uploads import data_root, unpack_tree
from clibd_core.train.config import TrainConfig
from clibd_core.train.loop import train
from clibd_core.train.monitor import read_metrics, read_status
from clibd_core.workspace import Workspace
from tests.conftest import SHARED, require
from tests.test_train import TRAIN, wait_for_step

LEEDS = SHARED / "data" / "leeds_butterflies"


@pytest.fixture(scope="module")
def labels() -> pd.DataFrame:
    return pd.read_csv(require(LEEDS / "labels.csv"))


def species_tree(labels: pd.DataFrame, root, per_species: int, species: int, nested: bool = False):
    """Leeds photos laid out as a lab keeps them: one folder per species (optionally in Order/Family/)."""
    for name, group in list(labels.groupby("species"))[:species]:
        folder = root / (f"{group.iloc[0].order}/{group.iloc[0].family}/" if nested else "") / name.replace(" ", "_")
        folder.mkdir(parents=True)
        for file in group["file"].head(per_species):
            shutil.copy(LEEDS / file, folder)
    return root


def test_species_folders_are_read_with_their_taxonomy(labels, tmp_path):
    flat = read_source(species_tree(labels, tmp_path / "flat", 3, 2))
    assert flat.format == "species_folders" and len(flat.records) == 6
    assert {r.taxonomy.species for r in flat.records} == set(sorted(labels["species"].unique())[:2])
    assert all(r.taxonomy.genus == r.taxonomy.species.split()[0] for r in flat.records)
    nested = read_source(species_tree(labels, tmp_path / "nested", 2, 2, nested=True))
    assert {(r.taxonomy.order, r.taxonomy.family) for r in nested.records} <= set(
        zip(labels.order, labels.family, strict=True)
    )
    (tmp_path / "flat" / "notes.txt").write_text("not a photo")
    assert any(s.reason == "not an image file" for s in read_source(tmp_path / "flat").skipped)


def test_a_zip_of_photos_unpacks_with_its_folders_and_nothing_escapes(labels, tmp_path):
    tree = species_tree(labels, tmp_path / "photos", 2, 2)
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for file in tree.rglob("*.jpg"):
            bundle.write(file, f"my_photos/{file.relative_to(tree)}")
        bundle.writestr("../escape.jpg", b"x")
        bundle.writestr("__MACOSX/._x.jpg", b"x")
    left_out = unpack_tree(archive, tmp_path / "out")
    assert len(left_out) == 2 and not (tmp_path / "escape.jpg").exists()
    assert read_source(data_root(tmp_path / "out")).format == "species_folders"


def test_photo_splits_keep_every_species_and_batches_are_balanced(labels, tmp_path):
    records = read_source(species_tree(labels, tmp_path / "p", 10, 3)).records
    assign_photo_splits(records)
    for species in {r.taxonomy.species for r in records}:
        splits = [r.split for r in records if r.taxonomy.species == species]
        assert splits.count("val") == 2 and splits.count("train") == 8
    labels_list = ["a"] * 90 + ["b"] * 10
    drawn = [labels_list[i] for batch in balanced_batches(labels_list, 10, seed=0, epoch=0) for i in batch]
    assert 0.35 <= drawn.count("b") / len(drawn) <= 0.65
    assert balanced_batches(labels_list, 10, 0, 1) == balanced_batches(labels_list, 10, 0, 1)


@pytest.mark.slow
def test_the_photo_recipe_fine_tunes_the_backbone_and_names_held_out_photos(labels, tmp_path):
    """Leeds cannot show the gain over the frozen backbone (ImageNet holds these butterflies: frozen
    features already name 100 % of held-out photos, docs/BENCHMARKS.md); this checks that the recipe
    really trains the backbone and stays right on photos it never trained on."""
    data = species_tree(labels, tmp_path / "photos", 20, 4)
    config = TrainConfig(
        data=str(data), out=str(tmp_path / "run"), modalities=["image", "text"], epochs=2, min_steps=0
    ).resolved()
    assert config.freeze == ["text_backbone"] and config.loss == "taxonomy" and config.balanced
    train(config)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["image->image"]["species"]["seen"]["micro"] >= 0.9
    trained = load_model(tmp_path / "run", device="cpu").image_encoder.backbone.state_dict()
    imagenet = build_model("lite", ["image", "text"]).image_encoder.backbone.state_dict()
    assert any(not torch.equal(trained[name], imagenet[name]) for name in imagenet if name.endswith("weight"))


@pytest.mark.slow
def test_a_photo_run_cancelled_and_resumed_ends_as_one_that_ran_through(labels, tmp_path):
    """The recipe's species head (train/head.py) is part of the training state: a photo run cancelled
    mid-way and resumed reaches the weights of one that ran through, and the model holds no head."""
    data = species_tree(labels, tmp_path / "photos", 4, 3)

    def run(out, *extra):
        command = [*TRAIN, "--data", str(data), "--modalities", "image,text", "--out", str(out), "--batch-size", "4"]
        return [*command, "--max-steps", "6", "--seed", "1", *extra]

    subprocess.run(run(tmp_path / "through"), check=True, capture_output=True, timeout=600)
    interrupted = tmp_path / "interrupted"
    process = subprocess.Popen(run(interrupted), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_step(interrupted, 2, process)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=120)
    assert read_status(interrupted)["state"] == "cancelled" and read_status(interrupted)["step"] < 6
    subprocess.run(run(interrupted, "--resume"), check=True, capture_output=True, timeout=600)
    head_losses = [m["pairs"]["species_head"] for m in read_metrics(interrupted) if m["type"] == "train"]
    assert len(head_losses) == 6
    expected = load_file(str(tmp_path / "through" / "last" / "model.safetensors"))
    actual = load_file(str(interrupted / "last" / "model.safetensors"))
    assert expected.keys() == actual.keys() and not any("species_head" in name for name in expected)
    for name, tensor in expected.items():
        assert torch.allclose(tensor, actual[name], atol=1e-5), name


@pytest.mark.slow
def test_a_run_resumes_with_its_own_recipe_after_an_upgrade(labels, tmp_path):
    """A run started before the species head existed (its train_config.json has no such setting) resumes
    without one, although today's recipe has it: its checkpoint holds no head to continue."""
    data = species_tree(labels, tmp_path / "photos", 4, 3)
    out = tmp_path / "old-run"
    command = [*TRAIN, "--data", str(data), "--modalities", "image,text", "--out", str(out), "--batch-size", "4"]
    old_recipe = tmp_path / "old.yaml"
    old_recipe.write_text("species_head: 0\n")
    process = subprocess.Popen([*command, "--max-steps", "5", "--config", str(old_recipe)], stdout=subprocess.DEVNULL)
    wait_for_step(out, 2, process)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=120)
    settings = json.loads((out / "train_config.json").read_text())
    del settings["species_head"]
    (out / "train_config.json").write_text(json.dumps(settings))
    done = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert read_status(out)["state"] == "finished" and read_status(out)["step"] == 5
    assert not any("species_head" in m.get("pairs", {}) for m in read_metrics(out))
    assert json.loads((out / "train_config.json").read_text())["species_head"] == 0


@pytest.mark.slow
def test_a_first_small_set_is_read_trained_aborted_resumed_and_used_from_the_train_tab(labels, app_url, home, tmp_path):
    """A lab's first reference set: 6 photos of each of 3 species, far below the recipe's batch of 32.
    The read step says what the set allows, the recipe adapts to it, and the model names held-out photos.
    The form freezes the image backbone too (a choice the tab offers): fine-tuning it costs 4 minutes
    under two test workers here, and is tested on its own
    (test_the_photo_recipe_fine_tunes_the_backbone_and_names_held_out_photos)."""
    tree = species_tree(labels, tmp_path / "photos", 6, 3)
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for file in tree.rglob("*.jpg"):
            bundle.write(file, str(file.relative_to(tree)))
    client = Client(app_url, verbose=False)
    note, table, data, modalities = client.predict(handle_file(str(archive)), "", api_name="/read_photos")
    assert "18 photos of 3 species" in note and modalities == ["image", "text"]
    assert "3 species with fewer than 10 photos are trained on but not validated" in note and "batches of 16" in note
    assert sorted(row[1] for row in table["data"]) == [6, 6, 6]
    form = [data, "lite", ["image", "text"], None, None, None, ["text_backbone", "image_backbone"], None]
    while "running" in client.predict(api_name="/train_progress")[0]:
        time.sleep(1)  # a job of another test
    assert "started **first-set**" in client.predict("first-set", *form, api_name="/train_start")
    deadline = time.time() + 120
    while "step 0 of" in (text := client.predict(api_name="/train_progress")[0]) or "step" not in text:
        assert time.time() < deadline and "failed" not in text, text
        time.sleep(1)
    client.predict(api_name="/train_abort")
    while "cancelled" not in (text := client.predict(api_name="/train_progress")[0]):
        assert time.time() < deadline, text
        time.sleep(1)
    assert "resumed **first-set**" in client.predict(api_name="/train_resume")
    while ": finished" not in (text := client.predict(api_name="/train_progress")[0]):
        assert time.time() < deadline + 1200 and "failed" not in text and "crashed" not in text, text
        time.sleep(2)
    run = home / "runs" / "first-set"
    assert json.loads((run / "train_config.json").read_text())["batch_size"] == 32  # the recipe's, then fitted
    notes = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any(m.get("type") == "note" and "batches of 16" in m["note"] for m in notes)
    before = Workspace(home).active()
    client.predict(str(run), data, "first-set-library", api_name="/use_model")
    held_out = [
        (name, LEEDS / group["file"].iloc[8]) for name, group in list(labels.groupby("species"))[:3]
    ]  # never trained on
    named = 0
    try:
        for species, photo in held_out:
            outputs = client.predict([handle_file(str(photo))], "", None, 10, "", "", "auto", api_name="/identify")
            named += species in outputs[0]
    finally:
        Workspace(home).set_active(*before)  # the workspace's active pair, for the tests after this one
    assert named >= 2, outputs[0]


def test_the_photo_recipe_takes_enough_steps_on_small_sets_and_keeps_large_ones():
    """70 training photos fill two batches an epoch: 10 epochs would be 20 steps (with 8 photos of 10
    Leeds species, the recipe's 40 steps on all 80 named more held-out photos than 20 steps on every
    seed: bench/photo_recipe.py); a set below one batch gets a smaller batch too; a large set keeps the
    recipe."""
    from clibd_core.train.sizing import fit_to_set

    recipe = TrainConfig(data="photos", out="run", modalities=["image", "text"]).resolved()
    small = fit_to_set(recipe, 70).config
    assert (small.batch_size, small.epochs, small.validate_every) == (32, 20, 2)
    tiny = fit_to_set(recipe, 15).config
    assert tiny.batch_size == 8 and tiny.epochs * (15 // 8) >= 40
    assert fit_to_set(recipe, 1400).config == recipe
    barcodes = TrainConfig(data="bold.tsv", out="run", modalities=["dna", "text"]).resolved()
    assert fit_to_set(barcodes, 1000).config == barcodes  # the barcode recipe has no minimum
