"""The DNA tower's number format for a long CPU build: the fastest that keeps fp32's neighbours, measured
on the build's own barcodes (library/dna_precision.py)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from clibd_core import build_model, load_model
from clibd_core.data.bold import read_bold_tsv
from clibd_core.library import dna_precision
from clibd_core.library.build import add_to_library, build_library
from clibd_core.library.dna_precision import PRECISIONS, measure_precisions, probe_barcodes
from clibd_core.library.identification import Query
from clibd_core.library.search import identify
from clibd_core.reference import DEFAULT_MODEL, DEFAULT_SOURCE
from tests.conftest import require

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bold_records():
    """4,000 real BOLD records drawn across the file (a build's first shard, from a mixed export)."""
    return random.Random(0).sample(read_bold_tsv(require(DEFAULT_SOURCE)).records, 4000)


def test_a_trained_tower_keeps_its_neighbours_in_bf16_and_int8_and_random_weights_stay_fp32(bold_records):
    barcodes, species = probe_barcodes(bold_records)
    assert len(set(species)) == 32 and len(barcodes) >= 100  # up to 8 of each
    trained = measure_precisions(load_model(require(DEFAULT_MODEL), device="cpu"), barcodes, species)
    for precision in PRECISIONS[1:]:  # a trained tower spreads barcodes far beyond either format's rounding
        assert trained[precision]["same_nearest_species"] >= 0.99, trained
    kept = [p for p in PRECISIONS[1:] if trained[p]["overlap_10"] >= dna_precision.OVERLAP]
    faster = [p for p in kept if trained[p]["barcodes_per_s"] > trained["fp32"]["barcodes_per_s"]]
    assert trained["chosen"] == max(faster, key=lambda p: trained[p]["barcodes_per_s"], default="fp32")
    # Untrained weights embed every barcode almost alike: bf16's rounding reorders the neighbours. The draw
    # of weights is fixed: unseeded draws kept 0.60 and 0.91 of the nearest species, overlaps under 0.8.
    torch.manual_seed(0)
    untrained = measure_precisions(build_model("lite"), barcodes, species)
    assert untrained["bf16"]["overlap_10"] < dna_precision.OVERLAP and untrained["chosen"] == "fp32", untrained


def test_int8_leaves_the_fp32_tower_in_place():
    model = load_model(require(DEFAULT_MODEL), device="cpu")
    barcode = "ACGT" * 160
    before = model.encode_barcodes([barcode])
    with dna_precision.dna_tower_in(model, "int8"):
        during = model.encode_barcodes([barcode])
    assert not np.array_equal(before, during)
    assert np.array_equal(model.encode_barcodes([barcode]), before)
    with pytest.raises(ValueError, match="choose one of fp32, bf16, int8"):
        dna_precision.dna_tower_in(model, "fp16").__enter__()


def test_an_auto_build_records_its_choice_and_a_short_one_skips_the_probe(bold_records, tmp_path, monkeypatch):
    model = load_model(require(DEFAULT_MODEL), device="cpu")
    records = bold_records[:300]
    short = build_library(model, records, tmp_path / "short", dna_precision="auto", maps=False)
    assert short.facts["build"]["dna_precision"] == {
        "chosen": "fp32",
        "why": "fewer than 10,000 barcodes",
        "asked": "auto",
    }
    monkeypatch.setattr(dna_precision, "AUTO_FROM", 200)  # as if this were a long build
    probed = build_library(model, records, tmp_path / "probed", dna_precision="auto", maps=False)
    choice = probed.facts["build"]["dna_precision"]
    assert choice["why"].startswith("measured on") and choice["chosen"] in PRECISIONS
    queries = [Query(r.id, barcode=r.barcode) for r in records[:100]]
    for library in (short, probed):  # either way a library's own barcodes find their own species
        named = [res.ranks["species"].name for res in identify(library, model, queries)]
        assert np.mean([n == r.taxonomy.species for n, r in zip(named, records, strict=False)]) >= 0.95


def test_queries_and_appended_barcodes_are_embedded_in_the_librarys_format(bold_records, tmp_path):
    """A bf16 library embeds its queries and the barcodes appended later in bf16, as its references were
    (fp32 queries against bf16 references would mix two roundings)."""
    model = load_model(require(DEFAULT_MODEL), device="cpu")
    records = [r for r in bold_records if r.barcode and set(r.barcode) <= set("ACGT")][:240]
    library = build_library(model, records[:200], tmp_path / "bf16", dna_precision="bf16", maps=False)
    assert library.dna_precision == "bf16"
    [answer] = identify(library, model, [Query("q", barcode=records[0].barcode)])
    with dna_precision.dna_tower_in(model, "bf16"):
        in_bf16 = model.encode_barcodes([records[0].barcode])
        appended_in_bf16 = model.encode_barcodes([r.barcode for r in records[200:]])
    assert np.array_equal(np.float32(answer.embedding), in_bf16[0])
    assert not np.allclose(model.encode_barcodes([records[0].barcode])[0], in_bf16[0], atol=1e-4)
    grown, _ = add_to_library(tmp_path / "bf16", model, records[200:])
    assert grown.dna_precision == "bf16"
    assert np.array_equal(grown.vectors("dna")[200:], appended_in_bf16)
