"""Readers, taxonomy normalisation, splits and the synthetic world, on small files built here and real data."""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import shutil
import subprocess
import sys
from collections import Counter

import h5py
import numpy as np
import pytest
from PIL import Image

from clibd_core.data.bioscan import read_clibd_hdf5
from clibd_core.data.bold import read_bold_tsv, read_fasta
from clibd_core.data.sources import READERS, detect_format, read_source
from clibd_core.data.splits import KEY_SPLITS, assign_splits
from clibd_core.data.synthetic import WorldConfig, generate_world
from clibd_core.dna import inspect_barcode
from clibd_core.taxonomy import MISSING, Taxonomy, normalise_rank, taxonomy_text
from tests.conftest import BOLD_DEV, SHARED, require
from tests.test_dna import COI

BOLD_HEADER = "processid\tsampleid\tbin_uri\torder_name\tfamily_name\tsubfamily_name\tgenus_name\tspecies_name\tcountry\tlat\tlon\tmarkercode\tnucleotides"


def bold_row(pid, species="Abax parallelus", marker="COI-5P", seq=COI, country="Austria"):
    genus = species.split()[0] if species else ""
    return f"{pid}\tS-{pid}\tBOLD:AAA0001\tColeoptera\tCarabidae\tHarpalinae\t{genus}\t{species}\t{country}\t46.6\t13.8\t{marker}\t{seq}"


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("", MISSING),
        (float("nan"), MISSING),
        (None, MISSING),
        ("None", MISSING),
        ("not_classified", MISSING),
        ("  Apanteles   sp. ", MISSING),
        ("Apanteles spp.", MISSING),
        ("Apanteles sp. Rodriguez01", "Apanteles sp. Rodriguez01"),
        ("Abax  parallelus", "Abax parallelus"),
    ],
)
def test_species_names_are_normalised(raw, expected):
    assert normalise_rank(raw, "species") == expected


def test_taxonomy_text_is_the_clibd_string():
    taxonomy = Taxonomy.from_values(order="Diptera", family="Cecidomyiidae", genus="", species="nan")
    assert taxonomy_text(taxonomy) == "Diptera Cecidomyiidae not_classified not_classified"
    assert taxonomy.deepest_rank() == "family"


def test_bold_tsv_keeps_good_rows_and_names_every_skip(tmp_path):
    rows = [
        BOLD_HEADER,
        bold_row("GOOD-1"),
        bold_row("GOOD-2", country="R\xe9union").replace("\t", "\t", 1),
        bold_row("GOOD-1"),  # duplicate
        bold_row("NONCOI-1", marker="COI-3P"),
        bold_row("PROT-1", seq="MKVLAAGIVGLLLAVSQEPT" * 10),
        "SHORT-ROW\tonly\tthree",
        bold_row("GAPPY-1", seq="--" + COI[:300].lower() + "NNRY" + COI[304:] + "---"),
    ]
    data = b""
    for line in rows:  # Latin-1 in one row, UTF-8 elsewhere, a stray CR inside rows, as BOLD writes them
        encoded = line.encode("latin-1") if "R\xe9union" in line else line.encode("utf-8")
        data += encoded.replace(b"\tCOI-5P", b"\r\tCOI-5P") + b"\n"
    plain = tmp_path / "export.tsv"
    plain.write_bytes(data)
    packed = tmp_path / "export.tsv.gz"
    packed.write_bytes(gzip.compress(data))
    for path in (plain, packed):
        result = read_bold_tsv(path)
        assert [r.id for r in result.records] == ["GOOD-1", "GOOD-2", "GAPPY-1"]
        reasons = {s.row.split("(")[-1].rstrip(")"): s.reason for s in result.skipped}
        assert "duplicate processid" in reasons["GOOD-1"]
        assert "COI-3P" in reasons["NONCOI-1"]
        assert "not nucleotide codes" in reasons["PROT-1"]
        assert any("fields where the header has 13" in s.reason for s in result.skipped)
        good = result.records[1]
        assert good.country == "Réunion" and good.latitude == 46.6 and good.longitude == 13.8
        assert good.taxonomy == Taxonomy(
            order="Coleoptera",
            family="Carabidae",
            subfamily="Harpalinae",
            genus="Abax",
            species="Abax parallelus",
            bin="BOLD:AAA0001",
        )
        assert good.barcode == COI and "\r" not in good.barcode_raw
        assert result.records[2].barcode == COI[:300] + "NNRY" + COI[304:]
        assert detect_format(path) == "bold_tsv"


