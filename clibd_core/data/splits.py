"""The CLIBD partitioning of records into training, validation, test and key sets.

For data without a split column (BIOSCAN-1M style, CLIBD_SPEC.md "Splits"):
- records without a species label → ``pretrain`` (usable for contrastive training, never evaluated);
- species with fewer than ``min_records`` records → ``train`` (too few to evaluate; seen-only material);
- the other species: 80 % seen, 20 % unseen (by species, at random; ``fold`` f of 0-4 takes the f-th
  fifth of the same shuffled list as unseen, so five folds hold out every species once);
- each seen species' records: 70/10/10/10 → ``train`` / ``val`` / ``test`` / ``key_seen``;
- unseen species halved into validation and test species; each one's records split half and half
  between queries (``val_unseen`` / ``test_unseen``) and keys (``key_unseen``).
Evaluation keys are ``key_seen`` ∪ ``key_unseen``. Everything is deterministic for a seed.
BIOSCAN-5M ships its own ``split`` column, which is kept (:func:`assign_splits` with ``keep_existing``).
"""

from __future__ import annotations

import random
from collections import defaultdict

from clibd_core.data.records import Record
from clibd_core.taxonomy import MISSING

SEEN_FRACTIONS = (("train", 0.7), ("val", 0.1), ("test", 0.1), ("key_seen", 0.1))
KEY_SPLITS = ("key_seen", "key_unseen")
FOLDS = 5  # unseen species: one fifth


def _portions(items: list, fractions: tuple[tuple[str, float], ...]) -> dict[str, list]:
    """Cut a shuffled list by fractions; each part gets at least one item while items remain."""
    parts, start = {}, 0
    for index, (name, fraction) in enumerate(fractions):
        if index == len(fractions) - 1:
            count = len(items) - start
        else:
            count = max(1, round(fraction * len(items))) if start < len(items) else 0
        parts[name] = items[start : start + count]
        start += count
    return parts


def assign_splits(
    records: list[Record], seed: int = 0, min_records: int = 10, keep_existing: bool = True, fold: int = 0
) -> dict[str, int]:
    """Set ``record.split`` on every record (keeping a source's own split when ``keep_existing``);
    returns the count per split."""
    if fold not in range(FOLDS):
        raise ValueError(f"fold must be 0 to {FOLDS - 1}, got {fold}")
    rng = random.Random(seed)
    if keep_existing and any(record.split for record in records):
        return _counts(records)
    by_species: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        species = record.taxonomy.species
        if species == MISSING:
            record.split = "pretrain"
        else:
            by_species[species].append(record)
    evaluable = sorted(s for s, members in by_species.items() if len(members) >= min_records)
    for members in by_species.values():
        if len(members) < min_records:
            for record in members:
                record.split = "train"
    rng.shuffle(evaluable)
    bounds = [round(f * len(evaluable) / FOLDS) for f in range(FOLDS + 1)]
    unseen = evaluable[bounds[fold] : bounds[fold + 1]]
    seen = evaluable[: bounds[fold]] + evaluable[bounds[fold + 1] :]
    for species in seen:
        members = sorted(by_species[species], key=lambda r: r.id)
        rng.shuffle(members)
        for split, part in _portions(members, SEEN_FRACTIONS).items():
            for record in part:
                record.split = split
    for index, species in enumerate(unseen):  # already in random order
        query_split = "val_unseen" if index % 2 == 0 else "test_unseen"
        members = sorted(by_species[species], key=lambda r: r.id)
        rng.shuffle(members)
        half = len(members) // 2
        for record in members[:half]:
            record.split = query_split
        for record in members[half:]:
            record.split = "key_unseen"
    return _counts(records)


def _counts(records: list[Record]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for record in records:
        counts[record.split or "none"] += 1
    return dict(sorted(counts.items()))


PHOTO_VAL_SHARE = 0.15
PHOTO_VAL_FROM = 10  # species with fewer photos are all trained on: one photo validates nothing, and
# holding it out cost more (8 photos of 10 Leeds species: bench/photo_recipe.py) than stopping early saved


def photo_validation_count(photos: int, val_share: float = PHOTO_VAL_SHARE) -> int:
    """How many of a species' photos validate: ``val_share`` of them, one at least, none below three."""
    return max(1, round(val_share * photos)) if photos >= PHOTO_VAL_FROM else 0


def assign_photo_splits(records: list[Record], seed: int = 0, val_share: float = PHOTO_VAL_SHARE) -> dict[str, int]:
    """A lab's labelled photos: every species is trained on; :func:`photo_validation_count` of each
    species' records validate; the rest, and records without a species, train. A source's own split
    column is kept. The user's own held-out photos are the test."""
    if any(record.split for record in records):
        return _counts(records)
    rng = random.Random(seed)
    by_species: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        record.split = "train"
        if record.taxonomy.species != MISSING:
            by_species[record.taxonomy.species].append(record)
    for species in sorted(by_species):
        members = sorted(by_species[species], key=lambda r: r.id)
        if len(members) >= PHOTO_VAL_FROM:
            rng.shuffle(members)
        for record in members[: photo_validation_count(len(members), val_share)]:
            record.split = "val"
    return _counts(records)
