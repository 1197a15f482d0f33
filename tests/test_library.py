"""Reference libraries and identification on a small synthetic world, with the shipped demo model:
build/open/append, atomic writes under SIGKILL, model mismatch, votes, novelty, identity, restriction,
bad input, image+barcode, the CLI, and the evaluation protocol's novelty AUROC."""

from __future__ import annotations

import io
import json
import shutil
import signal
import subprocess
import sys
import time
from itertools import chain
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import pytest

from clibd_core import build_model, load_model
from clibd_core.data.records import Record
from clibd_core.data.sources import read_source
from clibd_core.data.synthetic import WorldConfig, generate_world
from clibd_core.evaluate import novelty_auroc
from clibd_core.library.build import add_to_library, build_library
from clibd_core.library.calibration import _logistic
from clibd_core.library.evidence import Evidence, logistic, rank_votes
from clibd_core.library.identification import Identification, Query, RankCall
from clibd_core.library.identity import percent_identity
from clibd_core.library.naming import UNSUPPORTED_CAP, combine, deepest_confident_rank, make_monotone
from clibd_core.library.results import read_results, write_results
from clibd_core.library.search import identify
from clibd_core.library.store import Library, LibraryError, ModelMismatchError
from clibd_core.reference import DEMO_MODEL
from clibd_core.taxonomy import RANKS, Taxonomy, taxonomy_text
from tests.ports import free_port

CLI = [sys.executable, "-m", "clibd_core.cli"]


@pytest.fixture(scope="module")
def model():
    if not DEMO_MODEL.is_dir():
        pytest.skip("reference_db/model has not been built (clibd demo)")
    return load_model(DEMO_MODEL, device="cpu")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("libworld") / "world"
    generate_world(root, WorldConfig(n_records=220, n_orders=3, species_per_genus=2.0, seed=5))
    return root


@pytest.fixture(scope="module")
def records(world) -> list[Record]:
    return [r for r in read_source(world).records if r.barcode]


@pytest.fixture(scope="module")
def library(model, records, tmp_path_factory) -> Library:
    return build_library(model, records[:160], tmp_path_factory.mktemp("lib") / "lib", sources=[{"path": "world"}])


def test_percent_identity_counts_matches_over_the_overlap():
    assert percent_identity("ACGTACGTAC", "ACGTACGTAC") == 100.0
    assert percent_identity("ACGTACGTAC", "TTTACGTACGTACTTT") == 100.0  # a partial barcode inside a longer one
    assert percent_identity("ACGTTCGTAC", "ACGTACGTAC") == 90.0  # one mismatch in ten
    assert percent_identity("ACGNACGTAC", "ACGTACGTAC") == 100.0  # N matches any base
    assert percent_identity("ACGTACGTAC", "ACGTAACGTAC") == pytest.approx(100 * 10 / 11)  # one gap column


def test_rank_votes_weight_neighbours_by_score():
    lineages = {
        "order": np.array(["O1", "O1", "O1"]),
        "family": np.array(["F1", "F1", "F2"]),
        "genus": np.array(["G1", "G2", "G3"]),
        "species": np.array(["S1", "not_classified", "S3"]),
    }
    evidence = Evidence(np.array([0, 1, 2]), np.array([0.9, 0.9, 0.9]), np.array([99.0, 98.0, 98.0]))
    votes = rank_votes(evidence, lineages)
    w = np.exp(-1.0)  # one percent identity below the best, at tau = 1 %
    assert votes["order"] == ("O1", pytest.approx(1.0))
    assert votes["family"] == ("F1", pytest.approx((1 + w) / (1 + 2 * w)))
    assert votes["genus"] == ("G1", pytest.approx(1 / (1 + 2 * w)))
    assert votes["species"] == ("S1", pytest.approx(1 / (1 + w)))  # the unnamed species does not vote


def test_rank_votes_follow_one_lineage_path():
    """The genus is chosen inside the winning family, even when a lone neighbour of another family
    carries the heaviest single genus vote."""
    lineages = {
        "order": np.array(["O", "O", "O"]),
        "family": np.array(["F1", "F1", "F2"]),
        "genus": np.array(["G1", "G1", "G3"]),
        "species": np.array(["S1", "S1", "S3"]),
    }
    w = 0.6  # the two F1 neighbours' weight beside the best (F2) neighbour's 1
    evidence = Evidence(np.array([2, 0, 1]), np.zeros(3), np.array([99.0, 99 + np.log(w), 99 + np.log(w)]))
    votes = rank_votes(evidence, lineages)
    assert votes["family"] == ("F1", pytest.approx(2 * w / (1 + 2 * w)))
    assert votes["genus"] == ("G1", pytest.approx(2 * w / (1 + 2 * w)))  # not G3, which lies in F2
    assert votes["species"][0] == "S1"


