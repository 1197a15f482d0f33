"""Model configurations: what a model directory's config.json holds, filled from a preset."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from clibd_core.presets import load_preset

MODALITIES: tuple[str, ...] = ("image", "dna", "text")


@dataclass
class LiteDNAConfig:
    """The small DNA transformer of the ``lite`` preset (docs/MODELS.md explains the sizes)."""

    width: int = 128
    layers: int = 2
    heads: int = 4
    ffn: int = 512
    kernel: int = 10  # the convolutional stem reads 10-base windows ...
    stride: int = 5  # ... every 5 bases: 131 tokens for 660 nt
    max_len: int = 660
    kmer: int = 5  # a k-mer frequency profile added to the pooled tokens (0: none, as models before it)


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model's architecture; saved as config.json in a model directory."""

    preset: str
    embed_dim: int
    modalities: list[str]
    text_max_length: int
    dna_pooling: str = "softmax_mean"  # paper: the released models' softmax-mean; "hidden_mean" is the fix
    lora_rank: int = 4  # paper image tower: LoRA on q and v of every block
    lite_dna: LiteDNAConfig = field(default_factory=LiteDNAConfig)

    def __post_init__(self) -> None:
        load_preset(self.preset)  # a ValueError naming the presets there are
        unknown = sorted(set(self.modalities) - set(MODALITIES))
        if unknown or len(set(self.modalities)) < 2:
            raise ValueError(f"modalities must be two or three of {MODALITIES}, got {self.modalities}")
        self.modalities = [m for m in MODALITIES if m in self.modalities]
        if isinstance(self.lite_dna, dict):
            # A model directory written before the k-mer path existed has no "kmer" entry.
            self.lite_dna = LiteDNAConfig(**{"kmer": 0, **self.lite_dna})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        return cls(**data)


def preset_config(preset: str, modalities: list[str] | None = None) -> ModelConfig:
    """The default configuration of ``preset`` (its file in ``clibd_core/presets``)."""
    spec = load_preset(preset)
    return ModelConfig(
        preset=preset,
        embed_dim=spec.embed_dim,
        modalities=list(modalities or MODALITIES),
        text_max_length=spec.text_max_length,
    )
