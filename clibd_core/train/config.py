"""The training job's configuration: defaults per preset, a YAML/JSON file, then command-line flags."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from clibd_core.config import MODALITIES
from clibd_core.presets import load_preset

FREEZABLE = ("image_backbone", "text_backbone")
# Training defaults and recipes per preset live in the preset's file (clibd_core/presets/*.json;
# docs/TRAINING.md says how each was measured); a setting given in a config file or a flag wins. The
# lite barcode recipe is bench/real_dna.py's (2 epochs at batch 256 beat blastn on real BOLD barcodes; a
# third epoch changed nothing). The lite photo recipe is bench/real_photos.py's: the whole ImageNet
# backbone fine-tuned (the frozen one holds real photos down), photo augmentation, class-balanced
# batches, every photo's taxon against all the training taxa (no same-species negatives), a validation
# share of every species, early stopping, at least 40 steps (8 photos of 10 species: 20 steps gave
# 97.1 % species on Leeds over three seeds, 40 steps 97.6 %) and a species head at weight 2 (99.4 %;
# bench/photo_recipe.py, train/head.py).
DEFAULTS = {
    "loss": "clibd", "split": "clibd", "balanced": False, "patience": 0, "augment": "clibd", "validate_every": 1,
    "min_steps": 0, "species_head": 0.0,
}  # fmt: skip

RUN_PLACEMENT = ("out", "num_workers", "checkpoint_every")  # what a resumed run takes from the new call


@dataclass
class TrainConfig:
    """Everything a run needs; written to ``RUN_DIR/train_config.json`` as resolved."""

    data: str
    out: str
    val: str | None = None  # a second source for validation; default: the data's own val splits
    preset: str = "lite"
    modalities: list[str] = field(default_factory=lambda: list(MODALITIES))
    init_from: str | None = None  # a model directory to fine-tune; default: the preset's pretrained parts
    epochs: int | None = None  # default: the preset's recipe
    batch_size: int | None = None  # global: split across processes; default: the recipe's
    lr: float | None = None  # peak learning rate; default per preset (see resolved())
    scale_lr: bool | None = None  # the paper's rule: lr × global batch / 500
    weight_decay: float = 0.01
    warmup: float = 0.3  # OneCycle: share of steps spent warming up, then cosine
    freeze: list[str] | None = None  # default per preset (see resolved())
    seed: int = 0
    split_seed: int = 0
    split_fold: int = 0  # which fifth of the species is held out as unseen (leave-species-out folds)
    num_workers: int = 0
    checkpoint_every: int = 100  # steps between "last" checkpoints (and at every epoch end)
    max_steps: int | None = None  # stop early (tests, smoke runs)
    mixed_precision: str | None = None  # auto: bf16 on GPU, fp32 on CPU (the photo recipe: bf16 on both)
    dna_crop: float | None = None  # probability of training on a random partial window of a barcode
    loss: str | None = None  # clibd: the paper's batch contrastive loss; taxonomy: each item vs all taxa
    split: str | None = None  # clibd: the paper's seen/unseen protocol; photos: a val share of every species
    balanced: bool | None = None  # class-balanced batches (species drawn equally often)
    patience: int | None = None  # stop after this many validations without improvement (0: never)
    augment: str | None = None  # clibd: the paper's image augmentation; photos: crops, flip, colour jitter
    validate_every: int | None = None  # epochs between validations (1; a small set: more, train/sizing.py)
    min_steps: int | None = None  # a small set gets more epochs until the run takes this many steps (sizing.py)
    species_head: float | None = None  # weight of a training-only species classifier's loss (train/head.py); 0: none

    def resolved(self) -> TrainConfig:
        """Every unset setting filled: first from the preset's recipe for this kind of data, then from the
        preset's training defaults: ``paper`` follows CLIBD (5e-5, scaled by batch/500, nothing frozen);
        ``lite`` trains small towers from scratch on CPU (1e-3, unscaled, ImageNet and MiniLM backbones
        frozen, half the barcodes cut to a random partial window)."""
        preset = load_preset(self.preset)
        per_preset = {**DEFAULTS, "mixed_precision": "auto", **preset.training}
        given = {key: value for key, value in asdict(self).items() if value is not None}
        filled = {**per_preset, **preset.recipe(self.modalities), **given}
        unknown = sorted(set(filled["freeze"]) - set(FREEZABLE))
        if unknown:
            raise ValueError(f"cannot freeze {unknown}: choose from {FREEZABLE}")
        return TrainConfig(**{**filled, "modalities": [m for m in MODALITIES if m in self.modalities]})

    def resumed(self) -> TrainConfig:
        """The settings the run in ``out`` started with (its ``train_config.json``), so a run resumed after an
        upgrade keeps its own recipe; a setting its file lacks (a run older than the setting) is read as
        off (``DEFAULTS``). Only where and how it runs follow this call: out, workers, checkpoint spacing."""
        saved = json.loads((Path(self.out) / "train_config.json").read_text())
        known = {f.name for f in fields(TrainConfig)}
        here = {name: getattr(self, name) for name in RUN_PLACEMENT}
        return TrainConfig(**{**asdict(self), **DEFAULTS, **{k: v for k, v in saved.items() if k in known}, **here})

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