def test_confidence_never_rises_with_depth():
    calls = {
        "order": RankCall("O", 0.65, 1),
        "family": RankCall("F", 0.98, 1),
        "genus": RankCall("G", 0.5, 1),
        "species": RankCall("S", 0.9, 1),
    }
    make_monotone(calls)
    assert [calls[rank].confidence for rank in RANKS] == [0.65, 0.65, 0.5, 0.5]


def test_a_rank_never_wrong_in_calibration_gets_a_high_constant_not_its_vote_share():
    model = _logistic([[0.5, 0.9]] * 98, [True] * 98)
    assert logistic(model, [0.3, 0.2]) == pytest.approx(99 / 100)


def test_a_library_of_one_species_is_not_calibrated_and_states_no_rank(model, records, tmp_path):
    one = [r for r in records if r.taxonomy.species == records[0].taxonomy.species]
    library = build_library(model, one, tmp_path / "one")
    assert "fallback" in library.facts["calibration"]["dna->dna"]
    other = next(r for r in records if r.taxonomy.order != records[0].taxonomy.order)
    result = identify(library, model, [Query("q", barcode=other.barcode)])[0]
    assert result.deepest_rank is None
    assert max(call.confidence for call in result.ranks.values()) <= UNSUPPORTED_CAP
    assert any("could not be calibrated" in warning for warning in result.warnings)


def test_deepest_rank_stops_at_the_first_unsure_rank_and_never_names_a_novel_species():
    calls = {
        "order": RankCall("O", 0.99, 1),
        "family": RankCall("F", 0.95, 1),
        "genus": RankCall("G", 0.5, 1),
        "species": RankCall("S", 0.9, 1),
    }
    assert deepest_confident_rank(calls, novel=False) == "family"
    calls["genus"] = RankCall("G", 0.85, 1)
    assert deepest_confident_rank(calls, novel=False) == "species"
    assert deepest_confident_rank(calls, novel=True) == "genus"


def test_image_and_barcode_combine_with_an_explicit_agreement_note():
    def answer(genus: str, confidence: float) -> Identification:
        ranks = {
            "order": RankCall("O", 0.9, 1),
            "family": RankCall("F", 0.9, 1),
            "genus": RankCall(genus, confidence, 1),
        }
        return Identification("q", ranks=ranks)

    agreed = combine(image=answer("G", 0.8), barcode=answer("G", 0.8))
    assert agreed.ranks["genus"].confidence == pytest.approx(0.64 / (0.64 + 0.04))
    assert agreed.agreement == "image and barcode agree at every rank"
    split = combine(image=answer("H", 0.6), barcode=answer("G", 0.9))
    assert split.ranks["genus"].name == "G"
    assert split.ranks["genus"].confidence == pytest.approx(0.9 * 0.4 / (0.9 * 0.4 + 0.6 * 0.1))
    assert "disagree at genus (barcode: G 0.90; image: H 0.60)" in split.agreement
    assert split.agreement.startswith("agree at order, family")


def test_library_opens_with_counts_provenance_calibration_and_thumbnails(library, records):
    reopened = Library.open(library.path)
    assert len(reopened.metadata) == 160
    assert reopened.indexes["dna"].ntotal == 160 and reopened.indexes["image"].ntotal == 160
    assert reopened.indexes["text"].ntotal == len({(r.taxonomy.genus, r.taxonomy.species) for r in records[:160]})
    assert reopened.facts["index"]["dna"]["type"] == "IndexFlatIP"
    assert reopened.facts["sources"] == [{"path": "world"}]
    assert reopened.model_path == DEMO_MODEL.resolve()
    assert set(reopened.facts["calibration"]) == {"dna->dna", "dna->dna:embedding", "image->image", "image->dna"}
    assert reopened.thumbnails([0, 1]).keys() == {0, 1}


