"""The tower registry: the names a preset file uses for its towers, and how each is built.

A builder takes the model's :class:`ModelConfig` and whether packaged pretrained weights should be
loaded (towers whose weights come only from a checkpoint ignore it). DNA builders also return the
tokeniser their tower reads.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from clibd_core.config import ModelConfig
from clibd_core.dna import BarcodeBertTokenizer, NucleotideTokenizer
from clibd_core.models.dna import LiteDNATower, PaperDNATower
from clibd_core.models.image import LiteImageTower, PaperImageTower
from clibd_core.models.text import lite_text_tower, paper_text_tower

IMAGE_TOWERS: dict[str, Callable[[ModelConfig, bool], nn.Module]] = {
    "efficientnet-lite0": lambda config, pretrained: LiteImageTower(config.embed_dim, pretrained),
    "vit-b16-lora": lambda config, pretrained: PaperImageTower(config.embed_dim, config.lora_rank),
}
DNA_TOWERS: dict[str, Callable[[ModelConfig, bool], tuple[nn.Module, object]]] = {
    "lite-dna": lambda config, pretrained: (
        LiteDNATower(config.embed_dim, config.lite_dna),
        NucleotideTokenizer(config.lite_dna.max_len),
    ),
    "barcodebert": lambda config, pretrained: (
        PaperDNATower(config.embed_dim, config.dna_pooling),
        BarcodeBertTokenizer(),
    ),
}
TEXT_TOWERS: dict[str, Callable[[ModelConfig, bool], nn.Module]] = {
    "minilm-l6": lambda config, pretrained: lite_text_tower(config.embed_dim, pretrained),
    "bert-small": lambda config, pretrained: paper_text_tower(config.embed_dim),
}
TOWERS = {"image": IMAGE_TOWERS, "dna": DNA_TOWERS, "text": TEXT_TOWERS}


def tower_builder(modality: str, name: str) -> Callable:
    """The builder registered as ``name`` for ``modality``; a ValueError lists the registered ones."""
    registered = TOWERS[modality]
    if name not in registered:
        raise ValueError(f"no {modality} tower '{name}' is registered: {', '.join(registered)}")
    return registered[name]
