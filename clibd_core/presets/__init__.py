"""The preset registry: one declarative JSON file per preset in this folder.

A preset names its towers (registered in ``models/towers.py``), its embedding size, text length and
image transform, which parts come pretrained from pinned packages, and its training defaults and
recipes. Models, training, the CLI and the app read presets only through :func:`load_preset`, so a new
preset is one file here (plus one registered tower if it brings a new one).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

PRESET_DIR = Path(__file__).parent
RECIPE_KINDS = ("general", "barcodes", "photos")


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    embed_dim: int
    text_max_length: int
    towers: dict  # modality -> registered tower name
    image_transform: dict  # resize, crop, interpolation, mean/std (None: no normalisation)
    packaged_parts: list  # parts whose frozen weights come from a pinned package (left out of model dirs)
    training: dict  # lr, scale_lr, freeze, dna_crop
    recipes: dict  # kind of data (RECIPE_KINDS) -> training settings

    def recipe(self, modalities: list[str]) -> dict:
        """The recipe for photos without barcodes, barcodes without photos, or (general) both."""
        kind = {(True, False): "photos", (False, True): "barcodes"}.get(("image" in modalities, "dna" in modalities))
        return self.recipes.get(kind, self.recipes["general"])


def preset_names() -> tuple[str, ...]:
    return tuple(sorted(path.stem for path in PRESET_DIR.glob("*.json")))


def load_preset(name: str) -> Preset:
    """The preset ``name``, checked; a ValueError names the presets there are."""
    path = PRESET_DIR / f"{name}.json"
    if not name or "/" in name or not path.is_file():
        raise ValueError(f"unknown preset '{name}': choose one of {', '.join(preset_names())}")
    values = json.loads(path.read_text())
    preset = Preset(**values)
    if preset.name != name or "general" not in preset.recipes or set(preset.recipes) - set(RECIPE_KINDS):
        raise ValueError(f"{path}: the name must be '{name}' and recipes a 'general' one among {RECIPE_KINDS}")
    return preset