def test_a_tower_without_the_kmer_path_gets_a_kmer_index_that_finds_candidates(records, tmp_path):
    untrained = build_model("lite", modalities=["dna", "text"], pretrained=False)
    untrained.config.lite_dna.kmer = 0
    untrained.dna_encoder.kmer_proj = None  # a DNA tower that does not embed the 5-mer profile
    old_model = load_model(untrained.save(tmp_path / "model"), device="cpu")
    old_library = build_library(old_model, records[:160], tmp_path / "lib")
    assert old_library.indexes["kmer"].ntotal == 160
    queries = [Query(f"q{i}", barcode=r.barcode) for i, r in enumerate(records[:20])]
    aligned = identify(old_library, old_model, queries)
    # The untrained embedding's neighbours are arbitrary; the 5-mer candidates find each reference's own
    # barcode, and the alignment puts it first.
    assert all(r.neighbours[0].identity == pytest.approx(100.0) for r in aligned)
    assert (
        np.mean([r.ranks["species"].name == rec.taxonomy.species for r, rec in zip(aligned, records, strict=False)])
        >= 0.9
    )


def test_a_tower_with_the_kmer_path_needs_no_kmer_index(library, model):
    assert model.dna_reads_kmer_profiles and "kmer" not in library.indexes


def test_a_reference_barcode_finds_itself_at_full_identity(library, model, records):
    queries = [Query(f"q{i}", barcode=r.barcode) for i, r in enumerate(records[:20])]
    results = identify(library, model, queries)
    for record, result in zip(records[:20], results, strict=True):
        assert result.error is None
        top = result.neighbours[0]
        assert top.id == record.id or library.barcodes.take([top.row])[0] == record.barcode  # a twin
        assert top.identity == pytest.approx(100.0)
        assert result.ranks["order"].name == record.taxonomy.order
        assert 0.0 <= result.ranks["species"].confidence <= 1.0
    assert (
        np.mean([r.ranks["genus"].name == rec.taxonomy.genus for r, rec in zip(results, records, strict=False)]) >= 0.9
    )


def test_queries_of_species_absent_from_the_library_score_more_novel(library, model, records):
    present_species = {r.taxonomy.species for r in records[:160]}
    absent = [r for r in records[160:] if r.taxonomy.species not in present_species]
    present = [r for r in records[160:] if r.taxonomy.species in present_species]
    assert absent and present, "the world should hold both kinds of query"
    novelty = {
        name: np.mean([x.novelty for x in identify(library, model, [Query(r.id, barcode=r.barcode) for r in group])])
        for name, group in (("absent", absent), ("present", present))
    }
    assert novelty["absent"] > novelty["present"]


def test_partial_reads_of_species_in_the_library_are_not_called_novel(library, model, records):
    present_species = {r.taxonomy.species for r in records[:160]}
    present = [r for r in records[160:] if r.taxonomy.species in present_species]
    absent = [r for r in records[160:] if r.taxonomy.species not in present_species]

    def window(sequence: str, start_share: float) -> str:  # 60 % of the read, as short reads are
        length = int(0.6 * len(sequence))
        start = int(start_share * (len(sequence) - length))
        return sequence[start : start + length]

    def results(group):
        queries = [Query(r.id, barcode=window(r.barcode, (i % 5) / 4)) for i, r in enumerate(group)]
        return identify(library, model, queries)

    partial_present, partial_absent = results(present), results(absent)
    # Calibrated on full reads only, 87 % of these were flagged as novel.
    assert np.mean([r.novel for r in partial_present]) <= 0.25
    assert np.mean([r.novelty for r in partial_absent]) > np.mean([r.novelty for r in partial_present])


def test_a_library_calibrated_before_novelty_named_its_features_still_answers(library, model, records, monkeypatch):
    legacy = {key: value for key, value in library.facts["calibration"]["dna->dna"]["novelty"].items()}
    del legacy["features"]
    legacy.update(coef=[-5.0, -15.0], intercept=20.0)  # similarity and identity, as such libraries hold
    monkeypatch.setitem(library.facts["calibration"]["dna->dna"], "novelty", legacy)
    [result] = identify(library, model, [Query("q", barcode=records[0].barcode)])
    top = result.neighbours[0]
    assert result.novelty == pytest.approx(1 / (1 + np.exp(-(20.0 - 5.0 * top.similarity - 15.0 * top.identity / 100))))


