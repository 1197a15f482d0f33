"""Records to embeddings for training and evaluation, reusing what frozen backbones computed once.

Training (train/loop.py) and evaluation (evaluate.py) both encode records; this module serves both, so
evaluation runs without any training code.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from clibd_core.data.datasets import ImageDataset
from clibd_core.data.records import Record, record_texts
from clibd_core.models.clibd import CLIBDModel


class FeatureCache:
    """Outputs of frozen backbones, computed once per record (images) or per distinct text.

    With the ImageNet and MiniLM backbones frozen, an epoch then costs only the projections and the
    DNA tower: what makes CPU training of the lite preset take minutes instead of hours.
    """

    def __init__(self, model: CLIBDModel, records: list[Record], freeze: list[str], workers: int) -> None:
        self.image_rows: dict[str, int] = {}
        self.text_rows: dict[str, int] = {}
        self.images = self.texts = None
        with torch.inference_mode():
            if "image_backbone" in freeze and hasattr(getattr(model, "image_encoder", None), "backbone_features"):
                with_images = list({r.source: r for r in records if r.has_image}.values())
                loader = DataLoader(
                    ImageDataset(with_images, model.image_transform), batch_size=32, num_workers=workers
                )
                self.images = torch.cat([model.image_encoder.backbone_features(pixels) for pixels in loader])
                self.image_rows = {r.source: i for i, r in enumerate(with_images)}
            if "text_backbone" in freeze and hasattr(model, "language_encoder"):
                texts = sorted(set(record_texts(records)))
                pooled = [
                    model.language_encoder.pooled(**model.text_batch(texts[start : start + 256]))
                    for start in range(0, len(texts), 256)
                ]
                self.texts = torch.cat(pooled)
                self.text_rows = {text: i for i, text in enumerate(texts)}

    def image(self, records: list[Record]) -> torch.Tensor | None:
        return None if self.images is None else self.images[[self.image_rows[r.source] for r in records]]

    def text(self, texts: list[str]) -> torch.Tensor | None:
        return None if self.texts is None else self.texts[[self.text_rows[t] for t in texts]]


def record_encoder(model: CLIBDModel, cache: FeatureCache):
    """``encode(modality, records)`` for evaluation, reusing cached backbone features."""

    def encode(modality: str, records: list[Record]) -> np.ndarray:
        with torch.inference_mode():
            if modality == "image" and cache.images is not None:
                return F.normalize(model.image_encoder.proj(cache.image(records)), dim=-1).numpy()
            if modality == "text" and cache.texts is not None:
                return F.normalize(model.language_encoder.proj(cache.text(record_texts(records))), dim=-1).numpy()
        if modality == "image":
            return model.encode_images([r.load_image() for r in records])
        if modality == "dna":
            return model.encode_barcodes([r.barcode for r in records])
        return model.encode_texts(record_texts(records))

    return encode
