"""Shared fixtures: paths to ../shared data (skipping cleanly where absent) and models built once per run."""

from __future__ import annotations

import csv
import gzip
import random
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
BOLD_DEV = SHARED / "data" / "bold" / "bold_insects_dev.tsv.gz"
IMAGES = SHARED / "data" / "bioscan_images"
OFFICIAL_KEYS = SHARED / "design" / "clibd_official_state_dict_keys.json"


def require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared is not laid beside this checkout)")
    return path


@pytest.fixture(scope="session")
def bold_sample() -> list[dict]:
    """2,000 real BOLD records drawn with a fixed seed."""
    with gzip.open(require(BOLD_DEV), "rt", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return random.Random(0).sample(rows, 2000)


@pytest.fixture(scope="session")
def photo_dir() -> Path:
    return require(IMAGES)


@pytest.fixture(scope="session")
def lite_model():
    from clibd_core import build_model

    return build_model("lite")