@pytest.mark.slow
def test_real_bold_dev_set_counts():
    result = read_bold_tsv(require(BOLD_DEV))
    summary = result.summary()
    assert summary["records"] + len(summary["skipped"]) == 86_310
    assert summary["records"] == 86_238 and summary["species"] == 839 and summary["orders"] == 4
    assert all(item["reason"] for item in summary["skipped"])
    assert {item["reason"].split(": ")[1].split(" ")[0] for item in summary["skipped"]} <= {
        "only",
        "80",
        "82",
        "83",
        "84",
        "85",
        "86",
        "87",
        "88",
        "89",
        "90",
        "91",
        "92",
        "93",
        "94",
        "95",
        "96",
        "97",
        "98",
        "99",
    }


@pytest.mark.parametrize(
    "name, records, skipped_reason",
    [
        ("raw_bold_export_Eublemma_anachoresis.tsv", 51, "marker COI-3P is not the COI-5P barcode"),
        ("raw_bold_export_Memphis_indigotica.tsv", 43, "no sequence"),
        ("raw_bold_export_Oxytenis_modoccidentalis.tsv", 91, "no sequence"),
    ],
)
def test_raw_bold_exports(name, records, skipped_reason):
    result = read_source(require(SHARED / "data" / "bold" / name))
    assert result.format == "bold_tsv"
    assert len(result.records) == records
    assert [s.reason for s in result.skipped] == [skipped_reason]
    assert len({r.taxonomy.species for r in result.records}) == 1
    assert all(r.barcode and "\r" not in r.barcode_raw for r in result.records)


def test_fasta_styles(tmp_path):
    bold = tmp_path / "bold.fasta"
    bold.write_text(
        f">P1|Abax parallelus|COI-5P|KX1\n{COI}\n>P2|Carabidae|COI-5P\n{COI}\n>P3|Abax parallelus|28S\n{COI}\n"
    )
    result = read_fasta(bold)
    assert result.format == "fasta_bold"
    assert [r.taxonomy.species for r in result.records] == ["Abax parallelus", MISSING]
    assert result.records[1].taxonomy.family == "Carabidae"
    assert "28S" in result.skipped[0].reason
    sintax = tmp_path / "sintax.fa"
    sintax.write_text(f">S1;tax=k:Animalia,o:Diptera,f:Cecidomyiidae,g:Asynapta,s:Asynapta_groverae;\n{COI}\n")
    (record,) = read_source(sintax).records
    assert record.id == "S1"
    assert record.taxonomy == Taxonomy(
        order="Diptera", family="Cecidomyiidae", genus="Asynapta", species="Asynapta groverae"
    )
    plain = tmp_path / "queries.fasta"
    plain.write_text(f">q1 some description\n{COI}\n>q2\n{COI[:50]}\n")
    result = read_source(plain)
    assert result.format == "fasta_plain" and [r.id for r in result.records] == ["q1"]
    assert "too short" in result.skipped[0].reason


@pytest.fixture()
def photos(photo_dir):
    return sorted(photo_dir.glob("BIOUG*.jpg"))


def test_bioscan_1m_layout(tmp_path, photos):
    columns = [
        "sampleid",
        "processid",
        "uri",
        "name",
        "phylum",
        "class",
        "order",
        "family",
        "subfamily",
        "tribe",
        "genus",
        "species",
        "subspecies",
        "nucraw",
        "image_file",
        "chunk_number",
    ]
    rows = []
    for index, photo in enumerate(photos[:3]):
        target = tmp_path / "images" / "cropped_256" / f"part{index + 1}" / photo.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, target)
        rows.append(
            [
                f"S{index}",
                photo.stem,
                "",
                "",
                "Arthropoda",
                "Insecta",
                "Diptera",
                "Cecidomyiidae",
                "not_classified",
                "not_classified",
                "Asynapta" if index else "not_classified",
                "not_classified",
                "not_classified",
                COI if index != 1 else "",
                photo.name,
                str(index + 1),
            ]
        )
    rows.append(
        ["S9", "NOIMG-1", "", "", "Arthropoda", "Insecta", "Diptera", "", "", "", "", "", "", COI, "missing.jpg", "1"]
    )
    (tmp_path / "BIOSCAN_Insect_Dataset_metadata.tsv").write_text(
        "\n".join("\t".join(r) for r in [columns, *rows]) + "\n"
    )
    result = read_source(tmp_path)
    assert result.format == "bioscan_1m" and len(result.records) == 4
    first, second, third, no_image = result.records
    assert first.taxonomy.genus == MISSING and second.taxonomy.genus == "Asynapta"
    assert second.barcode is None and first.barcode == COI
    assert first.load_image().size == Image.open(photos[0]).size
    assert no_image.image is None and no_image.barcode == COI
    assert result.summary()["with_image"] == 3


