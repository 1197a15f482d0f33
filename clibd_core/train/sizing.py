"""The recipe fitted to the size of the set: a lab's first reference set is often a few photos per
species, far below the recipe's batch. The batch shrinks to what the set holds, the epochs grow so that
the run still takes enough steps to learn, and validation (with its early stopping) comes as many steps
apart as the recipe meant.
The Train tab's read step and the training loop both call :func:`fit_to_set`, so what the user is told
before Start is what the run does."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from clibd_core.data.splits import PHOTO_VAL_FROM, photo_validation_count
from clibd_core.train.config import TrainConfig

MIN_STEPS = 40  # a run on a tiny set still takes this many optimiser steps
MIN_BATCH = 2  # a contrastive batch needs two items


class SetTooSmall(ValueError):
    """The set cannot train at all (said in words, with what would be enough)."""


@dataclass(frozen=True)
class SetFit:
    config: TrainConfig
    notes: list[str]


def fit_to_set(config: TrainConfig, n_train: int, processes: int = 1) -> SetFit:
    """``config`` with batch, epochs and validation interval adapted to ``n_train`` training records: a
    smaller batch when they do not fill one of the recipe's, and more epochs when the run would take
    fewer steps than the recipe's ``min_steps`` (or, below one batch, than ``MIN_STEPS``); unchanged (and
    no notes) when neither applies."""
    smallest = max(MIN_BATCH, processes)
    if n_train < smallest:
        raise SetTooSmall(f"{n_train} training records are too few to train: at least {smallest} are needed")
    notes, batch, min_steps = [], config.batch_size, config.min_steps or 0
    if n_train < batch:
        batch = 2 ** int(math.log2(n_train))
        batch -= batch % processes
        notes.append(f"batches of {batch}: the recipe's {config.batch_size} is more than {n_train} training records")
        min_steps = max(min_steps, MIN_STEPS)
    steps_per_epoch = n_train // batch
    epochs, every = config.epochs, config.validate_every
    if epochs * steps_per_epoch < min_steps:
        stretch = math.ceil(min_steps / (epochs * steps_per_epoch))
        epochs, every = epochs * stretch, every * stretch
        notes.append(
            f"{epochs} passes over the set ({epochs * steps_per_epoch} steps, validated every {every}), "
            "so a small set still learns"
        )
    if not notes:
        return SetFit(config, [])
    return SetFit(replace(config, batch_size=batch, epochs=epochs, validate_every=every), notes)


def describe_photo_set(photos_per_species: dict[str, int], config: TrainConfig) -> list[str]:
    """What a set of labelled photos allows under ``config`` (the photo recipe), in the user's words,
    before anything is trained."""
    validating = {name: photo_validation_count(count) for name, count in photos_per_species.items()}
    n_val = sum(validating.values())
    n_train = sum(photos_per_species.values()) - n_val
    lines = []
    unvalidated = sorted(name for name, count in validating.items() if count == 0)
    if unvalidated:
        lines.append(
            f"{len(unvalidated)} species with fewer than {PHOTO_VAL_FROM} photos are trained on but not validated "
            f"(no validation split below {PHOTO_VAL_FROM} photos per species): {', '.join(unvalidated[:5])}"
            + ("…" if len(unvalidated) > 5 else "")
        )
    if n_val:
        lines.append(f"{n_val} photos validate (early stopping), {n_train} train")
    if len(photos_per_species) < 2:
        lines.append("one species only: a model needs at least two species to tell apart")
    try:
        fitted = fit_to_set(config, n_train)
    except SetTooSmall as error:
        return [*lines, str(error)]
    return lines + fitted.notes