def test_one_query_and_a_batch_find_the_same_neighbours_in_the_same_order(library, model, records):
    """A barcode searched alone (torch's product) and in a batch (FAISS's BLAS search) meets the same
    references, equal similarities ordered by index position: the top hit shown does not depend on how
    many barcodes were sent with it (only a near-tie with the 10th may swap which one is kept)."""
    barcodes = [r.barcode for r in records if r.barcode][:40]
    vectors = model.encode_barcodes(barcodes)
    vectors = np.vstack([vectors, vectors[:5]])  # repeated queries: tied references are common
    batch_similarities, batch_rows = library.search("dna", vectors, 10)
    for vector, similarities, rows in zip(vectors, batch_similarities, batch_rows, strict=True):
        alone_similarities, alone_rows = library.search("dna", vector[None], 10)
        assert np.allclose(alone_similarities[0], similarities, atol=1e-5)
        inside = similarities > similarities[-1] + 1e-5  # clear of the 10th (the two products round apart)
        assert set(alone_rows[0][inside]) == set(rows[inside])
        near = np.abs(np.diff(similarities)) <= 1e-5  # near-ties may swap between the two products
        clear = inside & ~np.r_[False, near] & ~np.r_[near, False]
        assert np.array_equal(alone_rows[0][clear], rows[clear])
        positions = library.positions("dna", rows)
        for i in range(9):  # best first; a tie keeps index order
            assert similarities[i] > similarities[i + 1] or positions[i] < positions[i + 1]


def test_restriction_by_taxon_and_country(library, model, records):
    order = records[0].taxonomy.order
    other = next(r for r in records if r.taxonomy.order != order)
    [result] = identify(library, model, [Query("q", barcode=other.barcode)], taxon=order)
    assert {n.lineage["order"] for n in result.neighbours} == {order}
    country = library.metadata["country"].dropna().iloc[0]
    allowed = set(library.metadata.index[library.metadata["country"] == country])
    [result] = identify(library, model, [Query("q", barcode=other.barcode)], country=country.upper())
    assert result.neighbours and {n.row for n in result.neighbours} <= allowed
    with pytest.raises(LibraryError, match="no reference"):
        identify(library, model, [Query("q", barcode=other.barcode)], taxon="Lepidopterax")


def test_bad_queries_get_their_own_errors_and_the_batch_goes_on(library, model, records):
    queries = [
        Query("protein", barcode="MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVVHSLAKWKRQTLGQ"),
        Query("corrupt", image=b"\xff\xd8\xff\xe0 this is not a jpeg"),
        Query("good", barcode=records[3].barcode),
        Query("empty"),
    ]
    results = identify(library, model, queries)
    assert [r.query_id for r in results] == ["protein", "corrupt", "good", "empty"]
    assert "protein" in results[0].error or "nucleotide" in results[0].error
    assert "corrupt" in results[1].error
    assert results[2].error is None and results[2].neighbours[0].identity == pytest.approx(100.0)
    assert "neither a barcode nor an image" in results[3].error


def test_image_and_barcode_of_one_specimen_give_one_combined_answer(library, model, records):
    record = records[5]
    [result] = identify(library, model, [Query("s", barcode=record.barcode, image=record.load_image())])
    assert result.query_type == "image+barcode"
    assert set(result.parts) == {"image", "barcode"}
    assert result.agreement
    assert result.ranks["order"].name == record.taxonomy.order


def test_a_query_from_another_model_is_refused(library, tmp_path):
    other = build_model("lite")
    other.save(tmp_path / "other")
    with pytest.raises(ModelMismatchError, match="cannot be compared"):
        identify(library, load_model(tmp_path / "other", device="cpu"), [Query("q", barcode="ACGT" * 150)])


def test_append_adds_new_records_and_reports_duplicates(model, records, tmp_path):
    build_library(model, records[:40], tmp_path / "lib")
    library, duplicates = add_to_library(tmp_path / "lib", model, records[30:60])
    assert duplicates == [r.id for r in records[30:40]]
    assert len(library.metadata) == 60 and library.indexes["dna"].ntotal == 60
    assert library.version_dir.name == "v000002"
    assert [p.name for p in (tmp_path / "lib").iterdir() if p.name.startswith("v")] == ["v000002"]
    [result] = identify(library, model, [Query("q", barcode=records[55].barcode)])
    assert result.neighbours[0].identity == pytest.approx(100.0)
    with pytest.raises(LibraryError, match="already a library"):
        build_library(model, records[:5], tmp_path / "lib")