def write_bioscan_5m(root, photos):
    columns = "processid sampleid taxon phylum class order family subfamily genus species dna_bin dna_barcode country province_state coord-lat coord-lon split chunk".split()
    with open(root / "BIOSCAN_5M_Insect_Dataset_metadata.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for index, photo in enumerate(photos):
            split = ("train", "test_unseen", "key_unseen")[index % 3]
            target = root / "images" / "cropped_256" / split / "7" / f"{photo.stem}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(photo, target)
            writer.writerow(
                [
                    photo.stem,
                    f"s{index}",
                    "Apanteles",
                    "Arthropoda",
                    "Insecta",
                    "Hymenoptera",
                    "Braconidae",
                    "Microgastrinae",
                    "Apanteles",
                    f"Apanteles sp. X{index}",
                    "BOLD:AAB1234",
                    COI,
                    "Canada",
                    "Ontario",
                    "43.5",
                    "-80.2",
                    split,
                    "7",
                ]
            )


def test_bioscan_5m_layout_keeps_its_splits(tmp_path, photos):
    write_bioscan_5m(tmp_path, photos)
    result = read_source(tmp_path / "BIOSCAN_5M_Insect_Dataset_metadata.csv")
    assert result.format == "bioscan_5m" and len(result.records) == 5
    record = result.records[1]
    assert record.split == "test_unseen" and record.taxonomy.subfamily == "Microgastrinae"
    assert record.taxonomy.species == "Apanteles sp. X1" and record.taxonomy.bin == "BOLD:AAB1234"
    assert (record.country, record.latitude, record.longitude) == ("Canada", 43.5, -80.2)
    assert record.load_image().size == Image.open(photos[1]).size
    splits_before = [r.split for r in result.records]
    assign_splits(result.records)
    assert [r.split for r in result.records] == splits_before


def test_large_tables_are_read_as_streams(tmp_path):
    """A gzipped BIOSCAN-5M table is read row by row: records come before the reader reaches a damaged
    end (a whole-file reader would fail first), and a SourceStream counts what one pass yields and skips."""
    from clibd_core.data.bioscan import iter_bioscan_5m
    from clibd_core.data.sources import SourceStream
    from clibd_core.fileio import file_sha256
    from clibd_core.textio import TextError

    lines = io.StringIO()
    writer = csv.writer(lines)
    writer.writerow(["processid", "order", "genus", "species", "dna_bin", "dna_barcode", "split", "chunk"])
    for i in range(3000):
        barcode = COI if i % 100 else "NNNN"  # every hundredth row has no usable barcode (and no image)
        writer.writerow([f"P{i:05d}", "Diptera", "Aedes", f"Aedes sp{i % 7}", "BOLD:A", barcode, "pretrain", "1"])
    packed = gzip.compress(lines.getvalue().encode())
    (tmp_path / "whole.csv.gz").write_bytes(packed)
    (tmp_path / "damaged.csv.gz").write_bytes(packed[: len(packed) // 2])
    rows = iter_bioscan_5m(tmp_path / "damaged.csv.gz")
    first = [next(rows) for _ in range(50)]
    assert [item.id for item in first if hasattr(item, "id")][:3] == ["P00001", "P00002", "P00003"]
    with pytest.raises(TextError, match="damaged gzip"):
        list(rows)
    skipped = []
    stream = SourceStream(tmp_path / "whole.csv.gz", "bioscan_5m", on_skipped=skipped.append)
    records = list(stream)
    assert len(records) == stream.records == 2970 and stream.skipped_count == len(skipped) == 30
    assert records[0].barcode == COI and records[0].split == "pretrain"
    assert stream.facts() == {
        "path": str((tmp_path / "whole.csv.gz").resolve()),
        "format": "bioscan_5m",
        "sha256": file_sha256(tmp_path / "whole.csv.gz"),
        "records": 2970,
        "skipped": 30,
    }
    assert sum(1 for _ in stream) == 2970 and stream.skipped_count == 30  # a second pass counts afresh


def test_clibd_hdf5_streams_images_lazily(tmp_path, photos):
    path = tmp_path / "BioScan_data_in_splits.hdf5"
    blobs = [p.read_bytes() for p in photos]
    width = max(len(b) for b in blobs) + 7
    with h5py.File(path, "w") as handle:
        for name, members in (
            ("train_seen", [0, 1, 2]),
            ("seen_keys", [3]),
            ("val_unseen_keys", [4]),
            ("test_unseen_keys", []),
            ("all_keys", [3, 4]),
        ):
            group = handle.create_group(name)
            images = np.zeros((len(members), width), dtype=np.uint8)
            for row, member in enumerate(members):
                images[row, : len(blobs[member])] = np.frombuffer(blobs[member], dtype=np.uint8)
            group.create_dataset("image", data=images)
            group.create_dataset("image_mask", data=np.array([len(blobs[m]) for m in members], dtype=np.int64))
            for column, values in (
                ("barcode", [COI.encode()] * len(members)),
                ("order", [b"Diptera"] * len(members)),
                ("family", [b"Cecidomyiidae"] * len(members)),
                ("genus", [b"not_classified"] * len(members)),
                ("species", [b"not_classified"] * len(members)),
                ("sampleid", [photos[m].stem.encode() for m in members]),
                ("image_file", [photos[m].name.encode() for m in members]),
            ):
                group.create_dataset(column, data=np.array(values, dtype="S"))
    assert detect_format(path) == "clibd_hdf5"
    result = read_clibd_hdf5(path)
    assert sorted(r.split for r in result.records) == [
        "seen_keys",
        "train_seen",
        "train_seen",
        "train_seen",
        "val_unseen_keys",
    ]
    assert len(result.records) == 5  # the union group all_keys is not read twice
    for record in result.records:
        original = photos[[p.stem for p in photos].index(record.id)]
        assert record.image.read_bytes() == original.read_bytes()
        assert record.barcode == COI and record.taxonomy.family == "Cecidomyiidae"
        assert np.array_equal(np.asarray(record.load_image()), np.asarray(Image.open(original).convert("RGB")))


def test_image_folder_with_csv(tmp_path, photos):
    for photo in photos[:2]:
        shutil.copy(photo, tmp_path / photo.name)
    (tmp_path / "specimens.csv").write_text(
        "file;order;family;genus;species;barcode\n"
        f"{photos[0].name};Diptera;Cecidomyiidae;;;{COI}\n"
        f"{photos[1].name};Hymenoptera;Braconidae;Apanteles;Apanteles sp.;\n"
        "gone.jpg;Diptera;;;;\n"
    )
    result = read_source(tmp_path)
    assert result.format == "image_folder" and [r.id for r in result.records] == [photos[0].stem, photos[1].stem]
    assert result.records[0].barcode == COI and result.records[1].barcode is None
    assert result.records[1].taxonomy.species == MISSING and result.records[1].taxonomy.genus == "Apanteles"
    assert "gone.jpg not found" in result.skipped[0].reason


def test_inspect_json_and_unknown_formats(tmp_path):
    export = tmp_path / "export.tsv"
    export.write_text("\n".join([BOLD_HEADER, bold_row("A-1"), bold_row("B-1", marker="16S")]) + "\n")
    output = subprocess.run(
        [sys.executable, "-m", "clibd_core.cli", "inspect", "--json", str(export)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    summary = json.loads(output.stdout)
    assert (
        summary["format"] == "bold_tsv"
        and summary["records"] == 1
        and summary["species"] == 1
        and summary["genera"] == 1
    )
    assert summary["with_barcode"] == 1 and summary["with_image"] == 0
    assert summary["skipped"] == [{"row": "line 3 (B-1)", "reason": "marker 16S is not the COI-5P barcode"}]
    strange = tmp_path / "notes.txt"
    strange.write_text("hello\tworld\n")
    result = subprocess.run(
        [sys.executable, "-m", "clibd_core.cli", "inspect", str(strange)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2 and "not a recognised source" in result.stderr


def test_cli_format_choices_match_the_readers():
    from clibd_core.cli import FORMATS

    assert set(FORMATS) == set(READERS)


def split_invariants(records):
    by_split = {}
    for record in records:
        by_split.setdefault(record.split, set()).add(record.taxonomy.species)
    train = by_split.get("train", set())
    unseen = by_split.get("val_unseen", set()) | by_split.get("test_unseen", set())
    keys = set().union(*(by_split.get(k, set()) for k in KEY_SPLITS))
    queries = set().union(*(by_split.get(k, set()) for k in ("val", "test", "val_unseen", "test_unseen")))
    assert not unseen & train
    assert queries <= keys
    assert by_split.get("pretrain", set()) <= {MISSING}
    assert not by_split.get("val_unseen", set()) & by_split.get("test_unseen", set())


@pytest.mark.slow
def test_clibd_splits_on_real_bold_records():
    records = read_bold_tsv(require(BOLD_DEV)).records
    counts = assign_splits(records, seed=3, keep_existing=False)
    split_invariants(records)
    assert counts["train"] > 0.55 * len(records)
    first = [r.split for r in records]
    assign_splits(records, seed=3, keep_existing=False)
    assert [r.split for r in records] == first
    assign_splits(records, seed=4, keep_existing=False)
    assert [r.split for r in records] != first


@pytest.mark.slow
def test_five_folds_hold_out_every_evaluable_species_once():
    records = read_bold_tsv(require(BOLD_DEV)).records
    assign_splits(records, seed=0, keep_existing=False)
    default = [r.split for r in records]
    held_out = []
    for fold in range(5):
        assign_splits(records, seed=0, keep_existing=False, fold=fold)
        split_invariants(records)
        if fold == 0:
            assert [r.split for r in records] == default  # fold 0 is the CLIBD split as before
        held_out.append({r.taxonomy.species for r in records if r.split in ("val_unseen", "test_unseen")})
    counts = Counter(r.taxonomy.species for r in records if r.taxonomy.species != MISSING)
    evaluable = {species for species, count in counts.items() if count >= 10}
    assert set().union(*held_out) == evaluable
    assert sum(map(len, held_out)) == len(evaluable)  # disjoint
    with pytest.raises(ValueError, match="fold"):
        assign_splits(records, keep_existing=False, fold=5)


@pytest.mark.slow
def test_synthetic_world_is_deterministic_realistic_and_readable(tmp_path):
    config = WorldConfig(n_records=150, seed=7)
    first = generate_world(tmp_path / "a", config)
    second = generate_world(tmp_path / "b", config)
    assert first.read_text() == second.read_text()
    rows = list(csv.DictReader(io.StringIO(first.read_text())))
    image = lambda root, row: root / "images" / "cropped_256" / row["split"] / row["chunk"] / f"{row['processid']}.jpg"  # noqa: E731
    assert image(first.parent, rows[5]).read_bytes() == image(second.parent, rows[5]).read_bytes()
    result = read_source(tmp_path / "a")
    assert result.format == "bioscan_5m" and len(result.records) == 150 and not result.skipped
    assert all(r.has_image and r.barcode for r in result.records)
    assert all(r.taxonomy.order.startswith("Syn") and r.taxonomy.order.endswith("ptera") for r in result.records)
    split_invariants(result.records)
    full = [r.barcode for r in result.records if len(r.barcode) == 658]
    at = np.mean([(s.count("A") + s.count("T")) / len(s) for s in full])
    assert 0.64 <= at <= 0.72
    for barcode in full[:40]:
        report = inspect_barcode("x", barcode)
        assert report.stop_codons == 0 and not report.reverse_complemented
    assert result.records[0].load_image().size == (341, 256)
    assert not math.isnan(result.records[0].latitude)


@pytest.mark.parametrize("augment", ["clibd", "photos"])
def test_training_crops_are_of_the_presets_size(augment):
    """A preset that evaluates at 288 px trains at 288 px too (the crops once stayed at 224)."""
    from clibd_core.data.transforms import eval_transform, train_transform

    spec = {"resize": 320, "crop": 288, "interpolation": "bicubic", "mean": [0.5] * 3, "std": [0.5] * 3}
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8))
    assert train_transform(spec, augment)(photo).shape == eval_transform(spec)(photo).shape == (3, 288, 288)
