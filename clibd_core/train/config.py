"""The training job's configuration: defaults per preset, a YAML/JSON file, then command-line flags."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from clibd_core.config import MODALITIES

FREEZABLE = ("image_backbone", "text_backbone")
# Defaults of epochs and batch size by preset and by whether photos are trained (docs/TRAINING.md says
# how each was measured): the lite barcode recipe is bench/real_dna.py's (2 epochs at batch 256 beat
# blastn on real BOLD barcodes; a third epoch changed nothing).
RECIPES = {("lite", "barcodes"): {"epochs": 2, "batch_size": 256}}
GENERAL_RECIPE = {"epochs": 10, "batch_size": 64}


def recipe(preset: str, modalities: list[str]) -> dict:
    return RECIPES.get((preset, "photos" if "image" in modalities else "barcodes"), GENERAL_RECIPE)


@dataclass
class TrainConfig:
    """Everything a run needs; written to ``RUN_DIR/train_config.json`` as resolved."""

    data: str
    out: str
    val: str | None = None  # a second source for validation; default: the data's own val splits
    preset: str = "lite"
    modalities: list[str] = field(default_factory=lambda: list(MODALITIES))
    init_from: str | None = None  # a model directory to fine-tune; default: the preset's pretrained parts
    epochs: int | None = None  # default: the recipe's (RECIPES)
    batch_size: int | None = None  # global: split across processes; default: the recipe's
    lr: float | None = None  # peak learning rate; default per preset (see resolved())
    scale_lr: bool | None = None  # the paper's rule: lr × global batch / 500
    weight_decay: float = 0.01
    warmup: float = 0.3  # OneCycle: share of steps spent warming up, then cosine
    freeze: list[str] | None = None  # default per preset (see resolved())
    seed: int = 0
    split_seed: int = 0
    num_workers: int = 0
    checkpoint_every: int = 100  # steps between "last" checkpoints (and at every epoch end)
    max_steps: int | None = None  # stop early (tests, smoke runs)
    mixed_precision: str = "auto"  # bf16 on GPU, fp32 on CPU
    dna_crop: float | None = None  # probability of training on a random partial window of a barcode

    def resolved(self) -> TrainConfig:
        """Fill the defaults: epochs and batch size from the recipe (RECIPES); ``paper`` follows CLIBD
        (5e-5, scaled by batch/500); ``lite`` trains small towers from scratch on CPU (1e-3, unscaled,
        ImageNet and MiniLM backbones frozen, half the barcodes cut to a random partial window)."""
        freeze = self.freeze if self.freeze is not None else ([] if self.preset == "paper" else list(FREEZABLE))
        unknown = sorted(set(freeze) - set(FREEZABLE))
        if unknown:
            raise ValueError(f"cannot freeze {unknown}: choose from {FREEZABLE}")
        paper = self.preset == "paper"
        defaults = recipe(self.preset, self.modalities)
        return TrainConfig(
            **{
                **asdict(self),
                "epochs": self.epochs or defaults["epochs"],
                "batch_size": self.batch_size or defaults["batch_size"],
                "lr": self.lr if self.lr is not None else (5e-5 if paper else 1e-3),
                "scale_lr": self.scale_lr if self.scale_lr is not None else paper,
                "modalities": [m for m in MODALITIES if m in self.modalities],
                "freeze": freeze,
                "dna_crop": self.dna_crop if self.dna_crop is not None else (0.0 if paper else 0.5),
            }
        )

    def peak_lr(self) -> float:
        return self.lr * (self.batch_size / 500 if self.scale_lr else 1.0)


def load_config(path: str | Path | None, overrides: dict) -> TrainConfig:
    """A config file (YAML or JSON) with command-line values (those not None) on top."""
    values = {}
    if path:
        text = Path(path).read_text()
        values = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text) or {}
        known = {f.name for f in fields(TrainConfig)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{path}: unknown settings {unknown}")
    values.update({key: value for key, value in overrides.items() if value is not None})
    missing = [name for name in ("data", "out") if not values.get(name)]
    if missing:
        raise ValueError(f"training needs {' and '.join('--' + m for m in missing)}")
    return TrainConfig(**values).resolved()
