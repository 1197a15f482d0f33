"""The lite preset out of the box, model directories, and bad inputs to the encoders."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from clibd_core import build_model, load_model
from clibd_core.data.transforms import ImageError, open_image
from clibd_core.dna import BarcodeError
from clibd_core.fileio import file_sha256
from clibd_core.models.image import efficientnet_lite0_imagenet_state_dict
from tests.test_dna import COI

ARTHROPOD_CLASSES = set(range(69, 80)) | set(range(118, 127)) | set(range(300, 327))  # ImageNet-1k
INSECT_CLASSES = set(range(300, 327))


def test_lite_image_backbone_carries_the_imagenet_weights(lite_model, photo_dir):
    """The lite tower's backbone with the package's own classifier names the real photos as arthropods."""
    weights = efficientnet_lite0_imagenet_state_dict()
    classifier_w, classifier_b = weights["classifier.weight"], weights["classifier.bias"]
    frames = sorted(p for p in photo_dir.glob("*.jpg") if not p.name.startswith("BIOUG"))
    assert len(frames) == 18
    with torch.no_grad():
        pixels = lite_model.image_batch(frames)
        probabilities = (lite_model.image_encoder.backbone(pixels) @ classifier_w.T + classifier_b).softmax(-1)
    top = probabilities.argmax(-1).tolist()
    coleoptera = top[[p.name for p in frames].index("Coleoptera.jpg")]
    assert coleoptera in INSECT_CLASSES
    assert probabilities[[p.name for p in frames].index("Coleoptera.jpg")].max() > 0.5
    assert sum(label in ARTHROPOD_CLASSES for label in top) >= 12


def test_lite_encoders_return_normalised_float32_in_batches(lite_model, photo_dir):
    photos = sorted(photo_dir.glob("BIOUG*.jpg"))
    by_path = lite_model.encode_images(photos, batch_size=2)
    by_pil = lite_model.encode_images([Image.open(p) for p in photos], batch_size=32)
    assert by_path.shape == (5, 256) and by_path.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(by_path, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(by_path, by_pil, atol=1e-5)

    barcodes = [COI, COI[:300], COI.lower()]
    alone = lite_model.encode_barcodes(barcodes[1:2])
    together = lite_model.encode_barcodes(barcodes)
    assert together.shape == (3, 256)
    np.testing.assert_allclose(together[1], alone[0], atol=1e-5)  # padding never leaks into a shorter read
    np.testing.assert_allclose(together[0], together[2], atol=1e-6)  # case does not matter after cleaning

    texts = lite_model.encode_texts(
        ["Diptera Cecidomyiidae not_classified not_classified", "Coleoptera Carabidae Abax"]
    )
    assert texts.shape == (2, 256)
    assert lite_model.encode_texts([]).shape == (0, 256)


def test_text_tokeniser_is_bert_uncased_wordpiece(lite_model):
    ids = lite_model.text_batch(["Diptera Cecidomyiidae not_classified"])["input_ids"][0].tolist()
    assert len(lite_model.text_tokenizer) == 30522
    assert ids[0] == 101 and 102 in ids  # [CLS] ... [SEP]
    assert 100 not in ids  # no [UNK]: the real vocabulary is loaded
    assert lite_model.text_tokenizer.convert_ids_to_tokens(ids[1:3]) == ["dip", "##tera"]


def test_model_directory_round_trip(lite_model, tmp_path):
    out = lite_model.save(tmp_path / "model", provenance={"note": "test"})
    description = json.loads((out / "config.json").read_text())
    assert description["model"]["preset"] == "lite"
    assert description["tokenizers"]["dna"]["kind"] == "nucleotide"
    assert description["fingerprint"] == file_sha256(out / "model.safetensors")
    assert description["provenance"]["note"] == "test"
    assert (out / "vocab.txt").is_file()
    loaded = load_model(out, device="cpu")
    assert loaded.fingerprint == description["fingerprint"]
    np.testing.assert_allclose(loaded.encode_barcodes([COI]), lite_model.encode_barcodes([COI]), atol=1e-6)
    np.testing.assert_allclose(loaded.encode_texts(["a b c d"]), lite_model.encode_texts(["a b c d"]), atol=1e-6)
    assert not list(tmp_path.glob(".tmp-*"))  # the atomic write left no staging directory


def test_a_model_opened_with_its_dna_tower_alone_embeds_the_same_without_transformers(lite_model, tmp_path):
    out = lite_model.save(tmp_path / "model")
    dna_only = load_model(out, device="cpu", towers=("dna",))
    assert dna_only.towers == ("dna",) and dna_only.fingerprint == lite_model.fingerprint
    np.testing.assert_allclose(dna_only.encode_barcodes([COI]), lite_model.encode_barcodes([COI]), atol=1e-6)
    with pytest.raises(ValueError, match="without its text tower"):
        dna_only.encode_texts(["a b c d"])
    with pytest.raises(ValueError, match="not saved"):
        dna_only.save(tmp_path / "partial")
    check = (
        "import sys; from clibd_core import load_model; "
        f"load_model({str(out)!r}, device='cpu', towers=('dna',)).encode_barcodes(['ACGTACGTAC' * 30]); "
        "sys.exit('transformers' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", check]).returncode == 0, "a barcode run imported transformers"


def test_dna_tower_kmer_profile_equals_the_library_profile(bold_sample):
    from clibd_core.dna import NucleotideTokenizer
    from clibd_core.library.kmers import kmer_profiles
    from clibd_core.models.dna import kmer_profile

    sequences = [row["nucleotides"] for row in bold_sample[:40]] + ["ACGTNACGTACGTTT", "ACG", "acgtacgtaa"]
    ids, _ = NucleotideTokenizer(660).encode_batch([s[:660] for s in sequences])
    in_graph = kmer_profile(torch.from_numpy(ids), 5).numpy()
    np.testing.assert_allclose(in_graph, kmer_profiles([s[:660] for s in sequences]), atol=1e-6)


def test_model_directory_from_before_the_kmer_path_still_loads(tmp_path):
    old = build_model("lite", modalities=["dna", "text"], pretrained=False)
    old.config.lite_dna.kmer = 0
    old.dna_encoder.kmer_proj = None  # the tower as it was: no k-mer weights in the file
    out = old.save(tmp_path / "old")
    description = json.loads((out / "config.json").read_text())
    del description["model"]["lite_dna"]["kmer"]  # older config.json files have no such entry
    (out / "config.json").write_text(json.dumps(description))
    loaded = load_model(out, device="cpu")
    assert loaded.config.lite_dna.kmer == 0 and loaded.dna_encoder.kmer_proj is None
    np.testing.assert_allclose(loaded.encode_barcodes([COI]), old.encode_barcodes([COI]), atol=1e-6)
    assert build_model("lite", modalities=["dna", "text"], pretrained=False).dna_encoder.kmer_proj is not None


def test_two_modality_model_refuses_the_missing_one():
    model = build_model("lite", modalities=["image", "dna"])
    with pytest.raises(ValueError, match="no text tower"):
        model.encode_texts(["x"])


def test_bad_inputs_give_clear_errors(lite_model, tmp_path):
    corrupt = tmp_path / "broken.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ImageError, match="broken.jpg"):
        lite_model.encode_images([corrupt])
    with pytest.raises(ImageError, match="file not found"):
        open_image(tmp_path / "missing.png")
    with pytest.raises(BarcodeError, match="#2"):
        lite_model.encode_barcodes([COI, "MKVLAAGIVGLLLAVSQEPT" * 10])
    with pytest.raises(FileNotFoundError, match="not a model directory"):
        load_model(tmp_path)


def test_unusual_image_modes_open_as_rgb(tmp_path):
    sixteen_bit = tmp_path / "scan.tif"
    Image.fromarray(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16).save(sixteen_bit)
    rgba = tmp_path / "cutout.png"
    Image.new("RGBA", (40, 30), (200, 10, 10, 128)).save(rgba)
    for path in (sixteen_bit, rgba):
        image = open_image(path)
        assert image.mode == "RGB" and image.size[0] in (64, 40)
    assert np.asarray(open_image(sixteen_bit)).max() == 255


def test_a_new_preset_is_one_file(tmp_path, monkeypatch):
    """A preset file with other sizes and recipe builds a working model and trains by its own defaults."""
    import shutil

    from clibd_core import presets
    from clibd_core.train.config import TrainConfig

    shutil.copy(presets.PRESET_DIR / "lite.json", tmp_path / "lite.json")
    spec = json.loads((tmp_path / "lite.json").read_text())
    spec.update(name="narrow", embed_dim=64, text_max_length=16, training={**spec["training"], "lr": 0.002})
    spec["recipes"]["barcodes"] = {"epochs": 1, "batch_size": 8}
    (tmp_path / "narrow.json").write_text(json.dumps(spec))
    monkeypatch.setattr(presets, "PRESET_DIR", tmp_path)

    assert presets.preset_names() == ("lite", "narrow")
    model = build_model("narrow", ["dna", "text"], pretrained=False)
    vectors = model.encode_barcodes([COI, COI[:300]])
    assert vectors.shape == (2, 64) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert model.text_batch(["Diptera"])["input_ids"].shape == (1, 16)
    config = TrainConfig(data="d", out="o", preset="narrow", modalities=["dna", "text"]).resolved()
    assert (config.lr, config.epochs, config.batch_size) == (0.002, 1, 8)
    with pytest.raises(ValueError, match="choose one of lite, narrow"):
        build_model("paper")
