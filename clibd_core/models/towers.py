"""The tower registry: the names a preset file uses for its towers, and how each is built.

A builder takes the model's :class:`ModelConfig` and whether packaged pretrained weights should be
loaded (towers whose weights come only from a checkpoint ignore it). DNA builders also return the
tokeniser their tower reads. Builders import their tower's module when called: transformers (the text
towers, BarcodeBERT) takes seconds to import, and a barcode run of the lite model never needs it.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from clibd_core.config import ModelConfig
from clibd_core.dna import BarcodeBertTokenizer, NucleotideTokenizer


def _lite_image(config: ModelConfig, pretrained: bool) -> nn.Module:
    from clibd_core.models.image import LiteImageTower

    return LiteImageTower(config.embed_dim, pretrained)


def _paper_image(config: ModelConfig, pretrained: bool) -> nn.Module:
    from clibd_core.models.image import PaperImageTower

    return PaperImageTower(config.embed_dim, config.lora_rank)


def _lite_dna(config: ModelConfig, pretrained: bool) -> tuple[nn.Module, object]:
    from clibd_core.models.dna import LiteDNATower

    return LiteDNATower(config.embed_dim, config.lite_dna), NucleotideTokenizer(config.lite_dna.max_len)


def _paper_dna(config: ModelConfig, pretrained: bool) -> tuple[nn.Module, object]:
    from clibd_core.models.dna import PaperDNATower

    return PaperDNATower(config.embed_dim, config.dna_pooling), BarcodeBertTokenizer()


def _lite_text(config: ModelConfig, pretrained: bool) -> nn.Module:
    from clibd_core.models.text import lite_text_tower

    return lite_text_tower(config.embed_dim, pretrained)


def _paper_text(config: ModelConfig, pretrained: bool) -> nn.Module:
    from clibd_core.models.text import paper_text_tower

    return paper_text_tower(config.embed_dim)


IMAGE_TOWERS: dict[str, Callable[[ModelConfig, bool], nn.Module]] = {
    "efficientnet-lite0": _lite_image,
    "vit-b16-lora": _paper_image,
}
DNA_TOWERS: dict[str, Callable[[ModelConfig, bool], tuple[nn.Module, object]]] = {
    "lite-dna": _lite_dna,
    "barcodebert": _paper_dna,
}
TEXT_TOWERS: dict[str, Callable[[ModelConfig, bool], nn.Module]] = {
    "minilm-l6": _lite_text,
    "bert-small": _paper_text,
}
TOWERS = {"image": IMAGE_TOWERS, "dna": DNA_TOWERS, "text": TEXT_TOWERS}


def tower_builder(modality: str, name: str) -> Callable:
    """The builder registered as ``name`` for ``modality``; a ValueError lists the registered ones."""
    registered = TOWERS[modality]
    if name not in registered:
        raise ValueError(f"no {modality} tower '{name}' is registered: {', '.join(registered)}")
    return registered[name]
