"""Import of a released CLIBD best.pth, with a state dict built here from the published names and shapes.

The expected embeddings are computed by an independent restatement of CLIBD_SPEC.md: a plain timm
ViT whose qkv rows hold the merged LoRA update W + B·A, a plain BertForMaskedLM with a 768-d
decoder and softmax-mean pooling, and a plain BERT-small with all-position mean pooling.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import timm
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms as T
from transformers import BertConfig, BertForMaskedLM, BertModel, BertTokenizerFast

from clibd_core import import_official_checkpoint, load_model
from clibd_core.dna import BarcodeBertTokenizer
from clibd_core.models.hub import DEFAULT_RELEASE, RELEASES, HubUnavailableError, fetch_official_model
from clibd_core.models.official import CheckpointError
from clibd_core.models.text import minilm_dir
from tests.conftest import OFFICIAL_KEYS, require
from tests.test_dna import COI

pytestmark = pytest.mark.slow
IMAGE = "image_encoder.base_image_encoder."
DNA = "dna_encoder.base_dna_encoder."
TEXT = "language_encoder."


@pytest.fixture(scope="module")
def official_state() -> dict[str, torch.Tensor]:
    shapes = json.loads(require(OFFICIAL_KEYS).read_text())
    assert len(shapes) == 478
    generator = torch.Generator().manual_seed(0)
    state = {}
    for name, shape in shapes.items():
        tensor = torch.randn(shape, generator=generator) * 0.02
        if name.endswith(("LayerNorm.weight", "norm.weight", "norm1.weight", "norm2.weight")):
            tensor += 1.0
        state[name] = tensor
    state["logit_scale"] = torch.tensor(2.659)
    return state


@pytest.fixture(scope="module")
def imported(official_state, tmp_path_factory):
    root = tmp_path_factory.mktemp("official")
    best = root / "best.pth"
    torch.save({f"module.{k}": v for k, v in official_state.items()}, best)  # as saved from a DDP wrapper
    return load_model(import_official_checkpoint(best, root / "model"), device="cpu")


def reference_image_embedding(state, image: Image.Image) -> torch.Tensor:
    vit = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=768).eval()
    weights = {}
    for name, tensor in state.items():
        if not name.startswith(IMAGE) or ".linear_" in name:
            continue
        weights[name.removeprefix(IMAGE).replace("attn.qkv.qkv.", "attn.qkv.")] = tensor.clone()
    for block in range(12):
        prefix = f"{IMAGE}blocks.{block}.attn.qkv."
        merged = weights[f"blocks.{block}.attn.qkv.weight"]
        merged[0:768] += state[prefix + "linear_b_q.weight"] @ state[prefix + "linear_a_q.weight"]
        merged[1536:2304] += state[prefix + "linear_b_v.weight"] @ state[prefix + "linear_a_v.weight"]
    vit.load_state_dict(weights, strict=True)
    pixels = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor()])(image)[None]
    with torch.no_grad():
        return F.normalize(vit(pixels), dim=-1)[0]


def reference_dna_embedding(state, sequence: str) -> torch.Tensor:
    bert = BertForMaskedLM(BertConfig(vocab_size=1027, tie_word_embeddings=False)).eval()
    bert.cls.predictions.decoder = torch.nn.Linear(768, 768)
    bert.load_state_dict({k.removeprefix(DNA): v for k, v in state.items() if k.startswith(DNA)}, strict=True)
    ids = torch.tensor([BarcodeBertTokenizer().encode(sequence)])
    with torch.no_grad():
        return F.normalize(bert(input_ids=ids).logits.softmax(-1).mean(1), dim=-1)[0]


def reference_text_embedding(state, text: str) -> torch.Tensor:
    config = BertConfig(hidden_size=512, num_hidden_layers=4, num_attention_heads=8, intermediate_size=2048)
    bert = BertModel(config).eval()
    prefix = TEXT + "base_language_encoder."
    bert.load_state_dict({k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}, strict=True)
    tokens = BertTokenizerFast.from_pretrained(str(minilm_dir()))(  # the published tokenizer files
        [text], padding="max_length", max_length=20, truncation=True, return_tensors="pt"
    )
    with torch.no_grad():
        pooled = bert(**tokens).last_hidden_state.mean(1)
        return F.normalize(pooled @ state[TEXT + "proj.weight"].T + state[TEXT + "proj.bias"], dim=-1)[0]


def test_imported_model_reproduces_the_official_forward_passes(official_state, imported, photo_dir):
    assert imported.config.preset == "paper" and imported.config.modalities == ["image", "dna", "text"]
    assert imported.logit_scale.item() == pytest.approx(2.659)
    photo = Image.open(photo_dir / "BIOUG68001-C12.jpg").convert("RGB")
    np.testing.assert_allclose(
        imported.encode_images([photo])[0], reference_image_embedding(official_state, photo).numpy(), atol=2e-5
    )
    raw = COI[:400]  # stored strings go to the tokeniser as they are: clean=False
    np.testing.assert_allclose(
        imported.encode_barcodes([raw], clean=False)[0], reference_dna_embedding(official_state, raw).numpy(), atol=2e-5
    )
    text = "Diptera Cecidomyiidae not_classified not_classified"
    np.testing.assert_allclose(
        imported.encode_texts([text])[0], reference_text_embedding(official_state, text).numpy(), atol=2e-5
    )


def test_lora_structure_equals_merged_qkv(official_state, imported):
    """LoRAQKV's output equals a single Linear whose q and v rows hold W + B·A."""
    lora = imported.image_encoder.base_image_encoder.blocks[3].attn.qkv
    prefix = f"{IMAGE}blocks.3.attn.qkv."
    merged = official_state[prefix + "qkv.weight"].clone()
    merged[0:768] += official_state[prefix + "linear_b_q.weight"] @ official_state[prefix + "linear_a_q.weight"]
    merged[1536:] += official_state[prefix + "linear_b_v.weight"] @ official_state[prefix + "linear_a_v.weight"]
    x = torch.randn(2, 197, 768)
    with torch.no_grad():
        expected = x @ merged.T + official_state[prefix + "qkv.bias"]
        assert torch.allclose(lora(x), expected, atol=1e-5)
        assert not torch.allclose(lora.qkv(x), expected, atol=1e-3)  # the LoRA update is really there