def test_appends_past_the_exact_limit_switch_to_hnsw_and_then_grow_it(model, records, tmp_path, monkeypatch):
    from clibd_core.library import indexes

    monkeypatch.setattr(indexes, "EXACT_LIMIT", 50)  # the switch at 300,000 vectors, scaled down
    build_library(model, records[:40], tmp_path / "lib")
    crossed, _ = add_to_library(tmp_path / "lib", model, records[40:80])
    grown, _ = add_to_library(tmp_path / "lib", model, records[80:120])
    assert Library.open(tmp_path / "lib", with_indexes=False).facts["index"]["dna"]["type"] == "IndexHNSWFlat"
    for library, size in ((crossed, 80), (grown, 120)):
        assert isinstance(library.indexes["dna"], faiss.IndexHNSW) and library.indexes["dna"].ntotal == size
        assert library.indexes["dna"].hnsw.efSearch == indexes.HNSW_EF_SEARCH
        np.testing.assert_array_equal(library.rows["dna"], np.arange(size))
    exact = model.encode_barcodes([r.barcode for r in records[:120]])
    np.testing.assert_allclose(grown.vectors("dna"), exact, atol=1e-5)  # every vector kept, in row order
    results = identify(grown, model, [Query(f"q{i}", barcode=records[i].barcode) for i in (5, 60, 110)])
    assert [r.neighbours[0].identity for r in results] == pytest.approx([100.0] * 3)


@pytest.mark.slow
def test_killing_a_build_or_append_at_any_moment_leaves_the_previous_library(model, world, records, tmp_path):
    library_dir = tmp_path / "lib"
    first = [r for r in records[:50]]
    build_library(model, first, library_dir)
    command = [*CLI, "add-to-library", str(library_dir), "--data", str(world)]
    for stage in ("embedding", "writing"):
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 180
        while time.time() < deadline and process.poll() is None:
            staging = list(library_dir.glob(".tmp-v*"))
            if (stage == "embedding" and time.time() > deadline - 175) or (stage == "writing" and staging):
                break
            time.sleep(0.01)
        assert process.poll() is None, f"the append finished before it could be killed ({stage})"
        process.send_signal(signal.SIGKILL)
        process.wait()
        survivor = Library.open(library_dir)
        assert len(survivor.metadata) == 50 and survivor.indexes["dna"].ntotal == 50
    assert subprocess.run(command, capture_output=True).returncode == 0
    assert len(Library.open(library_dir).metadata) == len(read_source(world).records)
    assert not list(library_dir.glob(".tmp-*"))


def test_cli_builds_and_identifies_with_both_kinds_of_query(world, records, tmp_path):
    library_dir = tmp_path / "lib"
    built = subprocess.run(
        [*CLI, "build-library", "--model", str(DEMO_MODEL), "--data", str(world), "--out", str(library_dir)],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    fasta = tmp_path / "q.fasta"
    fasta.write_text(
        f">{records[0].id}\n{records[0].barcode}\n>bad\nHELLOWORLD\n>{records[1].id}\n{records[1].barcode}\n"
    )
    image = tmp_path / f"{records[0].id}.png"
    records[0].load_image().save(image)
    out = tmp_path / "results.csv"
    done = subprocess.run(
        [
            *CLI,
            "identify",
            "--library",
            str(library_dir),
            "--fasta",
            str(fasta),
            "--images",
            str(image),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    table = read_results(out)
    required = ["query_id", *RANKS, *(f"{r}_conf" for r in RANKS), "deepest_rank", "top1_id", "top1_similarity"]
    assert set(required + ["top1_identity", "novel"]) <= set(table.columns)
    rows = table.set_index("query_id")
    assert rows.loc[records[0].id, "query_type"] == "image+barcode"
    assert rows.loc[records[0].id, "top1_identity"] == pytest.approx(100.0)
    assert "bad" in rows.index and isinstance(rows.loc["bad", "error"], str)
    assert out.read_text().startswith("# model_fingerprint: ")
    neighbours = read_results(tmp_path / "results.neighbours.csv")
    assert (neighbours["query_id"] == records[1].id).sum() == 10
    embeddings = pd.read_parquet(tmp_path / "results.embeddings.parquet")  # as the app's Batch writes them
    assert list(embeddings.columns[:2]) == ["uuid", "emb"] and records[1].id in set(embeddings["uuid"])


def test_parquet_results_carry_provenance(library, model, records, tmp_path):
    import pyarrow.parquet as pq

    results = identify(library, model, [Query("q", barcode=records[0].barcode)])
    [path, _] = write_results(results, tmp_path / "r.parquet", library, model)
    metadata = pq.read_schema(path).metadata
    assert metadata[b"clibd.model_fingerprint"].decode() == model.fingerprint
    assert read_results(path)["top1_identity"].tolist() == [100.0]


def test_novelty_auroc_of_the_protocol_on_known_answers():
    species = [f"S{i}" for i in range(6)]
    records = []
    for i, name in enumerate(species):
        split_of = ("key_seen", "test") if i < 3 else ("key_unseen", "test_unseen")
        for split in split_of:
            records.append(Record(f"{name}-{split}", Taxonomy(genus="G", species=name), barcode="A", split=split))
    one_hot = {name: np.eye(8, dtype=np.float32)[i] for i, name in enumerate(species)}

    def perfect(modality, batch):  # same species → same vector: absent species have no similar key
        return np.stack([one_hot[r.taxonomy.species] for r in batch])

    assert novelty_auroc(records, perfect, ["dna"]) == {"dna->dna": 1.0}

    def blind(modality, batch):  # every record alike: nothing to tell
        return np.ones((len(batch), 8), np.float32) / np.sqrt(8)

    assert novelty_auroc(records, blind, ["dna"]) == {"dna->dna": 0.5}


def test_corrupt_reference_images_are_skipped_with_their_reason(model, records, tmp_path):
    broken = [Record("broken", records[0].taxonomy, barcode=records[0].barcode, image=b"not an image")]
    library = build_library(model, [*records[:30], *broken], tmp_path / "lib")
    assert library.facts["skipped"][0]["id"] == "broken"
    assert library.indexes["image"].ntotal == 30 and library.indexes["dna"].ntotal == 31
    assert io.BytesIO(library.thumbnails([0])[0]).read(2) == b"\xff\xd8"


def _same_library(a: Library, b: Library, exact: bool = True) -> None:
    """Same records, rows and vectors; ``exact=False`` allows float rounding (other thread counts)."""
    pd.testing.assert_frame_equal(a.metadata, b.metadata)
    assert list(chain.from_iterable(a.barcodes.chunks())) == list(chain.from_iterable(b.barcodes.chunks()))
    assert a.modalities == b.modalities
    for modality in a.modalities:
        np.testing.assert_array_equal(a.rows[modality], b.rows[modality])
        np.testing.assert_allclose(a.vectors(modality), b.vectors(modality), atol=0 if exact else 1e-5)
    if exact:
        assert a.facts["calibration"] == b.facts["calibration"]


def test_a_first_format_library_still_opens_answers_and_grows(model, library, records, tmp_path):
    """Format 1 kept the barcodes in the metadata table; such a library is read as before, and its
    next version is written in today's format."""
    from clibd_core.library.barcode_file import FILES, BarcodeFile

    old = tmp_path / "old"
    shutil.copytree(library.path, old)
    version = old / (old / "CURRENT").read_text().strip()
    metadata = pd.read_parquet(version / "metadata.parquet")
    metadata.insert(7, "barcode", list(chain.from_iterable(library.barcodes.chunks())))
    metadata.to_parquet(version / "metadata.parquet", index=False)
    for name in FILES:
        (version / name).unlink()
    facts = json.loads((version / "library.json").read_text())
    (version / "library.json").write_text(json.dumps({**facts, "format_version": 1}))
    reopened = Library.open(old)
    assert "barcode" not in reopened.metadata and reopened.barcodes.take([0, 5]) == library.barcodes.take([0, 5])
    [answer] = identify(reopened, model, [Query("q", barcode=records[3].barcode)])
    assert answer.neighbours[0].identity == pytest.approx(100.0)
    grown, _ = add_to_library(old, model, records[160:170])
    assert isinstance(grown.barcodes, BarcodeFile) and grown.facts["format_version"] == 2
    assert grown.barcodes.take([3, 165]) == [records[3].barcode, records[165].barcode]


def test_appending_known_lineages_embeds_no_new_taxonomy_texts(model, records, tmp_path):
    built = build_library(model, records[:100], tmp_path / "lib")
    known = {taxonomy_text(r.taxonomy) for r in records[:100]}
    extra = [r for r in records[100:] if taxonomy_text(r.taxonomy) in known][:10]
    assert extra and len(built.rows["text"]) == len(known)
    grown, _ = add_to_library(tmp_path / "lib", model, extra)
    assert len(grown.rows["text"]) == len(known) and len(grown.metadata) == 100 + len(extra)


def test_a_source_without_usable_records_is_refused_clearly(model, tmp_path):
    with pytest.raises(LibraryError, match="no usable record"):
        build_library(model, iter([]), tmp_path / "empty")
    assert not (tmp_path / "empty").exists() and not (tmp_path / ".build-empty").exists()


def test_a_killed_build_resumes_from_its_finished_shards(model, records, tmp_path):
    from clibd_core.library.shards import Processes

    whole = build_library(model, records[:100], tmp_path / "whole", shard_records=30)
    assert whole.facts["build"]["shards"] == 4 and whole.facts["build"]["processes"] == 1
    assert not (tmp_path / ".build-whole").exists()  # the shards are gone once the library is committed
    # As if the second of two processes died: shards 0 and 2 are written, 1 and 3 are missing.
    with pytest.raises(FileNotFoundError, match="did not finish"):
        build_library(model, records[:100], tmp_path / "lib", shard_records=30, processes=Processes(0, 2))
    work = tmp_path / ".build-lib"
    finished = {p.name: p.stat().st_mtime_ns for p in work.glob("shard-*")}
    assert sorted(finished) == ["shard-000000", "shard-000002"] and not (tmp_path / "lib" / "CURRENT").exists()
    resumed = build_library(model, records[:100], tmp_path / "lib", shard_records=30)
    _same_library(resumed, whole)
    # A different build in the same place does not reuse the old shards: killed again, with other records.
    with pytest.raises(FileNotFoundError, match="did not finish"):
        build_library(model, records[:100], tmp_path / "other", shard_records=30, processes=Processes(0, 2))
    old = {p.name: p.stat().st_mtime_ns for p in (tmp_path / ".build-other").glob("shard-*")}
    with pytest.raises(FileNotFoundError, match="did not finish"):
        build_library(model, records[1:101], tmp_path / "other", shard_records=30, processes=Processes(0, 2))
    new = {p.name: p.stat().st_mtime_ns for p in (tmp_path / ".build-other").glob("shard-*")}
    assert sorted(new) == sorted(old) and all(new[name] != old[name] for name in old)


@pytest.mark.slow
def test_two_processes_under_accelerate_build_the_single_process_library(model, world, tmp_path):
    """`accelerate launch` with 2 CPU processes: shards shared out, the same library as one process."""
    common = ["build-library", "--model", str(DEMO_MODEL), "--data", str(world), "--shard-records", "60"]
    single = subprocess.run([*CLI, *common, "--out", str(tmp_path / "one")], capture_output=True, text=True)
    assert single.returncode == 0, single.stderr
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    launch += ["--num_machines", "1", "--main_process_port", str(free_port()), "--mixed_precision", "no"]
    launch += ["--dynamo_backend", "no", "-m", "clibd_core.cli"]
    double = subprocess.run([*launch, *common, "--out", str(tmp_path / "two")], capture_output=True, text=True)
    assert double.returncode == 0, double.stderr[-3000:]
    one, two = Library.open(tmp_path / "one"), Library.open(tmp_path / "two")
    assert two.facts["build"]["processes"] == 2 and two.facts["build"]["shards"] == 4  # 220 records
    assert one.facts["build"]["processes"] == 1
    _same_library(one, two, exact=False)  # each of the two processes computes with one thread


def test_seed_candidates_find_a_fragment_and_distant_relatives():
    from clibd_core.library.seeds import SeedIndex

    rng = np.random.default_rng(0)
    bases = np.array(list("ACGT"))
    ancestors = ["".join(rng.choice(bases, 658)) for _ in range(20)]

    def mutate(sequence: str, rate: float) -> str:
        changed = np.array(list(sequence))
        where = rng.random(len(changed)) < rate
        changed[where] = rng.choice(bases, where.sum())
        return "".join(changed)

    references = [mutate(a, 0.02) for a in ancestors for _ in range(5)]  # 20 genera of 5 "species"
    index = SeedIndex.build(zip(np.arange(100) + 7, references, strict=True), 107)  # rows need not start at 0
    fragment = references[42][300:430]  # a 130-bp mini-barcode
    assert index.candidates(fragment, 5)[0] == 42 + 7
    relative = mutate(ancestors[13], 0.10)  # 90 % identical: a species the library lacks
    assert set(index.candidates(relative, 5)) == set(range(13 * 5 + 7, 14 * 5 + 7))
    excluded = np.zeros(107, dtype=bool)
    excluded[42 + 7] = True
    assert 42 + 7 not in index.candidates(fragment, 5, excluded)
    assert len(index.candidates("ACGTNNNN", 5)) == 0  # too short for one word


def test_short_reads_are_answered_from_their_seed_candidates(library, model, records):
    """100-bp reads from either end: the seed index finds their source where the embedding alone misses."""
    assert library.seeds is not None
    picked = range(0, 160, 4)
    fragments = [Query(f"q{i}-{end}", barcode=records[i].barcode[end : end + 100]) for i in picked for end in (0, 500)]
    truth = [records[i].taxonomy.species for i in picked for _ in (0, 500)]

    def named(results) -> float:
        return np.mean(
            [
                r.ranks.get("species") is not None and r.ranks["species"].name == t
                for r, t in zip(results, truth, strict=True)
            ]
        )

    with_seeds = named(identify(library, model, fragments))
    seeds, library.seeds = library.seeds, None
    try:
        without = named(identify(library, model, fragments))
    finally:
        library.seeds = seeds
    assert with_seeds >= 0.8 and with_seeds > without + 0.1, (with_seeds, without)


@pytest.mark.slow
def test_a_library_over_its_memory_budget_gets_a_compressed_memory_mapped_index(tmp_path):
    """Under a tiny budget: IVF-PQ read memory-mapped, exact re-ranking from the stored vectors (read
    row by row from disk), the same nearest references as exact search, taxon restrictions kept,
    appends rebuilt."""
    from clibd_core.reference import DEFAULT_MODEL

    model = load_model(DEFAULT_MODEL, device="cpu")  # barcodes and taxonomy only: quick to embed
    root = tmp_path / "world"
    generate_world(root, WorldConfig(n_records=700, n_orders=3, seed=11))
    records = [r for r in read_source(root).records if r.barcode]
    small = build_library(model, records[:600], tmp_path / "small", index_memory=10_000)
    facts = small.facts["index"]["dna"]
    assert facts["type"] == "IndexIVFPQ" and facts["memory_budget"] == 10_000 and facts["code_bytes"] == 32
    reopened = Library.open(tmp_path / "small")
    stored = reopened.stored["dna"]  # float16 beside the index, read row by row
    references = model.encode_barcodes([r.barcode for r in records[:600]])  # what an exact library holds
    assert len(stored) == 600 and np.allclose(stored.take([3, 1]), references[[3, 1]], atol=2e-3)
    queries = model.encode_barcodes([r.barcode for r in records[600:700]])
    found = reopened.search("dna", queries, 10)[1]
    truth = np.argsort(-(queries @ references.T), axis=1, kind="stable")[:, :10]
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
    assert recall >= 0.95
    order = records[0].taxonomy.order
    allowed = reopened.select_rows(taxon=order)
    rows = reopened.search("dna", queries[:5], 10, allowed)[1]
    assert set(rows[rows >= 0]) <= set(allowed)
    grown, _ = add_to_library(tmp_path / "small", model, records[600:650])
    assert grown.facts["index"]["dna"]["type"] == "IndexIVFPQ" and grown.indexes["dna"].ntotal == 650
    [result] = identify(grown, model, [Query("q", barcode=records[620].barcode)])
    assert result.neighbours[0].identity == pytest.approx(100.0)


def test_a_freshly_built_library_answers_its_first_explore_from_the_stored_map(tmp_path):
    """The map is a stage of the build: the first Explore reads it, nothing is fitted at request time."""
    from clibd_core.data.synthetic import WorldConfig, generate_world
    from clibd_core.library import projection as maps
    from clibd_core.reference import DEMO_MODEL
    from clibd_core.workspace import Workspace

    world = tmp_path / "world"
    generate_world(world, WorldConfig(n_records=80, n_orders=2, seed=5))
    stages = []
    library, _ = Workspace(tmp_path / "home").import_library(
        world, "mapped", model=DEMO_MODEL, progress=lambda stage, done, total: stages.append(stage)
    )
    assert "drawing the maps" in stages
    assert all(maps.is_drawn(library, view) for view in maps.map_views(library.modalities))
    fitted = []
    original = maps._layout
    maps._layout = lambda vectors: fitted.append(len(vectors)) or original(vectors)
    try:
        table = maps.projection(library, "dna")
    finally:
        maps._layout = original
    assert fitted == [] and len(table) == library.indexes["dna"].ntotal


def test_a_library_built_without_maps_draws_them_when_first_explored(model, records, tmp_path):
    from clibd_core.library import projection as maps

    stages = []
    library = build_library(
        model, records[:60], tmp_path / "lib", maps=False, progress=lambda stage, done, total: stages.append(stage)
    )
    assert "drawing the maps" not in stages and not maps.is_drawn(library, "dna")
    table = maps.projection(library, "dna")
    assert maps.is_drawn(library, "dna") and len(table) == library.indexes["dna"].ntotal