def _save(state, path):
    torch.save(state, path)
    return path


def test_two_tower_release_imports_with_its_modalities(official_state, tmp_path):
    image_dna = {k: v for k, v in official_state.items() if not k.startswith(TEXT)}
    model = load_model(import_official_checkpoint(_save(image_dna, tmp_path / "best.pth"), tmp_path / "m"), "cpu")
    assert model.config.modalities == ["image", "dna"]


def test_malformed_checkpoints_are_refused_with_the_offending_tensors(official_state, tmp_path):
    missing = dict(official_state)
    del missing[DNA + "cls.predictions.decoder.weight"]
    missing["image_encoder.extra_head.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError) as error:
        import_official_checkpoint(_save(missing, tmp_path / "a.pth"), tmp_path / "a")
    assert "missing tensors (1)" in str(error.value) and "cls.predictions.decoder.weight" in str(error.value)
    assert "unexpected tensors (1)" in str(error.value) and "extra_head" in str(error.value)
    assert not (tmp_path / "a").exists()

    reshaped = dict(official_state)
    reshaped["language_encoder.proj.weight"] = torch.zeros(512, 512)
    with pytest.raises(CheckpointError, match=r"language_encoder.proj.weight: file \(512, 512\)"):
        import_official_checkpoint(_save(reshaped, tmp_path / "b.pth"), tmp_path / "b")

    with pytest.raises(CheckpointError, match="plain state dict"):
        import_official_checkpoint(_save({"epoch": 3}, tmp_path / "c.pth"), tmp_path / "c")
    (tmp_path / "d.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="weights-only"):
        import_official_checkpoint(tmp_path / "d.pth", tmp_path / "d")


class FakeHub(http.server.BaseHTTPRequestHandler):
    """Stands in for huggingface.co: serves ``files`` under /{repo}/resolve/main/, with the LFS headers
    the hub sends (commit, ETag = SHA-256, size), byte ranges, and a first transfer cut halfway."""

    files: dict[str, bytes] = {}
    etags: dict[str, str] = {}
    cut_next = True

    def log_message(self, *args) -> None:  # quiet
        return None

    def _start(self, include_body: bool) -> None:
        name = self.path.split("/resolve/main/", 1)[-1]
        if name not in self.files:
            self.send_response(404)
            self.end_headers()
            return
        data = self.files[name]
        start = int(re.match(r"bytes=(\d+)-", self.headers.get("Range", "bytes=0-")).group(1))
        self.send_response(206 if start else 200)
        self.send_header("X-Repo-Commit", "a" * 40)
        self.send_header("ETag", f'"{self.etags[name]}"')
        self.send_header("X-Linked-Etag", f'"{self.etags[name]}"')
        self.send_header("X-Linked-Size", str(len(data)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(data) - start))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if include_body:
            body = data[start:]
            if FakeHub.cut_next:  # the connection drops halfway through the first transfer
                FakeHub.cut_next = False
                self.wfile.write(body[: len(body) // 2])
                self.close_connection = True
                return
            self.wfile.write(body)

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        self._start(include_body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._start(include_body=True)


@pytest.fixture()
def fake_hub(official_state, tmp_path, monkeypatch):
    best = tmp_path / "served.pth"
    torch.save(official_state, best)
    name = RELEASES[DEFAULT_RELEASE]
    FakeHub.files = {name: best.read_bytes()}
    FakeHub.etags = {name: hashlib.sha256(FakeHub.files[name]).hexdigest()}
    FakeHub.cut_next = True
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    yield FakeHub
    server.shutdown()


def test_the_official_model_is_fetched_resumed_checked_and_imported(fake_hub, imported, tmp_path):
    steps = []
    out = fetch_official_model(DEFAULT_RELEASE, tmp_path / "clibd", progress=steps.append)
    assert not fake_hub.cut_next  # the first transfer was cut; the download resumed and completed
    assert any("resumes" in step for step in steps) and "checking the file's SHA-256" in steps
    assert load_model(out, device="cpu").fingerprint == imported.fingerprint


def test_a_download_whose_checksum_differs_is_refused(fake_hub, tmp_path):
    name = RELEASES[DEFAULT_RELEASE]
    fake_hub.etags[name] = "0" * 64
    with pytest.raises(CheckpointError, match="does not match"):
        fetch_official_model(DEFAULT_RELEASE, tmp_path / "clibd")
    assert not (tmp_path / "clibd").exists() and not list((tmp_path / "cache").rglob("*.pth"))


def test_offline_the_fetch_says_so_with_the_manual_steps(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(HubUnavailableError, match="clibd import-checkpoint"):
        fetch_official_model(DEFAULT_RELEASE, tmp_path / "clibd")


def test_the_official_model_builds_a_bold_library_that_matches_photos_to_barcodes(fake_hub, tmp_path):
    """The chain a new user takes online: fetch the official model, build the BOLD library with it in a
    background job (status with stages and counts), then a photo is matched to real barcodes, honestly
    (no labelled photos in the library: nothing stated), and a barcode to barcodes."""
    from clibd_core.build_jobs import current_build, start_build
    from clibd_core.library.identification import Query
    from clibd_core.library.naming import PHOTOS_UNMEASURED_MESSAGE
    from clibd_core.library.search import identify
    from clibd_core.library.store import Library
    from clibd_core.reference import DEFAULT_SOURCE
    from clibd_core.workspace import Workspace
    from tests.conftest import IMAGES

    space = Workspace(tmp_path / "home")
    model_dir = fetch_official_model(DEFAULT_RELEASE, space.models_dir / "clibd-official")
    bold = tmp_path / "bold.tsv"  # the shipped BOLD barcodes, cut to 30 records of 3 species (CPU time)
    table = pd.read_csv(DEFAULT_SOURCE, sep="\t", dtype=str, keep_default_na=False)
    table = table[table["species_name"].isin(table["species_name"].value_counts().index[:3])]
    table.groupby("species_name").head(10).to_csv(bold, sep="\t", index=False)
    job = start_build(space, model_dir, bold, "bold-official")
    seen, deadline = set(), time.time() + 480
    while (job := current_build(space))["running"] or job["status"]["state"] == "starting":
        assert time.time() < deadline, job["status"]
        seen.add(job["status"].get("stage"))
        time.sleep(0.5)
    assert job["status"]["state"] == "finished", Path(job["work"], "build.log").read_text()[-2000:]
    assert seen - {None} and job["status"]["records"] == 30 and job["status"]["elapsed_s"] > 0  # stages were shown
    library, model = Library.open(job["out"]), load_model(model_dir, device="cpu")
    assert "image" not in library.modalities and len(library.metadata) == 30  # barcodes only
    photo = sorted(require(IMAGES).glob("*.jpg"))[0]
    barcode = table["nucleotides"].iloc[0]
    by_photo, by_barcode = identify(library, model, [Query("photo", image=photo), Query("barcode", barcode=barcode)])
    assert by_photo.key_modality == "dna" and by_photo.neighbours and by_photo.deepest_rank is None
    assert PHOTOS_UNMEASURED_MESSAGE in by_photo.warnings
    assert by_barcode.neighbours[0].identity == pytest.approx(100.0)
